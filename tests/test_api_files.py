"""Stored files over the API: filter and order, metadata, download, admin review."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from tests.api_client import (  # noqa: F401
    client_for,
    fresh_throttles,
    make_ready,
    set_state,
    store,
)
from transfers.models import FileState, StoredFile

pytestmark = pytest.mark.django_db(transaction=True)


def _ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def _content(response) -> bytes:
    return b"".join(response.streaming_content)


def test_files_filter_by_state(cast):
    held = set_state(store(cast.partner.user, "/a.txt"), FileState.HELD)
    store(cast.partner.user, "/b.txt")
    response = client_for(cast.admin.user, "read").get("/api/v1/files/?state=held")
    assert _ids(response) == [held.pk]


def test_files_filter_by_owner_and_partner(cast):
    store(cast.partner.user, "/a.txt")
    theirs = store(cast.outsider.user, "/a.txt")
    admin = client_for(cast.admin.user, "read")
    assert _ids(admin.get("/api/v1/files/?owner=mallory")) == [theirs.pk]
    partner = cast.outsider.user.partner.pk
    assert _ids(admin.get(f"/api/v1/files/?partner={partner}")) == [theirs.pk]


def test_files_filter_by_created_date_range(cast):
    old = store(cast.partner.user, "/old.txt")
    StoredFile.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=9))
    new = store(cast.partner.user, "/new.txt")
    since = (timezone.now() - timedelta(days=1)).isoformat()
    admin = client_for(cast.admin.user, "read")
    assert _ids(admin.get("/api/v1/files/", {"created_after": since})) == [new.pk]
    assert _ids(admin.get("/api/v1/files/", {"created_before": since})) == [old.pk]


def test_files_order_by_size(cast):
    big = store(cast.partner.user, "/big.txt", b"x" * 100)
    small = store(cast.partner.user, "/small.txt", b"x")
    admin = client_for(cast.admin.user, "read")
    assert _ids(admin.get("/api/v1/files/?ordering=size")) == [small.pk, big.pk]
    assert _ids(admin.get("/api/v1/files/?ordering=-size")) == [big.pk, small.pk]


def test_an_unknown_state_filter_is_a_400(cast):
    response = client_for(cast.admin.user, "read").get("/api/v1/files/?state=sideways")
    assert response.status_code == 400
    assert "state" in response.json()["errors"]


def test_a_malformed_date_filter_is_a_400(cast):
    response = client_for(cast.admin.user, "read").get("/api/v1/files/?created_after=yesterday")
    assert response.status_code == 400


def test_a_date_filter_with_any_utc_offset_is_compared_in_utc(cast):
    new = store(cast.partner.user, "/new.txt")
    admin = client_for(cast.admin.user, "read")
    # Python allows offsets up to a day; PostgreSQL only to 15:59 (this was a 500 there).
    response = admin.get("/api/v1/files/", {"created_after": "0400-08-03T15:34:08-21:32"})
    assert response.status_code == 200 and _ids(response) == [new.pk]
    assert _ids(admin.get("/api/v1/files/", {"created_before": "2000-01-01T00:00:00+23:59"})) == []


@pytest.mark.parametrize("edge", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:00:00-05:00"])
def test_a_date_filter_that_leaves_the_calendar_in_utc_is_a_400(cast, edge):
    response = client_for(cast.admin.user, "read").get("/api/v1/files/", {"created_after": edge})
    assert response.status_code == 400
    assert "created_after" in response.json()["errors"]


def test_file_metadata_has_the_sha256_and_the_scan_result(cast):
    stored = store(cast.partner.user, "/a.txt", b"hello")
    StoredFile.objects.filter(pk=stored.pk).update(scan_engine="ClamAV 1.0", state="clean")
    body = client_for(cast.admin.user, "read").get(f"/api/v1/files/{stored.pk}/").json()
    assert body["sha256"] == hashlib.sha256(b"hello").hexdigest()
    assert (body["state"], body["scan_engine"], body["scan_signature"]) == (
        "clean", "ClamAV 1.0", "")


def test_download_returns_the_plaintext_matching_the_sha256(cast, settings):
    data = b"id,amount\n" + b"1,9.99\n" * 50_000
    stored = make_ready(store(cast.partner.user, "/orders.csv", data), settings)
    response = client_for(cast.admin.user, "read").get(f"/api/v1/files/{stored.pk}/content/")
    assert response.status_code == 200 and response.streaming
    body = _content(response)
    assert hashlib.sha256(body).hexdigest() == stored.sha256 == response["X-Content-SHA256"]
    assert int(response["Content-Length"]) == len(data)


def test_stored_bytes_are_not_the_plaintext(cast, settings):
    stored = make_ready(store(cast.partner.user, "/a.txt", b"secret payload"), settings)
    assert b"secret payload" not in Path(stored.storage_path).read_bytes()


def test_download_of_a_file_not_ready_is_a_409(cast):
    stored = set_state(store(cast.partner.user, "/a.txt"), FileState.HELD)
    response = client_for(cast.admin.user, "read").get(f"/api/v1/files/{stored.pk}/content/")
    assert response.status_code == 409
    assert response.json()["code"] == "not_ready"


def test_the_owner_downloads_a_clean_file_before_it_is_ready(cast):
    stored = set_state(store(cast.partner.user, "/a.txt", b"mine"), FileState.CLEAN)
    response = client_for(cast.partner.user, "read").get(f"/api/v1/files/{stored.pk}/content/")
    assert response.status_code == 200
    assert _content(response) == b"mine"


def test_the_owner_cannot_download_a_file_still_waiting_for_its_scan(cast):
    stored = store(cast.partner.user, "/a.txt")
    response = client_for(cast.partner.user, "read").get(f"/api/v1/files/{stored.pk}/content/")
    assert response.status_code == 409
    assert "scanned" in response.json()["detail"]


def test_download_ignores_an_octet_stream_accept_header(cast, settings):
    stored = make_ready(store(cast.partner.user, "/a.txt", b"abc"), settings)
    response = client_for(cast.admin.user, "read").get(
        f"/api/v1/files/{stored.pk}/content/", HTTP_ACCEPT="application/octet-stream")
    assert response.status_code == 200 and _content(response) == b"abc"


def test_a_download_is_audited_when_it_completes(cast, settings):
    stored = make_ready(store(cast.partner.user, "/a.txt", b"abc"), settings)
    _content(client_for(cast.admin.user, "read").get(f"/api/v1/files/{stored.pk}/content/"))
    event = AuditEvent.objects.get(action="download")
    assert event.actor == cast.admin.username and event.protocol == "https"
    assert event.details["completed"] is True and event.details["bytes"] == 3


def test_a_partner_colleague_cannot_see_a_file_before_it_is_ready(cast):
    from tests.api_client import make_user

    colleague = make_user("bob", "partner", partner=cast.partner.user.partner)
    stored = store(cast.partner.user, "/a.txt")
    response = client_for(colleague, "read").get(f"/api/v1/files/{stored.pk}/content/")
    assert response.status_code == 404


def test_another_partners_file_is_a_404(cast, settings):
    stored = make_ready(store(cast.outsider.user, "/a.txt"), settings)
    response = client_for(cast.partner.user, "read").get(f"/api/v1/files/{stored.pk}/")
    assert response.status_code == 404


def test_release_of_a_held_file_needs_a_reason(cast):
    stored = set_state(store(cast.partner.user, "/a.txt"), FileState.HELD)
    response = client_for(cast.admin.user, "admin").post(
        f"/api/v1/files/{stored.pk}/release/", {}, format="json")
    assert response.status_code == 400
    assert "reason" in response.json()["errors"]


def test_admin_releases_a_held_file_with_a_reason(cast, settings):
    settings.SCAN_MAX_BYTES = 1
    settings.CLAMD_ADDRESS = "tcp://127.0.0.1:9"
    from transfers import pipeline

    stored = store(cast.partner.user, "/big.txt")
    pipeline.advance(stored.pk)
    response = client_for(cast.admin.user, "admin").post(
        f"/api/v1/files/{stored.pk}/release/", {"reason": "known batch"}, format="json")
    assert response.status_code == 200, response.content
    event = AuditEvent.objects.get(action="review.release")
    assert event.details["reason"] == "known batch" and event.actor == cast.admin.username


def test_release_needs_the_admin_scope(cast):
    stored = set_state(store(cast.partner.user, "/a.txt"), FileState.HELD)
    response = client_for(cast.admin.user, "transfer").post(
        f"/api/v1/files/{stored.pk}/release/", {"reason": "x"}, format="json")
    assert response.status_code == 403


def test_discarding_a_held_file_deletes_its_bytes(cast):
    stored = set_state(store(cast.partner.user, "/a.txt"), FileState.HELD)
    response = client_for(cast.admin.user, "admin").post(
        f"/api/v1/files/{stored.pk}/discard/", {"reason": "not ours"}, format="json")
    assert response.status_code == 200
    assert response.json()["state"] == FileState.DELETED
    assert not Path(stored.storage_path).exists()


def test_discarding_a_ready_file_is_a_409(cast, settings):
    stored = make_ready(store(cast.partner.user, "/a.txt"), settings)
    response = client_for(cast.admin.user, "admin").post(
        f"/api/v1/files/{stored.pk}/discard/", {"reason": "x"}, format="json")
    assert response.status_code == 409


def test_an_upload_lands_in_the_callers_home_and_is_listed(cast):
    client = client_for(cast.partner.user, "read", "transfer")
    response = client.generic("POST", "/api/v1/files/?path=/in/x.csv", b"1,2\n",
                              content_type="application/octet-stream")
    assert response.status_code == 201, response.content
    assert _ids(client.get("/api/v1/files/")) == [response.json()["id"]]


def test_an_admin_uploads_into_a_named_users_folder(cast):
    response = client_for(cast.admin.user, "admin").generic(
        "POST", "/api/v1/files/?path=/in/x.csv&user=alice", b"1,2\n",
        content_type="application/octet-stream")
    assert response.status_code == 201, response.content
    assert response.json()["owner_username"] == "alice"
