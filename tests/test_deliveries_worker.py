"""Deliveries with real Celery workers: a worker killed mid-push is redone, delivered once."""

from __future__ import annotations

import os
import time

import pytest

from audit.models import AuditEvent
from deliveries import runner
from deliveries.models import Delivery
from tests.deliveries_support import arrival_route, partner_named, stock_endpoint, store
from tests.remote_ftps import Behaviour, file_sha256

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
pytest_plugins = ["tests.deliveries_support"]  # its fixtures: broker, stock, bank…


def wait_for(probe, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := probe():
            return result
        time.sleep(0.2)
    raise AssertionError(f"{what} not reached after {timeout} s")


def test_worker_killed_mid_push_is_redone_and_delivered_once(cast, stock, start_worker):
    server = stock(Behaviour(read_delay=0.003))  # a slow partner: a few MB/s
    arrival_route(stock_endpoint(server, partner_named("Bank Ltd")), cast.partner.user)
    env = {"MFT_SCAN": "off", "MFT_DELIVERY_LEASE_SECONDS": "5"}
    first = start_worker(**env)
    data = os.urandom(32 * 1024 * 1024)
    stored = store(cast.partner.user, "/big.bin", data, ready=False)  # the worker runs it all
    delivery = wait_for(lambda: Delivery.objects.filter(status="running").first(),
                        timeout=60, what="the push running")
    temp = server.root / f".big.bin.portside-{delivery.pk}.part"
    wait_for(lambda: temp.exists() and temp.stat().st_size > 4 * 1024 * 1024, timeout=60,
             what="part of the file on the partner's server")
    first.kill()
    start_worker(**env)

    def delivered():
        runner.sweep()  # what beat runs periodically
        delivery.refresh_from_db()
        return delivery.status == Delivery.Status.DELIVERED

    wait_for(delivered, timeout=120, what="the delivery redone")
    first_try, second_try = delivery.attempts_log.all()
    assert (first_try.outcome, second_try.outcome) == ("abandoned", "success")
    assert second_try.resumed_from > 0  # REST: the bytes already there were not sent again
    assert second_try.bytes_transferred == len(data) - second_try.resumed_from
    assert file_sha256(server.root / "big.bin") == stored.sha256
    assert [p.name for p in server.root.iterdir()] == ["big.bin"]
    assert AuditEvent.objects.filter(action="delivery.delivered").count() == 1
    assert server.commands.count("RNTO") == 1
