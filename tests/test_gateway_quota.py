"""End-to-end: quotas and upload limits hold while bytes arrive, for one upload and for
several at once."""

from __future__ import annotations

import os
import ssl
import threading
from pathlib import Path

import pytest
from django.test import override_settings

from accounts.models import User
from tests.audit_log import wait_for_event
from tests.ftps_client import cut_off, login, reply
from tests.waiting import until
from transfers import quota
from transfers.models import LIVE_STATES, QuotaReservation, StoredFile

pytestmark = pytest.mark.django_db(transaction=True)

MODES = pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
QUOTA = 500_000


def _set_quota(partner, *, quota_bytes: int | None = None, quota_files: int | None = None) -> None:
    User.objects.filter(pk=partner.user.pk).update(quota_bytes=quota_bytes,
                                                        quota_files=quota_files)


def _upload(ftp, name: str, data: bytes) -> str:
    """Upload, whatever the server does to the data connection; return the final reply."""
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd(f"STOR {name}")
    try:
        conn.sendall(data)
        conn.unwrap()
    except OSError:
        pass  # the server closed the data connection early: the reply says why
    finally:
        conn.close()
    return ftp.getmultiline()


def _leftovers(partner) -> list[str]:
    """Return what an upload left in the user's hidden temporary folder."""
    temp = Path(partner.user.home_dir) / ".portside-tmp"
    return sorted(p.name for p in temp.iterdir()) if temp.exists() else []


@MODES
def test_upload_over_quota_is_refused_with_552(partner, gateway, implicit):
    _set_quota(partner, quota_bytes=QUOTA)
    ftp = login(gateway.port(implicit), partner.username, partner.password,
                implicit=implicit)
    try:
        answer = _upload(ftp, "big.bin", os.urandom(QUOTA + 200_000))
        assert answer == f"552 Quota of {QUOTA} bytes exceeded."
        assert ftp.voidcmd("NOOP").startswith("200")
    finally:
        ftp.quit()


def test_upload_over_quota_leaves_nothing_behind(partner, gateway):
    _set_quota(partner, quota_bytes=QUOTA)
    ftp = login(gateway.explicit_port, partner.username, partner.password)
    try:
        _upload(ftp, "big.bin", os.urandom(QUOTA + 200_000))
        assert ftp.nlst() == []
    finally:
        ftp.quit()
    assert not (Path(partner.user.home_dir) / "big.bin").exists()
    assert not StoredFile.objects.filter(state__in=LIVE_STATES).exists()
    assert _leftovers(partner) == []
    assert until(lambda: not QuotaReservation.objects.exists(), what="no reservation left")


def test_upload_over_quota_is_audited_with_the_reason(partner, gateway):
    _set_quota(partner, quota_bytes=QUOTA)
    ftp = login(gateway.explicit_port, partner.username, partner.password)
    try:
        _upload(ftp, "big.bin", os.urandom(QUOTA + 200_000))
    finally:
        ftp.quit()
    event = wait_for_event(action="upload", outcome="failure")
    assert event.details["reason"] == f"quota of {QUOTA} bytes exceeded"


def test_upload_that_fits_the_quota_is_stored(partner, gateway):
    _set_quota(partner, quota_bytes=QUOTA)
    ftp = login(gateway.explicit_port, partner.username, partner.password)
    try:
        assert _upload(ftp, "fits.bin", os.urandom(QUOTA)).startswith("226")
    finally:
        ftp.quit()
    assert quota.used_bytes(partner.user.pk) == QUOTA


def test_quota_counts_files_already_stored(partner, gateway):
    _set_quota(partner, quota_bytes=QUOTA)
    ftp = login(gateway.explicit_port, partner.username, partner.password)
    try:
        assert _upload(ftp, "first.bin", os.urandom(300_000)).startswith("226")
        assert _upload(ftp, "second.bin", os.urandom(300_000)).startswith("552")
        assert ftp.nlst() == ["first.bin"]
    finally:
        ftp.quit()


def test_quota_counts_partial_uploads(partner, gateway):
    _set_quota(partner, quota_bytes=QUOTA)
    ftp = login(gateway.explicit_port, partner.username, partner.password)
    try:
        conn = ftp.transfercmd("STOR part.bin")
        conn.sendall(os.urandom(300_000))
        cut_off(conn)
        assert ftp.getmultiline().startswith("426")
        conn.close()
        assert _upload(ftp, "other.bin", os.urandom(300_000)).startswith("552")
    finally:
        ftp.quit()


def test_deleting_a_file_gives_its_quota_back(partner, gateway):
    _set_quota(partner, quota_bytes=QUOTA)
    ftp = login(gateway.explicit_port, partner.username, partner.password)
    try:
        _upload(ftp, "first.bin", os.urandom(400_000))
        ftp.delete("first.bin")
        assert _upload(ftp, "second.bin", os.urandom(400_000)).startswith("226")
    finally:
        ftp.quit()


def test_two_concurrent_uploads_cannot_overrun_the_quota(partner, gateway):
    _set_quota(partner, quota_bytes=QUOTA)
    sessions = [login(gateway.explicit_port, partner.username, partner.password)
                for _ in range(2)]
    data = os.urandom(300_000)
    starts = [ftp.transfercmd(f"STOR file{n}.bin") for n, ftp in enumerate(sessions)]
    replies: list[str] = ["", ""]

    def finish(n: int) -> None:
        conn = starts[n]
        assert isinstance(conn, ssl.SSLSocket)
        try:
            conn.sendall(data)
            conn.unwrap()
        except OSError:
            pass
        finally:
            conn.close()
        replies[n] = sessions[n].getmultiline()

    # Both data connections are open before either sends a byte: the uploads overlap.
    threads = [threading.Thread(target=finish, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for ftp in sessions:
        ftp.quit()
    assert sorted(r[:3] for r in replies) == ["226", "552"], replies
    assert quota.used_bytes(partner.user.pk) <= QUOTA
    assert _leftovers(partner) == []


def test_file_count_quota_refuses_one_file_too_many(partner, gateway):
    _set_quota(partner, quota_files=2)
    ftp = login(gateway.explicit_port, partner.username, partner.password)
    try:
        for name in ("a.txt", "b.txt"):
            assert _upload(ftp, name, b"x").startswith("226")
        answer = reply(ftp, "STOR c.txt")
        assert answer == "552 File quota of 2 files reached."
        assert sorted(ftp.nlst()) == ["a.txt", "b.txt"]
    finally:
        ftp.quit()


def test_file_count_quota_allows_replacing_a_file(partner, gateway):
    _set_quota(partner, quota_files=1)
    ftp = login(gateway.explicit_port, partner.username, partner.password)
    try:
        assert _upload(ftp, "a.txt", b"one").startswith("226")
        assert _upload(ftp, "a.txt", b"two").startswith("226")
    finally:
        ftp.quit()


@override_settings(MAX_FILE_BYTES=QUOTA)
def test_upload_over_the_file_size_limit_is_refused_with_553(partner, gateway):
    ftp = login(gateway.explicit_port, partner.username, partner.password)
    try:
        answer = _upload(ftp, "big.bin", os.urandom(QUOTA + 200_000))
        assert answer == f"553 File larger than the limit of {QUOTA} bytes."
        assert ftp.nlst() == []
    finally:
        ftp.quit()
    assert _leftovers(partner) == []
    assert not StoredFile.objects.filter(state__in=LIVE_STATES).exists()


@override_settings(UPLOAD_DENY_PATTERNS=["*.exe"])
def test_denied_file_name_is_refused_before_any_byte(partner, gateway):
    ftp = login(gateway.explicit_port, partner.username, partner.password)
    try:
        answer = reply(ftp, "STOR setup.EXE")
        assert answer == "553 File names matching *.exe are not accepted."
    finally:
        ftp.quit()
    assert wait_for_event(action="upload", outcome="failure", details__path="/setup.EXE")


def test_quota_is_claimed_off_the_event_loop(partner, gateway, monkeypatch):
    # A spy, not a stand-in: every statement still runs; we only note the thread it ran on.
    from django.db.backends import utils

    threads: list[str] = []
    real_execute = utils.CursorWrapper.execute

    def execute(self, sql, params=None):
        threads.append(threading.current_thread().name)
        return real_execute(self, sql, params)

    _set_quota(partner, quota_bytes=64 * 1024 * 1024)
    monkeypatch.setattr(utils.CursorWrapper, "execute", execute)
    ftp = login(gateway.explicit_port, partner.username, partner.password)
    try:
        # Several claim steps (4 MiB each), so claims happen while bytes arrive.
        assert _upload(ftp, "big.bin", os.urandom(3 * quota.CLAIM_STEP + 12345))[:3] == "226"
        assert ftp.size("big.bin") == 3 * quota.CLAIM_STEP + 12345
        assert ftp.sendcmd("HASH big.bin").startswith("213")
    finally:
        ftp.quit()
    monkeypatch.undo()
    assert threads, "no statement was seen: the spy is not in the path"
    assert "test-gateway" not in threads, "the event loop thread ran a database statement"
    assert quota.used_bytes(partner.user.pk) == 3 * quota.CLAIM_STEP + 12345


def test_an_upload_without_quota_runs_no_statement_on_the_event_loop(partner, gateway,
                                                                     monkeypatch):
    # New files at free names start on the loop (no quota, nothing at the name): a spy
    # checks that the database is still only reached from the blocking pool.
    from django.db.backends import utils

    threads: list[str] = []
    real_execute = utils.CursorWrapper.execute

    def execute(self, sql, params=None):
        threads.append(threading.current_thread().name)
        return real_execute(self, sql, params)

    monkeypatch.setattr(utils.CursorWrapper, "execute", execute)
    ftp = login(gateway.explicit_port, partner.username, partner.password)
    try:
        for name in ("one.bin", "two.bin", "one.bin"):  # the last replaces a landed file
            assert _upload(ftp, name, os.urandom(4096))[:3] == "226"
    finally:
        ftp.quit()
    monkeypatch.undo()
    assert threads, "no statement was seen: the spy is not in the path"
    assert "test-gateway" not in threads, "the event loop thread ran a database statement"
    assert StoredFile.objects.filter(state__in=LIVE_STATES).count() == 2


def test_concurrent_uploads_several_claim_steps_each_cannot_overrun(partner, gateway):
    limit = 3 * quota.CLAIM_STEP
    _set_quota(partner, quota_bytes=limit)
    sessions = [login(gateway.explicit_port, partner.username, partner.password)
                for _ in range(2)]
    data = os.urandom(2 * quota.CLAIM_STEP)
    for ftp in sessions:
        ftp.voidcmd("TYPE I")
    starts = [ftp.transfercmd(f"STOR big{n}.bin") for n, ftp in enumerate(sessions)]
    replies: list[str] = ["", ""]

    def finish(n: int) -> None:
        conn = starts[n]
        try:
            conn.sendall(data)
            conn.unwrap()
        except OSError:
            pass
        finally:
            conn.close()
        replies[n] = sessions[n].getmultiline()

    threads = [threading.Thread(target=finish, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for ftp in sessions:
        ftp.quit()
    assert sorted(r[:3] for r in replies) == ["226", "552"], replies
    assert quota.used_bytes(partner.user.pk) == len(data)
    assert _leftovers(partner) == []
    assert until(lambda: not QuotaReservation.objects.exists(), what="no reservation left")
