"""One-time codes on FTPS: the authenticator's code after the password, or a certificate.

End to end over a real gateway with a resuming FTPS client; the rules that need no network
are tested on the login service.
"""

from __future__ import annotations

import secrets
import threading
from base64 import b32decode

import pytest
from django.test import override_settings
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import otp_login, passwords, services, users
from accounts.models import AcceptedCode, Ban, LoginFailure, User
from audit.events import Origin
from mft.errors import LoginRefused
from tests import certs
from tests.api_client import client_for, fresh_throttles  # noqa: F401
from tests.audit_log import wait_for_event
from tests.ftps_client import ResumingFTP, client_context, reply

pytestmark = pytest.mark.django_db(transaction=True)
ADMIN = Origin(actor="test-admin", protocol="test")
OTHER_ADDRESS = "127.0.0.2"  # loopback too: a second client address without a network


@pytest.fixture
def otp_partner(partner):
    """Alice, required to give a second factor on FTPS, with an enrolled authenticator."""
    users.update_user(partner.user, origin=ADMIN, ftps_mfa_required=True)
    TOTPDevice.objects.create(user=partner.user, name="authenticator", confirmed=True)
    return partner


def _code(user: User) -> str:
    device = TOTPDevice.objects.get(user=user, confirmed=True)
    return f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift):06d}"


def _secured(port: int, *, source: str = "127.0.0.1",
             cert: tuple[str, str] | None = None) -> ResumingFTP:
    """Return a client connected from the given loopback address and secured, not logged in."""
    ftp = ResumingFTP(context=client_context(cert), timeout=15,
                      source_address=(source, 0))
    ftp.connect("127.0.0.1", port)
    ftp.auth()
    return ftp


def _pass_reply(port: int, username: str, secret: str, *, source: str = "127.0.0.1",
                cert: tuple[str, str] | None = None) -> str:
    """Log in once and return the reply to PASS."""
    ftp = _secured(port, source=source, cert=cert)
    try:
        assert reply(ftp, f"USER {username}").startswith("331")
        return reply(ftp, f"PASS {secret}")
    finally:
        ftp.close()


def _failure_reason() -> str:
    return wait_for_event(action="login", outcome="failure").details["reason"]


# --- over the gateway ---------------------------------------------------------------------------


def test_password_followed_by_the_current_code_logs_in(otp_partner, gateway):
    secret = otp_partner.password + _code(otp_partner.user)
    ftp = _secured(gateway.explicit_port)
    try:
        reply(ftp, "USER alice")
        assert reply(ftp, f"PASS {secret}").startswith("230")
        ftp.prot_p()
        assert ftp.pwd() == "/"
    finally:
        ftp.close()
    event = wait_for_event(action="login", outcome="success", actor="alice")
    assert event.details["method"] == "password+totp"


def test_password_alone_is_refused_for_a_user_who_needs_a_second_factor(otp_partner, gateway):
    assert _pass_reply(gateway.explicit_port, "alice", otp_partner.password).startswith("530")
    assert _failure_reason() == otp_login.NEEDS_SECOND_FACTOR


@override_settings(BAN_FAILURES=2)
def test_a_wrong_code_is_refused_and_counted_toward_a_ban(otp_partner, gateway):
    right = _code(otp_partner.user)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    for _ in range(2):
        answer = _pass_reply(gateway.explicit_port, "alice", otp_partner.password + wrong)
        assert answer.startswith("530")
    assert _failure_reason() == "wrong or already used one-time code"
    assert LoginFailure.objects.filter(address="127.0.0.1", username="alice").count() == 2
    assert Ban.objects.filter(address="127.0.0.1").exists()


def test_an_accepted_code_replayed_from_another_address_is_refused(otp_partner, gateway):
    secret = otp_partner.password + _code(otp_partner.user)
    assert _pass_reply(gateway.explicit_port, "alice", secret).startswith("230")
    replay = _pass_reply(gateway.explicit_port, "alice", secret, source=OTHER_ADDRESS)
    assert replay.startswith("530")
    failure = wait_for_event(action="login", outcome="failure", source_ip=OTHER_ADDRESS)
    assert failure.details["reason"] == "wrong or already used one-time code"
    assert LoginFailure.objects.filter(address=OTHER_ADDRESS).count() == 1


def test_parallel_connections_from_one_address_share_an_accepted_code(otp_partner,
                                                                      gateway) -> None:
    secret = otp_partner.password + _code(otp_partner.user)
    clients = [_secured(gateway.explicit_port) for _ in range(3)]
    answers: list[str] = []
    try:
        for ftp in clients:
            assert reply(ftp, "USER alice").startswith("331")

        def send_pass(ftp: ResumingFTP) -> None:
            answers.append(reply(ftp, f"PASS {secret}"))

        # Sent at once, as a client opening parallel transfers does.
        threads = [threading.Thread(target=send_pass, args=(ftp,)) for ftp in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert not any(thread.is_alive() for thread in threads)
    finally:
        for ftp in clients:
            ftp.close()
    assert len(answers) == 3 and all(a.startswith("230") for a in answers), answers
    assert AcceptedCode.objects.filter(user=otp_partner.user, address="127.0.0.1").count() == 1


def test_a_reconnect_re_sending_the_same_code_is_accepted_within_grace(otp_partner, gateway):
    secret = otp_partner.password + _code(otp_partner.user)
    assert _pass_reply(gateway.explicit_port, "alice", secret).startswith("230")
    assert _pass_reply(gateway.explicit_port, "alice", secret).startswith("230")


@override_settings(FTPS_OTP_GRACE_SECONDS=0)
def test_without_grace_a_code_is_accepted_only_once(otp_partner, gateway):
    secret = otp_partner.password + _code(otp_partner.user)
    assert _pass_reply(gateway.explicit_port, "alice", secret).startswith("230")
    assert _pass_reply(gateway.explicit_port, "alice", secret).startswith("530")
    assert _failure_reason() == "wrong or already used one-time code"


def test_a_registered_certificate_is_the_second_factor(otp_partner, gateway, tmp_path):
    credential = certs.make(tmp_path, "alice")
    certs.register(otp_partner.user, credential)
    answer = _pass_reply(gateway.explicit_port, "alice", otp_partner.password,
                         cert=credential.files)
    assert answer.startswith("230")
    event = wait_for_event(action="login", outcome="success", actor="alice")
    assert event.details["method"] == "password+certificate"


def test_an_unregistered_certificate_is_not_a_second_factor(otp_partner, gateway, tmp_path):
    stranger = certs.make(tmp_path, "stranger")
    answer = _pass_reply(gateway.explicit_port, "alice", otp_partner.password,
                         cert=stranger.files)
    assert answer.startswith("530")
    assert _failure_reason() == otp_login.NEEDS_SECOND_FACTOR


# --- the rules, on the login service -------------------------------------------------------------


def _login(username: str, secret: str, *, protocol: str = "ftps") -> User:
    return services.login(services.LoginAttempt(username=username, password=secret,
                                                protocol=protocol, source_ip="192.0.2.7"))


def test_a_user_without_the_setting_keeps_a_password_ending_in_digits(partner):
    password = "Digits-at-the-end-" + f"{secrets.randbelow(10**6):06d}"
    passwords.change_password(partner.user, password, origin=ADMIN)
    assert _login("alice", password).pk == partner.user.pk
    assert wait_for_event(action="login", outcome="success").details["method"] == "password"


def test_the_second_factor_is_for_ftps_only(otp_partner):
    users.update_user(otp_partner.user, origin=ADMIN, allowed_protocols=["ftps", "https"])
    assert _login("alice", otp_partner.password, protocol="https").pk == otp_partner.user.pk


def test_a_code_without_an_enrolled_authenticator_is_refused(otp_partner):
    TOTPDevice.objects.filter(user=otp_partner.user).delete()
    with pytest.raises(LoginRefused) as refused:
        _login("alice", otp_partner.password + "123456")
    assert "no authenticator" in refused.value.reason


def test_a_code_after_a_wrong_password_is_never_tried(otp_partner):
    code = _code(otp_partner.user)
    with pytest.raises(LoginRefused) as refused:
        _login("alice", "not-the-password" + code)
    assert refused.value.reason == "wrong password"
    assert TOTPDevice.objects.get(user=otp_partner.user).last_t == -1  # still unused
    assert _login("alice", otp_partner.password + code).pk == otp_partner.user.pk


def test_the_grace_record_holds_a_digest_not_the_code(otp_partner):
    code = _code(otp_partner.user)
    _login("alice", otp_partner.password + code)
    record = AcceptedCode.objects.get(user=otp_partner.user)
    assert record.code_digest != code and len(record.code_digest) == 64
    int(record.code_digest, 16)  # a hex digest
    assert record.address == "192.0.2.7"


def test_the_setting_is_changed_through_the_api_and_audited(cast):
    user = cast.partner.user
    response = client_for(cast.admin.user, "admin").patch(
        f"/api/v1/users/{user.pk}/", {"ftps_mfa_required": True}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["ftps_mfa_required"] is True
    user.refresh_from_db()
    assert user.ftps_mfa_required
    event = wait_for_event(action="user.update", object_id=str(user.pk))
    assert (event.details["before"]["ftps_mfa_required"],
            event.details["after"]["ftps_mfa_required"]) == (False, True)


def test_an_admin_issues_an_authenticator_whose_codes_open_ftps(cast):
    user = cast.partner.user
    users.update_user(user, origin=ADMIN, ftps_mfa_required=True)
    response = client_for(cast.admin.user, "admin").post(
        f"/api/v1/users/{user.pk}/authenticator/", format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["otpauth_url"].startswith("otpauth://totp/")
    key = b32decode(body["secret"] + "=" * (-len(body["secret"]) % 8))
    assert _login("alice", cast.partner.password + f"{totp(key):06d}").pk == user.pk
    assert wait_for_event(action="mfa.issue", object_id=str(user.pk))
    assert body["secret"] not in str(wait_for_event(action="mfa.issue").details)


def test_dashboard_users_enrol_their_own_authenticator(cast):
    response = client_for(cast.admin.user, "admin").post(
        f"/api/v1/users/{cast.admin.user.pk}/authenticator/", format="json")
    assert response.status_code == 400 and "enrol" in response.json()["detail"]
    assert not TOTPDevice.objects.filter(user=cast.admin.user).exists()


def test_posture_lists_ftps_users_who_log_in_with_one_factor(partner):
    from mft import posture

    single = {f.id: f for f in posture.findings(verify_audit=False)}["mfa.ftps-single-factor"]
    assert "alice" in single.detail and single.severity == "low"
    users.update_user(partner.user, origin=ADMIN, ftps_mfa_required=True)
    assert "mfa.ftps-single-factor" not in {f.id for f in posture.findings(verify_audit=False)}
