"""Metrics scraped and parsed after a real FTPS upload, its pipeline run in a worker process,
its delivery to a partner's FTPS server and its download."""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import Callable

import pytest

from deliveries.models import Delivery
from tests import ftps_client
from tests.deliveries_support import arrival_route, partner_named, stock_endpoint
from tests.remote_ftps import Behaviour, file_sha256
from tests.test_metrics import _bearer, scrape, value

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
pytest_plugins = ["tests.deliveries_support"]  # its fixtures: stock…


def _until(check: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} not reached after {timeout} s"
        time.sleep(0.2)


def _family(samples: dict, name: str) -> dict[tuple, float]:
    return {labels: v for (sample, labels), v in samples.items() if sample == name}


def test_worker_pipeline_delivery_and_download_are_counted(cast, gateway, stock, start_worker):
    admin = _bearer(cast.admin.user, "admin")
    server = stock(Behaviour())
    arrival_route(stock_endpoint(server, partner_named("Bank Ltd")), cast.partner.user)
    start_worker(MFT_SCAN="off")
    before = scrape(admin)
    data = os.urandom(256 * 1024)

    ftp = ftps_client.login(gateway.explicit_port, "alice", cast.partner.password)
    try:
        ftp.storbinary("STOR metered.bin", io.BytesIO(data))
        _until(lambda: Delivery.objects.filter(status=Delivery.Status.DELIVERED).exists(),
               timeout=90, what="the delivery")
        downloaded = io.BytesIO()
        ftp.retrbinary("RETR metered.bin", downloaded.write)
    finally:
        ftp.quit()
    assert downloaded.getvalue() == data
    assert file_sha256(server.root / "metered.bin") == hashlib.sha256(data).hexdigest()

    def counted() -> bool:
        now = scrape(admin)
        return (value(now, "portside_deliveries_total", outcome="delivered")
                > value(before, "portside_deliveries_total", outcome="delivered")
                and value(now, "portside_transfers_total", direction="out", outcome="success")
                > value(before, "portside_transfers_total", direction="out", outcome="success"))

    _until(counted, timeout=30, what="the counters")
    after = scrape(admin)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("portside_deliveries_total", outcome="delivered") == 1
    assert grew("portside_deliveries_total", outcome="failed") == 0
    assert grew("portside_transfers_total", direction="in", outcome="success") == 1
    assert grew("portside_transfer_bytes_total", direction="in") == len(data)
    assert grew("portside_transfer_bytes_total", direction="out") == len(data)
    # The worker process ran the pipeline: its step counters and durations reach /metrics.
    steps = _family(after, "portside_pipeline_steps_total")
    assert sum(steps.values()) > sum(_family(before, "portside_pipeline_steps_total").values())
    durations = _family(after, "portside_pipeline_step_seconds_max")
    assert durations and all(seconds >= 0 for seconds in durations.values())
    assert not any(v for v in _family(after, "portside_pipeline_queue").values())
    assert value(after, "portside_processes_alive", kind="worker") >= 1
    assert value(after, "portside_processes_alive", kind="gateway") >= 1
