"""An upload over HTTPS goes through the same pipeline, run by a real worker."""

from __future__ import annotations

import hashlib
import time

import pytest
from django.conf import settings
from django.test import Client

from accounts import tokens
from transfers.models import FileState, StoredFile

pytestmark = pytest.mark.django_db(transaction=True)


def _bearer(user, *scopes: str) -> dict[str, str]:
    user.allowed_protocols = sorted({*user.allowed_protocols, "https"})
    user.save(update_fields=["allowed_protocols"])
    made = tokens.create_api_token(user, scopes=list(scopes))
    return {"HTTP_AUTHORIZATION": f"Bearer {made.secret}"}


def test_task_enqueued_by_a_web_request_is_run_by_a_real_worker(cast, clamd, start_worker):
    start_worker(MFT_CLAMD=clamd.address)
    body = b"id,amount\n1,9.99\n"
    response = Client().post("/api/v1/files/?path=/in/orders.csv", data=body,
                             content_type="application/octet-stream",
                             **_bearer(cast.partner.user, "transfer"))
    assert response.status_code == 201, response.content
    assert response.json()["sha256"] == hashlib.sha256(body).hexdigest()
    stored = StoredFile.objects.get(pk=response.json()["id"])
    deadline = time.monotonic() + 60
    while stored.state != FileState.READY and time.monotonic() < deadline:
        time.sleep(0.1)
        stored.refresh_from_db()
    assert stored.state == FileState.READY, (stored.state, settings.CELERY_BROKER_URL)


def test_upload_without_the_transfer_scope_is_forbidden(cast):
    response = Client().post("/api/v1/files/?path=/x.csv", data=b"x",
                             content_type="application/octet-stream",
                             **_bearer(cast.partner.user, "read"))
    assert response.status_code == 403
    assert not StoredFile.objects.exists()


def test_token_of_a_user_not_allowed_https_is_refused(cast):
    made = tokens.create_api_token(cast.partner.user, scopes=["read"])
    response = Client().get("/api/v1/files/", HTTP_AUTHORIZATION=f"Bearer {made.secret}")
    assert response.status_code == 401


def test_a_wrong_token_is_a_401_not_a_500(cast):
    response = Client().get("/api/v1/files/", HTTP_AUTHORIZATION="Bearer pst_nonsense")
    assert response.status_code == 401


def test_upload_with_a_path_escape_is_a_clear_400(cast):
    response = Client().post("/api/v1/files/?path=/a%00b", data=b"x",
                             content_type="application/octet-stream",
                             **_bearer(cast.partner.user, "transfer"))
    assert response.status_code == 400
    assert "NUL" in response.json()["detail"]


def test_a_partner_lists_only_its_own_files(cast):
    from audit.events import Origin
    from transfers import uploads

    for member in (cast.partner, cast.outsider):
        upload = uploads.begin_upload(member.user, "/f.txt", origin=Origin())
        upload.write(b"x")
        upload.finish()
    response = Client().get("/api/v1/files/", **_bearer(cast.partner.user, "read"))
    owners = {row["owner_username"] for row in response.json()["results"]}
    assert owners == {cast.partner.username}


def test_a_large_upload_streams_to_disk_without_holding_the_body(cast):
    import tracemalloc

    size = 48 * 1024 * 1024
    body = b"\x5a" * size
    headers = _bearer(cast.partner.user, "transfer")
    tracemalloc.start()
    try:
        # The test client copies the body once into its fake socket (one `size`); a view
        # that read the body whole would hold a second copy on top of it.
        response = Client().post("/api/v1/files/?path=/in/large.bin", data=body,
                                 content_type="application/octet-stream", **headers)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert response.status_code == 201, response.content
    assert response.json()["size"] == size
    assert peak < size * 1.4, f"peak {peak / 2**20:.0f} MiB for a {size / 2**20:.0f} MiB body"
