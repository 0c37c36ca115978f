"""The overview counts failing deliveries: real pushes to a partner server that is down."""

from __future__ import annotations

import pytest

from deliveries import routing, stats
from deliveries.models import Delivery
from tests.deliveries_support import arrival_route, partner_named, stock_endpoint, store

pytestmark = pytest.mark.django_db(transaction=True)
pytest_plugins = ["tests.deliveries_support"]  # its fixtures: broker, stock


@pytest.fixture
def push_to_a_server_that_is_down(cast, stock, broker):  # type: ignore[no-untyped-def]
    """Return a function that pushes one file to a stopped stock server; return its row."""
    server = stock()
    endpoint = stock_endpoint(server, partner_named("Bank Ltd"), name="bank-in")
    arrival_route(endpoint, cast.partner.user)
    server.stop()

    def push() -> Delivery:
        stored = store(cast.partner.user, "/report.csv", b"a;b\n" * 50)
        routing.route_file(stored.pk)
        broker.drain()
        return Delivery.objects.get(stored_file=stored)

    return push


def test_a_refused_push_counts_as_retrying(push_to_a_server_that_is_down):
    delivery = push_to_a_server_that_is_down()
    assert delivery.status == Delivery.Status.WAITING, delivery.last_error
    assert stats.failing(24) == stats.Failing(failed=0, retrying=1)


def test_a_push_that_gave_up_counts_as_failed(push_to_a_server_that_is_down, settings):
    settings.DELIVERY_MAX_ATTEMPTS = 1
    delivery = push_to_a_server_that_is_down()
    assert delivery.status == Delivery.Status.FAILED, delivery.last_error
    assert stats.failing(24) == stats.Failing(failed=1, retrying=0)


def test_a_failure_older_than_the_window_is_not_counted(push_to_a_server_that_is_down,
                                                         settings):
    settings.DELIVERY_MAX_ATTEMPTS = 1
    push_to_a_server_that_is_down()
    assert stats.failing(0).failed == 0


def test_overview_shows_failing_deliveries_linked_to_the_list(admin_client,
                                                              push_to_a_server_that_is_down):
    push_to_a_server_that_is_down()
    page = admin_client.get("/").content.decode()
    failing = page.split('id="failing-deliveries"')[1].split("</li>")[0]
    assert '<span class="value">1</span>' in failing and "1 retrying" in failing
    assert 'href="/deliveries/?status=failed"' in failing


def test_overview_shows_no_failing_delivery_when_all_went_well(admin_client):
    page = admin_client.get("/").content.decode()
    failing = page.split('id="failing-deliveries"')[1].split("</li>")[0]
    assert '<span class="value">0</span>' in failing and "0 failed, 24 h" in failing
