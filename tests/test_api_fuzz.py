"""Junk at every write endpoint (and every list's query string) is a 4xx, never a 5xx.

Hand-rolled and deterministic: each field of a plausible body is replaced in turn by each
junk value (wrong types, huge and NUL-laden strings, odd unicode, lone surrogates, huge
numbers), then whole bodies are replaced by junk documents, malformed JSON and wrong
content types.
"""

from __future__ import annotations

import json
import random
import secrets
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiToken, Ban
from deliveries import services
from tests import certs
from tests.api_client import fresh_throttles, set_state, store, token_for  # noqa: F401
from transfers.models import FileState

pytestmark = pytest.mark.django_db(transaction=True)
ENDPOINT_PASSWORD = "Endpoint-" + secrets.token_urlsafe(12)

JUNK_VALUES: list[Any] = [
    None, True, 0, -1, 2**70, -(2**70), 1.5e308, "", " ", "x", "A" * 100_000,
    "a\x00b", "\x00", "\ud800", "\U0001d518\U0001d52b \u202e txt.exe \u0301\ufeff",
    "../../etc/passwd",
    "2001-01-01T00:00:00Z", "9999-99-99", "::1", "0.0.0.0/0", [], ["read", "\x00"],
    [None], [[]], {}, {"a": 1}, [2**70], ["A" * 10_000] * 50,
]
JUNK_BODIES: list[tuple[bytes, str]] = [
    (b"", "application/json"),
    (b"{", "application/json"),
    (b"null", "application/json"),
    (b"[1, 2]", "application/json"),
    (b'"just a string"', "application/json"),
    (b'{"a": "\\u0000"}', "application/json"),
    (b'{"name": "\\ud800"}', "application/json"),
    (b"\xff\xfe\x00garbage", "application/json"),
    (b"name=x&name=y", "application/x-www-form-urlencoded"),
    (b"<xml/>", "application/xml"),
    (b"plain words", "text/plain"),
    (b"--b\r\nContent-Disposition: form-data; name=\"pem\"\r\n\r\nx\r\n--b--\r\n",
     "multipart/form-data; boundary=b"),
    (b"--broken", "multipart/form-data"),
    (json.dumps({"x": "A" * 1_000_000}).encode(), "application/json"),
]
BAD_IDS = ["0", "-1", "abc", "9" * 30, "%00", "1.5", "%F0%9F%92%A9"]


def _variants(template: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Yield the template with each field replaced by each junk value, then minus each
    field, then a few random mixtures (fixed seed, so failures reproduce)."""
    yield {}
    for field in template:
        for junk in JUNK_VALUES:
            yield {**template, field: junk}
        yield {k: v for k, v in template.items() if k != field}
    chooser = random.Random(5)
    for _ in range(20):
        yield {field: chooser.choice(JUNK_VALUES) for field in template}


@pytest.fixture
def world(cast, settings, tmp_path) -> dict[str, Any]:
    """Return ids of real objects for the endpoints to act on, and an admin client."""
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {}}
    admin = APIClient(raise_request_exception=False)
    admin.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(cast.admin.user, 'admin')}")
    token_for(cast.partner.user, "read")
    ban = Ban.objects.create(address="192.0.2.1", reason="x",
                             expires_at=timezone.now() + timedelta(hours=1))
    held = set_state(store(cast.partner.user, "/held.txt"), FileState.HELD)
    endpoint = services.create_endpoint(partner=cast.partner.user.partner, name="e",
                                        host="ftp.acme.example", username="u",
                                        password=ENDPOINT_PASSWORD, pinned_sha256="ab" * 32)
    route = services.create_route(name="r", endpoint=endpoint, source_user=cast.partner.user)
    return {
        "endpoint": endpoint.pk,
        "route": route.pk,
        "client": admin,
        "partner": cast.partner.user.partner.pk,
        "user": cast.partner.user.pk,
        "token": ApiToken.objects.get(user=cast.partner.user).pk,
        "ban": ban.pk,
        "file": held.pk,
        "pem": certs.make(tmp_path, "fuzz").pem,
    }


def _json_endpoints(w: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """Return (method, path, plausible body) for every JSON write endpoint."""
    user_fields = {"email": "a@b.example", "quota_bytes": 10, "quota_files": 1,
                   "allowed_protocols": ["ftps"], "login_method": "password",
                   "permissions": ["list"], "allowed_ips": ["10.0.0.0/8"],
                   "expires_at": "2099-01-01T00:00:00Z", "max_sessions": 2}
    return [
        ("post", "/api/v1/partners/", {"name": "Fuzz", "contact_name": "c",
                                       "contact_email": "c@d.example", "contact_phone": "1",
                                       "status": "active", "notes": "n"}),
        ("patch", f"/api/v1/partners/{w['partner']}/", {"name": "Acme Corp", "notes": "n",
                                                        "status": "active"}),
        ("post", "/api/v1/users/", {"username": "fuzzer", "role": "partner",
                                    "partner": w["partner"], "generate_password": False,
                                    "password": None, **user_fields}),
        ("patch", f"/api/v1/users/{w['user']}/", user_fields),
        ("post", "/api/v1/certificates/", {"partner": w["partner"], "user": w["user"],
                                           "pem": w["pem"]}),
        ("post", "/api/v1/pgp-keys/", {"partner": w["partner"], "armored": "x"}),
        ("post", "/api/v1/tokens/", {"user": w["user"], "name": "n", "scopes": ["read"],
                                     "expires_at": "2099-01-01T00:00:00Z",
                                     "allowed_ips": ["10.0.0.1"]}),
        ("post", "/api/v1/endpoints/", {"partner": w["partner"], "name": "f", "host": "h",
                                        "username": "u", "password": "p",
                                        "pinned_sha256": "ab" * 32, "port": 21,
                                        "tls_mode": "explicit", "client_cert_pem": "",
                                        "client_key_pem": "", "ca_bundle_pem": "",
                                        "remote_folder": "/", "timeout_seconds": 5,
                                        "max_connections": 1, "enabled": True}),
        ("patch", f"/api/v1/endpoints/{w['endpoint']}/", {"host": "h2", "port": 990,
                                                           "password": "p2"}),
        ("post", "/api/v1/routes/", {"name": "r2", "endpoint": w["endpoint"],
                                     "source_user": w["user"], "source_folder": "/",
                                     "filename_pattern": "*.csv", "trigger": "schedule",
                                     "cron": "0 * * * *", "time_zone": "UTC",
                                     "window_start": "08:00", "window_end": "18:00",
                                     "pgp_encrypt": False, "pgp_key": None}),
        ("patch", f"/api/v1/routes/{w['route']}/", {"cron": "0 * * * *", "enabled": False}),
        ("post", "/api/v1/pulls/", {"name": "p", "endpoint": w["endpoint"],
                                    "local_user": w["user"], "cron": "*/5 * * * *",
                                    "after_download": "move", "move_to_folder": "/done",
                                    "max_files_per_run": 5, "time_zone": "Europe/Paris"}),
        ("post", f"/api/v1/files/{w['file']}/release/", {"reason": "r"}),
        ("post", f"/api/v1/files/{w['file']}/discard/", {"reason": "r"}),
    ]


def _action_paths(w: dict[str, Any]) -> list[tuple[str, str]]:
    """Return (method, path with an id) for bodiless actions; ids are replaced by junk."""
    return [
        ("post", "/api/v1/users/{}/enable/"), ("post", "/api/v1/users/{}/disable/"),
        ("post", "/api/v1/users/{}/reset-password/"), ("post", "/api/v1/tokens/{}/revoke/"),
        ("post", "/api/v1/bans/{}/lift/"), ("post", "/api/v1/files/{}/retry/"),
        ("get", "/api/v1/files/{}/content/"), ("delete", "/api/v1/partners/{}/"),
        ("delete", "/api/v1/certificates/{}/"), ("delete", "/api/v1/pgp-keys/{}/"),
        ("patch", "/api/v1/users/{}/"), ("get", "/api/v1/audit-events/{}/"),
        ("post", "/api/v1/deliveries/{}/resend/"), ("post", "/api/v1/deliveries/{}/cancel/"),
        ("post", "/api/v1/deliveries/{}/retry/"), ("get", "/api/v1/deliveries/{}/attempts/"),
        ("delete", "/api/v1/endpoints/{}/"), ("delete", "/api/v1/routes/{}/"),
        ("patch", "/api/v1/pulls/{}/"),
    ]


class Failures(list[str]):
    def check(self, response: Any, what: str) -> None:
        if response.status_code >= 500:
            self.append(f"{response.status_code} {what[:300]}")


def test_junk_json_fields_never_cause_a_server_error(world):
    client, failures = world["client"], Failures()
    for method, path, template in _json_endpoints(world):
        for body in _variants(template):
            # Encoded here (ASCII, escaped) so lone surrogates reach the server as JSON
            # escapes, as a hostile client would send them.
            response = client.generic(method.upper(), path, json.dumps(body),
                                      content_type="application/json")
            failures.check(response, f"{method} {path} {body!r}")
    assert not failures, "\n".join(failures)


def test_junk_bodies_and_content_types_never_cause_a_server_error(world):
    client, failures = world["client"], Failures()
    for method, path, _ in _json_endpoints(world):
        for body, content_type in JUNK_BODIES:
            response = client.generic(method.upper(), path, body, content_type=content_type)
            failures.check(response, f"{method} {path} {content_type} {body[:60]!r}")
    assert not failures, "\n".join(failures)


def test_junk_ids_never_cause_a_server_error(world):
    client, failures = world["client"], Failures()
    for method, pattern in _action_paths(world):
        for bad in BAD_IDS:
            path = pattern.format(bad)
            failures.check(client.generic(method.upper(), path), f"{method} {path}")
    assert not failures, "\n".join(failures)


UPLOAD_PATHS = ["", "/", "/in/", "a" * 5000, "%00", "/a%00b", "../../etc/passwd",
                "/.portside-tmp/x", "/held.txt", "/x/" + "y" * 300, "/%E2%80%AE.txt",
                "/%F0%9F%92%A9/%F0%9F%92%A9.csv", "/a/../../b", "//", "/" + "d/" * 600 + "f"]


def test_junk_uploads_never_cause_a_server_error(world):
    client, failures = world["client"], Failures()
    for path in UPLOAD_PATHS:
        for owner in ("", "alice", "nobody", "%00", "a" * 500):
            url = f"/api/v1/files/?path={path}&user={owner}"
            for body, content_type in [(b"data", "application/octet-stream"),
                                       (b"", "application/octet-stream"),
                                       (b'{"a": 1}', "application/json"),
                                       (b"x", "multipart/form-data; boundary=b")]:
                response = client.generic("POST", url, body, content_type=content_type)
                failures.check(response, f"upload {url[:120]} {content_type}")
    assert not failures, "\n".join(failures)


LIST_QUERIES = ["page=abc", "page=0", "page=99999", "page_size=-1", "page_size=999999999",
                "ordering=nope", "ordering=-", "ordering=,,", "created_after=yesterday",
                "created_before=9999-99-99", "partner=abc", "partner=" + "9" * 30,
                "partner=-1", "state=nope", "owner=%00", "source_ip=nope",
                "source_ip=999.1.1.1", "object_id=%00", "actor=" + "a" * 5000,
                "active=maybe", "address=nope", "user=abc", "is_ca=2", "revoked=x",
                "expires_before=x", "role=god", "is_active=%00", "path=%00",
                "outcome=%F0%9F%92%A9", "file=" + "9" * 30, "file=abc", "status=nope",
                "direction=sideways", "endpoint=abc", "route=-1", "trigger=x"]
LISTS = ["/api/v1/partners/", "/api/v1/users/", "/api/v1/certificates/", "/api/v1/pgp-keys/",
         "/api/v1/tokens/", "/api/v1/bans/", "/api/v1/files/", "/api/v1/audit-events/",
         "/api/v1/audit-events/export/csv/", "/api/v1/audit-events/export/jsonl/",
         "/api/v1/endpoints/", "/api/v1/routes/", "/api/v1/pulls/", "/api/v1/deliveries/",
         "/api/v1/deliveries/export/csv/"]


def test_junk_query_strings_never_cause_a_server_error(world):
    client, failures = world["client"], Failures()
    for path in LISTS:
        for query in LIST_QUERIES:
            response = client.get(f"{path}?{query}")
            if response.status_code < 500 and getattr(response, "streaming", False):
                b"".join(response.streaming_content)
            failures.check(response, f"GET {path}?{query[:80]}")
    assert not failures, "\n".join(failures)
