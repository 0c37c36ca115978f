"""Alerts announced once: certificate and key expiry once per threshold (reset by renewal),
bans, and posture findings (again only after being fixed and coming back)."""

from __future__ import annotations

import json
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from accounts import bans
from alerts import expiry, posture_watch
from alerts.models import ExpiryNotice, PostureNotice
from audit.events import Origin
from audit.models import AuditEvent
from mft import posture
from notifications import outbox, signing, subscriptions
from notifications.models import Notification, OutboundEvent, Subscription
from tests import certs
from tests.webhook_receiver import webhook_receiver
from transfers.pgp import Keyring

pytestmark = pytest.mark.django_db(transaction=True)
ADMIN = Origin(actor="root-admin", protocol="test")


@pytest.fixture(autouse=True)
def _setup(settings, tmp_path) -> None:
    """No default subscriptions, the usual thresholds, no server certificate or keyring."""
    Subscription.objects.all().delete()
    settings.EXPIRY_ALERT_DAYS = [30, 14, 7, 1]
    settings.TLS_CERT_FILE = tmp_path / "tls" / "server.crt"
    settings.PGP_HOME = tmp_path / "no-keyring"


def _expiring(kind: str = "") -> list[OutboundEvent]:
    rows = OutboundEvent.objects.filter(event="certificate.expiring").order_by("pk")
    return [r for r in rows if not kind or r.data["credential"]["kind"] == kind]


def _client_cert(cast, tmp_path: Path, days: int, name: str = "acme-client"):
    return certs.register(cast.partner.user, certs.make(tmp_path, name, days=(-1, days)))


def test_expiry_alert_fires_once_per_threshold_across_runs(cast, tmp_path):
    _client_cert(cast, tmp_path, days=10)
    now = timezone.now()
    assert expiry.check(now=now) == 1
    assert expiry.check(now=now + timedelta(hours=1)) == 0
    [event] = _expiring()
    assert event.data["credential"]["threshold_days"] == 14
    assert event.partner_name == "Acme Corp"
    assert expiry.check(now=now + timedelta(days=4)) == 1  # 6 days left: the 7-day threshold
    assert expiry.check(now=now + timedelta(days=4, hours=1)) == 0
    assert [e.data["credential"]["threshold_days"] for e in _expiring()] == [14, 7]
    assert expiry.check(now=now + timedelta(days=11)) == 1  # expired
    assert _expiring()[-1].data["credential"]["threshold_days"] == 0
    assert AuditEvent.objects.filter(action="certificate.expiring").count() == 3


def test_renewed_certificate_resets_its_alerts(cast, tmp_path):
    old = _client_cert(cast, tmp_path, days=10)
    assert expiry.check() == 1
    old.delete()
    _client_cert(cast, tmp_path, days=400, name="acme-renewed")
    assert expiry.check() == 0
    assert not ExpiryNotice.objects.exists()


def test_server_certificate_alert_reaches_a_webhook_and_resets_on_replacement(settings):
    folder = Path(settings.TLS_CERT_FILE).parent
    folder.mkdir(parents=True)
    short = certs.make(folder, "portside.test", days=(-1, 5))
    shutil.copy(short.cert_path, settings.TLS_CERT_FILE)
    with webhook_receiver() as receiver:
        hook = subscriptions.create_subscription(
            name="ops", scope="admin", channel="webhook", events_filter=["certificate.*"],
            url=receiver.url)
        assert expiry.check() == 1
        row = outbox.claim(Notification.objects.get().pk)
        assert row is not None and outbox.record(row, outbox.attempt(row)) == "sent"
        [request] = receiver.wait_for(1)
    assert hook.secret and signing.verify(hook.secret, request.body,
                                          request.headers["X-Portside-Timestamp"],
                                          request.headers["X-Portside-Signature"])
    credential = json.loads(request.body)["data"]["credential"]
    assert credential["kind"] == "server certificate" and credential["threshold_days"] == 7
    assert credential["fingerprint"] == certs.fingerprint(short)
    assert expiry.check() == 0
    renewed = certs.make(folder, "portside-renewed", days=(-1, 400))
    shutil.copy(renewed.cert_path, settings.TLS_CERT_FILE)
    assert expiry.check() == 0
    assert not ExpiryNotice.objects.exists()


def test_partner_pgp_key_extended_in_place_resets(cast):
    from accounts.models import PgpKey

    key = PgpKey.objects.create(partner=cast.partner.user.partner, armored="(test)",
                                fingerprint="A" * 40, user_ids=["Acme <pgp@acme.test>"],
                                expires_at=timezone.now() + timedelta(days=20))
    now = timezone.now()
    assert expiry.check(now=now) == 1
    assert expiry.check(now=now) == 0
    PgpKey.objects.filter(pk=key.pk).update(expires_at=now + timedelta(days=25))
    assert expiry.check(now=now) == 1  # a new expiry: announced afresh at its threshold
    assert [e.data["credential"]["kind"] for e in _expiring()] == ["partner PGP key"] * 2


@pytest.fixture
def platform_keyring(settings) -> Iterator[Keyring]:
    """Return a keyring in a short /tmp home (gpg-agent's socket path limit), as PGP_HOME."""
    home = Path(tempfile.mkdtemp(prefix="pgp-", dir="/tmp"))
    ring = Keyring(home / "keyring", s2k_count=1024)
    settings.PGP_HOME = ring.home
    try:
        yield ring
    finally:
        ring.stop_agent()
        shutil.rmtree(home, ignore_errors=True)


def test_platform_pgp_key_expiry_is_announced_once(platform_keyring):
    fingerprint = platform_keyring.generate_platform_key(
        "Portside", "pgp@portside.test", secrets.token_urlsafe(16), valid_days=5)
    assert expiry.check() == 1
    assert expiry.check() == 0
    [event] = _expiring("platform PGP key")
    assert event.data["credential"]["fingerprint"] == fingerprint
    assert event.partner_id is None


def test_ban_is_announced(settings):
    settings.BAN_FAILURES = 3
    for _ in range(3):
        bans.record_failure("192.0.2.7", "mallory", "ftps")
    [event] = OutboundEvent.objects.filter(event="ban.created")
    assert event.data["ban"]["address"] == "192.0.2.7"
    assert "3 failed logins" in event.body
    bans.record_failure("192.0.2.7", "mallory", "ftps")  # already banned: no second alert
    assert OutboundEvent.objects.filter(event="ban.created").count() == 1


def test_posture_finding_is_announced_once_and_again_after_it_came_back(settings, db):
    settings.DEBUG = True
    first = posture_watch.check(verify_audit=False)
    assert "web.debug" in first
    assert posture_watch.check(verify_audit=False) == []
    settings.DEBUG = False
    assert "web.debug" not in posture_watch.check(verify_audit=False)
    assert not PostureNotice.objects.filter(finding="web.debug").exists()
    settings.DEBUG = True
    assert posture_watch.check(verify_audit=False) == ["web.debug"]
    events = OutboundEvent.objects.filter(event="posture.finding")
    assert [e.data["finding"]["id"] for e in events].count("web.debug") == 2
    assert AuditEvent.objects.filter(action="posture.finding").count() == len(first) + 1


def test_accepted_posture_finding_is_not_announced(settings, db):
    settings.DEBUG = True
    posture.accept("web.debug", justification="a staging host, never public", origin=ADMIN)
    assert "web.debug" not in posture_watch.check(verify_audit=False)


def test_default_admin_subscriptions_hear_the_new_alerts():
    import importlib

    from django.apps import apps

    importlib.import_module("notifications.migrations.0002_default_admin_alerts").create(
        apps, None)
    importlib.import_module("alerts.migrations.0002_default_admin_alerts").extend(apps, None)
    urgent = Subscription.objects.get(name="Admins: urgent alerts")
    digest = Subscription.objects.get(name="Admins: daily digest of stopped files")
    assert {"certificate.expiring", "expected_file.missing", "posture.finding",
            "file.quarantined"} <= set(urgent.events)
    assert {"ban.created", "expected_file.late", "file.held"} <= set(digest.events)
