"""The audit log over the API: filters, and CSV / JSON-lines exports that stream."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from audit import events, exporters
from audit.events import Origin
from audit.models import AuditEvent
from tests.api_client import client_for, fresh_throttles  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


def _log(count: int, *, actor: str = "ops", action: str = "mkdir") -> None:
    for n in range(count):
        events.file_event(origin=Origin(actor=actor, protocol="ftps"), action=action,
                          path=f"/d{n}")


def _lines(response) -> list[str]:
    assert response.status_code == 200, response.content
    assert response.streaming
    return b"".join(response.streaming_content).decode().splitlines()


def test_events_filter_by_actor_and_action(cast):
    _log(2, actor="ops", action="mkdir")
    _log(1, actor="ops", action="rmdir")
    response = client_for(cast.admin.user, "read").get(
        "/api/v1/audit-events/?actor=ops&action=rmdir")
    assert [row["action"] for row in response.json()["results"]] == ["rmdir"]


def test_events_filter_by_outcome(cast):
    events.login_failed(origin=Origin(source_ip="192.0.2.9", protocol="ftps"),
                        username="eve", reason="wrong password")
    response = client_for(cast.admin.user, "read").get("/api/v1/audit-events/?outcome=failure")
    assert [row["actor"] for row in response.json()["results"]] == ["eve"]


def test_events_filter_by_object(cast):
    client_for(cast.admin.user, "admin").patch(
        f"/api/v1/users/{cast.partner.user.pk}/", {"quota_files": 3}, format="json")
    response = client_for(cast.admin.user, "read").get(
        f"/api/v1/audit-events/?object_type=user&object_id={cast.partner.user.pk}")
    actions = [row["action"] for row in response.json()["results"]]
    assert actions == ["user.create", "user.update"]


def test_events_filter_by_date_range(cast):
    future = (timezone.now() + timedelta(hours=1)).isoformat()
    response = client_for(cast.admin.user, "read").get(
        "/api/v1/audit-events/", {"created_after": future})
    assert response.json()["results"] == []


def test_an_invalid_source_ip_filter_is_a_400(cast):
    response = client_for(cast.admin.user, "read").get("/api/v1/audit-events/?source_ip=nope")
    assert response.status_code == 400
    assert "source_ip" in response.json()["errors"]


def test_a_partner_token_cannot_read_the_audit_log(cast):
    response = client_for(cast.partner.user, "read").get("/api/v1/audit-events/")
    assert response.status_code == 403


def test_jsonl_export_streams_one_event_per_line(cast):
    _log(3)
    lines = _lines(client_for(cast.admin.user, "read").get(
        "/api/v1/audit-events/export/jsonl/?actor=ops"))
    rows = [json.loads(line) for line in lines]
    assert [row["details"]["path"] for row in rows] == ["/d0", "/d1", "/d2"]
    assert {row["actor"] for row in rows} == {"ops"}


def test_csv_export_streams_a_header_and_the_filtered_rows(cast):
    _log(2, action="mkdir")
    _log(1, action="rmdir")
    lines = _lines(client_for(cast.admin.user, "read").get(
        "/api/v1/audit-events/export/csv/?action=mkdir"))
    rows = list(csv.DictReader(io.StringIO("\n".join(lines))))
    assert [row["action"] for row in rows] == ["mkdir", "mkdir"]
    assert list(rows[0]) == list(exporters.COLUMNS)


def test_export_pages_through_every_row_in_id_order(cast, monkeypatch):
    monkeypatch.setattr(exporters.iter_events, "__kwdefaults__", {"batch": 7})
    _log(30)
    lines = _lines(client_for(cast.admin.user, "read").get(
        "/api/v1/audit-events/export/jsonl/?actor=ops"))
    ids = [json.loads(line)["id"] for line in lines]
    assert len(ids) == 30 and ids == sorted(ids)


def test_export_reads_in_batches_not_the_whole_table(cast, django_assert_max_num_queries):
    _log(25)
    stream = exporters.iter_events(AuditEvent.objects.filter(actor="ops"), batch=10)
    with django_assert_max_num_queries(5):  # newest id + three batches + the empty one
        pages = [len(page) for page in stream]
    assert pages == [10, 10, 5]


def test_csv_export_defuses_spreadsheet_formulas(cast):
    events.file_event(origin=Origin(actor="=cmd|' /C calc'!A0", protocol="ftps"),
                      action="mkdir", path="/x")
    lines = _lines(client_for(cast.admin.user, "read").get(
        "/api/v1/audit-events/export/csv/?action=mkdir"))
    assert "'=cmd|" in lines[1]


def test_an_export_is_itself_audited_with_its_filters(cast):
    client_for(cast.admin.user, "read").get("/api/v1/audit-events/export/csv/?actor=ops")
    event = AuditEvent.objects.get(action="audit.export")
    assert event.details["filters"] == {"actor": "ops"} and event.details["format"] == "csv"


def test_a_partner_token_cannot_export_the_audit_log(cast):
    response = client_for(cast.partner.user, "read").get("/api/v1/audit-events/export/jsonl/")
    assert response.status_code == 403
