"""Files: filtered list, each file's story, and review decisions with a reason."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from tests.dashboard.conftest import store
from transfers import pipeline
from transfers.models import FileState, StoredFile

pytestmark = pytest.mark.django_db(transaction=True)


def _listed(client, query: str = "") -> str:  # type: ignore[no-untyped-def]
    page = client.get(f"/files/{query}")
    assert page.status_code == 200
    return page.content.decode()


def test_list_shows_every_file(admin_client, cast):
    store(cast.partner.user, "/one.csv")
    store(cast.outsider.user, "/two.csv")
    page = _listed(admin_client)
    assert "/one.csv" in page and "/two.csv" in page


def test_list_filters_by_state(admin_client, held_file, cast):
    store(cast.partner.user, "/plain.csv")
    page = _listed(admin_client, "?state=held")
    assert "/held.csv" in page and "/plain.csv" not in page


def test_list_filters_by_partner(admin_client, cast):
    store(cast.partner.user, "/acme.csv")
    store(cast.outsider.user, "/other.csv")
    page = _listed(admin_client, f"?partner={cast.partner.user.partner_id}")
    assert "/acme.csv" in page and "/other.csv" not in page


def test_list_filters_by_user(admin_client, cast):
    store(cast.partner.user, "/alice.csv")
    store(cast.outsider.user, "/mallory.csv")
    page = _listed(admin_client, "?user=mallory")
    assert "/mallory.csv" in page and "/alice.csv" not in page


def test_list_filters_by_date(admin_client, cast):
    store(cast.partner.user, "/today.csv")
    old = store(cast.partner.user, "/lastweek.csv")
    StoredFile.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=7))
    since = (timezone.now() - timedelta(days=1)).date().isoformat()
    page = _listed(admin_client, f"?date_from={since}")
    assert "/today.csv" in page and "/lastweek.csv" not in page


def test_list_filters_stuck_files(admin_client, cast, settings):
    stuck = store(cast.partner.user, "/stuck.csv")
    store(cast.partner.user, "/fresh.csv")
    StoredFile.objects.filter(pk=stuck.pk).update(
        state_changed_at=timezone.now() - timedelta(seconds=settings.PIPELINE_STUCK_SECONDS + 60))
    page = _listed(admin_client, "?stuck=on")
    assert "/stuck.csv" in page and "/fresh.csv" not in page


def test_list_reports_a_bad_filter_instead_of_failing(admin_client):
    page = _listed(admin_client, "?date_from=yesterday")
    assert "Check the filters" in page


def test_htmx_filter_returns_only_the_table(admin_client, cast):
    store(cast.partner.user, "/one.csv")
    fragment = admin_client.get("/files/?state=received", HTTP_HX_REQUEST="true").content
    assert b"<table" in fragment and b"<html" not in fragment


def test_list_pages_fifty_files_at_a_time(admin_client, cast):
    first = store(cast.partner.user, "/base.csv")
    StoredFile.objects.bulk_create(
        StoredFile(owner=cast.partner.user, owner_username="alice", path=f"/bulk-{i}.csv",
                   state=FileState.DELETED, storage_path=first.storage_path)
        for i in range(55))
    page = _listed(admin_client)
    assert "Page 1 of 2" in page and "56 files" in page


def test_detail_shows_the_pipeline_steps_with_their_timings(admin_client, cast):
    stored = store(cast.partner.user, "/story.csv")
    pipeline.advance(stored.pk)
    page = admin_client.get(f"/files/{stored.pk}/").content.decode()
    for step in ("scan", "dlp", "finish"):
        assert f"<td>{step}</td>" in page
    assert " s</td>" in page  # a duration in seconds


def test_detail_tells_the_files_story_from_the_audit_log(admin_client, cast):
    stored = store(cast.partner.user, "/story.csv")
    pipeline.advance(stored.pk)
    page = admin_client.get(f"/files/{stored.pk}/").content.decode()
    for action in ("upload", "pipeline.received", "pipeline.scan"):
        assert f"<strong>{action}</strong>" in page
    assert stored.sha256 in page


def test_detail_of_an_unknown_file_is_not_found(admin_client):
    assert admin_client.get("/files/999999/").status_code == 404


def test_held_file_is_released_with_a_reason(admin_client, held_file):
    response = admin_client.post(f"/files/{held_file.pk}/review/",
                                 {"decision": "release", "reason": "ticket 42"})
    assert response["Location"] == f"/files/{held_file.pk}/"
    event = AuditEvent.objects.get(action="review.release")
    assert (event.actor, event.details["reason"]) == ("root-admin", "ticket 42")
    assert event.protocol == "web" and event.source_ip == "127.0.0.1"


def test_release_without_a_reason_is_refused(admin_client, held_file):
    response = admin_client.post(f"/files/{held_file.pk}/review/",
                                 {"decision": "release", "reason": "  "}, follow=True)
    assert b"A reason is required" in response.content
    assert not AuditEvent.objects.filter(action="review.release").exists()


def test_quarantined_file_released_is_ready_in_its_owners_home(admin_client, quarantined_file):
    admin_client.post(f"/files/{quarantined_file.pk}/review/",
                      {"decision": "release", "reason": "false positive"})
    quarantined_file.refresh_from_db()
    assert quarantined_file.state == FileState.READY
    assert AuditEvent.objects.filter(action="quarantine.release").exists()


def test_quarantined_file_deleted_with_a_reason_leaves_no_bytes(admin_client, quarantined_file):
    admin_client.post(f"/files/{quarantined_file.pk}/review/",
                      {"decision": "delete", "reason": "confirmed malware"})
    quarantined_file.refresh_from_db()
    assert quarantined_file.state == FileState.DELETED
    assert not Path(quarantined_file.storage_path).exists()


def test_a_decision_that_does_not_apply_is_explained(admin_client, cast):
    stored = store(cast.partner.user, "/fine.csv")
    response = admin_client.post(f"/files/{stored.pk}/review/",
                                 {"decision": "delete", "reason": "oops"}, follow=True)
    assert b"only stopped files are deleted here" in response.content


def test_detail_offers_release_and_delete_for_a_quarantined_file(admin_client, quarantined_file):
    page = admin_client.get(f"/files/{quarantined_file.pk}/").content
    assert b'value="release"' in page and b'value="delete"' in page
    assert b'value="retry"' not in page


def test_ready_file_offers_no_review_decision(admin_client, cast):
    stored = store(cast.partner.user, "/fine.csv")
    assert b'name="decision"' not in admin_client.get(f"/files/{stored.pk}/").content
