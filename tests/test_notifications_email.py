"""Email notifications: one message per event, recipients, the daily digest, real SMTP."""

from __future__ import annotations

import email
from pathlib import Path

import pytest
from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from accounts.models import Partner
from mft.mail import email_from_url
from notifications import digest, outbox, services, subscriptions
from notifications.models import Notification, OutboundEvent, Subscription
from tests.smtp_receiver import smtp_receiver

pytestmark = pytest.mark.django_db(transaction=True)

LOCMEM = override_settings(EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend")


@pytest.fixture(autouse=True)
def _no_default_subscriptions() -> None:
    """Start from no subscriptions (the migration adds the admins' defaults to a fresh
    database; a test that wants them creates them)."""
    Subscription.objects.all().delete()


def _subscribe(**fields: object) -> Subscription:
    values: dict[str, object] = {"name": "ops", "scope": "admin", "channel": "email",
                                 "events_filter": ["file.*"], "email_to": "ops@example.com"}
    values.update(fields)
    return subscriptions.create_subscription(**values).subscription  # type: ignore[arg-type]


def _send_all() -> list[str]:
    """Send every pending notification in-process; return the outcomes."""
    outcomes = []
    for pk in Notification.objects.filter(status="pending").order_by("pk").values_list(
            "pk", flat=True):
        row = outbox.claim(pk)
        assert row is not None
        outcomes.append(outbox.record(row, outbox.attempt(row)))
    return outcomes


def _notify(event: str = "file.ready", partner: Partner | None = None) -> OutboundEvent:
    return services.notify(event, subject=f"{event} happened", body="details here",
                           data={"file": {"path": "/a.csv"}}, partner=partner)


@LOCMEM
def test_event_sends_one_email_to_the_subscribed_addresses():
    _subscribe(email_to="ops@example.com, erp@example.com")
    record = _notify()
    assert _send_all() == ["sent"]
    [message] = mail.outbox
    assert message.to == ["ops@example.com", "erp@example.com"]
    assert message.subject == "[Portside] file.ready happened"
    assert f"#{record.pk}" in message.body and "details here" in message.body
    assert message.extra_headers["X-Portside-Event"] == "file.ready"


@LOCMEM
def test_event_outside_the_filter_sends_nothing():
    _subscribe(events_filter=["delivery.failed"])
    _notify("file.ready")
    assert not Notification.objects.exists()
    assert mail.outbox == []


@LOCMEM
def test_partner_subscription_hears_only_its_own_partner(cast):
    acme = Partner.objects.get(name="Acme Corp")
    other = Partner.objects.get(name="Other Ltd")
    _subscribe(scope="partner", partner=acme, email_to="acme@example.com")
    _notify(partner=other)
    _notify(partner=acme)
    assert Notification.objects.filter(subscription__partner=acme).count() == 1
    _send_all()
    assert [m.to for m in mail.outbox] == [["acme@example.com"]]


@LOCMEM
def test_admin_subscription_without_address_mails_every_admin(cast):
    admin = cast.admin.user
    admin.email = "root@example.com"
    admin.save()
    _subscribe(email_to="")
    _notify()
    _send_all()
    assert [m.to for m in mail.outbox] == [["root@example.com"]]


@LOCMEM
def test_email_without_any_recipient_fails_at_once_and_is_recorded():
    Partner.objects.create(name="Quiet Co")
    quiet = Partner.objects.get(name="Quiet Co")
    _subscribe(scope="partner", partner=quiet, email_to="")
    _notify(partner=quiet)
    assert _send_all() == ["failed"]
    row = Notification.objects.get()
    assert row.status == "failed" and row.last_error == "no recipient address"


@LOCMEM
def test_digest_collects_events_into_one_message_a_day():
    _subscribe(digest=True, events_filter=["*"])
    records = [_notify("file.ready"), _notify("file.held"), _notify("delivery.failed")]
    assert set(Notification.objects.values_list("status", flat=True)) == {"collected"}
    assert _send_all() == []  # nothing goes out before the digest runs
    assert digest.send_digests() == 1
    assert _send_all() == ["sent"]
    [message] = mail.outbox
    assert message.subject == "[Portside] Daily digest: 3 event(s)"
    for record in records:
        assert record.subject in message.body
    assert set(Notification.objects.filter(event__isnull=False)
               .values_list("status", flat=True)) == {"digested"}
    assert digest.send_digests() == 0  # the same events never go twice


@LOCMEM
def test_digest_skips_a_switched_off_subscription():
    subscription = _subscribe(digest=True)
    _notify()
    subscriptions.set_enabled(subscription, False, origin=subscriptions.events.SYSTEM)
    assert digest.send_digests() == 0


def test_email_reaches_a_real_smtp_server_over_loopback():
    with smtp_receiver() as server:
        config = email_from_url(f"smtp://127.0.0.1:{server.port}", Path("/unused"))
        with override_settings(EMAIL_BACKEND=config.backend, EMAIL_HOST=config.host,
                               EMAIL_PORT=config.port, EMAIL_USE_TLS=config.use_tls,
                               EMAIL_USE_SSL=config.use_ssl, EMAIL_TIMEOUT=5,
                               DEFAULT_FROM_EMAIL="portside@example.com"):
            _subscribe(email_to="ops@example.com")
            _notify()
            assert _send_all() == ["sent"]
        assert server.arrived.wait(10)
    [received] = server.messages
    assert received.sender == "portside@example.com"
    assert received.recipients == ["ops@example.com"]
    parsed = email.message_from_bytes(received.data)
    assert parsed["Subject"] == "[Portside] file.ready happened"
    assert parsed["Auto-Submitted"] == "auto-generated"


def test_smtp_server_down_is_retried_not_lost():
    with smtp_receiver() as server:
        port = server.port
    with override_settings(EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
                           EMAIL_HOST="127.0.0.1", EMAIL_PORT=port, EMAIL_TIMEOUT=2):
        _subscribe()
        _notify()
        assert _send_all() == ["retry"]
    row = Notification.objects.get()
    assert row.status == "waiting" and row.next_attempt_at is not None
    assert "Connection" in row.last_error or "refused" in row.last_error.lower()


@pytest.mark.parametrize(("url", "expected"), [
    ("smtp+tls://bob:p%40ss@mail.example.com", ("mail.example.com", 587, "bob", "p@ss", True,
                                                False)),
    ("smtps://mail.example.com", ("mail.example.com", 465, "", "", False, True)),
    ("smtp://relay:2525", ("relay", 2525, "", "", False, False)),
])
def test_email_url_gives_the_smtp_settings(url, expected):
    config = email_from_url(url, Path("/outbox"))
    assert config.configured
    assert (config.host, config.port, config.user, config.password, config.use_tls,
            config.use_ssl) == expected


def test_no_email_url_writes_messages_to_the_outbox():
    config = email_from_url("", Path("/data/outbox"))
    assert not config.configured
    assert config.backend.endswith("filebased.EmailBackend")
    assert config.file_path == "/data/outbox"


@pytest.mark.parametrize("url", ["http://mail.example.com", "smtp://", "file://relative"])
def test_bad_email_url_is_refused(url):
    with pytest.raises(ImproperlyConfigured):
        email_from_url(url, Path("/outbox"))
