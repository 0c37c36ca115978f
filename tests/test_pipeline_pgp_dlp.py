"""Pipeline steps beyond the scan: OpenPGP decrypt/verify on upload, and DLP rules."""

from __future__ import annotations

import io
import secrets
from pathlib import Path

import pytest

from accounts.models import Partner, PgpKey
from audit.events import Origin
from tests.clamd_server import EICAR
from transfers import pgp, pipeline, storage, uploads
from transfers.models import DlpRule, FileState, PipelineStep, StoredFile
from transfers.pgp_step import platform_keyring

pytestmark = pytest.mark.django_db(transaction=True)
CARD = b"4111 1111 1111 1111"


@pytest.fixture(autouse=True)
def _no_scanner(settings):
    # These tests isolate the other steps; the scan step has its own tests with real clamd.
    settings.SCAN_MODE = "off"


def _store(user, path: str, data: bytes) -> StoredFile:
    upload = uploads.begin_upload(user, path, origin=Origin())
    upload.write(data)
    return upload.finish()


def _run(stored: StoredFile) -> StoredFile:
    pipeline.advance(stored.pk)
    stored.refresh_from_db()
    return stored


def _plaintext(stored: StoredFile) -> bytes:
    reader = storage.open_reader(Path(stored.storage_path))
    try:
        return reader.read()
    finally:
        reader.close()


@pytest.fixture
def keys(settings, tmp_path):
    """A platform key and a partner key pair, each in its own keyring."""
    settings.PGP_PASSPHRASE = secrets.token_urlsafe(24)
    platform_keyring.cache_clear()
    platform = platform_keyring()
    platform_fpr = platform.generate_platform_key("Portside", "mft@example.com",
                                                  settings.PGP_PASSPHRASE)
    partner_ring = pgp.Keyring(tmp_path / "partner-gnupg", s2k_count=65536)
    partner_pass = secrets.token_urlsafe(16)
    partner_fpr = partner_ring.generate_platform_key("Acme", "ftp@acme.example", partner_pass)
    partner_ring.import_public_key(platform.export_public(platform_fpr))
    yield platform_fpr, partner_ring, partner_fpr, partner_pass
    partner_ring.stop_agent()
    platform.stop_agent()
    platform_keyring.cache_clear()


def _encrypt(ring: pgp.Keyring, recipient: str, data: bytes, *, sign: tuple[str, str] | None):
    out = io.BytesIO()
    ring.encrypt_stream(io.BytesIO(data), out, [recipient],
                        sign_with=sign[0] if sign else None,
                        passphrase=sign[1] if sign else None)
    return out.getvalue()


def _register(partner: Partner, ring: pgp.Keyring, fpr: str) -> None:
    armored = ring.export_public(fpr)
    info = pgp.validate_public_key(armored)
    PgpKey.objects.create(partner=partner, armored=armored, fingerprint=info.fingerprint,
                          user_ids=info.user_ids)


def test_pgp_upload_is_decrypted_and_its_signature_checked(cast, keys):
    platform_fpr, ring, partner_fpr, partner_pass = keys
    partner = cast.partner.user.partner
    Partner.objects.filter(pk=partner.pk).update(pgp_signature_required=True)
    _register(partner, ring, partner_fpr)
    message = _encrypt(ring, platform_fpr, b"order 42\n", sign=(partner_fpr, partner_pass))
    stored = _run(_store(cast.partner.user, "/order.pgp", message))
    assert stored.state == FileState.READY
    assert _plaintext(stored) == b"order 42\n" and stored.size == len(b"order 42\n")
    step = stored.steps.get(name="decrypt")
    assert step.details["signer"] == partner_fpr and step.details["signature_valid"]


def test_a_small_pgp_upload_is_decrypted_under_a_lease_committed_before_it(cast, keys,
                                                                            monkeypatch):
    platform_fpr, ring, _, _ = keys
    message = _encrypt(ring, platform_fpr, b"order 43\n", sign=None)
    stored = _store(cast.partner.user, "/leased.pgp", message)
    decrypt = pipeline._HANDLERS["decrypt"]
    seen = []

    def decrypt_seeing_the_lease(running: StoredFile) -> object:
        seen.append(PipelineStep.objects.get(stored_file=running, name="decrypt").status)
        return decrypt(running)

    monkeypatch.setitem(pipeline._HANDLERS, "decrypt", decrypt_seeing_the_lease)
    assert _run(stored).state == FileState.READY
    assert seen == [PipelineStep.Status.RUNNING]


def test_signature_required_and_missing_is_rejected(cast, keys):
    platform_fpr, ring, _, _ = keys
    Partner.objects.filter(pk=cast.partner.user.partner_id).update(pgp_signature_required=True)
    stored = _run(_store(cast.partner.user, "/unsigned.pgp",
                         _encrypt(ring, platform_fpr, b"x", sign=None)))
    assert stored.state == FileState.REJECTED and "signature" in stored.state_reason


def test_plain_upload_is_rejected_when_the_partner_requires_pgp(cast):
    Partner.objects.filter(pk=cast.partner.user.partner_id).update(pgp_required=True)
    stored = _run(_store(cast.partner.user, "/plain.csv", b"a,b\n"))
    assert stored.state == FileState.REJECTED and "OpenPGP" in stored.state_reason


def test_dlp_flag_records_counts_but_never_the_data(cast):
    DlpRule.objects.create(partner=cast.partner.user.partner, name="cards", kind="card")
    stored = _run(_store(cast.partner.user, "/cards.txt", CARD + b"\n" + CARD))
    assert stored.state == FileState.READY
    details = stored.steps.get(name="dlp").details
    assert details["findings"] == [{"rule": "cards", "kind": "card", "count": 2}]
    assert "4111" not in str(details)


def test_dlp_block_rejects_and_takes_the_file_out_of_the_home(cast):
    DlpRule.objects.create(partner=cast.partner.user.partner, name="ssn", kind="ssn",
                           action="block")
    stored = _run(_store(cast.partner.user, "/hr.txt", b"employee 123-45-6789\n"))
    assert stored.state == FileState.REJECTED and "ssn (1)" in stored.state_reason
    assert not (uploads.home_of(cast.partner.user) / "hr.txt").exists()


def _wait(stored: StoredFile, *states: str, timeout: float = 90) -> StoredFile:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stored.refresh_from_db()
        if stored.state in states:
            return stored
        time.sleep(0.2)
    raise AssertionError(f"file stayed {stored.state} ({stored.state_reason})")


def test_a_real_worker_decrypts_a_pgp_upload_and_blocks_by_dlp(cast, keys, settings,
                                                             start_worker):
    platform_fpr, ring, partner_fpr, partner_pass = keys
    partner = cast.partner.user.partner
    _register(partner, ring, partner_fpr)
    DlpRule.objects.create(partner=partner, name="cards", kind="card", action="block")
    start_worker(MFT_SCAN="off", MFT_PGP_PASSPHRASE=settings.PGP_PASSPHRASE)
    clean = _store(cast.partner.user, "/ok.pgp",
                   _encrypt(ring, platform_fpr, b"order 7\n", sign=(partner_fpr, partner_pass)))
    blocked = _store(cast.partner.user, "/cards.pgp",
                     _encrypt(ring, platform_fpr, CARD, sign=(partner_fpr, partner_pass)))
    assert _plaintext(_wait(clean, FileState.READY)) == b"order 7\n"
    blocked = _wait(blocked, FileState.REJECTED)
    assert blocked.steps.get(name="decrypt").outcome == "decrypted"
    assert "cards (1)" in blocked.state_reason


def test_eicar_inside_a_pgp_upload_is_scanned_as_plaintext_and_quarantined(cast, keys,
                                                                           settings, clamd):
    platform_fpr, ring, _, _ = keys
    settings.SCAN_MODE, settings.CLAMD_ADDRESS = "on", clamd.address
    stored = _run(_store(cast.partner.user, "/evil.pgp",
                         _encrypt(ring, platform_fpr, EICAR, sign=None)))
    assert stored.steps.get(name="decrypt").outcome == "decrypted"
    assert stored.state == FileState.INFECTED and "Eicar" in stored.scan_signature


def test_a_real_worker_rejects_an_unsigned_upload_and_flags_by_dlp(cast, keys, settings,
                                                                  start_worker):
    platform_fpr, ring, partner_fpr, partner_pass = keys
    partner = cast.partner.user.partner
    Partner.objects.filter(pk=partner.pk).update(pgp_signature_required=True)
    _register(partner, ring, partner_fpr)
    DlpRule.objects.create(partner=partner, name="cards", kind="card", action="flag")
    start_worker(MFT_SCAN="off", MFT_PGP_PASSPHRASE=settings.PGP_PASSPHRASE)
    unsigned = _store(cast.partner.user, "/unsigned.pgp",
                      _encrypt(ring, platform_fpr, b"order 8\n", sign=None))
    flagged = _store(cast.partner.user, "/cards.pgp",
                     _encrypt(ring, platform_fpr, CARD, sign=(partner_fpr, partner_pass)))
    unsigned = _wait(unsigned, FileState.REJECTED, FileState.READY)
    assert unsigned.state == FileState.REJECTED and "signature" in unsigned.state_reason
    flagged = _wait(flagged, FileState.READY, FileState.REJECTED)
    assert flagged.state == FileState.READY
    assert flagged.steps.get(name="dlp").details["findings"] == [
        {"rule": "cards", "kind": "card", "count": 1}]
