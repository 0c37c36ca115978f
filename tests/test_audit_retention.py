"""Retention archives old events to a signed file; the remaining chain still verifies."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from audit import chain, retention
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db(transaction=True)


def test_archive_removes_old_events_and_the_chain_still_verifies(tmp_path):
    for i in range(6):
        chain.append(actor="a", action="old", outcome="info", details={"i": i})
    cutoff = timezone.now() + timedelta(seconds=1)
    result = retention.archive_before(cutoff, tmp_path)
    assert result.count == 6 and AuditEvent.objects.count() == 0
    chain.append(actor="a", action="new", outcome="info")
    assert chain.verify() == (1, None)
    assert retention.verify_archive(Path(result.record.path))


def test_a_tampered_archive_fails_verification(tmp_path):
    for _ in range(3):
        chain.append(actor="a", action="old", outcome="info")
    result = retention.archive_before(timezone.now() + timedelta(seconds=1), tmp_path)
    path = Path(result.record.path)
    path.write_text(path.read_text().replace('"actor":"a"', '"actor":"b"', 1))
    assert not retention.verify_archive(path)


def test_nothing_older_than_the_cutoff_archives_nothing(tmp_path):
    chain.append(actor="a", action="fresh", outcome="info")
    result = retention.archive_before(timezone.now() - timedelta(days=1), tmp_path)
    assert result.count == 0 and AuditEvent.objects.count() == 1
