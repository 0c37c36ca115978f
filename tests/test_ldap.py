"""Directory (LDAP) logins against a real OpenLDAP server: FTPS, the dashboard, roles from
groups, disabled accounts, and a directory that is down (421 / 503, never a fall-through)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from accounts import services, tokens
from accounts.models import LoginFailure, Partner, User
from audit.models import AuditEvent
from mft.errors import LoginRefused, LoginUnavailable
from tests import certs
from tests.api_client import client_for
from tests.audit_log import wait_for_event
from tests.ftps_client import ResumingFTP, client_context, login, reply
from tests.ldap_server import GROUPS, PEOPLE, SERVICE_DN, Slapd, find_slapd, start_slapd

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parent.parent
ROLE_GROUPS = ";".join(f"{role}=cn={group},{GROUPS}" for role, group in (
    ("admin", "admins"), ("operator", "operators"), ("auditor", "auditors"),
    ("partner", "partners")))


@dataclass
class Directory:
    """A running directory with its people, and the passwords the test knows."""

    server: Slapd
    passwords: dict[str, str]
    homes: Path

    def dn(self, uid: str) -> str:
        return f"uid={uid},{PEOPLE}"

    def group(self, cn: str) -> str:
        return f"cn={cn},{GROUPS}"

    def attempt(self, uid: str, password: str | None = None, protocol: str = "ftps",
                ip: str = "192.0.2.40") -> services.LoginAttempt:
        """Return a login attempt for a person, with their password unless one is given."""
        return services.LoginAttempt(uid, password or self.passwords[uid], protocol, ip)


def _needs_slapd_and_python_ldap() -> None:
    """Skip (a failure under MFT_TEST_STRICT=1) when slapd or python-ldap is missing."""
    if find_slapd() is None:
        pytest.skip("slapd not installed: apt-get install slapd ldap-utils")
    pytest.importorskip("ldap", reason="python-ldap not installed: "
                                       "pip install -r requirements-ldap.txt")
    pytest.importorskip("django_auth_ldap", reason="django-auth-ldap not installed: "
                                                   "pip install -r requirements-ldap.txt")


@pytest.fixture
def slapd(tmp_path):
    """Run a real slapd for one test."""
    _needs_slapd_and_python_ldap()
    server = start_slapd(tmp_path / "slapd")
    yield server
    server.stop()


def _people(server: Slapd) -> dict[str, str]:
    """Add people and groups: a partner, an operator, an auditor; return their passwords."""
    passwords = {uid: services.generate_password() for uid in ("pat", "otto", "audrey")}
    pat = server.add_person("pat", passwords["pat"], o="Acme Corp", mail="pat@acme.example")
    otto = server.add_person("otto", passwords["otto"])
    audrey = server.add_person("audrey", passwords["audrey"])
    server.add_group("admins")
    server.add_group("operators", otto)
    server.add_group("auditors", audrey)
    server.add_group("partners", pat)
    server.add_group("disabled")
    return passwords


def use_directory(monkeypatch, settings, tmp_path: Path, **env: str) -> None:
    """Configure the directory for this test only, from MFT_LDAP_* as a deployment would."""
    from mft.directory import directory_settings

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name, value in directory_settings().items():
        setattr(settings, name, value)
    settings.AUTHENTICATION_BACKENDS = ["accounts.directory.DirectoryBackend",
                                        *settings.AUTHENTICATION_BACKENDS]
    settings.HOMES_DIR = tmp_path / "homes"


def _env(server: Slapd, tmp_path: Path) -> dict[str, str]:
    """Return the MFT_LDAP_* variables for the test directory (the bind secret in a file)."""
    secret = tmp_path / "ldap-bind-password"
    secret.write_text(server.service_password + "\n")
    return {
        "MFT_LDAP_URI": server.uri,
        "MFT_LDAP_BIND_DN": SERVICE_DN,
        "MFT_LDAP_BIND_PASSWORD_FILE": str(secret),
        "MFT_LDAP_USER_SEARCH_BASE": PEOPLE,
        "MFT_LDAP_GROUP_SEARCH_BASE": GROUPS,
        "MFT_LDAP_ROLE_GROUPS": ROLE_GROUPS,
        "MFT_LDAP_DISABLED_GROUP": f"cn=disabled,{GROUPS}",
        "MFT_LDAP_PARTNER_ATTRIBUTE": "o",
        "MFT_LDAP_TIMEOUT": "5",
    }


@pytest.fixture
def directory(slapd, monkeypatch, settings, tmp_path) -> Directory:
    """Return a populated directory that this test's settings use for logins."""
    Partner.objects.create(name="Acme Corp")
    passwords = _people(slapd)
    use_directory(monkeypatch, settings, tmp_path, **_env(slapd, tmp_path))
    return Directory(slapd, passwords, tmp_path / "homes")


# --- FTPS -------------------------------------------------------------------------------------


def test_directory_partner_logs_in_over_ftps_and_gets_role_partner_and_home(directory, gateway):
    ftp = login(gateway.explicit_port, "pat", directory.passwords["pat"])
    try:
        ftp.storbinary("STOR /hello.txt", io.BytesIO(b"from the directory"))
    finally:
        ftp.quit()
    user = User.objects.get(username="pat")
    assert user.source == User.Source.DIRECTORY
    assert user.role == User.Role.PARTNER and user.partner is not None
    assert user.partner.name == "Acme Corp"
    assert Path(user.home_dir) == directory.homes / "pat"
    assert (directory.homes / "pat" / "hello.txt").exists()
    assert user.email == "pat@acme.example"
    assert not user.has_usable_password()
    assert wait_for_event(action="login", outcome="success", actor="pat").protocol == "ftps"
    created = AuditEvent.objects.get(action="user.create", object_repr="pat")
    assert created.actor == "directory" and created.details["after"]["role"] == "partner"


def test_wrong_directory_password_gets_530_and_counts_toward_a_ban(directory, gateway):
    services.login(directory.attempt("pat"))
    ftp = ResumingFTP(context=client_context(), timeout=15)
    ftp.connect("127.0.0.1", gateway.explicit_port)
    ftp.auth()
    try:
        assert reply(ftp, "USER pat").startswith("331")
        assert reply(ftp, "PASS not-pats-password").startswith("530")
    finally:
        ftp.close()
    event = wait_for_event(action="login", outcome="failure", actor="pat")
    assert event.details["reason"] == "wrong password"
    assert LoginFailure.objects.filter(username="pat").count() == 1


def test_directory_down_gives_421_on_ftps_without_falling_through(directory, gateway):
    services.login(directory.attempt("pat"))
    # Even a local password on the directory user's row must not open a way in.
    row = User.objects.get(username="pat")
    row.set_password(directory.passwords["pat"])
    row.save()
    directory.server.stop()
    ftp = ResumingFTP(context=client_context(), timeout=15)
    ftp.connect("127.0.0.1", gateway.explicit_port)
    ftp.auth()
    try:
        assert reply(ftp, "USER pat").startswith("331")
        answer = reply(ftp, f"PASS {directory.passwords['pat']}")
    finally:
        ftp.close()
    assert answer.startswith("421"), answer
    event = wait_for_event(action="login", outcome="failure", actor="pat")
    assert event.details["reason"] == "directory unavailable"
    assert not LoginFailure.objects.exists()


# --- the dashboard --------------------------------------------------------------------------


def test_directory_auditor_signs_in_to_the_dashboard(directory):
    client = Client()
    response = client.post("/login/", {"username": "audrey",
                                       "password": directory.passwords["audrey"]})
    assert response.status_code == 302, response.content[:500]
    assert client.get("/").status_code == 200
    user = User.objects.get(username="audrey")
    assert user.role == User.Role.AUDITOR and user.allowed_protocols == ["web", "https"]
    assert not user.is_staff


def test_directory_operator_still_needs_the_second_factor_on_the_dashboard(directory):
    client = Client()
    response = client.post("/login/", {"username": "otto",
                                       "password": directory.passwords["otto"]})
    assert response.status_code == 302
    assert response["Location"] == "/login/enrol/"
    assert client.get("/").status_code == 302  # not signed in until the code is confirmed


def test_directory_down_gives_503_on_the_dashboard(directory):
    directory.server.stop()
    response = Client().post("/login/", {"username": "audrey",
                                         "password": directory.passwords["audrey"]})
    assert response.status_code == 503
    assert b"temporarily unavailable" in response.content
    assert not LoginFailure.objects.exists()


# --- the login policy -------------------------------------------------------------------------


def test_group_change_moves_the_role_on_next_login(directory):
    otto = services.login(directory.attempt("otto", protocol="web"))
    assert otto.role == User.Role.OPERATOR
    directory.server.modify(directory.group("operators"), "delete", "member",
                            directory.dn("otto"))
    directory.server.modify(directory.group("admins"), "add", "member", directory.dn("otto"))
    otto = services.login(directory.attempt("otto", protocol="web"))
    assert otto.role == User.Role.ADMIN and otto.is_staff and otto.is_superuser
    change = AuditEvent.objects.filter(action="user.update", object_repr="otto").get()
    assert change.details["before"]["role"] == "operator"
    assert change.details["after"]["role"] == "admin"


def test_account_in_the_disabled_group_is_refused_until_taken_out(directory):
    services.login(directory.attempt("pat"))
    directory.server.modify(directory.group("disabled"), "add", "member", directory.dn("pat"))
    with pytest.raises(LoginRefused) as refused:
        services.login(directory.attempt("pat"))
    assert refused.value.reason == "account disabled in the directory"
    assert not User.objects.get(username="pat").is_active
    directory.server.modify(directory.group("disabled"), "delete", "member",
                            directory.dn("pat"))
    assert services.login(directory.attempt("pat")).is_active


def test_person_in_no_mapped_group_is_refused(directory):
    password = services.generate_password()
    directory.server.add_person("nora", password)
    with pytest.raises(LoginRefused) as refused:
        services.login(directory.attempt("nora", password))
    assert refused.value.reason == "account disabled in the directory"


def test_partner_user_without_a_known_partner_is_refused(directory):
    password = services.generate_password()
    dn = directory.server.add_person("paula", password, o="Nobody We Know Ltd")
    directory.server.modify(directory.group("partners"), "add", "member", dn)
    with pytest.raises(LoginRefused) as refused:
        services.login(directory.attempt("paula", password))
    assert refused.value.reason == "account disabled in the directory"
    assert not Partner.objects.filter(name="Nobody We Know Ltd").exists()


def test_wrong_password_of_a_known_directory_user_is_refused(directory):
    services.login(directory.attempt("pat"))
    with pytest.raises(LoginRefused) as refused:
        services.login(directory.attempt("pat", "not-pats-password"))
    assert refused.value.reason == "wrong password"


def test_local_password_on_a_directory_user_never_opens_the_door(directory):
    services.login(directory.attempt("pat"))
    local_secret = services.generate_password()
    row = User.objects.get(username="pat")
    row.set_password(local_secret)  # as an admin's password reset would
    row.save()
    with pytest.raises(LoginRefused) as refused:
        services.login(directory.attempt("pat", local_secret))
    assert refused.value.reason == "wrong password"


def test_directory_down_is_audited_and_never_counts_toward_a_ban(directory, settings):
    settings.BAN_FAILURES = 1
    directory.server.stop()
    for _ in range(3):
        with pytest.raises(LoginUnavailable):
            services.login(directory.attempt("pat"))
    assert AuditEvent.objects.filter(action="login", outcome="failure",
                                     details__reason="directory unavailable").count() == 3
    assert not LoginFailure.objects.exists()


def test_local_users_keep_working_while_the_directory_is_down(directory, cast):
    directory.server.stop()
    attempt = services.LoginAttempt(cast.partner.username, cast.partner.password, "ftps",
                                    "192.0.2.41")
    assert services.login(attempt).source == User.Source.LOCAL


def test_directory_entry_never_takes_over_a_local_user(directory, cast):
    password = services.generate_password()
    directory.server.add_person("alice", password)
    directory.server.modify(directory.group("partners"), "add", "member", directory.dn("alice"))
    with pytest.raises(LoginRefused):
        services.login(services.LoginAttempt("alice", password, "ftps", "192.0.2.42"))
    assert User.objects.get(username="alice").source == User.Source.LOCAL


def test_home_attribute_names_a_folder_under_the_homes_dir(slapd, monkeypatch, settings,
                                                           tmp_path):
    Partner.objects.create(name="Acme Corp")
    passwords = _people(slapd)
    slapd.modify(f"uid=pat,{PEOPLE}", "add", "departmentNumber", "acme/inbound")
    use_directory(monkeypatch, settings, tmp_path, **_env(slapd, tmp_path),
                  MFT_LDAP_HOME_ATTRIBUTE="departmentNumber")
    user = services.login(services.LoginAttempt("pat", passwords["pat"], "ftps", "192.0.2.43"))
    assert Path(user.home_dir) == tmp_path / "homes" / "acme" / "inbound"


# --- TLS --------------------------------------------------------------------------------------


@pytest.fixture
def tls_slapd(tmp_path):
    """Run slapd with a certificate for 127.0.0.1 issued by a throwaway CA."""
    _needs_slapd_and_python_ldap()
    ca = certs.make(tmp_path, "Directory Test CA", is_ca=True, days=(-1, 30))
    server_cert = certs.make(tmp_path, "127.0.0.1", issuer=ca)
    server = start_slapd(tmp_path / "slapd", tls=server_cert.files)
    yield server, ca
    server.stop()


def test_start_tls_verifies_the_directory_against_the_ca_file(tls_slapd, monkeypatch, settings,
                                                              tmp_path):
    server, ca = tls_slapd
    Partner.objects.create(name="Acme Corp")
    passwords = _people(server)
    use_directory(monkeypatch, settings, tmp_path, **_env(server, tmp_path),
                  MFT_LDAP_START_TLS="on", MFT_LDAP_CA_FILE=ca.cert_path)
    assert services.login(services.LoginAttempt("pat", passwords["pat"], "ftps",
                                                "192.0.2.44")).role == User.Role.PARTNER


def test_start_tls_refuses_a_directory_certificate_from_another_ca(tls_slapd, monkeypatch,
                                                                   settings, tmp_path):
    server, _ = tls_slapd
    passwords = _people(server)
    stranger = certs.make(tmp_path, "Some Other CA", is_ca=True, days=(-1, 30))
    use_directory(monkeypatch, settings, tmp_path, **_env(server, tmp_path),
                  MFT_LDAP_START_TLS="on", MFT_LDAP_CA_FILE=stranger.cert_path)
    with pytest.raises(LoginUnavailable):
        services.login(services.LoginAttempt("pat", passwords["pat"], "ftps", "192.0.2.45"))


def test_ldaps_verifies_the_directory_against_the_ca_file(tls_slapd, monkeypatch, settings,
                                                         tmp_path):
    server, ca = tls_slapd
    Partner.objects.create(name="Acme Corp")
    passwords = _people(server)
    use_directory(monkeypatch, settings, tmp_path,
                  **{**_env(server, tmp_path), "MFT_LDAP_URI": server.ldaps_uri},
                  MFT_LDAP_CA_FILE=ca.cert_path)
    assert services.login(services.LoginAttempt("pat", passwords["pat"], "ftps",
                                                "192.0.2.46")).role == User.Role.PARTNER


def test_ldaps_refuses_a_directory_certificate_from_another_ca(tls_slapd, monkeypatch,
                                                              settings, tmp_path):
    server, _ = tls_slapd
    passwords = _people(server)
    stranger = certs.make(tmp_path, "Yet Another CA", is_ca=True, days=(-1, 30))
    use_directory(monkeypatch, settings, tmp_path,
                  **{**_env(server, tmp_path), "MFT_LDAP_URI": server.ldaps_uri},
                  MFT_LDAP_CA_FILE=stranger.cert_path)
    with pytest.raises(LoginUnavailable):
        services.login(services.LoginAttempt("pat", passwords["pat"], "ftps", "192.0.2.47"))


# --- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("MFT_LDAP_ROLE_GROUPS", f"boss=cn=admins,{GROUPS}", "is not a role"),
    ("MFT_LDAP_USER_SEARCH_BASE", "", "MFT_LDAP_USER_SEARCH_BASE is required"),
    ("MFT_LDAP_URI", "http://127.0.0.1:389", "is not an ldap:// or ldaps:// URI"),
    ("MFT_LDAP_USER_FILTER", "(uid=bob)", "must contain %(user)s"),
    ("MFT_LDAP_GROUP_SEARCH_BASE", "not a dn", "is not a distinguished name"),
])
def test_directory_settings_refuse_a_bad_configuration(monkeypatch, variable, value, message):
    pytest.importorskip("ldap", reason="python-ldap not installed: "
                                       "pip install -r requirements-ldap.txt")
    from mft.directory import directory_settings

    good = {"MFT_LDAP_URI": "ldaps://ldap1.example.org,ldaps://ldap2.example.org",
            "MFT_LDAP_USER_SEARCH_BASE": PEOPLE, "MFT_LDAP_GROUP_SEARCH_BASE": GROUPS,
            "MFT_LDAP_ROLE_GROUPS": ROLE_GROUPS}
    for name, setting in {**good, variable: value}.items():
        monkeypatch.setenv(name, setting)
    with pytest.raises(ImproperlyConfigured, match=message.replace("(", r"\(").replace(
            ")", r"\)")):
        directory_settings()


def test_directory_settings_join_several_uris_and_stay_empty_without_one(monkeypatch):
    pytest.importorskip("ldap", reason="python-ldap not installed: "
                                       "pip install -r requirements-ldap.txt")
    from mft.directory import directory_settings

    monkeypatch.delenv("MFT_LDAP_URI", raising=False)
    assert directory_settings() == {}
    monkeypatch.setenv("MFT_LDAP_URI", "ldaps://ldap1.example.org, ldap://ldap2.example.org")
    monkeypatch.setenv("MFT_LDAP_USER_SEARCH_BASE", PEOPLE)
    monkeypatch.setenv("MFT_LDAP_GROUP_SEARCH_BASE", GROUPS)
    monkeypatch.setenv("MFT_LDAP_ROLE_GROUPS", ROLE_GROUPS)
    built = directory_settings()
    assert built["AUTH_LDAP_SERVER_URI"] == "ldaps://ldap1.example.org ldap://ldap2.example.org"
    assert [role for role, _ in built["AUTH_LDAP_ROLE_GROUPS"]] == [
        "admin", "operator", "auditor", "partner"]


def test_startup_refuses_ldap_settings_without_python_ldap(tmp_path):
    env = {**os.environ, "MFT_DATA_DIR": str(tmp_path), "MFT_LDAP_URI": "ldap://127.0.0.1:1",
           "MFT_LDAP_USER_SEARCH_BASE": PEOPLE, "MFT_LDAP_GROUP_SEARCH_BASE": GROUPS,
           "MFT_LDAP_ROLE_GROUPS": ROLE_GROUPS, "DJANGO_SETTINGS_MODULE": "mft.settings"}
    # A None entry in sys.modules makes `import ldap` fail as if it were not installed.
    program = "import sys, django; sys.modules['ldap'] = None; django.setup()"
    result = subprocess.run([sys.executable, "-c", program], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "pip install -r requirements-ldap.txt" in result.stderr


def test_checks_warn_about_clear_or_unverified_directory_connections(monkeypatch, settings):
    pytest.importorskip("ldap", reason="python-ldap not installed: "
                                       "pip install -r requirements-ldap.txt")
    from accounts.checks import check_directory_tls
    from mft.directory import directory_settings

    for name, value in {"MFT_LDAP_URI": "ldap://ldap1.example.org",
                        "MFT_LDAP_USER_SEARCH_BASE": PEOPLE,
                        "MFT_LDAP_GROUP_SEARCH_BASE": GROUPS,
                        "MFT_LDAP_ROLE_GROUPS": ROLE_GROUPS,
                        "MFT_LDAP_TLS_VERIFY": "off"}.items():
        monkeypatch.setenv(name, value)
    for name, value in directory_settings().items():
        setattr(settings, name, value)
    assert {w.id for w in check_directory_tls()} == {"accounts.W001", "accounts.W002"}
    monkeypatch.setenv("MFT_LDAP_URI", "ldaps://ldap1.example.org")
    monkeypatch.setenv("MFT_LDAP_TLS_VERIFY", "on")
    for name, value in directory_settings().items():
        setattr(settings, name, value)
    assert check_directory_tls() == []


# --- between logins: tokens, sessions, password resets ---------------------------------------


def _token_for(directory: Directory, uid: str) -> str:
    """Log a person in once (creating their row) and return a new read token of theirs."""
    user = services.login(directory.attempt(uid, protocol="web"))
    return tokens.create_api_token(user, scopes=["read"]).secret


def _api(secret: str) -> int:
    """Return the status of an API read made with a bearer token."""
    return Client().get("/api/v1/audit-events/", HTTP_AUTHORIZATION=f"Bearer {secret}"
                        ).status_code


def test_a_token_of_a_user_disabled_in_the_directory_is_refused_once_reread(directory,
                                                                            settings):
    settings.AUTH_LDAP_RECHECK_SECONDS = 0
    secret = _token_for(directory, "audrey")
    assert _api(secret) == 200
    directory.server.modify(directory.group("disabled"), "add", "member",
                            directory.dn("audrey"))
    assert _api(secret) == 401
    assert not User.objects.get(username="audrey").is_active
    event = AuditEvent.objects.filter(action="login", outcome="failure").latest("id")
    assert event.details["reason"] == "account disabled in the directory"


def test_a_token_keeps_the_last_known_state_until_the_reread_is_due(directory, settings):
    settings.AUTH_LDAP_RECHECK_SECONDS = 3600
    secret = _token_for(directory, "audrey")
    directory.server.modify(directory.group("disabled"), "add", "member",
                            directory.dn("audrey"))
    assert _api(secret) == 200  # the documented limit: at most MFT_LDAP_RECHECK_SECONDS
    settings.AUTH_LDAP_RECHECK_SECONDS = 0
    assert _api(secret) == 401


def test_a_token_of_a_user_taken_out_of_every_role_group_is_refused(directory, settings):
    settings.AUTH_LDAP_RECHECK_SECONDS = 0
    secret = _token_for(directory, "audrey")
    directory.server.modify(directory.group("auditors"), "delete", "member",
                            directory.dn("audrey"))
    assert _api(secret) == 401
    change = AuditEvent.objects.filter(action="user.update", object_repr="audrey").get()
    assert change.details["before"]["is_active"] and not change.details["after"]["is_active"]


def test_a_token_of_a_user_deleted_from_the_directory_is_refused(directory, settings):
    settings.AUTH_LDAP_RECHECK_SECONDS = 0
    secret = _token_for(directory, "audrey")
    admin = directory.server.connection()
    try:
        admin.delete_s(directory.dn("audrey"))
    finally:
        admin.unbind_s()
    assert _api(secret) == 401
    assert not User.objects.get(username="audrey").is_active


def test_a_token_gets_503_while_the_directory_cannot_be_asked(directory, settings):
    settings.AUTH_LDAP_RECHECK_SECONDS = 0
    secret = _token_for(directory, "audrey")
    directory.server.stop()
    assert _api(secret) == 503
    assert User.objects.get(username="audrey").is_active


def _signed_in(directory: Directory, uid: str) -> Client:
    """Return a dashboard client signed in as an auditor of the directory."""
    client = Client()
    response = client.post("/login/", {"username": uid, "password": directory.passwords[uid]})
    assert response.status_code == 302 and client.get("/").status_code == 200
    return client


def test_a_dashboard_session_ends_once_the_directory_disables_the_user(directory, settings):
    client = _signed_in(directory, "audrey")
    settings.AUTH_LDAP_RECHECK_SECONDS = 0
    directory.server.modify(directory.group("disabled"), "add", "member",
                            directory.dn("audrey"))
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_a_dashboard_session_outlives_a_directory_outage(directory, settings):
    client = _signed_in(directory, "audrey")
    settings.AUTH_LDAP_RECHECK_SECONDS = 0
    directory.server.stop()
    assert client.get("/").status_code == 200


def test_an_admin_cannot_reset_a_directory_users_password(directory, cast):
    pat = services.login(directory.attempt("pat"))
    response = client_for(cast.admin.user, "admin").post(
        f"/api/v1/users/{pat.pk}/reset-password/")
    assert response.status_code == 409, response.content
    assert "directory" in response.json()["detail"]
    assert not User.objects.get(pk=pat.pk).has_usable_password()
    assert not AuditEvent.objects.filter(action="password.change").exists()


def test_posture_reports_clear_and_unverified_directory_connections(monkeypatch, settings):
    pytest.importorskip("ldap", reason="python-ldap not installed: "
                                       "pip install -r requirements-ldap.txt")
    from mft import posture
    from mft.directory import directory_settings

    for name, value in {"MFT_LDAP_URI": "ldap://ldap1.example.org",
                        "MFT_LDAP_USER_SEARCH_BASE": PEOPLE,
                        "MFT_LDAP_GROUP_SEARCH_BASE": GROUPS,
                        "MFT_LDAP_ROLE_GROUPS": ROLE_GROUPS,
                        "MFT_LDAP_TLS_VERIFY": "off"}.items():
        monkeypatch.setenv(name, value)
    for name, value in directory_settings().items():
        setattr(settings, name, value)
    found = {f.id: f for f in posture.findings(verify_audit=False)}
    assert found["ldap.cleartext"].severity == "high"
    assert "ldap1.example.org" in found["ldap.cleartext"].detail
    assert "ldap.tls-unverified" in found
    monkeypatch.setenv("MFT_LDAP_URI", "ldaps://ldap1.example.org")
    monkeypatch.setenv("MFT_LDAP_TLS_VERIFY", "on")
    for name, value in directory_settings().items():
        setattr(settings, name, value)
    assert not {"ldap.cleartext", "ldap.tls-unverified"} & {
        f.id for f in posture.findings(verify_audit=False)}
