"""Celery tasks for the audit log: thin wrappers over audit services."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from audit import siem

log = logging.getLogger(__name__)


@shared_task(name="audit.export_siem", ignore_result=True)
def export_siem() -> int:
    """Send new audit events to every configured SIEM sink; an unreachable one waits."""
    total = 0
    for sink in siem.configured_sinks(settings.AUDIT_JSONL_PATH, settings.AUDIT_SYSLOG_URL,
                                      settings.AUDIT_SYSLOG_CA_FILE):
        try:
            total += siem.export_pending(sink)
        except OSError as exc:
            log.warning("SIEM sink %s unreachable, will retry: %s", sink.name, exc)
    return total
