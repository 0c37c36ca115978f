"""End-to-end with real FTPS clients: curl, lftp, and a FileZilla/WinSCP-like ftplib client.

These binaries are required: CI installs them, and a missing one fails the test with a
clear message instead of skipping it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.audit_log import wait_for_event
from tests.ftps_client import connect_filezilla_like, cut_off, login
from transfers.models import FileState, StoredFile

pytestmark = pytest.mark.django_db(transaction=True)

MODES = pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
DATA = os.urandom(300_000)
DIGEST = hashlib.sha256(DATA).hexdigest()


def _binary(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed; the gateway tests need it (apt-get install {name})"
    return path


def _run(argv: list[str], *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                               check=False)
    assert completed.returncode == 0, (argv[0], completed.returncode, completed.stdout[-3000:],
                                       completed.stderr[-3000:])
    return completed


# --- curl -------------------------------------------------------------------------------------


def _curl(port: int, partner, path: str, *extra: str, implicit: bool) -> str:
    scheme = "ftps" if implicit else "ftp"
    argv = [_binary("curl"), "--silent", "--show-error", "--insecure", "--ssl-reqd",
            "--max-time", "30", "--user", f"{partner.username}:{partner.password}",
            *extra, f"{scheme}://127.0.0.1:{port}/{path}"]
    return _run(argv).stdout


@MODES
def test_curl_uploads_a_file(partner, gateway, tmp_path, implicit):
    source = tmp_path / "report.bin"
    source.write_bytes(DATA)
    _curl(gateway.port(implicit), partner, "report.bin", "--upload-file", str(source),
          implicit=implicit)
    stored = StoredFile.objects.get(path="/report.bin")
    assert (stored.size, stored.sha256, stored.state) == (len(DATA), DIGEST,
                                                           FileState.RECEIVED)


@MODES
def test_curl_lists_a_folder(partner, gateway, tmp_path, implicit):
    source = tmp_path / "report.bin"
    source.write_bytes(DATA)
    port = gateway.port(implicit)
    _curl(port, partner, "report.bin", "--upload-file", str(source), implicit=implicit)
    listing = _curl(port, partner, "", implicit=implicit)
    assert "report.bin" in listing and str(len(DATA)) in listing


@MODES
def test_curl_downloads_a_ready_file(partner, gateway, tmp_path, implicit):
    source, target = tmp_path / "report.bin", tmp_path / "copy.bin"
    source.write_bytes(DATA)
    port = gateway.port(implicit)
    _curl(port, partner, "report.bin", "--upload-file", str(source), implicit=implicit)
    StoredFile.objects.filter(path="/report.bin").update(state=FileState.READY)
    _curl(port, partner, "report.bin", "--output", str(target), implicit=implicit)
    assert target.read_bytes() == DATA


def test_curl_resumes_a_download(partner, gateway, tmp_path):
    source, target = tmp_path / "report.bin", tmp_path / "copy.bin"
    source.write_bytes(DATA)
    port = gateway.explicit_port
    _curl(port, partner, "report.bin", "--upload-file", str(source), implicit=False)
    StoredFile.objects.filter(path="/report.bin").update(state=FileState.READY)
    target.write_bytes(DATA[:100_000])
    _curl(port, partner, "report.bin", "--continue-at", "-", "--output", str(target),
          implicit=False)
    assert target.read_bytes() == DATA


def test_curl_is_refused_without_tls(partner, gateway):
    completed = subprocess.run(
        [_binary("curl"), "--silent", "--show-error", "--max-time", "30",
         "--user", f"{partner.username}:{partner.password}",
         f"ftp://127.0.0.1:{gateway.explicit_port}/"],
        capture_output=True, text=True, timeout=60, check=False)
    assert completed.returncode != 0 and "530" in completed.stderr


# --- lftp -------------------------------------------------------------------------------------

# lftp (GnuTLS) resumes the control connection's TLS session by itself. With TLS 1.3 it
# closes an upload's data connection while the server's NewSessionTicket is still unread,
# so the kernel sends a TCP RST and may drop the tail of the upload when the gateway reads
# slower than lftp writes. The gateway sees no close_notify, keeps the part and replies
# 426; lftp then reconnects and finishes the file with REST + STOR. Hence the retries.
LFTP_SETTINGS = ("set ftp:ssl-force true; set ftp:ssl-protect-data true; "
                 "set ssl:verify-certificate no; set net:max-retries 4; "
                 "set net:timeout 15; set net:reconnect-interval-base 1; "
                 "set net:reconnect-interval-multiplier 1; ")


def _lftp(port: int, partner, commands: str, *, implicit: bool) -> str:
    scheme = "ftps" if implicit else "ftp"
    script = f"{LFTP_SETTINGS}{commands}; quit"
    argv = [_binary("lftp"), "-u", f"{partner.username},{partner.password}",
            "-e", script, f"{scheme}://127.0.0.1:{port}"]
    return _run(argv).stdout


@MODES
def test_lftp_uploads_a_file(partner, gateway, tmp_path, implicit):
    source = tmp_path / "report.bin"
    source.write_bytes(DATA)
    _lftp(gateway.port(implicit), partner, f"put {source} -o report.bin", implicit=implicit)
    stored = StoredFile.objects.get(path="/report.bin")
    assert (stored.size, stored.sha256, stored.state) == (len(DATA), DIGEST,
                                                           FileState.RECEIVED)


@MODES
def test_lftp_lists_and_downloads(partner, gateway, tmp_path, implicit):
    source, target = tmp_path / "report.bin", tmp_path / "copy.bin"
    source.write_bytes(DATA)
    port = gateway.port(implicit)
    _lftp(port, partner, f"put {source} -o report.bin", implicit=implicit)
    StoredFile.objects.filter(path="/report.bin").update(state=FileState.READY)
    listing = _lftp(port, partner, f"cls -l; get report.bin -o {target}", implicit=implicit)
    assert "report.bin" in listing
    assert target.read_bytes() == DATA


def test_lftp_makes_renames_and_removes(partner, gateway, tmp_path):
    source = tmp_path / "report.bin"
    source.write_bytes(DATA)
    _lftp(gateway.explicit_port, partner,
          f"mkdir inbox; put {source} -o inbox/a.bin; mv inbox/a.bin inbox/b.bin; "
          "rm inbox/b.bin; rmdir inbox", implicit=False)
    home = Path(partner.user.home_dir)
    assert not (home / "inbox").exists()
    assert not StoredFile.objects.exclude(state=FileState.DELETED).exists()


def test_lftp_continues_an_upload(partner, gateway, tmp_path):
    source = tmp_path / "report.bin"
    source.write_bytes(DATA[:120_000])
    port = gateway.explicit_port
    # A first, interrupted attempt left a partial file; lftp's "put -c" continues it.
    ftp = login(port, partner.username, partner.password)
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd("STOR report.bin")
    conn.sendall(DATA[:120_000])
    cut_off(conn)
    assert ftp.getmultiline().startswith("426")
    conn.close()
    ftp.quit()
    source.write_bytes(DATA)
    _lftp(port, partner, f"put -c {source} -o report.bin", implicit=False)
    stored = StoredFile.objects.get(path="/report.bin", state=FileState.RECEIVED)
    assert stored.sha256 == DIGEST


# --- active mode (PORT/EPRT), with curl and lftp ---------------------------------------------


@pytest.fixture
def active_gateway(gateway_factory):
    """A gateway with active mode turned on (it is off by default)."""
    return gateway_factory(active_mode=True)


# curl 7.87/7.88 (Debian 12 ships 7.88.1) sends active-mode FTPS data in clear text
# (curl/curl#10666; fixed in 8.0), which the gateway rightly refuses with 522: active
# mode is proved with lftp here and with ftplib in test_gateway_data.py.


@MODES
def test_lftp_uploads_and_downloads_in_active_mode(partner, active_gateway, tmp_path,
                                                    implicit):
    source, target = tmp_path / "report.bin", tmp_path / "copy.bin"
    source.write_bytes(DATA)
    port = active_gateway.port(implicit)
    active = "set ftp:passive-mode off; set ftp:port-range 42000-42999; "
    scheme = "ftps" if implicit else "ftp"
    upload = _run([_binary("lftp"), "-d", "-u", f"{partner.username},{partner.password}",
                   "-e", f"{LFTP_SETTINGS}{active}put {source} -o report.bin; quit",
                   f"{scheme}://127.0.0.1:{port}"])
    # lftp falls back to passive mode on its own: prove the data went the active way.
    assert "200 Active data connection established" in upload.stderr
    assert "PASV" not in upload.stderr
    stored = StoredFile.objects.get(path="/report.bin")
    assert (stored.size, stored.sha256) == (len(DATA), DIGEST)
    stored.state = FileState.READY
    stored.save(update_fields=["state"])
    _lftp(port, partner, f"{active}get report.bin -o {target}", implicit=implicit)
    assert target.read_bytes() == DATA


def test_curl_active_mode_is_refused_when_off(partner, gateway, tmp_path):
    completed = subprocess.run(
        [_binary("curl"), "--silent", "--show-error", "--insecure", "--ssl-reqd",
         "--max-time", "30", "--ftp-port", "127.0.0.1",
         "--user", f"{partner.username}:{partner.password}",
         f"ftp://127.0.0.1:{gateway.explicit_port}/"],
        capture_output=True, text=True, timeout=60, check=False)
    assert completed.returncode != 0, completed.stdout
    assert wait_for_event(action="refused", details__command="EPRT")


# --- a FileZilla / WinSCP-like client ---------------------------------------------------------


def test_filezilla_like_upload_lands_under_its_final_name(partner, gateway):
    ftp = connect_filezilla_like(gateway.explicit_port, partner.username,
                                 partner.password)
    try:
        final = ftp.upload("invoice.csv", DATA, datetime(2024, 5, 17, 8, 30, tzinfo=UTC))
        entries = ftp.entries()
    finally:
        ftp.quit()
    assert DIGEST in final
    assert set(entries) == {"invoice.csv"}
    assert entries["invoice.csv"]["size"] == str(len(DATA))
    assert entries["invoice.csv"]["modify"] == "20240517083000"
    stored = StoredFile.objects.get(path="/invoice.csv")
    assert stored.sha256 == DIGEST
    assert not StoredFile.objects.filter(path="/invoice.csv.filepart").exclude(
        state=FileState.DELETED).exists()


def test_filezilla_like_client_sees_its_mtime_with_mdtm(partner, gateway):
    ftp = connect_filezilla_like(gateway.explicit_port, partner.username,
                                 partner.password)
    try:
        ftp.upload("invoice.csv", DATA, datetime(2023, 1, 2, 3, 4, 5, tzinfo=UTC))
        assert ftp.sendcmd("MDTM invoice.csv") == "213 20230102030405"
    finally:
        ftp.quit()


def test_filezilla_like_reupload_replaces_the_file(partner, gateway):
    ftp = connect_filezilla_like(gateway.explicit_port, partner.username,
                                 partner.password)
    try:
        ftp.upload("invoice.csv", b"first version", datetime(2024, 1, 1, tzinfo=UTC))
        ftp.upload("invoice.csv", DATA, datetime(2024, 1, 2, tzinfo=UTC))
        assert ftp.sendcmd("HASH invoice.csv").split()[3] == DIGEST
    finally:
        ftp.quit()
    live = StoredFile.objects.exclude(state=FileState.DELETED)
    assert list(live.values_list("path", "sha256")) == [("/invoice.csv", DIGEST)]
