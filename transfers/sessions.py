"""Live gateway sessions: publishing their state, listing them, and disconnecting one.

Each gateway process owns the rows of its sessions. Per tick it writes the sessions that
changed in one bulk upsert, deletes the rows of sessions that ended, and reads the
disconnect requests for its sessions: a few queries whatever the number of sessions. A row
counts as live only while its process's heartbeat (mft.heartbeat) is, so the sessions of a
killed process vanish from every list and are purged later.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from audit import events
from audit.events import Origin
from mft.errors import Conflict, InvalidInput, NotFound
from mft.models import ProcessHeartbeat
from transfers.models import GatewaySession


@dataclass(frozen=True)
class TransferState:
    """A transfer in progress on a session's data connection."""

    direction: str
    path: str
    bytes_done: int
    total_bytes: int | None
    started_at: datetime


@dataclass(frozen=True)
class SessionState:
    """What a gateway process knows of one logged-in session."""

    session_id: str
    user_id: int
    username: str
    partner_id: int | None
    remote_address: str | None
    remote_port: int | None
    implicit: bool
    tls_version: str
    tls_cipher: str
    started_at: datetime
    last_command_at: datetime | None
    transfer: TransferState | None = None


@dataclass(frozen=True)
class GatewayIdentity:
    """A gateway process: its heartbeat name, host and pid."""

    name: str
    host: str
    pid: int


@dataclass(frozen=True)
class DisconnectRequest:
    """An admin's or operator's request to end a session."""

    session_id: str
    requested_by: str
    reason: str


# Written on every publish; the disconnect request columns belong to the admins' side.
_PUBLISHED = ["gateway", "host", "pid", "user", "username", "partner", "remote_address",
              "remote_port", "implicit", "tls_version", "tls_cipher", "started_at",
              "last_command_at", "transfer_direction", "transfer_path", "transfer_bytes",
              "transfer_size", "transfer_started_at", "updated_at"]


def _row(gateway: GatewayIdentity, state: SessionState, now: datetime) -> GatewaySession:
    """Return the unsaved row holding a session's state."""
    transfer = state.transfer
    return GatewaySession(
        session_id=state.session_id, gateway=gateway.name, host=gateway.host[:200],
        pid=gateway.pid, user_id=state.user_id, username=state.username[:150],
        partner_id=state.partner_id, remote_address=state.remote_address,
        remote_port=state.remote_port, implicit=state.implicit,
        tls_version=state.tls_version[:20], tls_cipher=state.tls_cipher[:100],
        started_at=state.started_at, last_command_at=state.last_command_at,
        transfer_direction=transfer.direction if transfer else "",
        transfer_path=transfer.path[:1024] if transfer else "",
        transfer_bytes=transfer.bytes_done if transfer else 0,
        transfer_size=transfer.total_bytes if transfer else None,
        transfer_started_at=transfer.started_at if transfer else None,
        updated_at=now)


def publish(gateway: GatewayIdentity, changed: Sequence[SessionState],
            ended: Sequence[str], *, purge: bool = False) -> list[DisconnectRequest]:
    """Write changed sessions, delete ended ones; return the disconnects asked of this process.

    One upsert (batched by the database's parameter limit), one delete, one read; `purge`
    also removes rows of dead gateway processes.
    """
    now = timezone.now()
    if changed or ended:
        with transaction.atomic():
            if changed:
                GatewaySession.objects.bulk_create(
                    [_row(gateway, state, now) for state in changed], update_conflicts=True,
                    unique_fields=["session_id"], update_fields=_PUBLISHED)
            if ended:
                GatewaySession.objects.filter(session_id__in=list(ended)).delete()
    if purge:
        purge_dead()
    return pending_disconnects(gateway.name)


def pending_disconnects(gateway_name: str) -> list[DisconnectRequest]:
    """Return the disconnect requests for the sessions of a gateway process."""
    rows = GatewaySession.objects.filter(
        gateway=gateway_name, disconnect_requested_at__isnull=False,
    ).values_list("session_id", "disconnect_requested_by", "disconnect_reason")
    return [DisconnectRequest(*row) for row in rows]


def forget_gateway(gateway_name: str) -> int:
    """Delete every session row of a gateway process (it starts or stops); return how many."""
    deleted, _ = GatewaySession.objects.filter(gateway=gateway_name).delete()
    return deleted


def purge_dead() -> int:
    """Delete the rows of gateway processes whose heartbeat stopped; return how many.

    Rows written within the liveness window are kept, so a process that publishes before
    its first heartbeat is recorded does not lose its sessions.
    """
    deleted, _ = (GatewaySession.objects.exclude(gateway__in=_alive_gateways())
                  .filter(updated_at__lt=_liveness_cutoff()).delete())
    return deleted


def live_sessions() -> QuerySet[GatewaySession]:
    """Return the sessions of gateway processes that are alive, oldest first."""
    return (GatewaySession.objects.filter(gateway__in=_alive_gateways())
            .select_related("partner").order_by("started_at", "id"))


def _liveness_cutoff() -> datetime:
    """Return the oldest heartbeat that still counts as alive (as mft.heartbeat.alive)."""
    return timezone.now() - timedelta(seconds=3 * settings.WORKER_HEARTBEAT_SECONDS)


def _alive_gateways() -> QuerySet[ProcessHeartbeat, str]:
    """Return the names of live gateway processes, as a subquery (evaluated lazily)."""
    return ProcessHeartbeat.objects.filter(
        kind=ProcessHeartbeat.Kind.GATEWAY, last_seen__gte=_liveness_cutoff(),
    ).values_list("name", flat=True)


def request_disconnect(session: GatewaySession, *, reason: str,
                       origin: Origin) -> GatewaySession:
    """Ask the session's gateway process to end it (within a tick); audited."""
    reason = reason.strip()
    if not reason:
        raise InvalidInput("give a reason for disconnecting the session")
    now = timezone.now()
    with transaction.atomic():
        asked = GatewaySession.objects.filter(
            pk=session.pk, disconnect_requested_at__isnull=True,
        ).update(disconnect_requested_at=now, disconnect_requested_by=origin.actor[:150],
                 disconnect_reason=reason[:500])
        current = GatewaySession.objects.filter(pk=session.pk).first()
        if current is None:
            raise NotFound("the session has ended")
        if not asked:
            raise Conflict(f"{current.disconnect_requested_by or 'someone'} already asked "
                           f"to disconnect this session")
        events.admin_change(
            origin=origin, action="session.disconnect_request", obj=current,
            before={"disconnect_requested_at": None},
            after={"disconnect_requested_at": now.isoformat(), "reason": current.disconnect_reason,
                   "session": current.session_id, "user": current.username})
    return current


def record_disconnected(request: DisconnectRequest, *, session_origin: Origin) -> None:
    """Record that a gateway ended a session an admin or operator asked it to end."""
    origin = Origin(actor=request.requested_by, protocol=session_origin.protocol,
                    extra=session_origin.extra)
    events.session_event(
        origin=origin, action="session.disconnected", outcome=events.SUCCESS,
        details={"user": session_origin.actor, "remote_address": session_origin.source_ip,
                 "reason": request.reason})
