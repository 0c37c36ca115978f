"""A worker told to stop (SIGTERM, warm shutdown) finishes the task it runs, never half of it."""

from __future__ import annotations

import os
import signal
import time

import pytest

from audit.models import AuditEvent
from deliveries.models import Delivery
from tests.deliveries_support import arrival_route, partner_named, stock_endpoint, store
from tests.remote_ftps import Behaviour, file_sha256

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
pytest_plugins = ["tests.deliveries_support"]  # its fixtures: stock…


def wait_for(probe, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := probe():
            return result
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached after {timeout} s")


def test_sigterm_mid_push_lets_the_worker_finish_the_delivery_then_exit(
        cast, stock, start_worker):
    server = stock(Behaviour(read_delay=0.003))  # a slow partner: a few MB/s
    arrival_route(stock_endpoint(server, partner_named("Bank Ltd")), cast.partner.user)
    worker = start_worker(MFT_SCAN="off")
    data = os.urandom(12 * 1024 * 1024)
    stored = store(cast.partner.user, "/stopping.bin", data, ready=False)
    delivery = wait_for(lambda: Delivery.objects.filter(status="running").first(),
                        timeout=60, what="the push running")
    temp = server.root / f".stopping.bin.portside-{delivery.pk}.part"
    wait_for(lambda: temp.exists() and temp.stat().st_size > 1024 * 1024, timeout=60,
             what="part of the file on the partner's server")

    worker.process.send_signal(signal.SIGTERM)

    assert worker.process.wait(120) == 0, worker.log()
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.DELIVERED, worker.log()
    [attempt] = delivery.attempts_log.all()
    assert attempt.outcome == "success" and attempt.resumed_from == 0
    assert file_sha256(server.root / "stopping.bin") == stored.sha256
    assert [p.name for p in server.root.iterdir()] == ["stopping.bin"]
    assert AuditEvent.objects.filter(action="delivery.delivered").count() == 1
