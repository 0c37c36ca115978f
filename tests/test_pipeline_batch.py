"""A small file's steps run together and commit together, the first step's lease taken in
that commit: a worker killed before it leaves none of them recorded nor leased (they are
redone, each audited once), and a duplicate run records nothing; a large file's steps still
commit one by one."""

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
    assert [(s.status, s.attempts) for s in steps] == [(PipelineStep.Status.PENDING, 0)] * 4
    assert pipeline_actions(stored) == ["pipeline.received"]
    pipeline.advance(stored.pk)  # the redelivered message
    stored.refresh_from_db()
    assert stored.state == FileState.READY and stored.scan_engine.startswith("ClamAV")
    assert [s.attempts for s in stored.steps.order_by("id")] == [1, 1, 1, 1]
    assert pipeline_actions(stored) == ["pipeline.received", "pipeline.decrypt",
                                        "pipeline.scan", "pipeline.dlp", "pipeline.finish"]


def test_a_small_file_run_twice_at_once_is_recorded_once_by_the_run_that_commits_first(
        cast, clamd, settings, monkeypatch):
    settings.CLAMD_ADDRESS = clamd.address
    stored = store(cast.partner.user, "/twice.txt", b"plain text\n")
    dlp = pipeline._HANDLERS["dlp"]

    def duplicate_finishes_first(running: StoredFile) -> object:
        monkeypatch.setitem(pipeline._HANDLERS, "dlp", dlp)
        pipeline.advance(stored.pk)  # a duplicate message, taken by another worker
        return dlp(running)

    monkeypatch.setitem(pipeline._HANDLERS, "dlp", duplicate_finishes_first)
    pipeline.advance(stored.pk)
    stored.refresh_from_db()
    assert stored.state == FileState.READY
    assert [s.attempts for s in stored.steps.order_by("id")] == [1, 1, 1, 1]
    assert pipeline_actions(stored) == ["pipeline.received", "pipeline.decrypt",
                                        "pipeline.scan", "pipeline.dlp", "pipeline.finish"]


def test_a_small_file_leased_by_a_live_worker_is_left_alone(cast, settings):
    settings.SCAN_MODE = "off"
    stored = store(cast.partner.user, "/leased-small.txt", b"data")
    PipelineStep.objects.filter(stored_file=stored, name="decrypt").update(
        status=PipelineStep.Status.RUNNING, lease_owner="elsewhere:1",
        lease_until=timezone.now() + timedelta(seconds=60))
    pipeline.advance(stored.pk)
    stored.refresh_from_db()
    assert stored.state == FileState.RECEIVED
    assert pipeline_actions(stored) == ["pipeline.received"]


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


def test_a_small_file_deleted_while_its_steps_ran_has_none_of_them_recorded(
        cast, settings, monkeypatch):
    settings.SCAN_MODE = "off"
    stored = store(cast.partner.user, "/deleted-meanwhile.txt", b"data")
    dlp = pipeline._HANDLERS["dlp"]

    def deleted_meanwhile(running: StoredFile) -> object:
        StoredFile.objects.filter(pk=stored.pk).update(state=FileState.DELETED)
        return dlp(running)

    monkeypatch.setitem(pipeline._HANDLERS, "dlp", deleted_meanwhile)
    pipeline.advance(stored.pk)
    stored.refresh_from_db()
    assert stored.state == FileState.DELETED
    assert [(s.status, s.attempts) for s in stored.steps.order_by("id")] == [
        (PipelineStep.Status.PENDING, 0)] * len(pipeline.STEPS)
    assert pipeline_actions(stored) == ["pipeline.received"]


def test_a_small_file_records_each_step_with_its_outcome_timing_and_lease_owner(cast, settings):
    settings.SCAN_MODE = "off"
    stored = store(cast.partner.user, "/recorded.txt", b"data")
    pipeline.advance(stored.pk)
    for step in stored.steps.order_by("id"):
        assert (step.status, step.attempts, step.lease_owner, step.lease_until) == (
            PipelineStep.Status.DONE, 1, pipeline.worker_name(), None)
        assert step.outcome and "seconds" in step.details
        assert step.started_at <= step.finished_at
