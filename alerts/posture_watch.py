"""Announce compliance posture findings when they appear, once.

A `PostureNotice` row remembers each announced finding; it is removed when the finding is
fixed, so a finding that comes back is announced again. Accepted findings are not
announced.
"""

from __future__ import annotations

from django.db import transaction

from alerts.models import PostureNotice
from audit import events
from mft import posture
from notifications import events as notices


def check(*, verify_audit: bool = True) -> list[str]:
    """Announce new unaccepted findings and forget fixed ones; return the announced ids."""
    current = posture.findings(verify_audit=verify_audit)
    with transaction.atomic():
        PostureNotice.objects.exclude(finding__in=[f.id for f in current]).delete()
        known = set(PostureNotice.objects.values_list("finding", flat=True))
        announced = []
        for finding in current:
            if finding.accepted is not None or finding.id in known:
                continue
            PostureNotice.objects.create(finding=finding.id, severity=finding.severity,
                                         title=finding.title[:200])
            notices.posture_finding(finding)
            events.alert_raised(alert="posture.finding", object_type="posture",
                                details={"finding": finding.id, "severity": finding.severity,
                                         "detail": finding.detail[:500]})
            announced.append(finding.id)
    return announced
