"""The file pipeline with a real worker on the real broker and a real clamd."""

from __future__ import annotations

import io
import os
import signal
import time
import zipfile
from datetime import timedelta

import pytest
from django.utils import timezone

from audit.events import Origin
from audit.models import AuditEvent
from notifications.models import OutboundEvent
from tests.clamd_server import EICAR, start_clamd
from transfers import pipeline, storage, uploads
from transfers.models import FileState, PipelineStep, StoredFile

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = Origin(actor="test", protocol="test")


def store(user, path: str, data: bytes) -> StoredFile:
    """Upload bytes through the same service the gateway and the API use."""
    upload = uploads.begin_upload(user, path, origin=ORIGIN)
    for start in range(0, len(data), 1 << 20):
        upload.write(data[start:start + (1 << 20)])
    return upload.finish()


def wait_for_state(stored: StoredFile, *states: str, timeout: float = 60) -> StoredFile:
    """Poll until the file reaches one of the states (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stored.refresh_from_db()
        if stored.state in states:
            return stored
        time.sleep(0.1)
    raise AssertionError(f"file stayed {stored.state} ({stored.state_reason}), wanted {states}")


def wait_for_alert(event: str, timeout: float = 30) -> OutboundEvent:
    """Poll until an alert of this kind was raised (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alert = OutboundEvent.objects.filter(event=event).first()
        if alert is not None:
            return alert
        time.sleep(0.1)
    raise AssertionError(f"no {event} alert")


def test_clean_file_goes_received_scanning_clean_ready(cast, clamd, start_worker):
    start_worker(MFT_CLAMD=clamd.address)
    stored = wait_for_state(store(cast.partner.user, "/orders.csv", b"a;b\n" * 1000),
                            FileState.READY)
    steps = {s.name: s for s in stored.steps.all()}
    assert [steps[n].outcome for n in ("scan", "dlp", "finish")] == ["clean", "no rules", "ready"]
    assert all(s.finished_at and s.started_at for s in steps.values())
    actions = list(AuditEvent.objects.filter(object_id=str(stored.pk), object_type="storedfile")
                   .values_list("action", flat=True))
    assert actions[:1] == ["upload"]
    assert {"pipeline.received", "pipeline.scan", "pipeline.dlp", "pipeline.finish"} <= set(actions)
    assert stored.scan_engine.startswith("ClamAV")


@pytest.mark.parametrize("payload", ["plain", "zipped"])
def test_infected_file_is_quarantined_out_of_the_home(cast, clamd, start_worker, payload):
    start_worker(MFT_CLAMD=clamd.address)
    data = EICAR
    if payload == "zipped":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("readme.txt", EICAR)
        data = buffer.getvalue()
    stored = store(cast.partner.user, "/evil.bin", data)
    home_copy = stored.storage_path
    stored = wait_for_state(stored, FileState.INFECTED)
    assert "Eicar" in stored.scan_signature
    assert not (uploads.home_of(cast.partner.user) / "evil.bin").exists()
    assert stored.storage_path != home_copy and stored.storage_path.startswith(
        str(storage.quarantine_dir()))
    assert EICAR not in open(stored.storage_path, "rb").read()  # encrypted at rest
    assert stored.scan_engine.startswith("ClamAV")
    assert AuditEvent.objects.filter(action="pipeline.scan", outcome="failure",
                                     object_id=str(stored.pk)).exists()
    alert = wait_for_alert("file.quarantined")  # sent just after the state's commit
    assert alert.data["file"]["id"] == stored.pk and "Eicar" in alert.data["file"]["signature"]


def test_file_is_held_without_a_scanner_and_never_ready(cast, start_worker):
    start_worker(MFT_CLAMD="")
    stored = wait_for_state(store(cast.partner.user, "/held.txt", b"x"), FileState.HELD)
    assert "no virus scanner configured" in stored.state_reason
    time.sleep(1)
    stored.refresh_from_db()
    assert stored.state == FileState.HELD


def test_file_held_while_clamd_is_down_is_scanned_after_it_returns(cast, clamd, start_worker):
    start_worker(MFT_CLAMD=clamd.address, MFT_PIPELINE_RETRY_MAX_SECONDS="1")
    clamd.stop()
    try:
        stored = wait_for_state(store(cast.partner.user, "/later.txt", b"fine"), FileState.HELD)
        assert "unavailable" in stored.state_reason
    finally:
        clamd.start()
    deadline = time.monotonic() + 60
    while stored.state != FileState.READY and time.monotonic() < deadline:
        pipeline.sweep()  # what beat runs periodically
        time.sleep(0.5)
        stored.refresh_from_db()
    assert stored.state == FileState.READY
    assert stored.steps.get(name="scan").attempts >= 2


def test_file_is_held_while_clamd_hangs_and_scanned_once_it_answers(cast, clamd, settings):
    settings.CLAMD_ADDRESS, settings.SCAN_TIMEOUT = clamd.address, 2
    settings.PIPELINE_RETRY_MAX = 1
    stored = store(cast.partner.user, "/slow.txt", b"fine")
    os.kill(clamd.pid, signal.SIGSTOP)  # accepts connections (kernel backlog), never answers
    try:
        pipeline.advance(stored.pk)
        stored.refresh_from_db()
    finally:
        os.kill(clamd.pid, signal.SIGCONT)
    assert stored.state == FileState.HELD and "unavailable" in stored.state_reason
    step = stored.steps.get(name="scan")
    assert step.status == PipelineStep.Status.WAITING and step.not_before is not None
    time.sleep(1.1)  # the back-off, capped at PIPELINE_RETRY_MAX
    pipeline.advance(stored.pk)
    stored.refresh_from_db()
    assert stored.state == FileState.READY


def test_file_refused_by_clamd_for_its_size_is_held_for_an_admin(cast, settings,
                                                                 tmp_path_factory):
    small = start_clamd(tmp_path_factory.mktemp("clamd-small"), stream_max_length="1M")
    try:
        settings.CLAMD_ADDRESS = small.address
        stored = store(cast.partner.user, "/large.bin", os.urandom(2 << 20))
        pipeline.advance(stored.pk)
        stored.refresh_from_db()
    finally:
        small.stop()
    assert stored.state == FileState.HELD and "refused" in stored.state_reason
    step = stored.steps.get(name="scan")
    assert step.status == PipelineStep.Status.WAITING and step.not_before is None  # an admin's


def test_a_step_leased_by_a_live_worker_is_left_alone_and_a_done_one_never_rerun(cast,
                                                                                 settings):
    settings.SCAN_MODE = "off"
    stored = store(cast.partner.user, "/leased.txt", b"data")
    step = PipelineStep.objects.get(stored_file=stored, name="decrypt")
    PipelineStep.objects.filter(pk=step.pk).update(
        status=PipelineStep.Status.RUNNING, lease_owner="elsewhere:1",
        lease_until=timezone.now() + timedelta(seconds=60))
    pipeline.advance(stored.pk)  # a duplicate message while the owner still works
    step.refresh_from_db()
    stored.refresh_from_db()
    assert (step.status, step.attempts, step.lease_owner) == (
        PipelineStep.Status.RUNNING, 0, "elsewhere:1")
    assert stored.state == FileState.RECEIVED
    PipelineStep.objects.filter(pk=step.pk).update(lease_until=timezone.now())  # owner died
    pipeline.advance(stored.pk)
    pipeline.advance(stored.pk)  # a late duplicate after the file finished
    stored.refresh_from_db()
    assert stored.state == FileState.READY
    assert [s.attempts for s in stored.steps.order_by("id")] == [1, 1, 1, 1]
    assert AuditEvent.objects.filter(action="pipeline.finish",
                                     object_id=str(stored.pk)).count() == 1


def test_worker_killed_mid_scan_is_redone_and_finishes_exactly_once(cast, clamd, start_worker):
    env = {"MFT_CLAMD": clamd.address, "MFT_PIPELINE_LEASE_SECONDS": "10"}
    first = start_worker(**env)
    big = b"\0" * (150 * 1024 * 1024)
    stored = store(cast.partner.user, "/big.bin", big)
    wait_for_state(stored, FileState.SCANNING, timeout=60)
    first.kill()
    step = PipelineStep.objects.get(stored_file=stored, name="scan")
    assert step.status == PipelineStep.Status.RUNNING
    start_worker(**env)
    deadline = time.monotonic() + 90
    while stored.state != FileState.READY and time.monotonic() < deadline:
        if step.lease_until and step.lease_until < timezone.now():
            pipeline.sweep()
        time.sleep(0.5)
        stored.refresh_from_db()
        step.refresh_from_db()
    assert stored.state == FileState.READY
    assert step.attempts == 2
    finished = AuditEvent.objects.filter(action="pipeline.finish", object_id=str(stored.pk))
    assert finished.count() == 1


def test_the_pipeline_task_is_sent_only_once_the_upload_commits(cast, monkeypatch):
    from django.db import transaction

    sent: list[int] = []
    monkeypatch.setattr(pipeline, "enqueue", lambda file_id, countdown=None: sent.append(file_id))
    with transaction.atomic():
        stored = store(cast.partner.user, "/after-commit.csv", b"a,b\n")
        assert sent == []  # a worker must never get an id it cannot read yet
    assert sent == [stored.pk]
    with pytest.raises(RuntimeError), transaction.atomic():
        store(cast.partner.user, "/rolled-back.csv", b"c,d\n")
        raise RuntimeError("the request failed after the upload")
    assert sent == [stored.pk]
