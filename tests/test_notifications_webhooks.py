"""Signed webhooks to a real HTTP receiver on loopback: signature, retries, giving up,
and file events from the pipeline."""

from __future__ import annotations

import importlib
import json
import time
from datetime import timedelta

import pytest
from django.apps import apps
from django.test import override_settings
from django.utils import timezone

from audit.events import Origin
from audit.models import AuditEvent
from notifications import outbox, services, signing, subscriptions
from notifications.models import Notification, Subscription
from tests.webhook_receiver import webhook_receiver
from transfers import pipeline, signals, uploads
from transfers.models import FileState, StoredFile

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = Origin(actor="test", protocol="test")
FAST = override_settings(NOTIFY_RETRY_BASE=0.2, NOTIFY_RETRY_MAX=10, NOTIFY_MAX_ATTEMPTS=3)


@pytest.fixture(autouse=True)
def _no_default_subscriptions() -> None:
    """Start from no subscriptions (the migration adds the admins' defaults to a fresh
    database; a test that wants them creates them)."""
    Subscription.objects.all().delete()


def _hook(url: str, events_filter: list[str] | None = None, **fields: object):
    return subscriptions.create_subscription(
        name="erp", scope="admin", channel="webhook", events_filter=events_filter or ["*"],
        url=url, **fields)  # type: ignore[arg-type]


def _notify(event: str = "delivery.failed"):
    return services.notify(event, subject="something happened", body="body",
                           data={"delivery": {"id": 7}})


def _try(notification_id: int) -> str | None:
    """Make one send attempt in-process, as the worker's task does."""
    row = outbox.claim(notification_id)
    return None if row is None else outbox.record(row, outbox.attempt(row))


def _wait_due(notification_id: int, timeout: float = 15) -> None:
    row = Notification.objects.get(pk=notification_id)
    assert row.next_attempt_at is not None
    while timezone.now() < row.next_attempt_at:
        time.sleep(0.02)
        assert timeout > 0
        timeout -= 0.02


def test_webhook_is_signed_over_timestamp_and_body():
    with webhook_receiver() as receiver:
        created = _hook(receiver.url)
        record = _notify()
        row = Notification.objects.get()
        assert _try(row.pk) == "sent"
        [request] = receiver.wait_for(1)
    headers = request.headers
    assert created.secret and created.secret.startswith("whsec_")
    assert headers["X-Portside-Signature"].startswith("sha256=")
    assert signing.verify(created.secret, request.body, headers["X-Portside-Timestamp"],
                          headers["X-Portside-Signature"])
    assert not signing.verify(created.secret, request.body + b" ",
                              headers["X-Portside-Timestamp"], headers["X-Portside-Signature"])
    assert not signing.verify("whsec_wrong", request.body, headers["X-Portside-Timestamp"],
                              headers["X-Portside-Signature"])
    body = json.loads(request.body)
    assert body == services.payload(record)
    assert headers["X-Portside-Event"] == "delivery.failed"
    assert headers["X-Portside-Event-Id"] == str(record.pk)
    assert Notification.objects.get().status == "sent"


def test_replayed_webhook_fails_verification_after_the_tolerance():
    with webhook_receiver() as receiver:
        created = _hook(receiver.url)
        _notify()
        _try(Notification.objects.get().pk)
        [request] = receiver.wait_for(1)
    stamp = request.headers["X-Portside-Timestamp"]
    signature = request.headers["X-Portside-Signature"]
    assert created.secret
    assert signing.verify(created.secret, request.body, stamp, signature, now=int(stamp) + 60)
    assert not signing.verify(created.secret, request.body, stamp, signature,
                              now=int(stamp) + signing.DEFAULT_TOLERANCE + 1)


def test_webhook_secret_is_stored_sealed():
    created = _hook("http://127.0.0.1:9/never")
    row = Subscription.objects.get()
    assert created.secret and created.secret not in row.secret_sealed
    assert row.secret_sealed.startswith("psec1:")
    assert subscriptions.webhook_secret(row) == created.secret


@FAST
def test_webhook_is_retried_with_growing_backoff_after_500s():
    with webhook_receiver(statuses=[500, 500, 204]) as receiver:
        _hook(receiver.url)
        _notify()
        pk = Notification.objects.get().pk
        delays = []
        for expected in ("retry", "retry"):
            before = timezone.now()
            assert _try(pk) == expected
            row = Notification.objects.get(pk=pk)
            assert row.status == "waiting" and "HTTP 500" in row.last_error
            assert row.response_status == 500
            assert row.next_attempt_at is not None
            delays.append((row.next_attempt_at - before).total_seconds())
            assert _try(pk) is None  # not due yet: nothing is sent early
            _wait_due(pk)
            assert pk in _swept()
        assert _try(pk) == "sent"
        assert len(receiver.wait_for(3)) == 3
    row = Notification.objects.get(pk=pk)
    assert row.status == "sent" and row.attempts == 3 and row.last_error == ""
    # Doubling with jitter: attempt n waits base * 2**(n-1) * [0.5, 1].
    assert 0.1 <= delays[0] <= 0.25
    assert 0.2 <= delays[1] <= 0.45


def _swept() -> list[int]:
    """Run the sweeper; return which notifications it re-sent."""
    before = timezone.now() - timedelta(milliseconds=1)
    outbox.sweep()
    return list(Notification.objects.filter(enqueued_at__gte=before).values_list("pk",
                                                                                 flat=True))


@FAST
def test_webhook_is_given_up_after_the_limit_and_recorded():
    with webhook_receiver(statuses=[500, 502, 503]) as receiver:
        _hook(receiver.url)
        _notify()
        pk = Notification.objects.get().pk
        outcomes = []
        for _ in range(3):
            outcomes.append(_try(pk))
            if outcomes[-1] == "retry":
                _wait_due(pk)
        assert len(receiver.wait_for(3)) == 3
    assert outcomes == ["retry", "retry", "failed"]
    row = Notification.objects.get(pk=pk)
    assert row.status == "failed" and row.attempts == 3
    assert row.last_error.startswith("gave up after 3 attempts; last error: HTTP 503")
    event = AuditEvent.objects.get(action="notification.failed")
    assert event.object_id == str(pk) and event.outcome == "failure"
    assert _try(pk) is None and pk not in _swept()  # a failed notification stays failed


@FAST
def test_unreachable_webhook_is_retried():
    _hook("http://127.0.0.1:9/closed-port")
    _notify()
    pk = Notification.objects.get().pk
    assert _try(pk) == "retry"
    assert "Connection refused" in Notification.objects.get(pk=pk).last_error


def test_redirects_are_not_followed():
    with webhook_receiver(statuses=[302]) as receiver:
        _hook(receiver.url)
        _notify()
        assert _try(Notification.objects.get().pk) == "retry"
        assert len(receiver.wait_for(1)) == 1
    assert "HTTP 302" in Notification.objects.get().last_error


def test_switched_off_subscription_stops_its_retries():
    created = _hook("http://127.0.0.1:9/closed-port")
    _notify()
    pk = Notification.objects.get().pk
    subscriptions.set_enabled(created.subscription, False, origin=ORIGIN)
    assert _try(pk) == "failed"
    assert Notification.objects.get(pk=pk).last_error == "subscription switched off"


def test_lost_message_is_resent_by_the_sweeper():
    _hook("http://127.0.0.1:9/x")
    _notify()
    row = Notification.objects.get()
    assert row.pk not in _swept()  # just enqueued: not yet presumed lost
    Notification.objects.filter(pk=row.pk).update(
        enqueued_at=timezone.now() - timedelta(hours=1))
    assert row.pk in _swept()


def test_dead_workers_send_is_redone_after_its_lease():
    _hook("http://127.0.0.1:9/x")
    _notify()
    row = outbox.claim(Notification.objects.get().pk)
    assert row is not None and outbox.claim(row.pk) is None  # leased: nobody else sends it
    Notification.objects.filter(pk=row.pk).update(lease_until=timezone.now() - timedelta(1))
    assert row.pk in _swept()
    again = outbox.claim(row.pk)
    assert again is not None and again.attempts == 2
    assert outbox.record(row, outbox.attempt(row)) == "lost"  # the old owner's result


def _store(user, path: str, data: bytes) -> StoredFile:
    upload = uploads.begin_upload(user, path, origin=ORIGIN)
    upload.write(data)
    return upload.finish()


@override_settings(SCAN_MODE="off")
def test_file_becoming_ready_sends_file_ready_to_a_subscribed_webhook(cast):
    with webhook_receiver() as receiver:
        created = _hook(receiver.url, events_filter=["file.ready"])
        stored = _store(cast.partner.user, "/orders.csv", b"a;b\n")
        pipeline.advance(stored.pk)
        stored.refresh_from_db()
        assert stored.state == FileState.READY
        row = Notification.objects.get()
        assert _try(row.pk) == "sent"
        [request] = receiver.wait_for(1)
    assert created.secret
    assert signing.verify(created.secret, request.body, request.headers["X-Portside-Timestamp"],
                          request.headers["X-Portside-Signature"])
    body = json.loads(request.body)
    assert body["event"] == "file.ready"
    assert body["partner"]["name"] == "Acme Corp"
    assert body["data"]["file"] == {**body["data"]["file"], "id": stored.pk,
                                    "path": "/orders.csv", "sha256": stored.sha256,
                                    "state": "ready", "owner": "alice"}
    assert "storage_path" not in body["data"]["file"]


def test_quarantined_file_alerts_admins_out_of_the_box(cast):
    defaults = importlib.import_module("notifications.migrations.0002_default_admin_alerts")
    defaults.create(apps, None)
    stored = _store(cast.partner.user, "/evil.bin", b"x")
    StoredFile.objects.filter(pk=stored.pk).update(state=FileState.INFECTED,
                                                   scan_signature="Eicar-Test-Signature")
    stored.refresh_from_db()
    signals.file_quarantined.send(sender=StoredFile, stored_file=stored)
    signals.file_stopped.send(sender=StoredFile, stored_file=stored, reason="scanner down")
    urgent = Notification.objects.get(subscription__name="Admins: urgent alerts")
    assert urgent.event is not None and urgent.event.event == "file.quarantined"
    assert urgent.status == "pending"
    assert "Eicar-Test-Signature" in urgent.event.body
    held = Notification.objects.get(subscription__name__startswith="Admins: daily digest")
    assert held.status == "collected"


@pytest.mark.slow
def test_real_worker_delivers_file_ready_webhook(cast, start_worker):
    with webhook_receiver() as receiver:
        created = _hook(receiver.url, events_filter=["file.ready"])
        start_worker(MFT_SCAN="off")
        stored = _store(cast.partner.user, "/live.csv", b"x;y\n")
        [request] = receiver.wait_for(1, timeout=60)
    assert created.secret
    assert signing.verify(created.secret, request.body, request.headers["X-Portside-Timestamp"],
                          request.headers["X-Portside-Signature"])
    assert json.loads(request.body)["data"]["file"]["id"] == stored.pk
    deadline = time.monotonic() + 10
    while Notification.objects.get().status != "sent":
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_webhook_secrets_are_resealed_under_a_new_master_key(monkeypatch):
    from deliveries import secrets as sealing
    from transfers import atrest, storage

    created = _hook("http://127.0.0.1:9/x")
    old_key = storage.master_key()
    new_key = atrest.MasterKey.generate()
    monkeypatch.setattr(storage, "master_key", lambda: new_key)
    monkeypatch.setattr(storage, "known_keys",
                        lambda: {new_key.key_id: new_key, old_key.key_id: old_key})
    signals.master_key_rotated.send(sender=None, key_id=new_key.key_id)
    row = Subscription.objects.get()
    assert sealing.key_id_of(row.secret_sealed) == new_key.key_id
    assert subscriptions.webhook_secret(row) == created.secret
    assert subscriptions.reseal_secrets() == 0


@pytest.mark.slow
def test_real_worker_holding_a_file_sends_the_file_held_alert(cast, start_worker):
    with webhook_receiver() as receiver:
        created = _hook(receiver.url, events_filter=["file.held"])
        start_worker(MFT_CLAMD="")  # scanning on but no scanner: the pipeline holds the file
        stored = _store(cast.partner.user, "/held.csv", b"x;y\n")
        [request] = receiver.wait_for(1, timeout=60)
    assert created.secret
    assert signing.verify(created.secret, request.body, request.headers["X-Portside-Timestamp"],
                          request.headers["X-Portside-Signature"])
    body = json.loads(request.body)
    assert body["event"] == "file.held"
    assert body["data"]["file"]["id"] == stored.pk and body["data"]["file"]["state"] == "held"
    assert "no virus scanner configured" in body["data"]["file"]["reason"]
