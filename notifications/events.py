"""The events Portside announces, and one function per event that builds and sends it.

Every function here calls `services.notify()`, so subscribers (email, webhooks, digests)
and the event feed hear about each event alike. Names are `noun.verb`; subscriptions
filter on them (`file.*`).

| event | when | partner |
| --- | --- | --- |
| `file.ready` | a file passed scanning and DLP and is ready downstream | the uploader's |
| `file.quarantined` | a file was found infected and quarantined (an admin alert) | the uploader's |
| `file.held` | a file was held for an admin (no scanner, scanner down, too big) | the uploader's |
| `file.rejected` | a file was rejected by policy | the uploader's |
| `delivery.succeeded` | a partner delivery was sent (or fetched) and verified | the endpoint's |
| `delivery.failed` | a partner delivery was given up on (an admin alert) | the endpoint's |
"""

from __future__ import annotations

from typing import Any

from notifications import services
from notifications.models import OutboundEvent
from transfers.models import FileState

FILE_READY = "file.ready"
FILE_QUARANTINED = "file.quarantined"
FILE_HELD = "file.held"
FILE_REJECTED = "file.rejected"
DELIVERY_SUCCEEDED = "delivery.succeeded"
DELIVERY_FAILED = "delivery.failed"
CATALOG = (FILE_READY, FILE_QUARANTINED, FILE_HELD, FILE_REJECTED, DELIVERY_SUCCEEDED,
           DELIVERY_FAILED)


def _file_data(stored: Any) -> dict[str, Any]:
    """Describe a stored file for subscribers (never its storage path)."""
    return {"file": {
        "id": stored.pk, "path": stored.path, "owner": stored.owner_username,
        "partner": stored.partner.name if stored.partner_id else None,
        "size": stored.size, "sha256": stored.sha256, "state": stored.state,
        "reason": stored.state_reason, "protocol": stored.protocol,
        "received_at": stored.received_at.isoformat() if stored.received_at else None,
        "ready_at": stored.ready_at.isoformat() if stored.ready_at else None}}


def _partner_of_file(stored: Any) -> Any:
    return stored.partner if stored.partner_id else None


def file_ready(stored: Any) -> OutboundEvent:
    """Announce that a file is ready for everyone downstream."""
    return services.notify(
        FILE_READY, subject=f"File ready: {stored.owner_username}:{stored.path}",
        body=f"{stored.path} from {stored.owner_username} ({stored.size} bytes, SHA-256 "
             f"{stored.sha256}) passed scanning and is ready.",
        data=_file_data(stored), partner=_partner_of_file(stored))


def file_quarantined(stored: Any) -> OutboundEvent:
    """Alert that an uploaded file was infected and quarantined."""
    data = _file_data(stored)
    data["file"]["signature"] = stored.scan_signature
    return services.notify(
        FILE_QUARANTINED,
        subject=f"Infected file quarantined: {stored.owner_username}:{stored.path}",
        body=f"{stored.path} from {stored.owner_username} was found infected "
             f"({stored.scan_signature or 'unnamed signature'}) and moved to quarantine. "
             "Nobody can download it; an admin may delete or release it.",
        data=data, partner=_partner_of_file(stored))


def file_stopped(stored: Any, reason: str) -> OutboundEvent:
    """Alert that a file was held for an admin, or rejected."""
    rejected = stored.state == FileState.REJECTED
    event, verb = (FILE_REJECTED, "rejected") if rejected else (FILE_HELD, "held")
    return services.notify(
        event, subject=f"File {verb}: {stored.owner_username}:{stored.path}",
        body=f"{stored.path} from {stored.owner_username} was {verb}: {reason or 'no reason'}.",
        data=_file_data(stored), partner=_partner_of_file(stored))


def _delivery_data(delivery: Any) -> dict[str, Any]:
    """Describe a delivery (its receipt) for subscribers; never a credential."""
    return {"delivery": {
        "id": delivery.pk, "direction": delivery.direction, "status": delivery.status,
        "endpoint": str(delivery.endpoint), "remote_path": delivery.remote_path,
        "file_id": delivery.stored_file_id, "local_owner": delivery.local_owner,
        "local_path": delivery.local_path, "size": delivery.sent_size or delivery.source_size,
        "sha256": delivery.sent_sha256 or delivery.source_sha256,
        "verified_by": delivery.verified_by, "attempts": delivery.attempts,
        "error": delivery.last_error,
        "finished_at": delivery.finished_at.isoformat() if delivery.finished_at else None}}


def delivery_succeeded(delivery: Any) -> OutboundEvent:
    """Announce a delivery sent (or fetched) and verified; the deliveries app calls this."""
    return services.notify(
        DELIVERY_SUCCEEDED,
        subject=f"Delivered: {delivery.remote_path} ({delivery.endpoint})",
        body=f"{delivery.direction} of {delivery.remote_path} via {delivery.endpoint} "
             f"succeeded after {delivery.attempts} attempt(s).",
        data=_delivery_data(delivery), partner=delivery.endpoint.partner)


def delivery_failed(delivery: Any, *, reason: str) -> OutboundEvent:
    """Alert that a delivery was given up on; the deliveries app calls this."""
    return services.notify(
        DELIVERY_FAILED,
        subject=f"Delivery failed: {delivery.remote_path} ({delivery.endpoint})",
        body=f"{delivery.direction} of {delivery.remote_path} via {delivery.endpoint} failed "
             f"after {delivery.attempts} attempt(s): {reason}",
        data={**_delivery_data(delivery), "reason": reason},
        partner=delivery.endpoint.partner)
