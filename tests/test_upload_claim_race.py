"""Service level, PostgreSQL: an upload lands while a quota claim ahead is still in flight.

The gateway claims quota ahead on its blocking pool; the data connection may close and the
upload land while that claim runs. The claim locks the owner and then updates the upload's
reservation; the landing deletes the reservation and, at commit, checks its foreign keys
against the owner. Without a common lock order the two deadlock.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction
from django.db.models import F

from accounts.models import User
from audit.events import SYSTEM
from transfers import quota
from transfers.models import FileState, QuotaReservation
from transfers.uploads import begin_upload

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

WAIT_S = 30


def _waiting_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return bool(cursor.fetchone()[0])


def _wait_until_blocked() -> None:
    for _ in range(200):  # at most ~10 s
        if _waiting_on_a_lock():
            return
        time.sleep(0.05)
    raise AssertionError("the landing never waited for the claim's lock")


def test_upload_lands_while_a_claim_ahead_holds_its_owner(partner):
    User.objects.filter(pk=partner.user.pk).update(quota_bytes=100 * quota.CLAIM_STEP)
    user = User.objects.get(pk=partner.user.pk)
    upload = begin_upload(user, "/racing.bin", origin=SYSTEM)
    upload.write(b"x" * 4096)
    reservation = QuotaReservation.objects.get(owner=user)
    locked, go_on = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    landed = []

    def claim_ahead() -> None:
        """quota.claim's statements, paused while it holds the owner."""
        try:
            with transaction.atomic():
                User.objects.select_for_update().filter(pk=user.pk).values_list("pk").first()
                locked.set()
                go_on.wait(WAIT_S)
                QuotaReservation.objects.filter(pk=reservation.pk).update(
                    bytes=F("bytes") + quota.CLAIM_STEP
                )
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connection.close()

    def land() -> None:
        try:
            landed.append(upload.finish())
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connection.close()

    claimer = threading.Thread(target=claim_ahead)
    claimer.start()
    assert locked.wait(WAIT_S)
    lander = threading.Thread(target=land)
    lander.start()
    try:
        _wait_until_blocked()
    finally:
        go_on.set()
        claimer.join(WAIT_S)
        lander.join(WAIT_S)
    assert errors == []
    assert landed and landed[0].state == FileState.RECEIVED
    assert not QuotaReservation.objects.filter(owner=user).exists()
