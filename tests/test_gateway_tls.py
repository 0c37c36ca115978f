"""End-to-end: TLS on the control and data connections, and the commands that would weaken it."""

from __future__ import annotations

import ftplib
import io
import json
import shutil
import ssl
import subprocess
import warnings

import pytest

from accounts.models import User
from tests.audit_log import wait_for_count, wait_for_event
from tests.ftps_client import ImplicitFTP, ResumingFTP, client_context, login, reply, stock_login

pytestmark = pytest.mark.django_db(transaction=True)

MODES = pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])


def _logged_in_without_prot(port: int, partner) -> ResumingFTP:
    """Return a client secured and logged in, before PBSZ/PROT."""
    ftp = ResumingFTP(context=client_context(), timeout=15)
    ftp.connect("127.0.0.1", port)
    ftp.auth()
    ftplib.FTP.login(ftp, partner.username, partner.password)
    return ftp


@pytest.mark.parametrize("command", ["PASV", "EPSV"])
def test_passive_mode_before_prot_p_is_refused_with_534(partner, gateway, command):
    ftp = _logged_in_without_prot(gateway.explicit_port, partner)
    try:
        assert reply(ftp, command).startswith("534")
    finally:
        ftp.close()
    event = wait_for_event(action="refused", details__command=command)
    assert event.details["reply"].startswith("534")


def test_prot_c_is_refused(partner, gateway):
    ftp = _logged_in_without_prot(gateway.explicit_port, partner)
    try:
        ftp.voidcmd("PBSZ 0")
        assert reply(ftp, "PROT C").startswith("534")
    finally:
        ftp.close()
    assert wait_for_event(action="refused", details__command="PROT")


def test_legacy_user_may_use_clear_data_and_every_use_is_audited(partner, gateway):
    User.objects.filter(pk=partner.user.pk).update(allow_clear_data=True)
    ftp = _logged_in_without_prot(gateway.explicit_port, partner)
    try:
        ftp.voidcmd("PBSZ 0")
        assert ftp.voidcmd("PROT C").startswith("200")
        ftp.storbinary("STOR clear.txt", io.BytesIO(b"in the clear"))
        assert ftp.nlst() == ["clear.txt"]
    finally:
        ftp.quit()
    events = wait_for_count(2, action="clear-data")  # one per data connection
    assert all(event.details["command"] == "PASV" and event.actor == "alice"
               for event in events)


@MODES
def test_stock_ftp_tls_without_session_reuse_gets_522(partner, gateway, implicit):
    """ftplib.FTP_TLS opens data connections with a new TLS session: refused."""
    if implicit:
        class StockImplicit(ftplib.FTP_TLS):
            connect = ImplicitFTP.connect
        ftp: ftplib.FTP_TLS = StockImplicit(context=client_context(), timeout=15)
    else:
        ftp = ftplib.FTP_TLS(context=client_context(), timeout=15)
    ftp.connect("127.0.0.1", gateway.port(implicit))
    try:
        if not implicit:
            ftp.auth()
        ftplib.FTP.login(ftp, partner.username, partner.password)
        ftp.prot_p()
        with pytest.raises(ssl.SSLError):
            ftp.nlst()
        assert ftp.getmultiline().startswith("522")
        assert ftp.voidcmd("NOOP").startswith("200")
    finally:
        ftp.close()
    assert wait_for_event(action="refused", details__command="data-tls")


def test_stock_ftp_tls_upload_leaves_nothing(partner, gateway):
    ftp = stock_login(gateway.explicit_port, partner.username, partner.password)
    try:
        with pytest.raises(ssl.SSLError):
            ftp.storbinary("STOR refused.txt", io.BytesIO(b"secret" * 1000))
        assert ftp.getmultiline().startswith("522")
    finally:
        ftp.close()
    from transfers.models import StoredFile
    assert not StoredFile.objects.filter(path="/refused.txt").exists()


class SessionThief(ResumingFTP):
    """Resumes, on its data connections, a TLS session stolen from another control connection."""

    stolen: ssl.SSLSession | None = None

    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        return self.context.wrap_socket(conn, server_hostname=self.host,
                                        session=self.stolen), size


def test_data_connection_cannot_resume_another_control_sessions_tls(cast, gateway):
    owner = login(gateway.explicit_port, cast.outsider.username, cast.outsider.password)
    owner.voidcmd("NOOP")  # TLS 1.3 tickets arrive after the handshake
    thief = SessionThief(context=owner.context, timeout=15)
    thief.connect("127.0.0.1", gateway.explicit_port)
    try:
        thief.auth()
        ftplib.FTP.login(thief, cast.partner.username, cast.partner.password)
        thief.prot_p()
        assert isinstance(owner.sock, ssl.SSLSocket)
        thief.stolen = owner.sock.session
        with pytest.raises(ssl.SSLError):
            thief.nlst()
        assert thief.getmultiline().startswith("522")
    finally:
        thief.close()
        owner.quit()


@MODES
def test_ccc_is_refused(partner, gateway, implicit):
    ftp = login(gateway.port(implicit), partner.username, partner.password,
                implicit=implicit)
    try:
        assert reply(ftp, "CCC").startswith("534")
        assert ftp.voidcmd("NOOP").startswith("200")
    finally:
        ftp.quit()
    assert wait_for_event(action="refused", details__command="CCC")


@MODES
def test_tls_setup_is_audited_with_version_and_cipher(partner, gateway, implicit):
    login(gateway.port(implicit), partner.username, partner.password,
          implicit=implicit).quit()
    event = wait_for_event(action="tls", object_type="session")
    assert event.details["tls_version"] in ("TLSv1.2", "TLSv1.3")
    assert event.details["cipher"]


def test_tls_1_1_is_refused(partner, gateway):
    context = client_context()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("ALL:@SECLEVEL=0")
    ftp = ftplib.FTP_TLS(context=context, timeout=15)
    ftp.connect("127.0.0.1", gateway.explicit_port)
    try:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            ftp.auth()
    finally:
        ftp.close()


def test_testssl_finds_no_weak_protocol_or_cipher(partner, gateway, tmp_path):
    testssl = shutil.which("testssl") or shutil.which("testssl.sh")
    assert testssl, "testssl.sh is not installed (apt-get install testssl.sh)"
    report = tmp_path / "testssl.json"
    completed = subprocess.run(
        [testssl, "--starttls", "ftp", "-p", "-E", "-s", "-f", "--quiet", "--color", "0",
         "--warnings", "batch", "--connect-timeout", "5", "--openssl-timeout", "5",
         "--jsonfile", str(report), f"127.0.0.1:{gateway.explicit_port}"],
        capture_output=True, text=True, timeout=150, check=False)
    assert report.exists(), completed.stdout[-2000:] + completed.stderr[-2000:]
    findings = {f["id"]: f for f in json.loads(report.read_text())}
    for old_protocol in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
        assert findings[old_protocol]["finding"] == "not offered", findings[old_protocol]
    assert findings["TLS1_2"]["finding"].startswith("offered")
    bad = [f for f in findings.values()
           if f["severity"] in ("MEDIUM", "HIGH", "CRITICAL", "FATAL")]
    assert not bad, bad
