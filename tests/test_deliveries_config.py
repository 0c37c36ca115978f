"""Endpoints, routes and pulls: secrets sealed, TLS verification required, schedules in
beat's database, windows, receipts, re-sends and the read-only admin."""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets as randomness

import pytest
from django.db import IntegrityError, connection

from accounts.models import Partner
from audit.events import Origin
from audit.models import AuditEvent
from deliveries import connection as endpoint_connection
from deliveries import receipts, routing, runner, secrets, services, windows
from deliveries.models import Delivery, PartnerEndpoint
from mft.errors import Conflict, InvalidInput
from tests.deliveries_support import (
    arrival_route,
    partner_named,
    stock_endpoint,
    store,
)
from tests.remote_ftps import make_certificate

pytest_plugins = ["tests.deliveries_support"]  # its fixtures: broker, stock, bank…

ADMIN = Origin(actor="root-admin", protocol="test")
PIN = "0f" * 32


ENDPOINT_PASSWORD = "Endpoint-" + randomness.token_urlsafe(12)
OTHER_PASSWORD = "Other-" + randomness.token_urlsafe(12)


def endpoint(**overrides: object) -> PartnerEndpoint:
    values: dict = dict(partner=partner_named("Bank Ltd"), name="bank", host="ftp.bank.example",
                        username="acme", password=ENDPOINT_PASSWORD, pinned_sha256=PIN)
    values.update(overrides)
    return services.create_endpoint(**values)


def column(name: str, pk: int) -> str:
    """Read a column the way someone with database access would."""
    assert name in ("password_secret", "client_key_secret")
    with connection.cursor() as cursor:
        sql = f"SELECT {name} FROM deliveries_partnerendpoint WHERE id = %s"  # noqa: S608
        cursor.execute(sql, [pk])
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_endpoint_secrets_are_not_readable_in_the_database(tmp_path):
    client = make_certificate(tmp_path, "our-client")
    made = endpoint(client_cert_pem=client.cert_pem, client_key_pem=client.key_pem)
    stored_password = column("password_secret", made.pk)
    stored_key = column("client_key_secret", made.pk)
    for plain, sealed in ((ENDPOINT_PASSWORD, stored_password), (client.key_pem, stored_key)):
        assert sealed.startswith("psec1:")
        assert plain not in sealed
        assert plain.encode() not in base64.b64decode(sealed[len("psec1:"):])
    server = endpoint_connection.remote_server(PartnerEndpoint.objects.get(pk=made.pk))
    assert server.password == ENDPOINT_PASSWORD and server.client_key_pem == client.key_pem
    assert ENDPOINT_PASSWORD not in repr(server)
    created = AuditEvent.objects.get(action="endpoint.create")
    assert ENDPOINT_PASSWORD not in json.dumps(created.details)
    assert created.details["after"]["password"] is True


@pytest.mark.django_db(transaction=True)
def test_a_sealed_secret_moved_to_another_row_or_column_does_not_open():
    first = endpoint()
    second = endpoint(name="other", password=OTHER_PASSWORD)
    PartnerEndpoint.objects.filter(pk=second.pk).update(password_secret=first.password_secret)
    second.refresh_from_db()
    with pytest.raises(secrets.SecretUnavailable):
        endpoint_connection.remote_server(second)
    with pytest.raises(secrets.SecretUnavailable):
        secrets.unseal(first.password_secret,
                       context=endpoint_connection.secret_context(first, "client_key_secret"))


@pytest.mark.django_db(transaction=True)
def test_an_endpoint_must_verify_tls_by_ca_bundle_or_pin():
    with pytest.raises(InvalidInput, match="never skipped"):
        endpoint(pinned_sha256="")
    with pytest.raises(InvalidInput, match="64 hex"):
        endpoint(pinned_sha256="abcd")
    with pytest.raises(IntegrityError):
        PartnerEndpoint.objects.create(partner=partner_named("Bank Ltd"), name="raw",
                                       host="h", username="u", password_secret="psec1:x")


@pytest.mark.django_db(transaction=True)
def test_an_endpoint_needs_credentials_and_a_matching_client_key(tmp_path):
    one, two = make_certificate(tmp_path, "one"), make_certificate(tmp_path, "two")
    with pytest.raises(InvalidInput, match="password, a client certificate"):
        endpoint(password="")
    with pytest.raises(InvalidInput, match="does not belong"):
        endpoint(client_cert_pem=one.cert_pem, client_key_pem=two.key_pem)


@pytest.mark.django_db(transaction=True)
def test_a_pinned_fingerprint_is_normalised():
    made = endpoint(pinned_sha256=":".join(["AB"] * 32))
    assert made.pinned_sha256 == "ab" * 32


@pytest.mark.django_db(transaction=True)
def test_scheduled_route_is_a_periodic_task_in_beats_database(cast):
    from django_celery_beat.models import PeriodicTask
    from django_celery_beat.schedulers import DatabaseScheduler

    from mft.celery import app

    route = services.create_route(name="nightly", endpoint=endpoint(), trigger="schedule",
                                  cron="30 2 * * 1-5", time_zone="Europe/Paris",
                                  source_user=cast.partner.user)
    task = PeriodicTask.objects.get(name=f"deliveries.route.{route.pk}")
    assert (task.task, json.loads(task.args), task.enabled) == (
        "deliveries.run_route", [route.pk], True)
    crontab = task.crontab
    assert (crontab.minute, crontab.hour, crontab.day_of_week, str(crontab.timezone)) == (
        "30", "2", "1-5", "Europe/Paris")
    entry = DatabaseScheduler.Entry(task, app=app)  # what beat builds from the row
    assert (entry.task, entry.args) == ("deliveries.run_route", [route.pk])
    assert (entry.schedule.minute, entry.schedule.hour) == ({30}, {2})
    services.update_route(route, origin=ADMIN, enabled=False)
    assert not PeriodicTask.objects.get(name=task.name).enabled
    assert services.remove_route(route, origin=ADMIN) is None
    assert not PeriodicTask.objects.filter(name=task.name).exists()


@pytest.mark.django_db(transaction=True)
def test_route_refuses_junk_cron_and_a_missing_source(cast):
    with pytest.raises(InvalidInput, match="cron"):
        services.create_route(name="bad", endpoint=endpoint(name="e1"), trigger="schedule",
                              cron="61 * * * *", source_user=cast.partner.user)
    made = endpoint()
    with pytest.raises(InvalidInput, match="source"):
        services.create_route(name="everything", endpoint=made)
    with pytest.raises(InvalidInput, match="no PGP key"):
        services.create_route(name="pgp", endpoint=made, pgp_encrypt=True,
                              source_user=cast.partner.user)


def test_delivery_window_opens_and_spans_midnight():
    utc = dt.UTC
    nine, five = dt.time(9), dt.time(17)
    at = dt.datetime(2026, 3, 2, 8, 0, tzinfo=utc)
    assert windows.next_opening(nine, five, "UTC", at) == at.replace(hour=9)
    assert windows.next_opening(nine, five, "UTC", at.replace(hour=12)) is None
    assert windows.next_opening(nine, five, "UTC", at.replace(hour=18)) == dt.datetime(
        2026, 3, 3, 9, 0, tzinfo=utc)
    night = (dt.time(22), dt.time(6))
    assert windows.next_opening(*night, "UTC", at.replace(hour=23)) is None
    assert windows.next_opening(*night, "UTC", at.replace(hour=3)) is None
    assert windows.next_opening(*night, "UTC", at.replace(hour=7)) == at.replace(hour=22)
    # 09:00 in New York is 14:00 UTC in March after the clocks changed (EDT, UTC-4: 13:00).
    assert windows.next_opening(nine, five, "America/New_York", at.replace(day=10)) == (
        dt.datetime(2026, 3, 10, 13, 0, tzinfo=utc))


@pytest.mark.parametrize(("pattern", "path", "recursive", "expected"), [
    ("*.csv", "/out/a.csv", False, True),
    ("*.csv", "/out/sub/a.csv", False, False),
    ("*.csv", "/out/sub/a.csv", True, True),
    ("inv_??.txt", "/out/inv_01.txt", False, True),
    ("inv_??.txt", "/out/inv_001.txt", False, False),
    ("[!x]*.dat", "/out/a1.dat", False, True),
    ("[!x]*.dat", "/out/x1.dat", False, False),
    ("a+b (1).csv", "/out/a+b (1).csv", False, True),
    ("*.csv", "/outbox/a.csv", False, False),
])
def test_route_path_filter_agrees_with_fnmatch(pattern, path, recursive, expected):
    import re

    assert bool(re.search(routing.path_regex("/out", pattern, recursive=recursive), path)) is (
        expected)


@pytest.mark.django_db(transaction=True)
def test_route_filter_runs_in_the_database(cast):
    made = endpoint()
    route = services.create_route(name="csv", endpoint=made, source_user=cast.partner.user,
                                  source_folder="/out", filename_pattern="*.csv")
    wanted = store(cast.partner.user, "/out/a.csv", b"a")
    store(cast.partner.user, "/out/a.txt", b"b")
    store(cast.partner.user, "/a.csv", b"c")
    store(cast.outsider.user, "/out/b.csv", b"d")
    assert [f.pk for f in routing.candidates(route)] == [wanted.pk]


@pytest.mark.django_db(transaction=True)
def test_route_by_source_partner_takes_its_users_files_in_the_folder_and_below(cast):
    route = services.create_route(name="partner-wide", endpoint=endpoint(),
                                  source_partner=cast.partner.user.partner,
                                  source_folder="/out", include_subfolders=True,
                                  filename_pattern="*.csv")
    wanted = [store(cast.partner.user, "/out/a.csv", b"a"),
              store(cast.partner.user, "/out/2026/b.csv", b"b")]
    store(cast.partner.user, "/outbox/c.csv", b"c")
    store(cast.outsider.user, "/out/d.csv", b"d")  # another partner's user
    store(cast.partner.user, "/out/not-ready.csv", b"e", ready=False)
    assert [f.pk for f in routing.candidates(route)] == [f.pk for f in wanted]
    assert [routing.matches(route, f) for f in wanted] == [True, True]


def test_backoff_doubles_with_jitter_up_to_the_limit(settings):
    settings.DELIVERY_RETRY_BASE, settings.DELIVERY_RETRY_MAX = 30, 3600
    for attempts, ceiling in ((1, 30), (2, 60), (3, 120), (7, 1920), (8, 3600), (40, 3600)):
        delays = {runner.backoff(attempts) for _ in range(200)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (attempts, delays)
        assert len(delays) > 100  # jittered, so retries of many deliveries spread out


@pytest.mark.django_db(transaction=True)
def test_receipts_export_and_resend_is_a_new_audited_delivery(cast, stock, broker):
    server = stock()
    made = stock_endpoint(server, partner_named("Bank Ltd"))
    arrival_route(made, cast.partner.user)
    stored = store(cast.partner.user, "/r.csv", b"receipt")
    [delivery] = routing.route_file(stored.pk)
    broker.drain()
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.DELIVERED
    assert routing.route_file(stored.pk) == []  # once per route
    again = services.resend(delivery, origin=ADMIN)
    assert again.resend_of_id == delivery.pk and again.requested_by == "root-admin"
    broker.drain()
    again.refresh_from_db()
    assert again.status == Delivery.Status.DELIVERED
    event = AuditEvent.objects.get(action="delivery.resend")
    assert event.actor == "root-admin" and event.details["original"] == delivery.pk
    rows = receipts.search(partner_id=made.partner_id)
    csv_text = "".join(receipts.export(rows, fmt="csv"))
    assert csv_text.splitlines()[0].startswith("id,direction,status")
    assert len(csv_text.splitlines()) == 3 and stored.sha256 in csv_text
    lines = [json.loads(line) for line in receipts.export(rows, fmt="jsonl")]
    assert {r["sent_sha256"] for r in lines} == {stored.sha256}
    assert receipts.attempts(delivery)[0]["outcome"] == "success"


@pytest.mark.django_db(transaction=True)
def test_cancel_and_retry_only_touch_waiting_deliveries(cast, stock, broker):
    server = stock()
    made = stock_endpoint(server, partner_named("Bank Ltd"))
    arrival_route(made, cast.partner.user)
    [delivery] = routing.route_file(store(cast.partner.user, "/c.csv", b"c").pk)
    services.retry_now(delivery, origin=ADMIN)
    cancelled = services.cancel(delivery, origin=ADMIN)
    assert cancelled.status == Delivery.Status.CANCELLED
    with pytest.raises(Conflict):
        services.cancel(delivery, origin=ADMIN)
    broker.drain()  # the queued message finds nothing to do
    assert server.commands == []


@pytest.mark.django_db(transaction=True)
def test_a_suspended_partner_pauses_its_deliveries(cast, stock, broker):
    server = stock()
    made = stock_endpoint(server, partner_named("Bank Ltd"))
    arrival_route(made, cast.partner.user)
    [delivery] = routing.route_file(store(cast.partner.user, "/p.csv", b"p").pk)
    Partner.objects.filter(pk=made.partner_id).update(status=Partner.Status.SUSPENDED)
    assert runner.claim(delivery.pk) is None
    Delivery.objects.update(enqueued_at=None)  # as if its message was lost long ago
    broker.sent.clear()
    assert runner.sweep() == 0  # the sweeper leaves paused deliveries alone
    Partner.objects.filter(pk=made.partner_id).update(status=Partner.Status.ACTIVE)
    assert runner.sweep() == 1
    broker.drain()
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.DELIVERED


@pytest.mark.django_db(transaction=True)
def test_the_admin_shows_endpoints_without_their_secrets(cast, client):
    from tests.dashboard.conftest import verified_session

    made = endpoint()
    verified_session(client, cast.admin.user)  # the admin site needs password and TOTP
    page = client.get(f"/admin/deliveries/partnerendpoint/{made.pk}/change/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "ftp.bank.example" in body
    assert "psec1:" not in body and ENDPOINT_PASSWORD not in body and "password_secret" not in body
    assert client.get("/admin/deliveries/delivery/").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_inspect_certificate_reports_the_fingerprint_to_pin(stock):
    server = stock()
    seen = services.inspect_certificate("127.0.0.1", server.port, implicit=False)
    assert seen["sha256"] == server.certificate.sha256
    assert "partner-ftps" in seen["subject"]
    assert server.commands == ["AUTH"]


@pytest.mark.django_db(transaction=True)
def test_check_endpoint_logs_in_and_lists(stock):
    server = stock()
    (server.root / "x").write_text("x")
    report = services.check_endpoint(stock_endpoint(server, partner_named("Bank Ltd")))
    assert report["ok"] is True and report["files"] == 1
    assert report["tls"]["version"] in ("TLSv1.2", "TLSv1.3")


@pytest.mark.django_db(transaction=True)
def test_secrets_are_resealed_under_a_new_master_key(monkeypatch):
    from transfers import atrest, storage

    made = endpoint()
    old_key = storage.master_key()
    new_key = atrest.MasterKey.generate()
    monkeypatch.setattr(storage, "master_key", lambda: new_key)
    monkeypatch.setattr(storage, "known_keys",
                        lambda: {new_key.key_id: new_key, old_key.key_id: old_key})
    assert services.reseal_secrets() == 1
    made.refresh_from_db()
    assert secrets.key_id_of(made.password_secret) == new_key.key_id
    assert endpoint_connection.remote_server(made).password == ENDPOINT_PASSWORD



@pytest.mark.django_db(transaction=True)
def test_sweeper_routes_a_file_whose_message_was_lost_but_not_one_from_a_pause(
        cast, stock, broker, settings):
    import time

    settings.DELIVERY_PENDING_GRACE = 1
    server = stock()
    route = arrival_route(stock_endpoint(server, partner_named("Bank Ltd")), cast.partner.user)
    services.update_route(route, origin=ADMIN, enabled=False)
    store(cast.partner.user, "/paused.csv", b"arrived while the route was off")
    services.update_route(route, origin=ADMIN, enabled=True)
    store(cast.partner.user, "/lost.csv", b"its routing message never came")
    assert runner.sweep() == 0  # not settled yet: the message may still be on its way
    time.sleep(1.1)
    assert runner.sweep() == 1
    broker.drain()
    assert list(Delivery.objects.values_list("local_path", "status")) == [
        ("/lost.csv", "delivered")]
    assert runner.sweep() == 0
