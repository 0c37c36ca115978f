"""Throttling: per token for authenticated calls, per address for anonymous ones."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.api_client import client_for, fresh_throttles  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def rates(settings):
    """Return a function that sets the throttle rates for the test."""

    def set_rates(**rates: str | None) -> None:
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK,
                                   "DEFAULT_THROTTLE_RATES": rates}

    return set_rates


def test_a_token_over_its_rate_gets_429_with_retry_after(cast, rates):
    rates(token="2/min", anon=None)
    client = client_for(cast.admin.user, "read")
    codes = [client.get("/api/v1/files/").status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    response = client.get("/api/v1/files/")
    assert int(response["Retry-After"]) > 0 and response.json()["code"] == "throttled"


def test_each_token_has_its_own_bucket(cast, rates):
    rates(token="1/min", anon=None)
    first, second = client_for(cast.admin.user, "read"), client_for(cast.admin.user, "read")
    assert first.get("/api/v1/files/").status_code == 200
    assert first.get("/api/v1/files/").status_code == 429
    assert second.get("/api/v1/files/").status_code == 200


def test_anonymous_calls_are_limited_per_address(cast, rates):
    rates(token=None, anon="2/min")
    codes = [APIClient().get("/api/schema/").status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_health_is_never_throttled(cast, rates):
    rates(token=None, anon="1/min")
    codes = {APIClient().get("/healthz").status_code for _ in range(3)}
    assert 429 not in codes


def test_a_forged_forwarded_for_header_does_not_open_a_new_bucket(cast, rates):
    rates(token=None, anon="1/min")
    assert APIClient().get("/api/schema/", HTTP_X_FORWARDED_FOR="198.51.100.1").status_code \
        == 200
    response = APIClient().get("/api/schema/", HTTP_X_FORWARDED_FOR="198.51.100.2")
    assert response.status_code == 429


def test_clients_behind_a_trusted_proxy_get_their_own_buckets(cast, rates, settings):
    rates(token=None, anon="1/min")
    settings.TRUSTED_PROXIES = ["127.0.0.0/8"]
    for client in ("198.51.100.1", "198.51.100.2"):
        response = APIClient().get("/api/schema/", HTTP_X_FORWARDED_FOR=client)
        assert response.status_code == 200, client
