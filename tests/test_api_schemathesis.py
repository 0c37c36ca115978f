"""Schemathesis against the served OpenAPI schema: no server error, no response off-schema.

Every operation in `/api/schema/` gets generated requests (valid and invalid by the
schema), sent in-process to the WSGI app with an admin token, so the whole stack runs:
authentication, permissions, serializers, the services and the database. The number of
examples per operation is bounded so the run takes a few minutes at most.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)

from accounts import services
from mft.wsgi import application
from tests.api_client import fresh_throttles, token_for  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)

schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


@pytest.fixture
def admin_token(settings) -> str:
    """Return an admin-scoped token, with throttling out of the way of generated traffic."""
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_CLASSES": []}
    admin = services.create_admin("schemathesis-admin", services.generate_password())
    return token_for(admin, "read", "transfer", "admin")


@schema.parametrize()
@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema_and_never_errors(case, admin_token):
    response = case.call(headers={"Authorization": f"Bearer {admin_token}"})
    checks = CHECKS
    if (case.method, case.path, response.status_code) == ("GET", "/healthz", 503):
        # 503 is /healthz's documented answer while a component is down (here no worker
        # or gateway runs): a report, not a crash, so it gets the other checks only.
        assert response.json()["status"] == "degraded"
        checks = CHECKS[1:]
    case.validate_response(response, checks=checks)
