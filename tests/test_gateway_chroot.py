"""End-to-end: every way out of the home folder is closed, and odd names are refused."""

from __future__ import annotations

import ftplib
import io
import os
from pathlib import Path

import pytest

from tests.ftps_client import login, raw_reply, reply
from transfers.models import FileState, StoredFile

pytestmark = pytest.mark.django_db(transaction=True)

INSIDE = b"the passwd file inside the home\n"


@pytest.fixture
def home(partner) -> Path:
    return Path(partner.user.home_dir)


@pytest.fixture
def alice(partner, gateway):
    """Alice, logged in over explicit FTPS."""
    ftp = login(gateway.explicit_port, partner.username, partner.password)
    ftp.voidcmd("TYPE I")
    yield ftp
    ftp.close()


@pytest.fixture
def outside(tmp_path) -> Path:
    """A folder next to the home, with a secret in it."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_bytes(b"not for partners")
    return folder


def _ready_inside_etc_passwd(ftp: ftplib.FTP) -> None:
    """Upload /etc/passwd inside the home and mark it ready for download."""
    ftp.mkd("etc")
    ftp.storbinary("STOR etc/passwd", io.BytesIO(INSIDE))
    StoredFile.objects.filter(path="/etc/passwd").update(state=FileState.READY)


def _download(ftp: ftplib.FTP, path: str) -> bytes:
    received = bytearray()
    ftp.retrbinary(f"RETR {path}", received.extend)
    return bytes(received)


# --- dot-dot and absolute paths ---------------------------------------------------------------


def test_cdup_at_the_root_stays_at_the_root(alice):
    alice.cwd("..")
    assert alice.pwd() == "/"
    alice.cwd("../../..")
    assert alice.pwd() == "/"


def test_escaping_paths_map_inside_the_home(alice):
    _ready_inside_etc_passwd(alice)
    for path in ("../../etc/passwd", "/etc/passwd", "/../../../etc/passwd",
                 "etc/../../../etc/passwd"):
        assert alice.size(path) == len(INSIDE), path
        assert _download(alice, path) == INSIDE, path


def test_absolute_etc_passwd_is_not_the_real_one(alice):
    assert reply(alice, "RETR /etc/passwd").startswith("550")
    assert reply(alice, "SIZE /etc/passwd").startswith("550")


def test_upload_to_a_climbing_path_lands_in_the_home(alice, home):
    alice.storbinary("STOR ../../escaped.txt", io.BytesIO(b"x"))
    assert (home / "escaped.txt").is_file()
    assert not (home.parent / "escaped.txt").exists()
    assert StoredFile.objects.get(path="/escaped.txt")


def test_cwd_to_the_real_root_folders_fails(alice):
    assert reply(alice, "CWD /etc").startswith("550")
    assert reply(alice, "CWD /../../../../tmp").startswith("550")
    assert alice.pwd() == "/"


# --- symbolic links ---------------------------------------------------------------------------


@pytest.fixture
def links(home, outside) -> None:
    """A folder link and a file link inside the home, both pointing outside it."""
    os.symlink(outside, home / "out")
    os.symlink(outside / "secret.txt", home / "secret.txt")


def test_commands_through_a_symlink_leaving_the_home_fail(alice, links, outside):
    commands = ["CWD out", "SIZE out/secret.txt", "RETR out/secret.txt", "MDTM secret.txt",
                "SIZE secret.txt", "RETR secret.txt", "STAT out", "MLST secret.txt",
                "DELE secret.txt", "RNFR secret.txt", "MKD out/new", "HASH secret.txt",
                "MFMT 20200101000000 secret.txt", "RMD out"]
    answers = {command: reply(alice, command) for command in commands}
    assert all(a.startswith("550") for a in answers.values()), answers
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


def test_listing_through_a_symlink_leaving_the_home_fails(alice, links):
    for command in ("LIST out", "MLSD out", "NLST out", "LIST secret.txt"):
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            alice.retrlines(command, lambda line: None)


def test_upload_through_a_symlink_leaving_the_home_fails(alice, links, outside):
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        alice.storbinary("STOR out/dropped.txt", io.BytesIO(b"x"))
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        alice.storbinary("STOR secret.txt", io.BytesIO(b"overwritten"))
    assert not (outside / "dropped.txt").exists()
    assert (outside / "secret.txt").read_bytes() == b"not for partners"


def test_symlink_leaving_the_home_is_not_listed(alice, links):
    assert alice.nlst() == []
    lines: list[str] = []
    alice.retrlines("LIST", lines.append)
    assert lines == []
    assert list(alice.mlsd()) == []


def test_rename_onto_a_symlink_leaving_the_home_fails(alice, links, outside):
    alice.storbinary("STOR mine.txt", io.BytesIO(b"mine"))
    alice.sendcmd("RNFR mine.txt")
    assert reply(alice, "RNTO out/mine.txt").startswith("550")
    assert not (outside / "mine.txt").exists()


# --- odd bytes and names ----------------------------------------------------------------------


def test_nul_byte_in_a_path_is_refused(alice, home):
    lines = [b"RETR a\x00b", b"CWD /\x00/etc", b"STOR x\x00.txt", b"MKD d\x00", b"SIZE \x00",
             b"RNFR \x00", b"DELE a\x00"]
    answers = {line: raw_reply(alice, line) for line in lines}
    assert all(a.startswith("550") and "NUL" in a for a in answers.values()), answers
    assert sorted(p.name for p in home.iterdir() if p.name != ".portside-tmp") == []
    assert alice.pwd() == "/"


def test_overlong_path_is_refused(alice):
    path = "/".join(["d" * 100] * 11)  # 1,110 bytes
    answer = reply(alice, f"MKD {path}")
    assert answer.startswith("550") and "too long" in answer


def test_overlong_name_is_refused(alice, home):
    with pytest.raises(ftplib.error_perm, match="too long"):
        alice.storbinary(f"STOR {'n' * 256}", io.BytesIO(b"x"))
    assert not StoredFile.objects.exists()


def test_name_of_255_bytes_is_accepted(alice):
    name = "n" * 251 + ".txt"
    alice.storbinary(f"STOR {name}", io.BytesIO(b"x"))
    assert alice.nlst() == [name]


def test_control_and_bidi_characters_are_refused(alice, home):
    for name in ("invoice\u202etxt.exe", "report\u200f.pdf", "tab\there.txt",
                 "esc\x1b[31m.txt", "iso\u2066late.txt"):
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            alice.storbinary(f"STOR {name}", io.BytesIO(b"x"))
        assert reply(alice, f"MKD {name}").startswith("550"), name
    assert not StoredFile.objects.exists()
    assert sorted(p.name for p in home.iterdir() if p.name != ".portside-tmp") == []


def test_non_nfc_name_is_refused(alice):
    with pytest.raises(ftplib.error_perm, match="normal form C"):
        alice.storbinary("STOR cafe\u0301.txt", io.BytesIO(b"x"))


def test_nfc_unicode_name_is_accepted(alice):
    alice.storbinary("STOR caf\u00e9-\u6587\u4ef6.txt", io.BytesIO(b"x"))
    assert alice.nlst() == ["caf\u00e9-\u6587\u4ef6.txt"]


# --- the hidden upload folder -----------------------------------------------------------------


def test_hidden_upload_folder_is_never_listed(alice):
    alice.storbinary("STOR a.txt", io.BytesIO(b"x"))
    assert alice.nlst() == ["a.txt"]
    assert [name for name, _ in alice.mlsd()] == ["a.txt"]
    lines: list[str] = []
    alice.retrlines("LIST -a", lines.append)
    assert len(lines) == 1 and lines[0].endswith(" a.txt")


def test_hidden_upload_folder_cannot_be_reached(alice, home):
    alice.storbinary("STOR a.txt", io.BytesIO(b"x"))
    commands = ["CWD .portside-tmp", "MKD .portside-tmp/x", "RMD .portside-tmp",
                "SIZE .portside-tmp/x.part", "RNFR .portside-tmp", "DELE .portside-tmp/x",
                "STAT .portside-tmp", "MLST .portside-tmp", "CWD sub/../.portside-tmp",
                "MDTM /.portside-tmp", "HASH .portside-tmp/x"]
    answers = {command: reply(alice, command) for command in commands}
    assert all(a.startswith("550") for a in answers.values()), answers
    assert (home / ".portside-tmp").is_dir()


def test_hidden_upload_folder_cannot_be_listed(alice):
    alice.storbinary("STOR a.txt", io.BytesIO(b"x"))
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        alice.retrlines("LIST .portside-tmp", lambda line: None)


def test_upload_into_the_hidden_folder_is_refused(alice, home):
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        alice.storbinary("STOR .portside-tmp/planted.part", io.BytesIO(b"x"))
    assert not (home / ".portside-tmp" / "planted.part").exists()


def test_rename_into_the_hidden_folder_is_refused(alice):
    alice.storbinary("STOR a.txt", io.BytesIO(b"x"))
    alice.sendcmd("RNFR a.txt")
    assert reply(alice, "RNTO .portside-tmp/a.part").startswith("550")
    assert alice.nlst() == ["a.txt"]
