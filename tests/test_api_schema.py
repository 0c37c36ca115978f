"""The OpenAPI schema generates cleanly and documents every route, health included."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from tests.api_client import fresh_throttles  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


def test_schema_generates_without_warnings_or_errors(tmp_path):
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    assert "openapi: 3" in target.read_text()


def test_schema_is_served_and_documents_the_api_and_health():
    response = APIClient().get("/api/schema/?format=json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for route in ("/api/v1/partners/", "/api/v1/users/{id}/reset-password/",
                  "/api/v1/files/{id}/content/", "/api/v1/audit-events/export/csv/",
                  "/api/v1/tokens/{id}/revoke/", "/api/v1/bans/{id}/lift/", "/healthz"):
        assert route in paths, route


def test_schema_declares_bearer_tokens():
    schemes = APIClient().get("/api/schema/?format=json").json()["components"][
        "securitySchemes"]
    assert schemes["bearerAuth"] == {"type": "http", "scheme": "bearer",
                                     "description": schemes["bearerAuth"]["description"]}


def test_docs_page_is_served():
    assert APIClient().get("/api/docs/").status_code == 200


def test_healthz_answers_without_a_token():
    response = APIClient().get("/healthz")
    assert response.status_code in (200, 503)
    assert set(response.json()["components"]) >= {"database", "broker", "worker", "clamd"}
