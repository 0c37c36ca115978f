"""Configuration backup: export, import into an empty database, and the same users log in."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from tests import certs
from tests.ftps_client import login
from tests.live_worker import ROOT, current_database_url

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass
class Configured:
    """What the test set up, with the secrets it knows."""

    cast: Any
    endpoint_password: str
    webhook_secret: str
    totp_key: str
    recovery_codes: list[str]
    api_token: str


@pytest.fixture
def configured(cast, tmp_path: Path) -> Configured:
    """Build a configuration through the product's services: one of each kind of row."""
    from django_otp.oath import TOTP

    from accounts import mfa, tokens
    from audit import events
    from deliveries import services as deliveries
    from expected import services as expected
    from mft import posture
    from notifications import subscriptions
    from retention import services as retention
    from transfers.models import DlpRule

    alice = cast.partner.user
    alice.allowed_protocols = ["ftps", "https"]
    alice.save(update_fields=["allowed_protocols"])
    endpoint = deliveries.create_endpoint(
        partner=alice.partner, name="acme-sftp", host="127.0.0.1", port=2121,
        username="portside", password="endpoint-Secret-9f2", pinned_sha256="ab" * 32)
    deliveries.create_route(name="to-acme", endpoint=endpoint, source_partner=alice.partner,
                            trigger="schedule", cron="0 6 * * 1-5")
    deliveries.create_pull(name="from-acme", endpoint=endpoint, local_user=alice,
                           cron="*/15 * * * *")
    DlpRule.objects.create(partner=alice.partner, name="cards", kind="card", action="block")
    hook = subscriptions.create_subscription(
        name="erp", scope="admin", channel="webhook", events_filter=["file.*"],
        url="https://erp.example.com/hook")
    certs.register(alice, certs.make(tmp_path, "alice-client"))
    token = tokens.create_api_token(alice, scopes=["read"], name="erp")
    admin = cast.admin.user
    device = mfa.begin_enrolment(admin)
    code = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift).token()
    enrolment = mfa.confirm_enrolment(admin, f"{code:0{device.digits}d}", origin=events.SYSTEM)
    with override_settings(SCAN_MODE="off"):  # accepting needs a current finding
        posture.accept("scan.off", justification="scanner replaced next week",
                       origin=events.SYSTEM)
    expected.create_expected(name="acme-daily", partner=alice.partner, deadline=time(9, 30),
                             filename_pattern="orders-*.csv")
    retention.set_policy(alice.partner, files_after_days=30, deliveries_after_days=90)
    assert hook.secret is not None
    return Configured(cast, "endpoint-Secret-9f2", hook.secret, device.key,
                      enrolment.recovery_codes, token.secret)


def _export(path: Path) -> dict[str, Any]:
    call_command("export_config", output=str(path))
    return json.loads(path.read_text())


def _empty_database() -> None:
    call_command("flush", interactive=False, verbosity=0)


def _write(path: Path, doc: dict[str, Any]) -> str:
    path.write_text(json.dumps(doc))
    return str(path)


def test_export_then_import_into_an_empty_database_recreates_the_configuration(
        configured, tmp_path):
    from accounts.models import Partner, User
    from deliveries import connection
    from deliveries.models import PartnerEndpoint, Pull, Route
    from expected.models import ExpectedFile
    from retention.models import RetentionPolicy

    before = {u.username: (u.password, u.role, u.partner and u.partner.name, u.home_dir)
              for u in User.objects.all()}
    doc = _export(tmp_path / "config.json")
    _empty_database()
    assert not User.objects.exists()
    call_command("import_config", str(tmp_path / "config.json"))
    after = {u.username: (u.password, u.role, u.partner and u.partner.name, u.home_dir)
             for u in User.objects.all()}
    assert after == before
    assert sorted(Partner.objects.values_list("name", flat=True)) == ["Acme Corp", "Other Ltd"]
    endpoint = PartnerEndpoint.objects.get(name="acme-sftp")
    assert connection.remote_server(endpoint).password == configured.endpoint_password
    route, pull = Route.objects.get(name="to-acme"), Pull.objects.get(name="from-acme")
    assert route.endpoint == endpoint and route.source_partner == endpoint.partner
    assert route.periodic_task is not None and pull.periodic_task is not None
    assert pull.periodic_task.crontab.minute == "*/15" and pull.local_user.username == "alice"
    assert len(doc["body"]["sections"]["users"]) == 3
    assert ExpectedFile.objects.get(name="acme-daily").deadline == time(9, 30)
    assert RetentionPolicy.objects.get(partner__name="Acme Corp").files_after_days == 30


def test_imported_users_log_in_over_ftps_and_through_the_login_service(
        configured, tmp_path, gateway_factory):
    from accounts import services

    _export(tmp_path / "config.json")
    _empty_database()
    call_command("import_config", str(tmp_path / "config.json"))
    alice = configured.cast.partner
    user = services.login(services.LoginAttempt(
        username=alice.username, password=alice.password, protocol="ftps",
        source_ip="127.0.0.1"))
    assert user.username == "alice"
    gateway = gateway_factory()
    ftp = login(gateway.explicit_port, alice.username, alice.password)
    assert ftp.pwd() == "/"
    ftp.quit()


def test_imported_admin_keeps_authenticator_recovery_codes_and_api_tokens(
        configured, tmp_path):
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from accounts import mfa, tokens
    from audit import events

    _export(tmp_path / "config.json")
    _empty_database()
    call_command("import_config", str(tmp_path / "config.json"))
    admin = configured.cast.admin.user.__class__.objects.get(username="root-admin")
    assert TOTPDevice.objects.get(user=admin).key == configured.totp_key
    assert mfa.verify(admin, configured.recovery_codes[0], origin=events.SYSTEM)
    assert tokens.authenticate_token(configured.api_token, source_ip="127.0.0.1").user.username \
        == "alice"


def test_the_document_holds_no_secret_in_clear(configured, tmp_path):
    _export(tmp_path / "config.json")
    text = (tmp_path / "config.json").read_text()
    cast = configured.cast
    for secret in (configured.endpoint_password, configured.webhook_secret,
                   configured.totp_key, configured.api_token, cast.partner.password,
                   cast.admin.password, *configured.recovery_codes):
        assert secret not in text
    assert "argon2" in text  # password hashes are carried, as hashes
    assert (tmp_path / "config.json").stat().st_mode & 0o077 == 0


def test_a_tampered_document_is_refused_with_exit_1_and_nothing_imported(configured, tmp_path):
    from accounts.models import Partner

    doc = _export(tmp_path / "config.json")
    doc["body"]["sections"]["users"][0]["role"] = "admin"
    path = _write(tmp_path / "tampered.json", doc)
    _empty_database()
    env = {"DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": current_database_url()}
    result = subprocess.run([sys.executable, "manage.py", "import_config", path], cwd=ROOT,
                            env={**__import__("os").environ, **env}, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1
    assert "signature does not verify" in result.stderr
    assert not Partner.objects.exists()


def test_a_document_half_of_which_cannot_be_imported_leaves_nothing(configured, tmp_path):
    from accounts.models import Partner, User
    from mft.config_backup import document

    doc = _export(tmp_path / "config.json")
    doc["body"]["sections"]["routes"][0]["endpoint"] = [["Acme Corp"], "no-such-endpoint"]
    _empty_database()
    with pytest.raises(CommandError, match="no-such-endpoint"):
        call_command("import_config", _write(tmp_path / "bad.json",
                                             document.sign(doc["body"])))
    assert not Partner.objects.exists() and not User.objects.exists()


def test_an_unknown_format_version_is_refused(configured, tmp_path):
    doc = _export(tmp_path / "config.json")
    doc["version"] = 99
    _empty_database()
    with pytest.raises(CommandError, match="unknown format version 99"):
        call_command("import_config", _write(tmp_path / "v99.json", doc))


def test_import_into_a_configured_database_needs_merge_and_updates_by_name(
        configured, tmp_path):
    from accounts.models import Partner

    doc = _export(tmp_path / "config.json")
    Partner.objects.filter(name="Acme Corp").update(contact_name="changed since")
    with pytest.raises(CommandError, match="--merge"):
        call_command("import_config", str(tmp_path / "config.json"))
    call_command("import_config", str(tmp_path / "config.json"), merge=True)
    assert Partner.objects.get(name="Acme Corp").contact_name == ""
    assert Partner.objects.count() == len(doc["body"]["sections"]["partners"])


def test_a_document_from_another_install_needs_that_install_public_key(configured, tmp_path):
    from mft.config_backup import document

    other = Ed25519PrivateKey.generate()
    body = _export(tmp_path / "config.json")["body"]
    raw = other.public_key().public_bytes(serialization.Encoding.Raw,
                                          serialization.PublicFormat.Raw)
    doc = {"format": document.FORMAT, "version": document.VERSION, "body": body,
           "signature": {"algorithm": "ed25519", "public_key": base64.b64encode(raw).decode(),
                         "value": base64.b64encode(other.sign(document.canonical(body))).decode()}}
    path = _write(tmp_path / "other.json", doc)
    pem = tmp_path / "other.pub"
    pem.write_bytes(other.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    _empty_database()
    with pytest.raises(CommandError, match="signed by another key"):
        call_command("import_config", path)
    call_command("import_config", path, public_key=str(pem))


def test_export_and_import_are_audited(configured, tmp_path):
    from audit.models import AuditEvent

    _export(tmp_path / "config.json")
    assert AuditEvent.objects.filter(action="config.export").exists()
    _empty_database()
    call_command("import_config", str(tmp_path / "config.json"))
    event = AuditEvent.objects.get(action="config.import")
    assert event.outcome == "success" and event.details["counts"]["users"] == 3
