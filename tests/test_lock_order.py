"""Service level, PostgreSQL: a ban and an alert recorded at the same moment both commit.

Each transaction appends to the audit chain (the chain's advisory lock) and announces on the
event feed (the feed's advisory lock). A ban audits, then notifies; a missing-file or
expiry alert notifies, then audits. Paused right before its second lock, each waited for
the other's first and PostgreSQL aborted one of them ("deadlock detected"): a lost ban or a
lost alert. The feed now takes the chain's lock before its own, so whichever transaction
reaches the chain first finishes and the other follows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from accounts import bans
from accounts.models import Ban
from alerts import expiry
from audit import chain
from audit.models import AuditEvent
from expected import services as expected_files
from expected.models import Deadline, ExpectedFile
from notifications import services as feed
from notifications.models import OutboundEvent

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

WAIT_S = 20
ADDRESS = "203.0.113.7"


def _pause_before_lock(lock_id: int, meet: threading.Barrier) -> Callable[..., Any]:
    """Return an execute wrapper that, the first time its connection asks for the advisory
    lock `lock_id`, waits at `meet` until the other transaction has reached its own pause."""
    paused = threading.Event()

    def wrapper(execute: Callable[..., Any], sql: str, params: Any, many: bool,
                context: Any) -> Any:
        if (not paused.is_set() and "pg_advisory_xact_lock" in sql
                and list(params or ()) == [lock_id]):
            paused.set()
            meet.wait()
        return execute(sql, params, many, context)

    return wrapper


def _in_thread(work: Callable[[], object], lock_id: int, meet: threading.Barrier,
               errors: list[BaseException]) -> threading.Thread:
    """Start `work` on its own connection, paused before it first asks for `lock_id`."""

    def run() -> None:
        try:
            with connection.execute_wrapper(_pause_before_lock(lock_id, meet)):
                work()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
            meet.abort()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _race_a_ban_against(alert: Callable[[], object]) -> list[BaseException]:
    """Run a ban (paused before the feed's lock, holding the chain's) and `alert` (paused
    before the chain's lock, holding what it took first) until both reached their pause,
    then let them go on; return what either raised."""
    meet, errors = threading.Barrier(2, timeout=WAIT_S), list[BaseException]()
    threads = [
        _in_thread(lambda: bans.record_failure(ADDRESS, "mallory", "ftps"),
                   feed._FEED_LOCK_ID, meet, errors),
        _in_thread(alert, chain._CHAIN_LOCK_ID, meet, errors),
    ]
    for thread in threads:
        thread.join(WAIT_S * 2)
    assert not any(thread.is_alive() for thread in threads), "a transaction never finished"
    return errors


def _assert_ban_recorded() -> None:
    assert Ban.objects.filter(address=ADDRESS).count() == 1
    assert AuditEvent.objects.filter(action="ban", source_ip=ADDRESS).count() == 1
    assert OutboundEvent.objects.filter(event="ban.created").count() == 1
    assert chain.verify() == (AuditEvent.objects.count(), None)


@pytest.fixture(autouse=True)
def _one_failure_bans(settings: Any) -> None:
    settings.BAN_FAILURES = 1


def test_missing_file_alert_and_ban_at_once_both_commit(partner):
    now = timezone.now().replace(second=0, microsecond=0)
    due = now - timedelta(hours=2)
    expected = expected_files.create_expected(
        name="daily orders", partner=partner.user.partner, folder="/in",
        filename_pattern="orders-*.csv", deadline=time(due.hour, due.minute),
        time_zone="UTC", weekdays=[0, 1, 2, 3, 4, 5, 6])
    ExpectedFile.objects.filter(pk=expected.pk).update(created_at=due - timedelta(hours=1))
    raised: list[Deadline] = []

    errors = _race_a_ban_against(lambda: raised.extend(expected_files.check_deadlines(now)))

    assert errors == []
    assert [d.status for d in raised] == [Deadline.Status.MISSING]
    assert AuditEvent.objects.filter(action="expected_file.missing").count() == 1
    assert OutboundEvent.objects.filter(event="expected_file.missing").count() == 1
    _assert_ban_recorded()


def test_expiry_alert_and_ban_at_once_both_commit():
    now = timezone.now()
    credential = expiry.Credential(expiry.Kind.PLATFORM_PGP_KEY, "AB" * 20, "ops key",
                                   datetime(2000, 1, 1, tzinfo=UTC))

    errors = _race_a_ban_against(lambda: expiry.announce_if_due(credential, now))

    assert errors == []
    assert AuditEvent.objects.filter(action="certificate.expiring").count() == 1
    assert OutboundEvent.objects.filter(event="certificate.expiring").count() == 1
    _assert_ban_recorded()
