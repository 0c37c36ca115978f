"""How the pipeline records its steps: each runs once, is audited once and in order, and the
next step's lease commits with the previous step's outcome (so a worker killed between two
steps leaves a lease that expires and is redone, never a step that is skipped), and what the
file's new state sets off downstream (routing, the file.ready event) commits with it."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from django.db import connection
from django.dispatch import Signal
from django.utils import timezone

from tests.api_client import pipeline_actions, store
from transfers import pipeline, signals
from transfers.models import FileState, PipelineStep, StoredFile

pytestmark = pytest.mark.django_db(transaction=True)


@contextlib.contextmanager
def connected(signal: Signal, *receivers: Callable[..., object]) -> Iterator[None]:
    """Connect receivers (after the apps' own) for the duration of the block."""
    uids = [f"test.receiver.{index}" for index in range(len(receivers))]
    for receiver, uid in zip(receivers, uids, strict=True):
        signal.connect(receiver, dispatch_uid=uid, weak=False)
    try:
        yield
    finally:
        for uid in uids:
            signal.disconnect(dispatch_uid=uid)



def test_a_clean_file_passes_every_step_once_audited_once_each_in_order(cast, clamd, settings):
    settings.CLAMD_ADDRESS = clamd.address
    stored = store(cast.partner.user, "/once.txt", b"plain text\n")
    pipeline.advance(stored.pk)
    stored.refresh_from_db()
    assert stored.state == FileState.READY and stored.ready_at is not None
    steps = list(stored.steps.order_by("id"))
    assert [(s.name, s.status, s.attempts) for s in steps] == [
        (name, PipelineStep.Status.DONE, 1) for name in pipeline.STEPS]
    assert all(s.lease_until is None and s.lease_owner == pipeline.worker_name() for s in steps)
    for earlier, later in itertools.pairwise(steps):
        assert earlier.finished_at <= later.started_at <= later.finished_at
    assert pipeline_actions(stored) == ["pipeline.received", "pipeline.decrypt",
                                        "pipeline.scan", "pipeline.dlp", "pipeline.finish"]
    assert steps[1].outcome == "clean" and "seconds" in steps[1].details


def test_a_worker_killed_between_steps_has_the_next_step_redone_and_no_done_step_rerun(
        cast, clamd, settings):
    settings.CLAMD_ADDRESS = clamd.address
    stored = store(cast.partner.user, "/killed.txt", b"plain text\n")
    past = timezone.now() - timedelta(seconds=1)
    # What a worker killed right after a step's record leaves: that step done, and the next
    # one leased in the same commit by the dead worker, its lease now expired.
    PipelineStep.objects.filter(stored_file=stored, name="decrypt").update(
        status=PipelineStep.Status.DONE, attempts=1, started_at=past, finished_at=past)
    PipelineStep.objects.filter(stored_file=stored, name="scan").update(
        status=PipelineStep.Status.RUNNING, attempts=1, lease_owner="dead-host:1",
        lease_until=past, started_at=past)
    assert pipeline.sweep() == 1  # the expired lease is found and the file re-enqueued
    pipeline.advance(stored.pk)
    stored.refresh_from_db()
    assert stored.state == FileState.READY
    assert [s.attempts for s in stored.steps.order_by("id")] == [1, 2, 1, 1]
    assert pipeline_actions(stored) == ["pipeline.received", "pipeline.scan", "pipeline.dlp",
                                        "pipeline.finish"]


def test_a_deleted_file_has_no_step_claimed(cast, settings):
    settings.SCAN_MODE = "off"
    stored = store(cast.partner.user, "/gone.txt", b"data")
    StoredFile.objects.filter(pk=stored.pk).update(state=FileState.DELETED)
    pipeline.advance(stored.pk)
    assert [(s.status, s.attempts) for s in stored.steps.order_by("id")] == [
        (PipelineStep.Status.PENDING, 0)] * len(pipeline.STEPS)


def test_a_retried_step_backs_off_by_the_attempts_counted_in_the_database(cast, settings):
    settings.CLAMD_ADDRESS, settings.SCAN_MODE, settings.PIPELINE_RETRY_MAX = "", "on", 600
    stored = store(cast.partner.user, "/again.txt", b"data")
    PipelineStep.objects.filter(stored_file=stored, name="decrypt").update(
        status=PipelineStep.Status.DONE, attempts=1)
    PipelineStep.objects.filter(stored_file=stored, name="scan").update(
        status=PipelineStep.Status.WAITING, attempts=3)
    pipeline.advance(stored.pk)  # no scanner configured: held, retried with a back-off
    step = stored.steps.get(name="scan")
    stored.refresh_from_db()
    assert stored.state == FileState.HELD
    assert step.status == PipelineStep.Status.WAITING and step.attempts == 4
    assert step.not_before - step.finished_at == timedelta(seconds=5 * 2 ** 4)


class WorkerKilled(BaseException):
    """What a killed worker looks like from inside: nothing after it runs."""


def test_a_worker_killed_while_announcing_ready_leaves_no_event_and_the_redo_announces_once(
        cast, settings):
    from notifications.models import OutboundEvent

    settings.SCAN_MODE = "off"
    stored = store(cast.partner.user, "/announced.txt", b"data")

    def killed(**_: object) -> None:
        raise WorkerKilled

    with connected(signals.file_ready, killed), pytest.raises(WorkerKilled):
        pipeline.advance(stored.pk)
    stored.refresh_from_db()
    assert stored.state == FileState.RECEIVED
    assert not OutboundEvent.objects.filter(event="file.ready").exists()
    assert pipeline_actions(stored) == ["pipeline.received"]
    pipeline.advance(stored.pk)
    stored.refresh_from_db()
    assert stored.state == FileState.READY
    assert OutboundEvent.objects.filter(event="file.ready").count() == 1


def test_a_receiver_failing_in_the_database_leaves_the_file_recorded_ready(cast, settings):
    settings.SCAN_MODE = "off"
    stored = store(cast.partner.user, "/broken-receiver.txt", b"data")

    def broken(**_: object) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table")

    with connected(signals.file_ready, broken):
        pipeline.advance(stored.pk)
    stored.refresh_from_db()
    assert stored.state == FileState.READY
    assert pipeline_actions(stored) == ["pipeline.received", "pipeline.decrypt",
                                        "pipeline.scan", "pipeline.dlp", "pipeline.finish"]


def test_a_file_deleted_before_its_ready_record_is_not_announced(cast, settings, monkeypatch):
    from notifications.models import OutboundEvent

    settings.SCAN_MODE, settings.PIPELINE_BATCH_BYTES = "off", 1  # steps commit one by one
    stored = store(cast.partner.user, "/gone-before-ready.txt", b"data")
    heard: list[int] = []
    finish = pipeline._HANDLERS["finish"]

    def deleted_meanwhile(running: StoredFile) -> object:
        StoredFile.objects.filter(pk=stored.pk).update(state=FileState.DELETED)
        return finish(running)

    def hear(stored_file: StoredFile, **_: object) -> None:
        heard.append(stored_file.pk)

    monkeypatch.setitem(pipeline._HANDLERS, "finish", deleted_meanwhile)
    with connected(signals.file_ready, hear):
        pipeline.advance(stored.pk)
    stored.refresh_from_db()
    assert stored.state == FileState.DELETED
    assert heard == []
    assert not OutboundEvent.objects.filter(event="file.ready").exists()


def test_planners_read_before_the_ready_record_and_their_writes_commit_inside_it(
        cast, settings):
    from notifications.models import OutboundEvent

    settings.SCAN_MODE = "off"
    stored = store(cast.partner.user, "/planned.txt", b"data")
    seen: list[tuple[str, bool, str]] = []

    def write(recorded: StoredFile) -> None:
        seen.append(("write", connection.in_atomic_block, recorded.state))
        OutboundEvent.objects.create(event="test.planned", subject="planned", body="", data={})

    def plan(stored_file: StoredFile, **_: object) -> object:
        seen.append(("plan", connection.in_atomic_block, stored_file.state))
        return write

    with connected(signals.plan_file_ready, plan):
        pipeline.advance(stored.pk)
    assert seen == [("plan", False, FileState.RECEIVED), ("write", True, FileState.READY)]
    assert OutboundEvent.objects.filter(event="test.planned").count() == 1
    assert OutboundEvent.objects.filter(event="file.ready").count() == 1


def test_a_failing_planner_or_planned_write_leaves_the_file_recorded_ready(cast, settings):
    from notifications.models import OutboundEvent

    settings.SCAN_MODE = "off"
    stored = store(cast.partner.user, "/failing-plans.txt", b"data")

    def broken_write(_: StoredFile) -> None:
        OutboundEvent.objects.create(event="test.rolled-back", subject="", body="", data={})
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table")

    def failing_plan(**_: object) -> object:
        raise RuntimeError("planner broke")

    with connected(signals.plan_file_ready, failing_plan, lambda **_: broken_write):
        pipeline.advance(stored.pk)
    stored.refresh_from_db()
    assert stored.state == FileState.READY
    assert not OutboundEvent.objects.filter(event="test.rolled-back").exists()
    assert OutboundEvent.objects.filter(event="file.ready").count() == 1


def test_a_file_not_ending_ready_is_not_planned_for(cast, settings):
    settings.CLAMD_ADDRESS, settings.SCAN_MODE = "", "on"  # no scanner: held
    stored = store(cast.partner.user, "/held-unplanned.txt", b"data")
    planned: list[int] = []

    def plan(stored_file: StoredFile, **_: object) -> None:
        planned.append(stored_file.pk)

    with connected(signals.plan_file_ready, plan):
        pipeline.advance(stored.pk)
    stored.refresh_from_db()
    assert stored.state == FileState.HELD and planned == []


def _after_the_planners(act: Callable[[], object]) -> contextlib.AbstractContextManager[None]:
    """Connect a planner that runs after the apps' planners read: it changes the database
    between their reads and the record, as another process could."""
    def plan(**_: object) -> None:
        act()

    return connected(signals.plan_file_ready, plan)


def test_a_route_deleted_after_it_was_read_gets_no_delivery_and_the_file_is_ready(
        cast, settings):
    from deliveries import services
    from deliveries.models import Delivery, Route

    settings.SCAN_MODE = "off"
    endpoint = services.create_endpoint(
        partner=cast.partner.user.partner, name="bank", host="127.0.0.1", port=2121,
        username="acme", password="generated-in-test", pinned_sha256="ab" * 32)
    kept = services.create_route(name="kept", endpoint=endpoint, source_user=cast.partner.user)
    gone = services.create_route(name="gone", endpoint=endpoint, source_user=cast.partner.user)
    stored = store(cast.partner.user, "/routed.txt", b"data")
    with _after_the_planners(lambda: Route.objects.filter(pk=gone.pk).delete()):
        pipeline.advance(stored.pk)
    stored.refresh_from_db()
    assert stored.state == FileState.READY
    assert [d.route_id for d in Delivery.objects.filter(stored_file=stored)] == [kept.pk]


def test_a_subscription_deleted_after_it_was_read_gets_no_notification(cast, settings):
    from notifications import subscriptions
    from notifications.models import Notification, OutboundEvent, Subscription

    settings.SCAN_MODE = "off"
    made = [subscriptions.create_subscription(
        name=name, scope="admin", channel="webhook", events_filter=["file.ready"],
        url="https://erp.example.test/hook").subscription for name in ("kept", "gone")]
    stored = store(cast.partner.user, "/announced-to-one.txt", b"data")
    with _after_the_planners(lambda: Subscription.objects.filter(pk=made[1].pk).delete()):
        pipeline.advance(stored.pk)
    stored.refresh_from_db()
    assert stored.state == FileState.READY
    event = OutboundEvent.objects.get(event="file.ready")
    assert [n.subscription_id for n in Notification.objects.filter(event=event)] == [made[0].pk]
