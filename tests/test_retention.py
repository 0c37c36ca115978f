"""Retention: only what is due goes (deleted or archived with a sidecar), a dry run changes
nothing, files in the pipeline or awaiting delivery stay, it is audited, quota is freed."""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from audit.models import AuditEvent
from deliveries import routing
from deliveries import services as deliveries
from deliveries.models import Delivery, DeliveryAttempt
from retention import services
from retention.models import RetentionPolicy
from tests.api_client import fresh_throttles, make_ready, store  # noqa: F401
from transfers import quota
from transfers.models import FileState, StoredFile

pytestmark = pytest.mark.django_db(transaction=True)
PIN = "ab" * 32


def _age(stored: StoredFile, days: int) -> StoredFile:
    """Pretend a file's last state change was `days` days ago."""
    StoredFile.objects.filter(pk=stored.pk).update(
        state_changed_at=timezone.now() - timedelta(days=days))
    stored.refresh_from_db()
    return stored


def _policy(cast, **fields: Any) -> RetentionPolicy:
    return services.set_policy(cast.partner.user.partner, **{"files_after_days": 30, **fields})


def _files(cast, settings) -> dict[str, StoredFile]:
    """An old ready file, a recent one, an old one still in the pipeline, an old held one."""
    alice = cast.partner.user
    old = _age(make_ready(store(alice, "/in/old.csv", b"o" * 1000), settings), 40)
    recent = _age(make_ready(store(alice, "/in/recent.csv", b"r" * 10), settings), 5)
    waiting = _age(store(alice, "/in/waiting.csv", b"w" * 10), 40)
    held = make_ready(store(alice, "/in/held.csv", b"h" * 10), settings)
    StoredFile.objects.filter(pk=held.pk).update(state=FileState.HELD)
    held = _age(held, 40)
    return {"old": old, "recent": recent, "waiting": waiting, "held": held}


def test_retention_deletes_only_files_past_their_days(cast, settings):
    _policy(cast)
    files = _files(cast, settings)
    [report] = services.apply()
    assert [f.pk for f in report.files] == [files["old"].pk]
    for name, stored in files.items():
        stored.refresh_from_db()
        gone = name == "old"
        assert (stored.state == FileState.DELETED) is gone, name
        assert Path(stored.storage_path).exists() is not gone, name
    assert files["old"].state_reason == "retention: deleted after 30 days"
    assert files["waiting"].state == FileState.RECEIVED


def test_other_partners_files_are_kept(cast, settings):
    _policy(cast)
    other = _age(make_ready(store(cast.outsider.user, "/in/x.csv", b"x"), settings), 400)
    services.apply()
    other.refresh_from_db()
    assert other.state == FileState.READY


def test_dry_run_reports_and_changes_nothing(cast, settings):
    _policy(cast)
    files = _files(cast, settings)
    before = AuditEvent.objects.count()
    [report] = services.apply(dry_run=True)
    assert [f.pk for f in report.files] == [files["old"].pk] and report.file_bytes == 1000
    files["old"].refresh_from_db()
    assert files["old"].state == FileState.READY
    assert Path(files["old"].storage_path).exists()
    assert AuditEvent.objects.count() == before


def test_dry_run_command_prints_what_would_go(cast, settings, capsys):
    _policy(cast)
    files = _files(cast, settings)
    call_command("apply_retention", "--dry-run")
    out = capsys.readouterr().out
    assert "Acme Corp: would delete 1 file(s), 1000 bytes" in out
    assert f"would delete file {files['old'].pk} alice:/in/old.csv" in out
    assert "recent.csv" not in out and "waiting.csv" not in out
    files["old"].refresh_from_db()
    assert files["old"].state == FileState.READY


def test_retention_is_audited_per_file_and_per_partner(cast, settings):
    _policy(cast)
    files = _files(cast, settings)
    services.apply()
    per_file = AuditEvent.objects.get(action="retention.delete")
    assert per_file.object_id == str(files["old"].pk)
    assert per_file.details["path"] == "/in/old.csv" and per_file.details["after_days"] == 30
    summary = AuditEvent.objects.get(action="retention.apply")
    assert summary.details["files"] == 1 and summary.details["bytes"] == 1000
    assert summary.object_repr == "Acme Corp"


def test_retention_releases_quota(cast, settings):
    _policy(cast)
    _files(cast, settings)
    alice = cast.partner.user
    used = quota.used_bytes(alice.pk)
    services.apply()
    assert quota.used_bytes(alice.pk) == used - 1000


def test_archive_moves_encrypted_bytes_with_a_sidecar(cast, settings):
    _policy(cast, files_action="archive")
    files = _files(cast, settings)
    original = Path(files["old"].storage_path)
    stored_bytes = original.read_bytes()
    services.apply()
    files["old"].refresh_from_db()
    [archived] = [p for p in Path(settings.ARCHIVE_DIR).rglob("*") if p.name.endswith("old.csv")]
    assert not original.exists() and archived.read_bytes() == stored_bytes
    assert b"o" * 100 not in stored_bytes  # still encrypted at rest
    sidecar = json.loads(archived.with_name(archived.name + ".json").read_text())
    assert sidecar["id"] == files["old"].pk and sidecar["sha256"] == files["old"].sha256
    assert str(archived) in files["old"].state_reason
    assert AuditEvent.objects.get(action="retention.archive").details["archived_to"] \
        == str(archived)


def _route(cast):
    endpoint = deliveries.create_endpoint(
        partner=cast.partner.user.partner, name="acme", host="ftp.acme.example",
        username="portside", password="Endpoint-" + secrets.token_urlsafe(12),
        pinned_sha256=PIN)
    return deliveries.create_route(name="to-acme", endpoint=endpoint,
                                   source_user=cast.partner.user, source_folder="/out")


def test_file_not_yet_delivered_on_its_route_is_kept(cast, settings):
    _policy(cast)
    _route(cast)
    pending = _age(make_ready(store(cast.partner.user, "/out/a.csv", b"a"), settings), 40)
    owed = _age(make_ready(store(cast.partner.user, "/out/b.csv", b"b"), settings), 40)
    delivered = _age(make_ready(store(cast.partner.user, "/out/c.csv", b"c"), settings), 40)
    # Each file was routed as it became ready. a waits to go out; b's delivery is gone, as
    # if its routing had been lost (the sweeper's catch-up still owes it); c has gone out.
    assert Delivery.objects.get(stored_file=pending).status == Delivery.Status.PENDING
    Delivery.objects.filter(stored_file=owed).delete()
    Delivery.objects.filter(stored_file=delivered).update(status=Delivery.Status.DELIVERED,
                                                          finished_at=timezone.now())
    [report] = services.apply()
    assert [f.pk for f in report.files] == [delivered.pk]


def test_old_delivery_records_and_attempts_are_deleted(cast, settings):
    _policy(cast, files_after_days=None, deliveries_after_days=10)
    ready = {name: make_ready(store(cast.partner.user, f"/out/{name}.csv", b"d"), settings)
             for name in ("old", "new", "run")}
    route = _route(cast)  # after the files are ready: the deliveries are made below
    rows = []
    for name, age in (("old", 20), ("new", 2)):
        delivery = routing.create_delivery(route, ready[name])
        assert delivery is not None
        DeliveryAttempt.objects.create(delivery=delivery, number=1, outcome="success")
        Delivery.objects.filter(pk=delivery.pk).update(
            status=Delivery.Status.DELIVERED, finished_at=timezone.now() - timedelta(days=age))
        rows.append(delivery)
    running = routing.create_delivery(route, ready["run"])
    assert running is not None
    Delivery.objects.filter(pk=running.pk).update(
        status=Delivery.Status.RUNNING, created_at=timezone.now() - timedelta(days=30))
    [report] = services.apply()
    assert report.deliveries == 1 and report.attempts == 1 and report.files == []
    assert set(Delivery.objects.values_list("pk", flat=True)) == {rows[1].pk, running.pk}
    assert DeliveryAttempt.objects.count() == 1
    assert AuditEvent.objects.get(action="retention.apply").details["deliveries"] == 1


def test_policy_refuses_zero_days(cast):
    from mft.errors import InvalidInput

    with pytest.raises(InvalidInput):
        _policy(cast, files_after_days=0)


def test_api_admin_sets_policy_and_reader_previews_without_changes(cast, settings):
    from tests.api_client import client_for, make_user

    files = _files(cast, settings)
    admin_client = client_for(cast.admin.user, "admin")
    created = admin_client.post("/api/v1/retention-policies/", {
        "partner": cast.partner.user.partner_id, "files_after_days": 30,
        "files_action": "archive"}, format="json")
    assert created.status_code == 201, created.content
    pk = created.json()["id"]
    assert AuditEvent.objects.filter(action="retention.policy").count() == 1
    changed = admin_client.patch(f"/api/v1/retention-policies/{pk}/",
                                 {"deliveries_after_days": 90}, format="json")
    assert changed.status_code == 200
    assert changed.json()["files_action"] == "archive"
    assert changed.json()["deliveries_after_days"] == 90
    reader = client_for(make_user("reader", "auditor"), "read")
    preview = reader.get(f"/api/v1/retention-policies/{pk}/preview/")
    assert preview.status_code == 200
    assert [f["id"] for f in preview.json()["files"]] == [files["old"].pk]
    files["old"].refresh_from_db()
    assert files["old"].state == FileState.READY
    assert reader.delete(f"/api/v1/retention-policies/{pk}/").status_code == 403
    partner_client = client_for(cast.partner.user, "read", "transfer")
    assert partner_client.get(f"/api/v1/retention-policies/{pk}/").status_code == 200
    assert partner_client.post("/api/v1/retention-policies/", {
        "partner": cast.partner.user.partner_id, "files_after_days": 1},
        format="json").status_code == 403
    assert admin_client.delete(f"/api/v1/retention-policies/{pk}/").status_code == 204
    assert not RetentionPolicy.objects.exists()
