"""One keyword-only function per audit event type, so every edge writes the same event.

Services call these; edges never write AuditEvent rows themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from audit import chain
from audit.models import AuditEvent

SUCCESS = AuditEvent.Outcome.SUCCESS
FAILURE = AuditEvent.Outcome.FAILURE
INFO = AuditEvent.Outcome.INFO


@dataclass(frozen=True)
class Origin:
    """Who did something, from where and over which protocol."""

    actor: str = ""
    actor_id: int | None = None
    source_ip: str | None = None
    protocol: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_user(self, user: Any) -> Origin:
        """Return this origin attributed to an authenticated user."""
        return Origin(user.get_username(), user.pk, self.source_ip, self.protocol, self.extra)


SYSTEM = Origin(actor="system", protocol="internal")


def _write(action: str, *, origin: Origin, outcome: str, obj: Any = None,
           object_type: str = "", details: dict[str, Any] | None = None,
           at: datetime | None = None) -> AuditEvent:
    """Append an event built from an origin, an optional object and details."""
    merged = {**origin.extra, **(details or {})}
    return chain.append(
        created_at=at,
        actor=origin.actor,
        actor_id=origin.actor_id,
        source_ip=origin.source_ip,
        protocol=origin.protocol,
        action=action,
        object_type=object_type or (type(obj).__name__.lower() if obj is not None else ""),
        object_id=str(getattr(obj, "pk", "") or ""),
        object_repr=str(obj)[:500] if obj is not None else "",
        outcome=outcome,
        details=merged,
    )


def login_succeeded(*, origin: Origin, user: Any, method: str, at: datetime | None = None,
                    details: dict[str, Any] | None = None) -> AuditEvent:
    """Record a successful login (at and details: when written later from the audit spool)."""
    return _write("login", origin=origin.as_user(user), outcome=SUCCESS, obj=user,
                  details={"method": method, **(details or {})}, at=at)


def login_first_factor_passed(*, origin: Origin, user: Any, method: str,
                              step: str = "password") -> AuditEvent:
    """Record a first factor accepted (`login.password`, `login.oidc`) when more must follow
    before the session starts; `login` itself is written once it does."""
    return _write(f"login.{step}", origin=origin.as_user(user), outcome=SUCCESS, obj=user,
                  details={"method": method})


def login_failed(*, origin: Origin, username: str, reason: str) -> AuditEvent:
    """Record a refused login with its reason (never the password)."""
    failed = Origin(username[:150], None, origin.source_ip, origin.protocol, origin.extra)
    return _write("login", origin=failed, outcome=FAILURE, object_type="user",
                  details={"reason": reason})


def session_event(*, origin: Origin, action: str, outcome: str = INFO,
                  details: dict[str, Any] | None = None,
                  at: datetime | None = None) -> AuditEvent:
    """Record a protocol-session event: connect, disconnect, a refused command, TLS setup.

    at is when it happened, for an event written later from the audit spool.
    """
    return _write(action, origin=origin, outcome=outcome, object_type="session", details=details,
                  at=at)


def address_banned(*, address: str, reason: str, until: str) -> AuditEvent:
    """Record an automatic or manual ban of an address."""
    return _write("ban", origin=Origin("system", None, address, "internal"), outcome=INFO,
                  object_type="address", details={"reason": reason, "until": until})


def ban_lifted(*, origin: Origin, address: str, before: dict[str, Any] | None = None,
               after: dict[str, Any] | None = None) -> AuditEvent:
    """Record that an admin lifted a ban (with the ban as it was and as it is now)."""
    return _write("ban.lift", origin=origin, outcome=SUCCESS, object_type="address",
                  details={"address": address, "before": before or {}, "after": after or {}})


def file_event(*, origin: Origin, action: str, stored_file: Any = None, path: str = "",
               outcome: str = SUCCESS, details: dict[str, Any] | None = None) -> AuditEvent:
    """Record a file operation (upload, download, delete, rename, mkdir, rmdir, mfmt)."""
    return _write(action, origin=origin, outcome=outcome, obj=stored_file,
                  object_type="file" if stored_file is None else "",
                  details={"path": path, **(details or {})})


def pipeline_step(*, stored_file: Any, step: str, outcome: str,
                  details: dict[str, Any] | None = None) -> AuditEvent:
    """Record one pipeline step's outcome for a stored file."""
    return _write(f"pipeline.{step}", origin=SYSTEM, outcome=outcome, obj=stored_file,
                  details=details)


def admin_change(*, origin: Origin, action: str, obj: Any,
                 before: dict[str, Any] | None = None,
                 after: dict[str, Any] | None = None) -> AuditEvent:
    """Record an administrative change with before and after values."""
    return _write(action, origin=origin, outcome=SUCCESS, obj=obj,
                  details={"before": before or {}, "after": after or {}})


# --- Partner deliveries ---------------------------------------------------------------------

def delivery_attempted(*, delivery: Any, outcome: str,
                       details: dict[str, Any] | None = None) -> AuditEvent:
    """Record an attempt at a delivery that did not settle it (it will be tried again)."""
    return _write("delivery.attempt", origin=SYSTEM, outcome=outcome, obj=delivery,
                  details=details)


def delivery_succeeded(*, delivery: Any, details: dict[str, Any] | None = None) -> AuditEvent:
    """Record a delivery sent (or fetched) and verified: the receipt's audit trail."""
    return _write("delivery.delivered", origin=SYSTEM, outcome=SUCCESS, obj=delivery,
                  details=details)


def delivery_failed(*, delivery: Any, reason: str,
                    details: dict[str, Any] | None = None) -> AuditEvent:
    """Record a delivery given up on (permanent refusal, or out of retries): an alert."""
    return _write("delivery.failed", origin=SYSTEM, outcome=FAILURE, obj=delivery,
                  details={"reason": reason, "alert": True, **(details or {})})


def delivery_cancelled(*, delivery: Any, reason: str, origin: Origin = SYSTEM) -> AuditEvent:
    """Record a delivery stopped on purpose (source file gone, or an admin cancelled it)."""
    return _write("delivery.cancelled", origin=origin, outcome=INFO, obj=delivery,
                  details={"reason": reason})


def delivery_resent(*, origin: Origin, delivery: Any, original: Any) -> AuditEvent:
    """Record an admin's explicit re-send of a delivered or failed file."""
    return _write("delivery.resend", origin=origin, outcome=SUCCESS, obj=delivery,
                  details={"original": original.pk})


def pull_listed(*, pull: Any, outcome: str, details: dict[str, Any] | None = None) -> AuditEvent:
    """Record a scheduled look at a partner's folder for files to fetch."""
    return _write("delivery.pull.list", origin=SYSTEM, outcome=outcome, obj=pull,
                  details=details)


def audit_exported(*, origin: Origin, file_format: str,
                   filters: dict[str, str]) -> AuditEvent:
    """Record that someone exported audit events, and with which filters."""
    return _write("audit.export", origin=origin, outcome=SUCCESS, object_type="audit",
                  details={"format": file_format, "filters": filters})


# --- Notifications --------------------------------------------------------------------------

def notification_failed(*, notification: Any, reason: str,
                        details: dict[str, Any] | None = None) -> AuditEvent:
    """Record a notification (email or webhook) given up on: its subscriber was not told."""
    return _write("notification.failed", origin=SYSTEM, outcome=FAILURE, obj=notification,
                  details={"reason": reason, **(details or {})})


# --- Alerts, expected files and retention ---------------------------------------------------

def alert_raised(*, alert: str, obj: Any = None, object_type: str = "",
                 details: dict[str, Any] | None = None) -> AuditEvent:
    """Record an alert the platform raised (expiry, posture finding, missing file)."""
    return _write(alert, origin=SYSTEM, outcome=INFO, obj=obj, object_type=object_type,
                  details={"alert": True, **(details or {})})


def alert_closed(*, alert: str, obj: Any, details: dict[str, Any] | None = None) -> AuditEvent:
    """Record that an open alert was closed (a missing file arrived late)."""
    return _write(alert, origin=SYSTEM, outcome=INFO, obj=obj, details=details)


def retention_applied(*, partner: Any, details: dict[str, Any]) -> AuditEvent:
    """Record one partner's retention run: what was deleted or archived, with counts."""
    return _write("retention.apply", origin=SYSTEM, outcome=SUCCESS, obj=partner,
                  details=details)


# --- Configuration backup -------------------------------------------------------------------

def config_exported(*, origin: Origin, counts: dict[str, int]) -> AuditEvent:
    """Record that the configuration was exported, with the rows per section."""
    return _write("config.export", origin=origin, outcome=SUCCESS, object_type="configuration",
                  details={"counts": counts})


def config_imported(*, origin: Origin, counts: dict[str, int], merge: bool,
                    exported_at: str) -> AuditEvent:
    """Record that a configuration document was imported (created or merged)."""
    return _write("config.import", origin=origin, outcome=SUCCESS, object_type="configuration",
                  details={"counts": counts, "merge": merge, "exported_at": exported_at})


def config_import_refused(*, origin: Origin, reason: str) -> AuditEvent:
    """Record a configuration document refused (bad signature, version, or content)."""
    return _write("config.import", origin=origin, outcome=FAILURE, object_type="configuration",
                  details={"reason": reason[:500]})
