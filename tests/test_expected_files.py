"""Expected files: an alert at the deadline when nothing arrived, closed by a late file, none
when the file came in time; notified to a real webhook listener; configured over the API."""

from __future__ import annotations

import json
import zoneinfo
from datetime import datetime, time, timedelta

import pytest
from django.utils import timezone

from audit.events import Origin
from audit.models import AuditEvent
from expected import schedule, services
from expected.models import Deadline, ExpectedFile
from notifications import outbox, signing, subscriptions
from notifications.models import Notification, OutboundEvent, Subscription
from tests.api_client import client_for, fresh_throttles, make_ready, make_user, store  # noqa: F401
from tests.webhook_receiver import webhook_receiver

pytestmark = pytest.mark.django_db(transaction=True)

ADMIN = Origin(actor="root-admin", protocol="test")
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
EVERY_DAY = [0, 1, 2, 3, 4, 5, 6]


@pytest.fixture(autouse=True)
def _no_default_subscriptions() -> None:
    Subscription.objects.all().delete()


def _expect(cast, due: datetime, **fields: object) -> ExpectedFile:
    """Expect alice's partner to deliver /in/orders-*.csv by `due`'s Berlin time every day,
    configured an hour before `due` (so `due` is its first deadline)."""
    local = due.astimezone(BERLIN)
    expected = services.create_expected(
        name="daily orders", partner=cast.partner.user.partner, folder="/in",
        filename_pattern="orders-*.csv", deadline=time(local.hour, local.minute),
        time_zone="Europe/Berlin", origin=ADMIN, **{"weekdays": EVERY_DAY, **fields})
    ExpectedFile.objects.filter(pk=expected.pk).update(
        created_at=due - timedelta(hours=1))
    expected.refresh_from_db()
    return expected


def _minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def _send(event: str) -> None:
    """Send the event's webhook notification in-process, as the worker's task does."""
    row = Notification.objects.get(event__event=event)
    claimed = outbox.claim(row.pk)
    assert claimed is not None
    assert outbox.record(claimed, outbox.attempt(claimed)) == "sent"


def test_deadline_is_computed_in_the_expectations_time_zone(cast):
    expected = _expect(cast, datetime(2026, 7, 1, 9, 30, tzinfo=BERLIN))
    summer = schedule.due_on(expected, datetime(2026, 7, 1).date())
    winter = schedule.due_on(expected, datetime(2026, 12, 1).date())
    assert summer is not None and summer.isoformat() == "2026-07-01T07:30:00+00:00"
    assert winter is not None and winter.isoformat() == "2026-12-01T08:30:00+00:00"


def test_deadline_only_on_the_given_weekdays(cast):
    expected = _expect(cast, datetime(2026, 7, 1, 9, 30, tzinfo=BERLIN), weekdays=["mon"])
    monday, tuesday = datetime(2026, 6, 29).date(), datetime(2026, 6, 30).date()
    assert schedule.due_on(expected, monday) is not None
    assert schedule.due_on(expected, tuesday) is None


def test_missing_file_raises_an_alert_at_the_deadline_to_a_webhook(cast):
    due = _minute(timezone.now() - timedelta(hours=2))
    expected = _expect(cast, due)
    with webhook_receiver() as receiver:
        hook = subscriptions.create_subscription(
            name="ops", scope="admin", channel="webhook", events_filter=["expected_file.*"],
            url=receiver.url)
        assert services.check_deadlines(now=due - timedelta(minutes=1)) == []
        assert not Deadline.objects.filter(due_at=due).exists()
        [alert] = services.check_deadlines(now=due + timedelta(minutes=1))
        _send("expected_file.missing")
        [request] = receiver.wait_for(1)
    assert alert.due_at == due and alert.status == Deadline.Status.MISSING
    assert hook.secret and signing.verify(hook.secret, request.body,
                                          request.headers["X-Portside-Timestamp"],
                                          request.headers["X-Portside-Signature"])
    body = json.loads(request.body)
    assert body["event"] == "expected_file.missing"
    assert body["partner"]["name"] == "Acme Corp"
    assert body["data"]["expected_file"]["id"] == expected.pk
    assert body["data"]["expected_file"]["due_at"] == due.isoformat()
    audit = AuditEvent.objects.get(action="expected_file.missing")
    assert audit.object_id == str(expected.pk) and audit.details["alert"] is True
    assert services.open_alerts() == [alert]


def test_second_check_raises_no_second_alert(cast):
    due = _minute(timezone.now() - timedelta(hours=2))
    _expect(cast, due)
    assert len(services.check_deadlines(now=due + timedelta(minutes=1))) == 1
    assert services.check_deadlines(now=due + timedelta(minutes=2)) == []
    assert OutboundEvent.objects.filter(event="expected_file.missing").count() == 1


def test_late_file_closes_the_alert(cast, settings):
    due = _minute(timezone.now() - timedelta(hours=2))
    _expect(cast, due)
    [alert] = services.check_deadlines(now=due + timedelta(minutes=1))
    stored = make_ready(store(cast.partner.user, "/in/orders-1.csv", b"1;2\n"), settings)
    alert.refresh_from_db()
    assert alert.status == Deadline.Status.LATE
    assert alert.stored_file_id == stored.pk and alert.arrived_at == stored.ready_at
    assert alert.closed_at is not None
    assert services.open_alerts() == []
    late = OutboundEvent.objects.get(event="expected_file.late")
    assert late.data["expected_file"]["file_id"] == stored.pk
    assert AuditEvent.objects.filter(action="expected_file.late").count() == 1


def test_file_in_time_means_no_alert(cast, settings):
    due = _minute(timezone.now() + timedelta(hours=2))
    _expect(cast, due)
    make_ready(store(cast.partner.user, "/in/orders-2.csv", b"3;4\n"), settings)
    assert services.check_deadlines(now=due + timedelta(minutes=1)) == []
    met = Deadline.objects.get(due_at=due)
    assert met.status == Deadline.Status.MET and met.file_path == "/in/orders-2.csv"
    assert not OutboundEvent.objects.filter(event__startswith="expected_file.").exists()
    assert not AuditEvent.objects.filter(action__startswith="expected_file.missing").exists()


def test_file_elsewhere_or_from_another_partner_does_not_count(cast, settings):
    due = _minute(timezone.now() + timedelta(hours=2))
    _expect(cast, due)
    make_ready(store(cast.partner.user, "/out/orders-3.csv", b"x"), settings)
    make_ready(store(cast.partner.user, "/in/invoice.csv", b"x"), settings)
    make_ready(store(cast.outsider.user, "/in/orders-4.csv", b"x"), settings)
    [alert] = services.check_deadlines(now=due + timedelta(minutes=1))
    assert alert.status == Deadline.Status.MISSING


def test_file_before_the_previous_deadline_does_not_count(cast, settings):
    due = _minute(timezone.now() + timedelta(hours=2))
    _expect(cast, due)
    make_ready(store(cast.partner.user, "/in/orders-5.csv", b"x"), settings)
    # A day later: yesterday's file served yesterday's deadline, not today's.
    services.check_deadlines(now=due + timedelta(minutes=1))
    [alert] = services.check_deadlines(now=due + timedelta(days=1, minutes=1))
    assert alert.due_at == due + timedelta(days=1)


def test_api_admin_creates_and_reader_lists_expected_files(cast):
    admin_client = client_for(cast.admin.user, "admin")
    response = admin_client.post("/api/v1/expected-files/", {
        "name": "payroll", "partner": cast.partner.user.partner_id, "folder": "/in",
        "filename_pattern": "pay-*.xml", "deadline": "07:45", "time_zone": "Europe/Paris",
        "weekdays": ["mon", "fri"]}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["weekdays"] == [0, 4]
    assert AuditEvent.objects.filter(action="expected_file.create").exists()
    pk = response.json()["id"]
    changed = admin_client.patch(f"/api/v1/expected-files/{pk}/", {"deadline": "08:00"},
                                 format="json")
    assert changed.status_code == 200 and changed.json()["deadline"] == "08:00:00"
    reader = client_for(make_user("reader", "auditor"), "read")
    assert [row["name"] for row in reader.get("/api/v1/expected-files/").json()["results"]] \
        == ["payroll"]
    assert reader.get(f"/api/v1/expected-files/{pk}/deadlines/").status_code == 200
    refused = reader.patch(f"/api/v1/expected-files/{pk}/", {"enabled": False}, format="json")
    assert refused.status_code == 403
    assert admin_client.delete(f"/api/v1/expected-files/{pk}/").status_code == 204
    assert not ExpectedFile.objects.exists()


def test_api_refuses_unknown_time_zone_and_weekday(cast):
    admin_client = client_for(cast.admin.user, "admin")
    base = {"name": "x", "partner": cast.partner.user.partner_id, "deadline": "07:45"}
    zone = admin_client.post("/api/v1/expected-files/", {**base, "time_zone": "Mars/Base"},
                             format="json")
    day = admin_client.post("/api/v1/expected-files/", {**base, "weekdays": ["someday"]},
                            format="json")
    assert zone.status_code == 400 and "time zone" in zone.content.decode()
    assert day.status_code == 400 and "weekday" in day.content.decode()


def test_partner_user_sees_only_its_partners_expected_files(cast):
    services.create_expected(name="acme", partner=cast.partner.user.partner,
                             deadline=time(9, 0), origin=ADMIN)
    services.create_expected(name="other", partner=cast.outsider.user.partner,
                             deadline=time(9, 0), origin=ADMIN)
    client = client_for(cast.partner.user, "read")
    names = [row["name"] for row in client.get("/api/v1/expected-files/").json()["results"]]
    assert names == ["acme"]
    created = client.post("/api/v1/expected-files/", {
        "name": "mine", "partner": cast.partner.user.partner_id, "deadline": "09:00"},
        format="json")
    assert created.status_code == 403
