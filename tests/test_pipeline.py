"""The file pipeline with a real worker on the real broker and a real clamd."""

from __future__ import annotations

import io
import time
import zipfile

import pytest
from django.utils import timezone

from audit.events import Origin
from audit.models import AuditEvent
from tests.clamd_server import EICAR
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
    assert AuditEvent.objects.filter(action="pipeline.scan", outcome="failure",
                                     object_id=str(stored.pk)).exists()


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
