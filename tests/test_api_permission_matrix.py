"""The API's permission matrix, resource by resource, for every kind of caller.

Callers: an admin, an operator, an auditor, a partner's token, a token of another
partner, an expired token, a revoked token, and no token. The rules (accounts.permissions):
`admin` scope for changes, `read` for reading, `transfer` for uploads; partner-limited
callers see only their own partner's objects (their partner's own row included; another
partner's are 404) and never the install-wide resources (bans, audit log); dead or missing
tokens are 401.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import credentials, tokens
from accounts.models import ApiToken, Ban, ClientCertificate, User
from audit.events import Origin
from deliveries import services as deliveries
from tests import certs
from tests.api_client import (  # noqa: F401
    bearer_client,
    fresh_throttles,
    make_user,
    store,
    token_for,
)

pytestmark = pytest.mark.django_db(transaction=True)

CALLERS = ("admin", "operator", "auditor", "partner", "other", "expired", "revoked", "none")
DEAD = {"expired": 401, "revoked": 401, "none": 401}
PARTNER_SCOPED = ("partners", "users", "certificates", "tokens", "files", "endpoints",
                  "routes", "pulls", "deliveries", "pgp-keys", "sessions", "expected-files",
                  "retention-policies")
INSTALL_WIDE = ("bans", "audit-events")


@pytest.fixture
def world(cast, settings, tmp_path) -> dict[str, Any]:
    """Return a client per caller and ids of partner A's objects."""
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {},
                               "DEFAULT_THROTTLE_CLASSES": []}
    acme = cast.partner.user
    operator = make_user("olivia-operator", User.Role.OPERATOR)
    auditor = make_user("aaron-auditor", User.Role.AUDITOR)
    expired = token_for(cast.admin.user, "admin")
    ApiToken.objects.filter(user=cast.admin.user).update(
        expires_at=timezone.now() - timedelta(minutes=1))
    revoked = tokens.create_api_token(cast.admin.user, scopes=["admin"])
    tokens.revoke(revoked.token, origin=Origin(actor="test"))
    secrets = {
        "admin": token_for(cast.admin.user, "read", "transfer", "admin"),
        "operator": token_for(operator, "read", "transfer"),
        "auditor": token_for(auditor, "read"),
        "partner": token_for(acme, "read", "transfer"),
        "other": token_for(cast.outsider.user, "read", "transfer"),
        "expired": expired,
        "revoked": revoked.secret,
    }
    clients = {who: bearer_client(secret) for who, secret in secrets.items()}
    clients["none"] = APIClient()
    made = certs.make(tmp_path, "acme-matrix")
    cert = credentials.add_certificate(acme.partner, made.pem, user=acme,
                                       origin=Origin(actor="test"))
    endpoint = deliveries.create_endpoint(partner=acme.partner, name="acme-out",
                                          host="ftp.acme.example", username="u",
                                          password="Endpoint-pw-1", pinned_sha256="ab" * 32)
    route = deliveries.create_route(name="acme-route", endpoint=endpoint, source_user=acme)
    ban = Ban.objects.create(address="192.0.2.7", reason="test",
                             expires_at=timezone.now() + timedelta(hours=1))
    return {"clients": clients, "ban": ban.pk, "objects": {
        "partners": acme.partner_id, "users": acme.pk, "certificates": cert.pk,
        "files": store(acme, "/m.csv").pk,
        "endpoints": endpoint.pk, "routes": route.pk}, "acme": acme}


def _expected(who: str, ok: int, *, partner: int, other: int, operator: int | None = None,
              auditor: int | None = None) -> int:
    """Return the status a caller should get, given the outcomes that differ by caller."""
    if who in DEAD:
        return DEAD[who]
    return {"admin": ok, "operator": ok if operator is None else operator,
            "auditor": ok if auditor is None else auditor,
            "partner": partner, "other": other}[who]


@pytest.mark.parametrize("who", CALLERS)
def test_lists_follow_the_matrix(world, who):
    client = world["clients"][who]
    for resource in PARTNER_SCOPED + INSTALL_WIDE:
        wide = resource in INSTALL_WIDE
        want = _expected(who, 200, partner=403 if wide else 200, other=403 if wide else 200)
        response = client.get(f"/api/v1/{resource}/")
        assert response.status_code == want, (resource, response.content[:300])
        if want >= 400:
            assert response["Content-Type"].startswith("application/problem+json"), resource


@pytest.mark.parametrize("who", CALLERS)
def test_partner_a_objects_are_visible_only_to_those_allowed(world, who):
    client = world["clients"][who]
    for resource, pk in world["objects"].items():
        want = _expected(who, 200, partner=200, other=404)
        response = client.get(f"/api/v1/{resource}/{pk}/")
        assert response.status_code == want, (resource, response.content[:300])
        if who == "other":
            listed = client.get(f"/api/v1/{resource}/").json()["results"]
            assert pk not in {row["id"] for row in listed}, resource


@pytest.mark.parametrize("who", CALLERS)
def test_creating_a_partner_needs_the_admin_scope(world, who):
    response = world["clients"][who].post("/api/v1/partners/", {"name": f"New {who}"},
                                          format="json")
    assert response.status_code == _expected(who, 201, partner=403, other=403,
                                              operator=403, auditor=403), response.content


@pytest.mark.parametrize("who", CALLERS)
def test_disabling_a_user_needs_the_admin_scope(world, who):
    pk = world["objects"]["users"]
    response = world["clients"][who].post(f"/api/v1/users/{pk}/disable/")
    assert response.status_code == _expected(who, 200, partner=403, other=403,
                                              operator=403, auditor=403), response.content
    assert User.objects.get(pk=pk).is_active is (response.status_code != 200)


@pytest.mark.parametrize("who", CALLERS)
def test_changing_an_endpoint_needs_the_admin_scope(world, who):
    pk = world["objects"]["endpoints"]
    response = world["clients"][who].patch(f"/api/v1/endpoints/{pk}/", {"port": 2990},
                                           format="json")
    assert response.status_code == _expected(who, 200, partner=403, other=403,
                                              operator=403, auditor=403), response.content


@pytest.mark.parametrize("who", CALLERS)
def test_deleting_a_certificate_needs_the_admin_scope(world, who):
    pk = world["objects"]["certificates"]
    response = world["clients"][who].delete(f"/api/v1/certificates/{pk}/")
    assert response.status_code == _expected(who, 204, partner=403, other=403,
                                              operator=403, auditor=403), response.content
    assert ClientCertificate.objects.filter(pk=pk).exists() is (response.status_code != 204)


@pytest.mark.parametrize("who", CALLERS)
def test_uploading_needs_the_transfer_scope_and_a_home(world, who):
    response = world["clients"][who].post(
        f"/api/v1/files/?path=/up-{who}.txt", data=b"bytes",
        content_type="application/octet-stream")
    # Staff accounts carry `transfer` but have no home folder to upload into.
    assert response.status_code == _expected(who, 403, partner=201, other=201), \
        response.content
    if who in ("admin", "operator"):
        assert response.json()["detail"] == "user has no home folder"


def _admin_writes(w: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], int]]:
    """Return (method, path, body, the admin's status) for changes only admins may make.

    Junk bodies are fine where the admin's answer is a 400: the gate comes first, so every
    other caller must still get its 401/403 without the body being looked at.
    """
    ids = w["objects"]
    return [
        ("post", "/api/v1/pgp-keys/", {"partner": ids["partners"], "armored": "junk"}, 400),
        ("post", "/api/v1/routes/", {"name": "second", "endpoint": ids["endpoints"],
                                     "source_user": ids["users"]}, 201),
        ("post", "/api/v1/pulls/", {"name": "fetch", "endpoint": ids["endpoints"],
                                    "local_user": ids["users"], "cron": "*/5 * * * *",
                                    "time_zone": "UTC"}, 201),
        ("post", f"/api/v1/bans/{w['ban']}/lift/", {}, 200),
        ("post", f"/api/v1/users/{ids['users']}/reset-password/", {}, 200),
        ("post", "/api/v1/expected-files/", {"partner": ids["partners"]}, 400),
        ("post", "/api/v1/retention-policies/", {"partner": ids["partners"]}, 201),
        ("delete", f"/api/v1/routes/{ids['routes']}/", {}, 204),
    ]


@pytest.mark.parametrize("who", CALLERS)
def test_every_admin_change_is_closed_to_the_other_callers(world, who):
    for method, path, body, admin_status in _admin_writes(world):
        response = getattr(world["clients"][who], method)(path, body, format="json")
        want = _expected(who, admin_status, partner=403, other=403, operator=403,
                         auditor=403)
        assert response.status_code == want, (method, path, response.content[:300])


def test_expected_files_and_retention_policies_filter_by_partner(world, cast):
    from datetime import time

    from expected import services as expected
    from retention import services as retention

    acme, other = world["acme"].partner, cast.outsider.user.partner
    admin = world["clients"]["admin"]
    expected.create_expected(name="daily-orders", partner=acme, deadline=time(9))
    retention.set_policy(acme, files_after_days=30, origin=Origin(actor="test"))
    for resource in ("expected-files", "retention-policies"):
        mine = admin.get(f"/api/v1/{resource}/?partner={acme.pk}").json()["results"]
        assert [row["partner"] for row in mine] == [acme.pk], resource
        theirs = admin.get(f"/api/v1/{resource}/?partner={other.pk}").json()["results"]
        assert theirs == [], resource
        assert admin.get(f"/api/v1/{resource}/?partner=nope").status_code == 400, resource
