"""Deliveries waiting for a free connection to their endpoint go out over the session of the
one that finished (deliveries.session): one login for a backlog of files, a new one when the
session cannot carry the next delivery (the server dropped it, the endpoint's settings
changed, the limit was reached), none after a failure, none taken on by a worker told to
stop, and deliveries with a message on its way left to it."""

from __future__ import annotations

import datetime as dt

import pytest

from deliveries import routing, runner
from deliveries.models import Delivery, PartnerEndpoint
from tests.deliveries_support import arrival_route, partner_named, stock_endpoint, store
from tests.remote_ftps import Behaviour, file_sha256

pytestmark = pytest.mark.django_db(transaction=True)
pytest_plugins = ["tests.deliveries_support"]  # its fixtures: broker, stock, cast…


def _waiting_for_room(cast, server, count: int) -> list[Delivery]:
    """Route files to a one-connection endpoint whose connection is taken: all but the first
    find no room and wait without a message. Then the connection is free again."""
    from django.utils import timezone

    endpoint = stock_endpoint(server, partner_named("Bank Ltd"), remote_folder="/",
                              max_connections=1)
    arrival_route(endpoint, cast.partner.user)
    rows = [routing.route_file(store(cast.partner.user, f"/{i}.csv", b"a;b\n" * (i + 1)).pk)[0]
            for i in range(count)]
    Delivery.objects.filter(pk=rows[0].pk).update(
        status=Delivery.Status.RUNNING, lease_owner="other:1",
        lease_until=timezone.now() + dt.timedelta(minutes=5))
    for row in rows[1:]:
        assert runner.claim(row.pk) is None  # no room: its message is dropped
    Delivery.objects.filter(pk=rows[0].pk).update(status=Delivery.Status.PENDING,
                                                  lease_owner="", lease_until=None)
    return rows


def _status(rows: list[Delivery]) -> list[str]:
    return [Delivery.objects.get(pk=row.pk).status for row in rows]


def _logins(server) -> int:
    return sum(1 for line in server.lines if line.startswith("USER "))


def _reused(rows: list[Delivery]) -> list[bool]:
    return [Delivery.objects.get(pk=row.pk).attempts_log.get().details["tls"]["session_reused"]
            for row in rows]


def _between_deliveries(monkeypatch, action) -> None:
    """Run `action` once, after the first delivery is recorded, before the next is taken."""
    record, done = runner._record, list[bool]()

    def record_then_act(*args, **kwargs) -> None:
        record(*args, **kwargs)
        if not done:
            done.append(True)
            action()

    monkeypatch.setattr(runner, "_record", record_then_act)


def test_deliveries_waiting_for_room_go_out_over_the_finished_ones_session(
        cast, stock, broker):
    server = stock()
    rows = _waiting_for_room(cast, server, 3)
    broker.sent.clear()
    runner.run(rows[0].pk)
    assert _status(rows) == [Delivery.Status.DELIVERED] * 3
    for row in rows:
        row.refresh_from_db()
        assert file_sha256(server.root / row.remote_path.lstrip("/")) == row.sent_sha256
    assert _logins(server) == 1
    assert server.commands.count("STOR") == 3 and server.commands.count("QUIT") == 1
    assert _reused(rows) == [False, True, True]
    assert broker.sent == []  # nobody else was sent to take them


def test_deliveries_with_a_message_on_its_way_are_left_to_it(cast, stock, broker):
    server = stock()
    endpoint = stock_endpoint(server, partner_named("Bank Ltd"), remote_folder="/")
    arrival_route(endpoint, cast.partner.user)
    rows = [routing.route_file(store(cast.partner.user, f"/{i}.csv", b"x").pk)[0]
            for i in range(2)]
    runner.run(rows[0].pk)
    assert _status(rows) == [Delivery.Status.DELIVERED, Delivery.Status.PENDING]
    broker.drain()
    assert _status(rows) == [Delivery.Status.DELIVERED] * 2
    assert _logins(server) == 2


def test_a_session_carries_at_most_the_configured_number_of_deliveries(
        cast, stock, broker, settings):
    settings.DELIVERY_SESSION_FILES = 2
    server = stock()
    rows = _waiting_for_room(cast, server, 3)
    broker.sent.clear()
    runner.run(rows[0].pk)
    assert _status(rows) == [Delivery.Status.DELIVERED] * 2 + [Delivery.Status.PENDING]
    assert broker.sent == [("deliveries.run_delivery", [rows[2].pk])]  # sent, not stranded
    broker.drain()
    assert _status(rows) == [Delivery.Status.DELIVERED] * 3
    assert _logins(server) == 2
    assert _reused(rows) == [False, True, False]


def test_one_session_per_delivery_when_the_limit_is_one(cast, stock, broker, settings):
    settings.DELIVERY_SESSION_FILES = 1
    server = stock()
    rows = _waiting_for_room(cast, server, 3)
    broker.sent.clear()
    runner.run(rows[0].pk)
    broker.drain()
    assert _status(rows) == [Delivery.Status.DELIVERED] * 3
    assert _logins(server) == 3 and server.commands.count("QUIT") == 3
    assert _reused(rows) == [False, False, False]


def test_a_session_the_server_dropped_is_replaced_by_a_new_login(
        cast, stock, broker, monkeypatch):
    server = stock()
    rows = _waiting_for_room(cast, server, 2)
    broker.sent.clear()
    _between_deliveries(monkeypatch, lambda: (server.stop(), server.start()))
    runner.run(rows[0].pk)
    assert _status(rows) == [Delivery.Status.DELIVERED] * 2
    assert _logins(server) == 2
    assert _reused(rows) == [False, False]


def test_changed_endpoint_settings_open_a_new_session(cast, stock, broker, monkeypatch):
    server = stock()
    rows = _waiting_for_room(cast, server, 2)
    broker.sent.clear()
    _between_deliveries(monkeypatch, lambda: PartnerEndpoint.objects.update(timeout_seconds=11))
    runner.run(rows[0].pk)
    assert _status(rows) == [Delivery.Status.DELIVERED] * 2
    assert _logins(server) == 2
    assert _reused(rows) == [False, False]


def test_a_failed_delivery_ends_its_session_and_the_next_waits_for_its_message(
        cast, stock, broker):
    server = stock(Behaviour(refuse_stor="552 Exceeded storage allocation."))
    rows = _waiting_for_room(cast, server, 2)
    broker.sent.clear()
    runner.run(rows[0].pk)
    assert _status(rows) == [Delivery.Status.FAILED, Delivery.Status.PENDING]
    assert _logins(server) == 1 and server.commands.count("QUIT") == 1
    assert broker.sent == [("deliveries.run_delivery", [rows[1].pk])]


def test_a_worker_told_to_stop_takes_no_next_delivery(cast, stock, broker, monkeypatch):
    from celery.worker import state

    server = stock()
    rows = _waiting_for_room(cast, server, 2)
    broker.sent.clear()
    monkeypatch.setattr(state, "should_stop", 0)  # warm shutdown: Celery's EX_OK
    runner.run(rows[0].pk)
    assert _status(rows) == [Delivery.Status.DELIVERED, Delivery.Status.PENDING]
    assert server.commands.count("QUIT") == 1  # the session closed politely
    assert broker.sent == [("deliveries.run_delivery", [rows[1].pk])]  # for another worker
