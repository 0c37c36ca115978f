"""End-to-end: the file and session commands an FTPS client uses, over explicit and implicit."""

from __future__ import annotations

import ftplib
import hashlib
import io
import os
from pathlib import Path

import pytest

from tests.audit_log import wait_for_event
from tests.ftps_client import login, reply
from transfers.models import FileState, StoredFile

pytestmark = pytest.mark.django_db(transaction=True)

MODES = pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
DATA = b"order;sku;qty\n" + b"".join(b"%d;SKU-%d;%d\n" % (i, i, i % 7) for i in range(20000))
DIGEST = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def connect(partner, gateway):
    """Return a function that logs alice in (explicit or implicit FTPS), binary type."""
    opened: list[ftplib.FTP] = []

    def open_session(implicit: bool = False) -> ftplib.FTP:
        ftp = login(gateway.port(implicit), partner.username, partner.password,
                    implicit=implicit)
        ftp.voidcmd("TYPE I")
        opened.append(ftp)
        return ftp

    yield open_session
    for ftp in opened:
        ftp.close()


@pytest.fixture
def alice(connect):
    """Alice, logged in over explicit FTPS."""
    return connect()


@pytest.fixture
def uploaded(alice):
    """Alice with DATA uploaded as /orders.csv."""
    alice.storbinary("STOR orders.csv", io.BytesIO(DATA))
    return alice


def _ready(path: str) -> None:
    """Mark a stored file ready, as the pipeline would once it is scanned."""
    StoredFile.objects.filter(path=path).exclude(state=FileState.DELETED).update(
        state=FileState.READY)


# --- uploads and downloads --------------------------------------------------------------------


@MODES
def test_upload_replies_226_with_size_and_sha256(connect, implicit):
    final = connect(implicit).storbinary("STOR orders.csv", io.BytesIO(DATA))
    assert final == f"226 Transfer complete: {len(DATA)} bytes, SHA-256 {DIGEST}."


def test_upload_is_encrypted_on_disk(uploaded, partner):
    on_disk = (Path(partner.user.home_dir) / "orders.csv").read_bytes()
    assert DATA[:64] not in on_disk and b"SKU-1234" not in on_disk
    assert len(on_disk) > len(DATA)


def test_hash_reports_the_sha256_of_the_plaintext(uploaded):
    assert uploaded.sendcmd("HASH orders.csv") == \
        f"213 SHA-256 0-{len(DATA)} {DIGEST} orders.csv"


def test_opts_hash_accepts_only_sha256(alice):
    assert alice.sendcmd("OPTS HASH SHA-256") == "200 SHA-256"
    assert reply(alice, "OPTS HASH MD5").startswith("501")



def test_size_list_mlsd_mlst_and_stat_report_the_plaintext_size(uploaded):
    size = str(len(DATA))
    assert uploaded.size("orders.csv") == len(DATA)
    lines: list[str] = []
    uploaded.retrlines("LIST", lines.append)
    assert len(lines) == 1 and lines[0].split()[4] == size, lines
    facts = dict(uploaded.mlsd())["orders.csv"]
    assert (facts["type"], facts["size"]) == ("file", size)
    assert f"size={size};" in uploaded.sendcmd("MLST orders.csv")
    assert f" {size} " in uploaded.sendcmd("STAT orders.csv")


def test_retr_of_a_file_not_yet_clean_is_refused_with_the_reason(uploaded):
    assert reply(uploaded, "RETR orders.csv") == "550 File is waiting to be scanned."
    for state, reason, expected in [
        (FileState.SCANNING, "", "550 File is being scanned."),
        (FileState.HELD, "no virus scanner configured",
         "550 File is held: no virus scanner configured."),
    ]:
        StoredFile.objects.filter(path="/orders.csv").update(state=state, state_reason=reason)
        assert reply(uploaded, "RETR orders.csv") == expected


@MODES
def test_retr_of_a_ready_file_returns_the_plaintext(connect, implicit):
    ftp = connect(implicit)
    ftp.storbinary("STOR orders.csv", io.BytesIO(DATA))
    _ready("/orders.csv")
    received = bytearray()
    ftp.retrbinary("RETR orders.csv", received.extend)
    assert bytes(received) == DATA



def test_commands_on_a_missing_file_reply_550(alice):
    commands = ["RETR nothing.txt", "SIZE nothing.txt", "MDTM nothing.txt", "HASH nothing.txt",
                "DELE nothing.txt", "RNFR nothing.txt", "MFMT 20210304050607 nothing.txt",
                "RMD nothing", "CWD nothing"]
    answers = {command: reply(alice, command) for command in commands}
    assert all(a.startswith("550") for a in answers.values()), answers


def test_overwrite_replaces_the_stored_file(uploaded):
    uploaded.storbinary("STOR orders.csv", io.BytesIO(b"new"))
    assert uploaded.size("orders.csv") == 3
    states = sorted(StoredFile.objects.values_list("state", flat=True))
    assert states == [FileState.DELETED, FileState.RECEIVED]


def test_upload_of_an_empty_file_is_recorded(alice):
    final = alice.storbinary("STOR empty.txt", io.BytesIO(b""))
    assert hashlib.sha256(b"").hexdigest() in final
    assert alice.size("empty.txt") == 0


def test_upload_in_ascii_type_is_stored(alice):
    alice.storlines("STOR notes.txt", io.BytesIO(b"line one\nline two\n"))
    assert alice.sendcmd("HASH notes.txt").split()[3] == \
        hashlib.sha256(b"line one\nline two\n").hexdigest()


def test_stou_and_site_chmod_are_refused(uploaded):
    assert reply(uploaded, "STOU").startswith("502")
    assert reply(uploaded, "SITE CHMOD 777 orders.csv")[:1] == "5"


# --- modification times -----------------------------------------------------------------------


def test_mfmt_sets_the_time_mdtm_reports(uploaded):
    assert uploaded.sendcmd("MFMT 20210304050607 orders.csv") == \
        "213 Modify=20210304050607; orders.csv."
    assert uploaded.sendcmd("MDTM orders.csv") == "213 20210304050607"


def test_mfmt_with_a_bad_time_is_refused(uploaded):
    assert reply(uploaded, "MFMT 2021-03-04 orders.csv")[:1] == "5"



# --- folders, renames and deletes -------------------------------------------------------------


def test_mkd_and_rmd(alice, partner):
    assert alice.mkd("inbox") == "/inbox"
    assert (Path(partner.user.home_dir) / "inbox").is_dir()
    alice.rmd("inbox")
    assert not (Path(partner.user.home_dir) / "inbox").exists()


def test_mkd_of_an_existing_folder_is_refused(alice):
    alice.mkd("inbox")
    assert reply(alice, "MKD inbox").startswith("550")


def test_rmd_of_a_folder_with_files_is_refused(alice):
    alice.mkd("inbox")
    alice.storbinary("STOR inbox/a.txt", io.BytesIO(b"x"))
    assert reply(alice, "RMD inbox").startswith("550")


def test_cwd_and_pwd_in_a_subfolder(alice):
    alice.mkd("inbox")
    alice.cwd("inbox")
    assert alice.pwd() == "/inbox"
    alice.storbinary("STOR a.txt", io.BytesIO(b"x"))
    assert StoredFile.objects.filter(path="/inbox/a.txt").exists()
    alice.sendcmd("CDUP")
    assert alice.pwd() == "/"


def test_dele_removes_the_file_and_its_record(uploaded, partner):
    uploaded.delete("orders.csv")
    assert not (Path(partner.user.home_dir) / "orders.csv").exists()
    assert StoredFile.objects.get().state == FileState.DELETED



def test_rename_moves_the_file_and_its_record(uploaded):
    uploaded.rename("orders.csv", "done.csv")
    assert uploaded.nlst() == ["done.csv"]
    assert StoredFile.objects.get().path == "/done.csv"
    assert uploaded.sendcmd("HASH done.csv").split()[3] == DIGEST


def test_rename_into_a_subfolder(uploaded):
    uploaded.mkd("archive")
    uploaded.rename("orders.csv", "archive/orders.csv")
    assert StoredFile.objects.get().path == "/archive/orders.csv"


def test_rename_of_a_folder_moves_the_records_inside(uploaded):
    uploaded.mkd("inbox")
    uploaded.rename("orders.csv", "inbox/orders.csv")
    uploaded.rename("inbox", "archive")
    stored = StoredFile.objects.get()
    assert stored.path == "/archive/orders.csv"
    assert stored.storage_path.endswith("/archive/orders.csv")
    assert uploaded.size("archive/orders.csv") == len(DATA)


def test_rename_is_audited(uploaded):
    uploaded.rename("orders.csv", "done.csv")
    event = wait_for_event(action="rename", actor="alice")
    assert event.details["path"] == "/orders.csv" and event.details["to"] == "/done.csv"


def test_rnto_without_rnfr_is_refused(alice):
    assert reply(alice, "RNTO x.txt").startswith("503")



def test_nlst_lists_names(uploaded):
    uploaded.mkd("inbox")
    assert sorted(uploaded.nlst()) == ["inbox", "orders.csv"]


def test_mlsd_tells_files_from_folders(uploaded):
    uploaded.mkd("inbox")
    facts = dict(uploaded.mlsd())
    assert (facts["inbox"]["type"], facts["orders.csv"]["type"]) == ("dir", "file")


# --- permissions ------------------------------------------------------------------------------


def test_user_without_upload_permission_cannot_store(partner, gateway):
    from accounts.models import User
    User.objects.filter(pk=partner.user.pk).update(permissions=["list", "download"])
    ftp = login(gateway.explicit_port, partner.username, partner.password)
    try:
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            ftp.storbinary("STOR a.txt", io.BytesIO(b"x"))
        assert reply(ftp, "MKD inbox").startswith("550")
    finally:
        ftp.quit()
    assert not StoredFile.objects.exists()


def test_user_without_delete_permission_cannot_delete(partner, gateway):
    from accounts.models import User
    ftp = login(gateway.explicit_port, partner.username, partner.password)
    ftp.storbinary("STOR a.txt", io.BytesIO(b"x"))
    ftp.quit()
    User.objects.filter(pk=partner.user.pk).update(
        permissions=["list", "download", "upload"])
    ftp = login(gateway.explicit_port, partner.username, partner.password)
    try:
        assert reply(ftp, "DELE a.txt").startswith("550")
    finally:
        ftp.quit()
    assert StoredFile.objects.get().state == FileState.RECEIVED


def test_users_do_not_see_each_others_files(cast, gateway):
    alice = login(gateway.explicit_port, cast.partner.username, cast.partner.password)
    alice.storbinary("STOR alice-only.txt", io.BytesIO(b"x"))
    alice.quit()
    mallory = login(gateway.explicit_port, cast.outsider.username, cast.outsider.password)
    try:
        assert mallory.nlst() == []
        assert reply(mallory, "SIZE alice-only.txt").startswith("550")
    finally:
        mallory.quit()


# --- session commands -------------------------------------------------------------------------


def test_feat_lists_hash_and_mfmt(alice):
    features = [line.strip() for line in alice.sendcmd("FEAT").splitlines()[1:-1]]
    assert "HASH SHA-256*" in features and "MFMT" in features
    assert "AUTH TLS" in features and "REST STREAM" in features and "UTF8" in features


def test_opts_utf8_on(alice):
    assert alice.sendcmd("OPTS UTF8 ON").startswith("200")


def test_session_commands_reply_with_the_expected_codes(alice):
    expected = {
        "NOOP": "200", "SYST": "215", "TYPE I": "200", "TYPE A": "200", "MODE S": "200",
        "STRU F": "200", "MODE B": "504", "STRU R": "504", "TYPE X": "504", "PWD": "257",
        "STAT": "211", "HELP": "214", "ALLO 1000": "202", "PBSZ 0": "200", "PROT P": "200",
        "XYZZY": "500",
    }
    answers = {command: reply(alice, command) for command in expected}
    assert {c: a[:3] for c, a in answers.items()} == expected, answers


def test_stat_reports_the_logged_in_user(alice):
    assert "Logged in as: alice" in alice.sendcmd("STAT")


def test_quit_says_goodbye_and_closes(alice):
    assert alice.quit().startswith("221")
    assert wait_for_event(action="disconnect", object_type="session", actor="alice")


def test_commands_before_login_are_refused(partner, gateway):
    ftp = login(gateway.explicit_port, partner.username, partner.password)
    ftp.close()
    from tests.ftps_client import ResumingFTP, client_context
    fresh = ResumingFTP(context=client_context(), timeout=15)
    fresh.connect("127.0.0.1", gateway.explicit_port)
    try:
        fresh.auth()
        for command in ("PWD", "LIST", "RETR x", "STOR x", "SIZE x", "PASV", "HASH x"):
            assert reply(fresh, command).startswith("530"), command
    finally:
        fresh.close()


@MODES
def test_large_upload_round_trips(connect, implicit):
    alice = connect(implicit)
    blob = os.urandom(5 * 1024 * 1024 + 17)
    final = alice.storbinary("STOR blob.bin", io.BytesIO(blob), blocksize=256 * 1024)
    assert hashlib.sha256(blob).hexdigest() in final
    _ready("/blob.bin")
    received = bytearray()
    alice.retrbinary("RETR blob.bin", received.extend)
    assert hashlib.sha256(received).digest() == hashlib.sha256(blob).digest()


def test_mkd_in_a_missing_folder_is_refused(alice):
    answer = reply(alice, "MKD missing/inbox")
    assert answer == "550 Folder /missing does not exist."


def test_rename_into_a_missing_folder_is_refused(uploaded):
    uploaded.sendcmd("RNFR orders.csv")
    assert reply(uploaded, "RNTO missing/orders.csv") == "550 Folder /missing does not exist."
    assert StoredFile.objects.get().path == "/orders.csv"


def test_rename_of_a_folder_into_itself_is_refused(alice):
    alice.mkd("inbox")
    alice.sendcmd("RNFR inbox")
    assert reply(alice, "RNTO inbox/sub").startswith("553")


def test_upload_into_a_missing_folder_is_refused_before_any_byte(alice, partner):
    assert reply(alice, "STOR missing/orders.csv") == "550 Folder /missing does not exist."
    temp = Path(partner.user.home_dir) / ".portside-tmp"
    assert not temp.exists() or not any(temp.iterdir())


def test_two_uploads_to_one_name_leave_the_last_one_whole(connect, partner):
    first, second = connect(), connect()
    one, two = os.urandom(100_000), os.urandom(120_000)
    # Both uploads start before either lands: each must replace what is there when it does.
    conns = [first.transfercmd("STOR same.bin"), second.transfercmd("STOR same.bin")]
    for ftp, conn, data in ((first, conns[0], one), (second, conns[1], two)):
        conn.sendall(data)
        conn.unwrap()
        conn.close()
        assert ftp.getmultiline().startswith("226")
    live = StoredFile.objects.exclude(state=FileState.DELETED).get()
    assert (live.size, live.sha256) == (len(two), hashlib.sha256(two).hexdigest())
    assert first.size("same.bin") == len(two)
    _ready("/same.bin")
    received = bytearray()
    first.retrbinary("RETR same.bin", received.extend)
    assert bytes(received) == two


def test_upload_landing_on_a_new_file_needs_overwrite(connect, partner):
    from accounts.models import User
    User.objects.filter(pk=partner.user.pk).update(permissions=["list", "download", "upload"])
    first, second = connect(), connect()
    conn = second.transfercmd("STOR same.bin")  # nothing at that name yet: allowed
    first.storbinary("STOR same.bin", io.BytesIO(b"first"))
    conn.sendall(b"second")
    conn.unwrap()
    conn.close()
    assert second.getmultiline() == "550 Permission denied: overwrite."
    assert first.sendcmd("HASH same.bin").split()[3] == hashlib.sha256(b"first").hexdigest()
    temp = Path(partner.user.home_dir) / ".portside-tmp"
    assert not any(temp.iterdir())
