"""A slow partner blocks nobody: outbound work has its own queue and worker.

Pushes, pulls and webhooks go to the `outbound` queue (settings.CELERY_TASK_ROUTES); the
pipeline's worker consumes only `celery`. With real workers, a push crawling to a slow
partner neither holds back another file's pipeline nor another partner's delivery.
"""

from __future__ import annotations

import os

import pytest

from deliveries.models import Delivery
from tests.deliveries_support import arrival_route, partner_named, stock_endpoint, store
from tests.remote_ftps import Behaviour, file_sha256
from tests.waiting import until
from transfers.models import FileState, StoredFile

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
pytest_plugins = ["tests.deliveries_support"]
SLOW = Behaviour(read_delay=0.004)  # about 4 MB/s: 32 MiB takes several seconds
ENV = {"MFT_SCAN": "off"}


def _running(route_name: str) -> Delivery | None:
    return Delivery.objects.filter(route__name=route_name, status="running").first()


def test_a_push_to_a_slow_partner_does_not_hold_back_the_pipeline(cast, stock, start_worker):
    slow = stock(SLOW)
    arrival_route(stock_endpoint(slow, partner_named("Slow Bank")), cast.partner.user,
                  name="to-slow", filename_pattern="*.bin")
    start_worker(queues="celery", **ENV)
    start_worker(queues="outbound", **ENV)
    store(cast.partner.user, "/big.bin", os.urandom(32 * 1024 * 1024), ready=False)
    push = until(lambda: _running("to-slow"), timeout=60, what="the slow push running")

    small = store(cast.partner.user, "/orders.csv", b"id\n1\n", ready=False)
    until(lambda: StoredFile.objects.get(pk=small.pk).state == FileState.READY, timeout=30,
          what="the small file ready")

    push.refresh_from_db()
    assert push.status == Delivery.Status.RUNNING, "the pipeline waited for the push"


def test_a_slow_partner_does_not_hold_back_another_partners_delivery(cast, stock,
                                                                    start_worker):
    slow, fast = stock(SLOW), stock()
    arrival_route(stock_endpoint(slow, partner_named("Slow Bank")), cast.partner.user,
                  name="to-slow")
    arrival_route(stock_endpoint(fast, partner_named("Fast Bank")), cast.partner.user,
                  name="to-fast")
    start_worker(queues="celery", **ENV)
    start_worker(queues="outbound", pool="threads", concurrency=4, **ENV)
    stored = store(cast.partner.user, "/big.bin", os.urandom(32 * 1024 * 1024), ready=False)

    delivered = until(lambda: Delivery.objects.filter(route__name="to-fast",
                                                      status="delivered").first(),
                      timeout=90, what="the fast partner's delivery")

    assert file_sha256(fast.root / "big.bin") == stored.sha256
    assert _running("to-slow") is not None, "the slow push finished first: no evidence"
    assert delivered.finished_at is not None
