"""Service level: an upload's first quota claim is taken with its reservation, so a small
file needs no claim of its own while bytes arrive, and the quota still holds."""

from __future__ import annotations

import pytest

from accounts.models import User
from audit.events import SYSTEM
from mft.errors import QuotaExceeded
from transfers import quota
from transfers.models import QuotaReservation
from transfers.uploads import begin_upload

pytestmark = pytest.mark.django_db(transaction=True)


def _set_quota(partner, quota_bytes: int) -> User:
    User.objects.filter(pk=partner.user.pk).update(quota_bytes=quota_bytes)
    return User.objects.get(pk=partner.user.pk)


def test_reservation_opens_with_a_claim_of_one_step(partner):
    user = _set_quota(partner, 100 * quota.CLAIM_STEP)
    upload = begin_upload(user, "/small.bin", origin=SYSTEM)
    assert QuotaReservation.objects.get(owner=user).bytes == quota.CLAIM_STEP
    assert upload.shortfall(4096) == 0  # nothing left to claim before a small file's bytes
    upload.write(b"x" * 4096)
    assert upload.finish().size == 4096
    assert not QuotaReservation.objects.filter(owner=user).exists()


def test_reservation_opens_with_only_the_bytes_still_free(partner):
    user = _set_quota(partner, 10_000)
    first = begin_upload(user, "/first.bin", origin=SYSTEM)
    first.write(b"a" * 6_000)
    first.finish()
    second = begin_upload(user, "/second.bin", origin=SYSTEM)
    assert QuotaReservation.objects.get(owner=user).bytes == 4_000
    second.write(b"b" * 4_000)
    with pytest.raises(QuotaExceeded):
        second.write(b"b")
    second.abort("over quota")
    assert quota.used_bytes(user.pk) == 6_000


def test_first_claims_of_concurrent_uploads_never_overrun_the_quota(partner):
    user = _set_quota(partner, 5_000)
    first = begin_upload(user, "/one.bin", origin=SYSTEM)
    second = begin_upload(user, "/two.bin", origin=SYSTEM)
    claimed = sorted(QuotaReservation.objects.filter(owner=user).values_list("bytes", flat=True))
    assert claimed == [0, 5_000]
    first.write(b"1" * 3_000)
    with pytest.raises(QuotaExceeded):
        second.write(b"2" * 3_000)
    second.abort("over quota")
    first.finish()
    assert quota.used_bytes(user.pk) == 3_000
