"""Replacing the server certificate: the open session continues, a new one sees the new cert."""

from __future__ import annotations

import hashlib
import time

import pytest
from django.conf import settings
from django.core.management import call_command

from mft import server_certificate as certificate
from tests.ftps_client import login

pytestmark = pytest.mark.django_db(transaction=True)


def _served_fingerprint(ftp) -> str:
    return hashlib.sha256(ftp.sock.getpeercert(binary_form=True)).hexdigest()


def test_certificate_replaced_while_a_session_is_open(cast, gateway):
    old_session = login(gateway.explicit_port, cast.partner.username, cast.partner.password)
    old = _served_fingerprint(old_session)
    call_command("server_certificate", "generate", "--name", "127.0.0.1")
    new = certificate.sha256_fingerprint(settings.TLS_CERT_FILE).replace(":", "").lower()
    assert new != old
    deadline = time.monotonic() + 15
    seen = old
    while seen != new and time.monotonic() < deadline:
        time.sleep(0.5)
        probe = login(gateway.explicit_port, cast.partner.username, cast.partner.password)
        seen = _served_fingerprint(probe)
        probe.quit()
    assert seen == new
    assert old_session.pwd() == "/"  # the session opened before still works
    old_session.retrlines("LIST", lambda line: None)
    old_session.quit()


def test_a_mismatched_key_is_refused_and_nothing_changes(tmp_path):
    before = settings.TLS_CERT_FILE.read_bytes() if settings.TLS_CERT_FILE.exists() else b""
    one, two = tmp_path / "one", tmp_path / "two"
    certificate.ensure_self_signed(one / "c.pem", one / "k.pem", names=["a.example"])
    certificate.ensure_self_signed(two / "c.pem", two / "k.pem", names=["b.example"])
    with pytest.raises(ValueError, match="does not match"):
        certificate.install_pem((one / "c.pem").read_bytes(), (two / "k.pem").read_bytes())
    after = settings.TLS_CERT_FILE.read_bytes() if settings.TLS_CERT_FILE.exists() else b""
    assert after == before
