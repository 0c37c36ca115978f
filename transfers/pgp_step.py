"""The decrypt/verify step: OpenPGP uploads are decrypted with the platform's key.

The decrypted plaintext streams from gpg straight into an at-rest-encrypted staging file,
so it never touches the disk in the clear, and replaces the upload only once gpg has
authenticated it. The partner's policy may demand encryption and a valid signature.
"""

from __future__ import annotations

import functools
import os
import uuid
from pathlib import Path

from django.conf import settings

from accounts.models import PgpKey
from transfers import pgp, storage
from transfers.models import FileState, StoredFile
from transfers.pipeline_state import set_state
from transfers.step_result import StepResult

_SNIFF = 64


@functools.cache
def platform_keyring() -> pgp.Keyring:
    """Return the keyring the platform owns under the data dir."""
    return pgp.Keyring(Path(settings.PGP_HOME), s2k_count=settings.PGP_S2K_COUNT)


def _first_bytes(path: Path) -> bytes:
    """Return the start of a stored file's plaintext."""
    reader = storage.open_reader(path)
    try:
        return reader.read(_SNIFF)
    finally:
        reader.close()


def may_rewrite(stored: StoredFile) -> bool:
    """Return whether run() may replace the file's bytes: an OpenPGP message, or unreadable."""
    try:
        return pgp.is_pgp_message(_first_bytes(Path(stored.storage_path)))
    except Exception:  # noqa: BLE001 - unreadable: run() reports it, under a lease
        return True


def run(stored: StoredFile) -> StepResult:
    """Decrypt a PGP upload, or apply the partner's policy to a plain one."""
    partner = stored.partner
    source = Path(stored.storage_path)
    if not pgp.is_pgp_message(_first_bytes(source)):
        if partner is not None and partner.pgp_required:
            return StepResult.stop("rejected: not encrypted", state=FileState.REJECTED,
                                   reason="the partner's policy requires OpenPGP-encrypted "
                                          "files")
        return StepResult.next("not encrypted")
    if not settings.PGP_PASSPHRASE:
        return StepResult.retry("no platform key", auto=False, state=FileState.HELD,
                                reason="OpenPGP upload but no platform key is configured "
                                       "(MFT_PGP_PASSPHRASE)")
    set_state(stored, FileState.DECRYPTING)
    return _decrypt(stored, source)


def _ensure_partner_keys(stored: StoredFile) -> list[str]:
    """Make sure the partner's public keys are in the keyring; return their fingerprints.

    The database is the source of truth and the keyring a copy: a key registered through
    the API or dashboard reaches the keyring the first time it is needed.
    """
    keyring = platform_keyring()
    fingerprints = []
    if stored.partner_id is None:
        return []
    for key in PgpKey.objects.filter(partner_id=stored.partner_id):
        try:
            keyring.key_info(key.fingerprint)
        except pgp.PgpError:
            keyring.import_public_key(key.armored)
        fingerprints.append(key.fingerprint)
    return fingerprints


def _decrypt(stored: StoredFile, source: Path) -> StepResult:
    """Decrypt into an encrypted staging file and swap it in on success."""
    signers = _ensure_partner_keys(stored)
    require = bool(stored.partner and stored.partner.pgp_signature_required)
    # A hidden name beside the file: same filesystem (atomic swap), never listed.
    staging = storage.temp_dir(Path(stored.owner.home_dir) if stored.owner else source.parent) \
        / f"{uuid.uuid4().hex}.decrypting"
    reader = storage.open_reader(source)
    writer = storage.open_writer(staging)
    try:
        result = platform_keyring().decrypt_stream(
            reader, writer,  # type: ignore[arg-type]  # file-like: read()/write() suffice
            passphrase=settings.PGP_PASSPHRASE, require_signature=require,
            allowed_signers=signers or None,
            max_output_bytes=settings.MAX_FILE_BYTES or None)  # type: ignore[arg-type]
    except pgp.PgpError as exc:
        writer.close()
        staging.unlink(missing_ok=True)
        return StepResult.stop("rejected", state=FileState.REJECTED,
                               reason=str(exc)[:400])
    finally:
        reader.close()
    writer.close(fsync=True)
    size = storage.plaintext_size(staging)
    os.replace(staging, source)
    return StepResult.next("decrypted", state=FileState.RECEIVED, fields={"size": size},
                           signer=result.signer_fingerprint,
                           signature_valid=result.signature_valid,
                           uploaded_sha256=stored.sha256, uploaded_size=stored.size)
