"""Quota accounting: bytes and files charged to a user, claimed while bytes arrive.

Concurrent uploads claim bytes from one shared allowance inside a locked transaction, so
two uploads together can never overrun a quota.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from accounts.models import User
from mft.errors import QuotaExceeded
from transfers.models import CHARGED_STATES, QuotaReservation, StoredFile

CLAIM_STEP = 4 * 1024 * 1024
STALE_AFTER = timedelta(hours=1)


def used_bytes(user_id: int) -> int:
    """Return the plaintext bytes the user's live files hold, partial uploads included."""
    total = StoredFile.objects.filter(owner_id=user_id, state__in=CHARGED_STATES).aggregate(
        total=Sum("size"))["total"]
    return int(total or 0)


def used_files(user_id: int) -> int:
    """Return how many live files the user holds."""
    return StoredFile.objects.filter(owner_id=user_id, state__in=CHARGED_STATES).count()


def reserved_bytes(user_id: int) -> int:
    """Return the bytes claimed by uploads in progress."""
    total = QuotaReservation.objects.filter(owner_id=user_id).aggregate(total=Sum("bytes"))
    return int(total["total"] or 0)


def check_new_file(user: User, *, replacing: bool) -> None:
    """Refuse a new file when the file-count quota is already used up."""
    if user.quota_files is None or replacing:
        return
    if used_files(user.pk) >= user.quota_files:
        raise QuotaExceeded(f"file quota of {user.quota_files} files reached")


def open_reservation(user: User) -> QuotaReservation | None:
    """Start claiming bytes for one upload, with a first claim of up to a step already taken;
    return None when the user has no byte quota.

    The first claim shares the reservation's transaction, so a file smaller than a step
    costs one write here and no claim later (the gateway's data channel would otherwise
    hold its first bytes for a round trip through the blocking pool). The claim may be
    short, or zero, when little is free: the first write then claims what it needs.
    """
    if user.quota_bytes is None:
        return None
    with transaction.atomic():
        _lock_owner(user.pk)
        free = user.quota_bytes - used_bytes(user.pk) - reserved_bytes(user.pk)
        return QuotaReservation.objects.create(owner=user, bytes=max(0, min(CLAIM_STEP, free)))


def claim(reservation: QuotaReservation, needed: int, *, quota: int) -> int:
    """Claim at least `needed` more bytes (up to a step ahead); return the new claimed total."""
    with transaction.atomic():
        _lock_owner(reservation.owner_id)
        others = QuotaReservation.objects.filter(owner_id=reservation.owner_id).exclude(
            pk=reservation.pk).aggregate(total=Sum("bytes"))["total"] or 0
        free = quota - used_bytes(reservation.owner_id) - int(others) - reservation.bytes
        if free < needed:
            raise QuotaExceeded(f"quota of {quota} bytes exceeded")
        reservation.bytes += min(max(needed, CLAIM_STEP), free)
        QuotaReservation.objects.filter(pk=reservation.pk).update(
            bytes=reservation.bytes, updated_at=timezone.now())
    return reservation.bytes


def _lock_owner(user_id: int) -> None:
    """Lock the owner row: one user's claims run one at a time (on SQLite the IMMEDIATE
    transaction already holds the write lock)."""
    User.objects.select_for_update().filter(pk=user_id).values_list("pk", flat=True).first()


def release(reservation: QuotaReservation | None) -> None:
    """Give back an upload's claim (its bytes are now counted in a stored file, or gone).

    The owner is locked first, as claim() does: the gateway may still have a claim ahead
    in flight when the upload lands, and on PostgreSQL that claim (owner locked, then
    waiting for our deleted row) and our commit (its foreign-key check waiting for the
    owner) would deadlock.
    """
    if reservation is not None:
        with transaction.atomic(savepoint=False):
            _lock_owner(reservation.owner_id)
            QuotaReservation.objects.filter(pk=reservation.pk).delete()


def sweep_stale() -> int:
    """Delete claims left behind by crashed processes; return how many."""
    cutoff = timezone.now() - STALE_AFTER
    deleted, _ = QuotaReservation.objects.filter(updated_at__lt=cutoff).delete()
    return deleted
