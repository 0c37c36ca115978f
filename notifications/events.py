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
| `certificate.expiring` | a certificate or PGP key crossed an expiry threshold, once | owner's |
| `ban.created` | an address was banned after repeated failed logins | none |
| `posture.finding` | a new, unaccepted compliance posture finding appeared | none |
| `expected_file.missing` | an expected file had not arrived by its deadline | the partner's |
| `expected_file.late` | a missing expected file arrived after its deadline | the partner's |
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from notifications import services
from notifications.models import OutboundEvent, Subscription
from transfers.models import FileState

FILE_READY = "file.ready"
FILE_QUARANTINED = "file.quarantined"
FILE_HELD = "file.held"
FILE_REJECTED = "file.rejected"
DELIVERY_SUCCEEDED = "delivery.succeeded"
DELIVERY_FAILED = "delivery.failed"
CERTIFICATE_EXPIRING = "certificate.expiring"
BAN_CREATED = "ban.created"
POSTURE_FINDING = "posture.finding"
EXPECTED_FILE_MISSING = "expected_file.missing"
EXPECTED_FILE_LATE = "expected_file.late"
CATALOG = (FILE_READY, FILE_QUARANTINED, FILE_HELD, FILE_REJECTED, DELIVERY_SUCCEEDED,
           DELIVERY_FAILED, CERTIFICATE_EXPIRING, BAN_CREATED, POSTURE_FINDING,
           EXPECTED_FILE_MISSING, EXPECTED_FILE_LATE)


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


def file_ready(stored: Any, listeners: list[Subscription] | None = None) -> OutboundEvent:
    """Announce that a file is ready for everyone downstream (`listeners`: its subscribers,
    if read already: services.listeners(FILE_READY, stored.partner_id))."""
    return services.notify(
        FILE_READY, subject=f"File ready: {stored.owner_username}:{stored.path}",
        body=f"{stored.path} from {stored.owner_username} ({stored.size} bytes, SHA-256 "
             f"{stored.sha256}) passed scanning and is ready.",
        data=_file_data(stored), partner=_partner_of_file(stored), listeners=listeners)


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


def delivery_succeeded(delivery: Any,
                       listeners: list[Subscription] | None = None) -> OutboundEvent:
    """Announce a delivery sent (or fetched) and verified; the deliveries app calls this
    (`listeners`: its subscribers, if read already, as for file_ready)."""
    return services.notify(
        DELIVERY_SUCCEEDED,
        subject=f"Delivered: {delivery.remote_path} ({delivery.endpoint})",
        body=f"{delivery.direction} of {delivery.remote_path} via {delivery.endpoint} "
             f"succeeded after {delivery.attempts} attempt(s).",
        data=_delivery_data(delivery), partner=delivery.endpoint.partner, listeners=listeners)


def delivery_failed(delivery: Any, *, reason: str,
                    listeners: list[Subscription] | None = None) -> OutboundEvent:
    """Alert that a delivery was given up on; the deliveries app calls this (`listeners`:
    as for delivery_succeeded)."""
    return services.notify(
        DELIVERY_FAILED,
        subject=f"Delivery failed: {delivery.remote_path} ({delivery.endpoint})",
        body=f"{delivery.direction} of {delivery.remote_path} via {delivery.endpoint} failed "
             f"after {delivery.attempts} attempt(s): {reason}",
        data={**_delivery_data(delivery), "reason": reason},
        partner=delivery.endpoint.partner, listeners=listeners)


def certificate_expiring(*, kind: str, label: str, fingerprint: str, expires_at: datetime,
                         threshold_days: int, partner: Any = None) -> OutboundEvent:
    """Alert that a certificate or key crossed an expiry threshold (0: it has expired)."""
    when = "has expired" if threshold_days == 0 else f"expires within {threshold_days} days"
    return services.notify(
        CERTIFICATE_EXPIRING, subject=f"{kind} {when}: {label}"[:300],
        body=f"The {kind} {label} ({fingerprint}) {when}, on {expires_at:%Y-%m-%d %H:%M} UTC. "
             "Renew or replace it before then.",
        data={"credential": {"kind": kind, "label": label, "fingerprint": fingerprint,
                             "expires_at": expires_at.isoformat(),
                             "threshold_days": threshold_days}},
        partner=partner)


def ban_created(ban: Any) -> OutboundEvent:
    """Alert that an address was banned after repeated failed logins."""
    return services.notify(
        BAN_CREATED, subject=f"Address banned: {ban.address}",
        body=f"{ban.address} is banned until {ban.expires_at:%Y-%m-%d %H:%M} UTC: {ban.reason}.",
        data={"ban": {"id": ban.pk, "address": ban.address, "reason": ban.reason,
                      "expires_at": ban.expires_at.isoformat()}})


def posture_finding(finding: Any) -> OutboundEvent:
    """Alert that a new, unaccepted compliance posture finding appeared."""
    return services.notify(
        POSTURE_FINDING, subject=f"Posture finding ({finding.severity}): {finding.title}",
        body=f"{finding.title}: {finding.detail}. Controls: {', '.join(finding.controls)}. "
             "Fix it, or accept it with a written justification.",
        data={"finding": {"id": finding.id, "severity": finding.severity,
                          "title": finding.title, "detail": finding.detail,
                          "controls": list(finding.controls)}})


def _deadline_data(deadline: Any) -> dict[str, Any]:
    """Describe an expected-file deadline for subscribers."""
    expected = deadline.expected
    return {"expected_file": {
        "id": expected.pk, "name": expected.name, "partner": expected.partner.name,
        "user": expected.user.username if expected.user_id else None,
        "folder": expected.folder, "filename_pattern": expected.filename_pattern,
        "deadline_id": deadline.pk, "due_at": deadline.due_at.isoformat(),
        "status": deadline.status, "file_id": deadline.stored_file_id,
        "arrived_at": deadline.arrived_at.isoformat() if deadline.arrived_at else None}}


def expected_file_missing(deadline: Any) -> OutboundEvent:
    """Alert that an expected file had not arrived by its deadline."""
    expected = deadline.expected
    return services.notify(
        EXPECTED_FILE_MISSING,
        subject=f"Expected file missing: {expected.name} ({expected.partner.name})",
        body=f"No file matching {expected.folder.rstrip('/')}/{expected.filename_pattern} "
             f"from {expected.partner.name} arrived by {deadline.due_at:%Y-%m-%d %H:%M} UTC.",
        data=_deadline_data(deadline), partner=expected.partner)


def expected_file_late(deadline: Any) -> OutboundEvent:
    """Announce that a missing expected file arrived after its deadline (closing the alert)."""
    expected = deadline.expected
    return services.notify(
        EXPECTED_FILE_LATE,
        subject=f"Expected file arrived late: {expected.name} ({expected.partner.name})",
        body=f"{deadline.file_path} arrived at {deadline.arrived_at:%Y-%m-%d %H:%M} UTC, "
             f"after its deadline {deadline.due_at:%Y-%m-%d %H:%M} UTC.",
        data=_deadline_data(deadline), partner=expected.partner)
