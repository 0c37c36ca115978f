"""Send a notification by email (Django's mail backend): one event, or a daily digest."""

from __future__ import annotations

import smtplib

from django.conf import settings
from django.core.mail import EmailMessage, get_connection

from accounts.models import User
from notifications.models import Notification, OutboundEvent, Subscription
from notifications.outcome import SendResult

SUBJECT_PREFIX = "[Portside] "
DIGEST_LISTED = 200


def recipients(subscription: Subscription) -> list[str]:
    """Return the addresses: the subscription's own, else its user's, else the partner
    contact's, else (admin scope) every active admin's."""
    if subscription.email_to:
        return [a.strip() for a in subscription.email_to.split(",") if a.strip()]
    if subscription.user is not None:
        return [subscription.user.email] if subscription.user.email else []
    if subscription.partner is not None:
        email = subscription.partner.contact_email
        return [email] if email else []
    admins = User.objects.filter(role=User.Role.ADMIN, is_active=True).exclude(email="")
    return sorted(set(admins.values_list("email", flat=True)))


def _describe(record: OutboundEvent) -> str:
    partner = f"Partner: {record.partner_name}\n" if record.partner_name else ""
    return (f"{record.body}\n\nEvent: {record.event} (#{record.pk})\n{partner}"
            f"Time: {record.created_at:%Y-%m-%d %H:%M:%S} UTC\n")


def render(notification: Notification) -> tuple[str, str]:
    """Return the subject and body of a notification's message."""
    if notification.event is not None:
        return SUBJECT_PREFIX + notification.event.subject, _describe(notification.event)
    entries = list(notification.entries.select_related("event").order_by("event_id"))
    lines = [f"{len(entries)} event(s) since the last digest.\n"]
    for entry in entries[:DIGEST_LISTED]:
        record = entry.event
        if record is not None:
            lines.append(f"- {record.created_at:%Y-%m-%d %H:%M} {record.event}: {record.subject}")
    if len(entries) > DIGEST_LISTED:
        lines.append(f"… and {len(entries) - DIGEST_LISTED} more (see the event feed).")
    return f"{SUBJECT_PREFIX}Daily digest: {len(entries)} event(s)", "\n".join(lines) + "\n"


def send(notification: Notification) -> SendResult:
    """Send the message; an address-less subscription fails at once, SMTP trouble retries."""
    to = recipients(notification.subscription)
    if not to:
        return SendResult(ok=False, permanent=True, error="no recipient address")
    subject, body = render(notification)
    headers = {"Auto-Submitted": "auto-generated",
               "X-Portside-Event": notification.event.event if notification.event else "digest"}
    message = EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, to, headers=headers,
                           connection=get_connection(fail_silently=False))
    try:
        message.send()
    except smtplib.SMTPRecipientsRefused as exc:
        # 5xx for every address will not pass on a retry; 4xx (greylisting, full) may.
        permanent = all(code >= 500 for code, _ in exc.recipients.values())
        return SendResult(ok=False, permanent=permanent,
                          error=f"recipients refused: {exc.recipients}"[:1000])
    except (smtplib.SMTPException, OSError) as exc:
        return SendResult(ok=False, error=f"{type(exc).__name__}: {exc}"[:1000])
    return SendResult(ok=True)
