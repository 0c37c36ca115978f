"""A small file's steps run under one lease and commit together: a worker killed before that
commit leaves none of them recorded (they are redone, each audited once); a large file's
steps still commit one by one."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.api_client import pipeline_actions, store
from transfers import pipeline
from transfers.models import FileState, PipelineStep, StoredFile

pytestmark = pytest.mark.django_db(transaction=True)


class WorkerKilled(BaseException):
    """What a killed worker looks like from inside: nothing after it runs."""


def killed_at_dlp(stored: StoredFile, monkeypatch: pytest.MonkeyPatch) -> None:
    """Advance the file with a worker that dies in its DLP step."""
    def die(_: StoredFile) -> None:
        raise WorkerKilled

    with monkeypatch.context() as patch:
        patch.setitem(pipeline._HANDLERS, "dlp", die)
        with pytest.raises(WorkerKilled):
            pipeline.advance(stored.pk)


def test_a_small_file_killed_mid_pipeline_has_no_step_recorded_and_all_redone_once(
        cast, clamd, settings, monkeypatch):
    settings.CLAMD_ADDRESS = clamd.address
    stored = store(cast.partner.user, "/small.txt", b"plain text\n")
    killed_at_dlp(stored, monkeypatch)
    steps = list(stored.steps.order_by("id"))
    assert [s.status for s in steps] == [PipelineStep.Status.RUNNING] + [
        PipelineStep.Status.PENDING] * 3
    assert pipeline_actions(stored) == ["pipeline.received"]
    PipelineStep.objects.filter(pk=steps[0].pk).update(
        lease_until=timezone.now() - timedelta(seconds=1))  # the dead worker's lease expires
    pipeline.advance(stored.pk)
    stored.refresh_from_db()
    assert stored.state == FileState.READY and stored.scan_engine.startswith("ClamAV")
    assert [s.attempts for s in stored.steps.order_by("id")] == [2, 1, 1, 1]
    assert pipeline_actions(stored) == ["pipeline.received", "pipeline.decrypt",
                                        "pipeline.scan", "pipeline.dlp", "pipeline.finish"]


def test_a_large_file_killed_mid_pipeline_keeps_the_steps_it_finished(
        cast, clamd, settings, monkeypatch):
    settings.CLAMD_ADDRESS, settings.PIPELINE_BATCH_BYTES = clamd.address, 4
    stored = store(cast.partner.user, "/large.txt", b"plain text\n")
    killed_at_dlp(stored, monkeypatch)
    stored.refresh_from_db()
    assert [s.status for s in stored.steps.order_by("id")] == [
        PipelineStep.Status.DONE, PipelineStep.Status.DONE, PipelineStep.Status.RUNNING,
        PipelineStep.Status.PENDING]
    assert stored.state == FileState.CLEAN
    assert pipeline_actions(stored) == ["pipeline.received", "pipeline.decrypt",
                                        "pipeline.scan"]


def test_a_small_file_whose_scan_must_wait_records_the_steps_before_it(cast, settings):
    settings.CLAMD_ADDRESS, settings.SCAN_MODE = "", "on"  # no scanner: held, retried
    stored = store(cast.partner.user, "/held.txt", b"data")
    pipeline.advance(stored.pk)
    stored.refresh_from_db()
    decrypt, scan = stored.steps.order_by("id")[:2]
    assert stored.state == FileState.HELD
    assert (decrypt.status, decrypt.attempts) == (PipelineStep.Status.DONE, 1)
    assert (scan.status, scan.attempts, scan.lease_owner) == (
        PipelineStep.Status.WAITING, 1, pipeline.worker_name())
    assert scan.not_before - scan.finished_at == timedelta(seconds=5 * 2 ** 1)
    assert pipeline_actions(stored) == ["pipeline.received", "pipeline.decrypt", "pipeline.scan"]
