"""End-to-end: interrupted uploads stay resumable; REST and APPE complete them; REST + RETR."""

from __future__ import annotations

import hashlib
import io
import os

import pytest

from tests.audit_log import wait_for_event
from tests.ftps_client import cut_off, login, reply, reset
from tests.waiting import until
from transfers.models import FileState, StoredFile

pytestmark = pytest.mark.django_db(transaction=True)

MODES = pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
DATA = os.urandom(700_000)
CUT = 300_000


def _interrupted_upload(ftp, name: str) -> str:
    """Send the first CUT bytes of DATA, cut the data connection off; return the reply."""
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd(f"STOR {name}")
    try:
        conn.sendall(DATA[:CUT])
        cut_off(conn)
        return ftp.getmultiline()
    finally:
        conn.close()


def _partial(name: str) -> StoredFile:
    return until(lambda: StoredFile.objects.filter(path=f"/{name}",
                                                  state=FileState.PARTIAL).first(),
                 what=f"a partial file /{name}")


@pytest.fixture
def alice(partner, gateway):
    """Alice, logged in over explicit FTPS, binary type."""
    ftp = login(gateway.explicit_port, partner.username, partner.password)
    ftp.voidcmd("TYPE I")
    yield ftp
    ftp.close()


def test_upload_cut_off_without_close_notify_replies_426_and_keeps_a_partial_file(alice):
    answer = _interrupted_upload(alice, "big.bin")
    assert answer.startswith("426")
    stored = _partial("big.bin")
    assert stored.size == CUT and stored.sha256 == ""


def test_upload_reset_mid_transfer_is_never_recorded_as_complete(alice):
    conn = alice.transfercmd("STOR big.bin")
    conn.sendall(DATA[:CUT])
    reset(conn)
    assert alice.getmultiline().startswith("426")
    stored = StoredFile.objects.filter(path="/big.bin").first()
    assert stored is None or (stored.state == FileState.PARTIAL and stored.size <= CUT)


def test_interrupted_upload_is_audited_as_resumable(alice):
    _interrupted_upload(alice, "big.bin")
    event = wait_for_event(action="upload", outcome="failure")
    assert event.details["resumable_at"] == CUT and event.details["path"] == "/big.bin"


def test_size_of_a_partial_upload_is_what_arrived(alice):
    _interrupted_upload(alice, "big.bin")
    assert alice.size("big.bin") == CUT


def test_retr_of_a_partial_upload_is_refused_with_the_reason(alice):
    _interrupted_upload(alice, "big.bin")
    answer = reply(alice, "RETR big.bin")
    assert answer.startswith("550") and "resume" in answer


def test_hash_of_a_partial_upload_is_refused(alice):
    _interrupted_upload(alice, "big.bin")
    assert reply(alice, "HASH big.bin").startswith("550")


@MODES
def test_rest_and_stor_complete_an_interrupted_upload(partner, gateway, implicit):
    ftp = login(gateway.port(implicit), partner.username, partner.password,
                implicit=implicit)
    try:
        _interrupted_upload(ftp, "big.bin")
        offset = ftp.size("big.bin")
        final = ftp.storbinary("STOR big.bin", io.BytesIO(DATA[offset:]), rest=offset)
        digest = hashlib.sha256(DATA).hexdigest()
        assert final.startswith("226") and digest in final
        assert ftp.sendcmd("HASH big.bin").split()[3] == digest
    finally:
        ftp.quit()
    stored = StoredFile.objects.get(path="/big.bin", state=FileState.RECEIVED)
    assert (stored.size, stored.sha256) == (len(DATA), digest)


def test_appe_completes_an_interrupted_upload(alice):
    _interrupted_upload(alice, "big.bin")
    final = alice.storbinary("APPE big.bin", io.BytesIO(DATA[CUT:]))
    digest = hashlib.sha256(DATA).hexdigest()
    assert digest in final
    assert alice.sendcmd("HASH big.bin").split()[3] == digest


def test_rest_below_the_partial_size_overwrites_from_there(alice):
    _interrupted_upload(alice, "big.bin")
    final = alice.storbinary("STOR big.bin", io.BytesIO(DATA[1000:]), rest=1000)
    assert hashlib.sha256(DATA).hexdigest() in final
    assert alice.size("big.bin") == len(DATA)


def test_rest_beyond_the_partial_size_is_refused(alice):
    _interrupted_upload(alice, "big.bin")
    alice.sendcmd(f"REST {CUT + 10}")
    answer = reply(alice, "STOR big.bin")
    assert answer.startswith("553") and "beyond" in answer
    assert _partial("big.bin").size == CUT


def test_appe_to_a_complete_file_is_refused(alice):
    alice.storbinary("STOR whole.txt", io.BytesIO(b"complete"))
    answer = reply(alice, "APPE whole.txt")
    assert answer.startswith("553")


def test_interrupted_upload_twice_keeps_both_parts(alice):
    _interrupted_upload(alice, "big.bin")
    alice.sendcmd(f"REST {CUT}")
    conn = alice.transfercmd("STOR big.bin")
    conn.sendall(DATA[CUT:CUT + 100_000])
    cut_off(conn)
    assert alice.getmultiline().startswith("426")
    conn.close()
    assert alice.size("big.bin") == CUT + 100_000
    final = alice.storbinary("APPE big.bin", io.BytesIO(DATA[CUT + 100_000:]))
    assert hashlib.sha256(DATA).hexdigest() in final


@MODES
def test_rest_and_retr_resume_a_download(partner, gateway, implicit):
    ftp = login(gateway.port(implicit), partner.username, partner.password,
                implicit=implicit)
    try:
        ftp.storbinary("STOR big.bin", io.BytesIO(DATA))
        StoredFile.objects.filter(path="/big.bin").update(state=FileState.READY)
        head = bytearray()
        conn = ftp.transfercmd("RETR big.bin")
        while len(head) < 200_000:
            head += conn.recv(65536)
        reset(conn)
        ftp.getmultiline()  # 426 or 226, depending on how much the server had sent
        tail = bytearray()
        ftp.retrbinary("RETR big.bin", tail.extend, rest=len(head))
    finally:
        ftp.quit()
    assert bytes(head) + bytes(tail) == DATA


def test_rest_beyond_the_end_of_a_download_is_refused(alice):
    alice.storbinary("STOR small.txt", io.BytesIO(b"12345"))
    StoredFile.objects.filter(path="/small.txt").update(state=FileState.READY)
    alice.sendcmd("REST 6")
    assert reply(alice, "RETR small.txt").startswith("553")


def test_abor_during_an_upload_replies_426_then_226_and_keeps_the_part(alice):
    conn = alice.transfercmd("STOR big.bin")
    try:
        conn.sendall(DATA[:CUT])
        until(lambda: "Total bytes received: 0\n" not in alice.sendcmd("STAT"),
              what="the server receiving the first bytes")
        alice.putcmd("ABOR")
        replies = (alice.getmultiline(), alice.getmultiline())
    finally:
        conn.close()
    assert (replies[0][:3], replies[1][:3]) == ("426", "226"), replies
    assert alice.voidcmd("NOOP").startswith("200")  # no stray reply left behind
    assert 0 < alice.size("big.bin") <= CUT
    assert _partial("big.bin").size == alice.size("big.bin")
