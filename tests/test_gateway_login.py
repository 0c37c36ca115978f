"""End-to-end: who may log in to the gateway, with what, and what the refusals look like."""

from __future__ import annotations

import ftplib
import threading
import time
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from accounts.models import Ban, User
from mft.errors import LoginRefused
from tests import certs
from tests.audit_log import wait_for_event
from tests.ftps_client import (
    ImplicitFTP,
    ResumingFTP,
    client_context,
    greeting_refused,
    login,
    reply,
)

pytestmark = pytest.mark.django_db(transaction=True)

MODES = pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])


def _secured(port: int, *, implicit: bool, cert: tuple[str, str] | None = None) -> ResumingFTP:
    """Return a client connected and secured but not logged in."""
    ftp = (ImplicitFTP if implicit else ResumingFTP)(context=client_context(cert), timeout=15)
    ftp.connect("127.0.0.1", port)
    if not implicit:
        ftp.auth()
    return ftp


def _try_login(port: int, username: str, password: str, *, implicit: bool = False,
               cert: tuple[str, str] | None = None) -> str:
    """Attempt one login and return the reply to PASS."""
    ftp = _secured(port, implicit=implicit, cert=cert)
    try:
        assert reply(ftp, f"USER {username}").startswith("331")
        return reply(ftp, f"PASS {password}")
    finally:
        ftp.close()


@pytest.fixture
def ca(tmp_path):
    """A partner's certificate authority."""
    return certs.make(tmp_path, "Acme Issuing CA", is_ca=True, days=(-1, 365))


# --- password ---------------------------------------------------------------------------------


@MODES
def test_login_with_password_succeeds(partner, gateway, implicit):
    ftp = login(gateway.port(implicit), partner.username, partner.password,
                implicit=implicit)
    try:
        assert ftp.pwd() == "/"
    finally:
        ftp.quit()


def test_login_success_is_audited_with_method(partner, gateway):
    login(gateway.implicit_port, partner.username, partner.password,
          implicit=True).quit()
    event = wait_for_event(action="login", outcome="success", actor="alice")
    assert event.details["method"] == "password"
    assert event.details["implicit"] is True
    assert event.protocol == "ftps" and event.source_ip == "127.0.0.1"


def test_wrong_password_is_refused_and_audited_with_reason(partner, gateway):
    answer = _try_login(gateway.explicit_port, "alice", "not-the-password")
    assert answer.startswith("530")
    event = wait_for_event(action="login", outcome="failure", actor="alice")
    assert event.details["reason"] == "wrong password"


def test_unknown_user_gets_the_same_reply_as_a_wrong_password(partner, gateway):
    unknown = _try_login(gateway.explicit_port, "nobody", "whatever-password")
    wrong = _try_login(gateway.explicit_port, "alice", "whatever-password")
    assert unknown == wrong == "530 Login incorrect."
    assert wait_for_event(action="login", actor="nobody").details["reason"] == "unknown user"


@override_settings(BAN_FAILURES=100)
def test_unknown_user_is_answered_in_the_same_time_as_a_wrong_password(partner, gateway):
    def timed(username: str) -> float:
        ftp = _secured(gateway.explicit_port, implicit=False, cert=None)
        try:
            assert reply(ftp, f"USER {username}").startswith("331")
            started = time.monotonic()
            assert reply(ftp, "PASS whatever-password").startswith("530")
            return time.monotonic() - started
        finally:
            ftp.close()

    unknown, wrong = [], []
    for _ in range(3):  # alternate, so load on the machine hits both alike
        unknown.append(timed("nobody"))
        wrong.append(timed("alice"))
    assert abs(sorted(unknown)[1] - sorted(wrong)[1]) < 0.3, (unknown, wrong)


def test_user_before_auth_tls_is_refused_with_a_clear_reply(partner, gateway):
    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", gateway.explicit_port, timeout=15)
    try:
        answer = reply(ftp, "USER alice")
        assert answer.startswith("530") and "AUTH TLS" in answer
        assert reply(ftp, f"PASS {partner.password}").startswith("530")
    finally:
        ftp.close()
    event = wait_for_event(action="refused", details__command="USER")
    assert "AUTH TLS" in event.details["reply"]


def test_plain_ftp_never_authenticates_even_with_the_right_password(partner, gateway):
    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", gateway.explicit_port, timeout=15)
    try:
        reply(ftp, "USER alice")
        reply(ftp, f"PASS {partner.password}")
        assert reply(ftp, "PWD").startswith("530")
    finally:
        ftp.close()
    assert wait_for_event(action="refused", details__command="PASS")


def test_user_allowed_plain_ftp_logs_in_without_tls_and_it_is_audited(partner, gateway):
    User.objects.filter(pk=partner.user.pk).update(allow_plain_ftp=True)
    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", gateway.explicit_port, timeout=15)
    try:
        assert ftp.login(partner.username, partner.password).startswith("230")
        assert ftp.pwd() == "/"
    finally:
        ftp.quit()
    event = wait_for_event(action="login", outcome="success", actor="alice")
    assert "session" in event.details and "tls_version" not in event.details


def test_plain_login_refused_by_the_policy_is_a_failed_login(partner):
    # The gateway never lets such a user send PASS in clear; the policy refuses it anyway.
    from accounts import services

    attempt = services.LoginAttempt(username=partner.username, password=partner.password,
                                    protocol="ftps", source_ip="127.0.0.1", encrypted=False)
    with pytest.raises(LoginRefused) as refused:
        services.login(attempt)
    assert refused.value.reason == "plain FTP not allowed"
    assert wait_for_event(action="login", outcome="failure",
                          details__reason="plain FTP not allowed")


# --- client certificates ----------------------------------------------------------------------


@MODES
def test_login_with_client_certificate_alone(partner, gateway, tmp_path, implicit):
    alice = partner.user
    credential = certs.make(tmp_path, "alice-client")
    certs.register(alice, credential)
    certs.set_login_method(alice, User.LoginMethod.CERTIFICATE)
    ftp = login(gateway.port(implicit), "alice", "", implicit=implicit, cert=credential.files)
    ftp.quit()
    event = wait_for_event(action="login", outcome="success", actor="alice")
    assert event.details["method"] == "certificate"
    assert event.details["client_cert_sha256"] == certs.fingerprint(credential)


def test_password_and_certificate_login_with_both_succeeds(partner, gateway, tmp_path):
    alice = partner.user
    credential = certs.make(tmp_path, "alice-client")
    certs.register(alice, credential)
    certs.set_login_method(alice, User.LoginMethod.PASSWORD_AND_CERTIFICATE)
    ftp = login(gateway.implicit_port, "alice", partner.password, implicit=True,
                cert=credential.files)
    ftp.quit()
    event = wait_for_event(action="login", outcome="success", actor="alice")
    assert event.details["method"] == "password+certificate"


def test_password_and_certificate_login_refuses_the_password_alone(partner, gateway, tmp_path):
    alice = partner.user
    certs.register(alice, certs.make(tmp_path, "alice-client"))
    certs.set_login_method(alice, User.LoginMethod.PASSWORD_AND_CERTIFICATE)
    assert _try_login(gateway.explicit_port, "alice", partner.password).startswith("530")
    event = wait_for_event(action="login", outcome="failure", actor="alice")
    assert event.details["reason"] == "client certificate required but none presented"


def test_password_and_certificate_login_refuses_the_certificate_alone(partner, gateway, tmp_path):
    alice = partner.user
    credential = certs.make(tmp_path, "alice-client")
    certs.register(alice, credential)
    certs.set_login_method(alice, User.LoginMethod.PASSWORD_AND_CERTIFICATE)
    answer = _try_login(gateway.explicit_port, "alice", "", cert=credential.files)
    assert answer.startswith("530")
    assert wait_for_event(action="login", outcome="failure").details["reason"] == "wrong password"


def test_certificate_issued_by_a_registered_ca_is_accepted(partner, gateway, tmp_path, ca):
    alice = partner.user
    certs.register(alice, ca)
    issued = certs.make(tmp_path, "alice-from-ca", issuer=ca)
    certs.set_login_method(alice, User.LoginMethod.CERTIFICATE)
    ftp = login(gateway.explicit_port, "alice", "", cert=issued.files)
    ftp.quit()
    assert wait_for_event(action="login", outcome="success", actor="alice")


def test_certificate_from_another_ca_is_refused(partner, gateway, tmp_path, ca):
    alice = partner.user
    certs.register(alice, ca)
    rogue_ca = certs.make(tmp_path, "Rogue CA", is_ca=True)
    forged = certs.make(tmp_path, "alice-forged", issuer=rogue_ca)
    certs.set_login_method(alice, User.LoginMethod.CERTIFICATE)
    assert _try_login(gateway.explicit_port, "alice", "", cert=forged.files).startswith("530")
    reason = wait_for_event(action="login", outcome="failure").details["reason"]
    assert reason.startswith("client certificate not registered")


def test_unregistered_certificate_is_refused_with_reason(partner, gateway, tmp_path):
    alice = partner.user
    certs.register(alice, certs.make(tmp_path, "alice-client"))
    stranger = certs.make(tmp_path, "someone-else")
    certs.set_login_method(alice, User.LoginMethod.CERTIFICATE)
    answer = _try_login(gateway.implicit_port, "alice", "", implicit=True,
                        cert=stranger.files)
    assert answer.startswith("530")
    reason = wait_for_event(action="login", outcome="failure").details["reason"]
    assert reason == f"client certificate not registered ({certs.fingerprint(stranger)[:16]})"


def test_expired_certificate_is_refused_with_reason(partner, gateway, tmp_path):
    alice = partner.user
    expired = certs.make(tmp_path, "alice-expired", days=(-30, -1))
    certs.register(alice, expired)
    certs.set_login_method(alice, User.LoginMethod.CERTIFICATE)
    assert _try_login(gateway.explicit_port, "alice", "", cert=expired.files).startswith("530")
    reason = wait_for_event(action="login", outcome="failure").details["reason"]
    assert reason == "client certificate expired or not yet valid"


def test_certificate_registered_for_another_partner_is_refused(cast, gateway, tmp_path):
    credential = certs.make(tmp_path, "mallory-client")
    certs.register(cast.outsider.user, credential)
    certs.set_login_method(cast.partner.user, User.LoginMethod.CERTIFICATE)
    answer = _try_login(gateway.explicit_port, "alice", "", cert=credential.files)
    assert answer.startswith("530")


def test_certificate_login_without_a_certificate_is_refused(partner, gateway):
    certs.set_login_method(partner.user, User.LoginMethod.CERTIFICATE)
    assert _try_login(gateway.explicit_port, "alice", partner.password).startswith("530")
    reason = wait_for_event(action="login", outcome="failure").details["reason"]
    assert reason == "client certificate required but none presented"


# --- account state ----------------------------------------------------------------------------


def test_expired_account_is_refused(partner, gateway):
    User.objects.filter(pk=partner.user.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1))
    assert _try_login(gateway.explicit_port, "alice", partner.password).startswith("530")
    assert wait_for_event(action="login", outcome="failure").details["reason"] == \
        "account expired"


def test_disabled_account_is_refused(partner, gateway):
    User.objects.filter(pk=partner.user.pk).update(is_active=False)
    assert _try_login(gateway.explicit_port, "alice", partner.password).startswith("530")
    assert wait_for_event(action="login", outcome="failure").details["reason"] == \
        "account disabled"


def test_user_without_ftps_protocol_is_refused(partner, gateway):
    User.objects.filter(pk=partner.user.pk).update(allowed_protocols=["https"])
    assert _try_login(gateway.explicit_port, "alice", partner.password).startswith("530")
    reason = wait_for_event(action="login", outcome="failure").details["reason"]
    assert reason == "protocol ftps not allowed for this user"


def test_address_outside_the_users_allow_list_is_refused(partner, gateway):
    User.objects.filter(pk=partner.user.pk).update(allowed_ips=["192.0.2.0/24"])
    assert _try_login(gateway.explicit_port, "alice", partner.password).startswith("530")
    reason = wait_for_event(action="login", outcome="failure").details["reason"]
    assert reason == "address 127.0.0.1 not in the user's allow-list"


def test_admin_cannot_log_in_over_ftps(cast, gateway):
    answer = _try_login(gateway.explicit_port, cast.admin.username, cast.admin.password)
    assert answer.startswith("530")
    reason = wait_for_event(action="login", outcome="failure").details["reason"]
    assert reason == "protocol ftps not allowed for this user"


def test_third_failed_login_disconnects(partner, gateway):
    ftp = _secured(gateway.explicit_port, implicit=False)
    try:
        answers = []
        for _ in range(3):
            reply(ftp, "USER alice")
            answers.append(reply(ftp, "PASS wrong-password"))
        assert answers[:2] == ["530 Login incorrect."] * 2
        assert answers[2] == "530 Login incorrect. Disconnecting."
        with pytest.raises((EOFError, OSError)):
            ftp.voidcmd("NOOP")
    finally:
        ftp.close()


def test_pass_before_user_is_refused(partner, gateway):
    ftp = _secured(gateway.explicit_port, implicit=False)
    try:
        assert reply(ftp, f"PASS {partner.password}").startswith("503")
    finally:
        ftp.close()


# --- bans -------------------------------------------------------------------------------------


@override_settings(BAN_FAILURES=3)
def test_repeated_failures_ban_the_address_even_for_a_correct_password(partner, gateway):
    ftp = _secured(gateway.explicit_port, implicit=False)
    try:
        for _ in range(2):
            reply(ftp, "USER alice")
            assert reply(ftp, "PASS wrong-password").startswith("530")
    finally:
        ftp.close()
    assert _try_login(gateway.explicit_port, "alice", "wrong-again").startswith("530")
    assert Ban.objects.filter(address="127.0.0.1").exists()
    assert greeting_refused(gateway.explicit_port)


@override_settings(BAN_FAILURES=2)
def test_ban_refuses_a_correct_password_on_an_open_session(partner, gateway):
    ftp = _secured(gateway.explicit_port, implicit=False)
    try:
        reply(ftp, "USER alice")
        assert reply(ftp, "PASS wrong-password").startswith("530")
        assert _try_login(gateway.explicit_port, "alice", "wrong-again").startswith("530")
        reply(ftp, "USER alice")
        assert reply(ftp, f"PASS {partner.password}").startswith("530")
    finally:
        ftp.close()
    assert wait_for_event(action="login", outcome="failure",
                          details__reason="address banned")


@MODES
def test_banned_address_gets_421_on_connect(partner, gateway, implicit):
    Ban.objects.create(address="127.0.0.1", reason="test",
                       expires_at=timezone.now() + timedelta(hours=1))
    ftp: ftplib.FTP = ImplicitFTP(context=client_context()) if implicit else ftplib.FTP()
    try:
        with pytest.raises((ftplib.error_temp, EOFError, OSError)) as refused:
            ftp.connect("127.0.0.1", gateway.port(implicit), timeout=15)
        if not implicit:
            assert str(refused.value).startswith("421")
    finally:
        ftp.close()


def test_lifted_ban_lets_the_address_in_again(partner, gateway):
    Ban.objects.create(address="127.0.0.1", reason="test", lifted_at=timezone.now(),
                       expires_at=timezone.now() + timedelta(hours=1))
    login(gateway.explicit_port, "alice", partner.password).quit()


# --- concurrency ------------------------------------------------------------------------------


def test_a_login_never_stalls_another_session(partner, gateway, monkeypatch):
    """While one login is being checked (on the pool), another session still answers."""
    from accounts import services

    busy = login(gateway.explicit_port, "alice", partner.password)
    checking = threading.Event()
    real_login = services.login

    def slow_login(attempt: services.LoginAttempt, **kwargs: object) -> object:
        # A password check as slow as the product's Argon2 under load, made certain.
        checking.set()
        time.sleep(3)
        return real_login(attempt, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(services, "login", slow_login)
    other = threading.Thread(target=_try_login,
                             args=(gateway.explicit_port, "alice", partner.password))
    other.start()
    try:
        assert checking.wait(timeout=10), "the second login never reached the check"
        started = time.monotonic()
        assert busy.voidcmd("NOOP").startswith("200")
        assert time.monotonic() - started < 2
        assert other.is_alive(), "the slow login finished before the NOOP was answered"
    finally:
        other.join(timeout=15)
        busy.quit()
