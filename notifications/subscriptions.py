"""Create and change subscriptions; webhook secrets are shown once and stored sealed.

Every change is audited. Secrets are sealed with `deliveries.secrets` (AES-256-GCM under a
key wrapped by the install's master key), bound to the subscription's row.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from audit import events
from audit.events import Origin
from deliveries import secrets as sealing
from mft.errors import InvalidInput
from notifications.models import Subscription

SECRET_PREFIX = "whsec_"
_PATTERN = re.compile(r"^[a-z0-9_*?-]+(\.[a-z0-9_*?-]+)*$")


@dataclass(frozen=True)
class NewSubscription:
    """A created subscription and, for a webhook, its signing secret (shown only now)."""

    subscription: Subscription
    secret: str | None


def secret_context(subscription: Subscription) -> str:
    """Return the additional data binding a sealed webhook secret to its row."""
    return f"notifications/subscription/{subscription.secret_context}"


def webhook_secret(subscription: Subscription) -> str:
    """Return a webhook subscription's signing secret (unsealed)."""
    return sealing.unseal(subscription.secret_sealed, context=secret_context(subscription))


def _check_events(patterns: Any) -> list[str]:
    if not isinstance(patterns, list) or not patterns:
        raise InvalidInput('events must be a list of names or patterns, e.g. ["file.*"]')
    cleaned = [str(p).strip() for p in patterns]
    bad = [p for p in cleaned if p != "*" and not _PATTERN.match(p)]
    if bad:
        raise InvalidInput(f"not event names or patterns: {', '.join(bad[:5])}")
    return sorted(set(cleaned))


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("a webhook URL must be http(s)://host/...")
    if parts.username or parts.password:
        raise InvalidInput("put no credentials in a webhook URL; receivers check the signature")
    if settings.PRODUCTION and parts.scheme != "https":
        raise InvalidInput("webhooks must use https:// in production")
    return url


def _check_emails(value: str) -> str:
    addresses = [a.strip() for a in value.split(",") if a.strip()]
    for address in addresses:
        try:
            validate_email(address)
        except ValidationError:
            raise InvalidInput(f"{address[:80]!r} is not an email address") from None
    return ", ".join(addresses)


def _check_shape(subscription: Subscription) -> None:
    if subscription.scope not in Subscription.Scope.values:
        raise InvalidInput("scope must be admin or partner")
    if (subscription.scope == Subscription.Scope.PARTNER) != (subscription.partner is not None):
        raise InvalidInput("a partner subscription names its partner; an admin one does not")
    if subscription.channel == Subscription.Channel.WEBHOOK:
        if subscription.digest:
            raise InvalidInput("digests are sent by email only")
        _check_url(subscription.url)
    elif subscription.channel != Subscription.Channel.EMAIL:
        raise InvalidInput("channel must be email or webhook")
    user = subscription.user
    if user is not None and subscription.scope == Subscription.Scope.ADMIN \
            and not user.is_dashboard_role:
        raise InvalidInput("an admin subscription belongs to an admin, operator or auditor")
    if user is not None and subscription.scope == Subscription.Scope.PARTNER \
            and user.partner_id != subscription.partner_id:
        raise InvalidInput("a partner subscription belongs to a user of that partner")


def snapshot(subscription: Subscription) -> dict[str, Any]:
    """Return the audited fields of a subscription (never its secret)."""
    return {"name": subscription.name, "scope": subscription.scope,
            "partner": subscription.partner_id, "user": subscription.user_id,
            "channel": subscription.channel, "events": subscription.events,
            "email_to": subscription.email_to, "url": subscription.url,
            "digest": subscription.digest, "enabled": subscription.enabled}


def create_subscription(*, name: str, scope: str, channel: str, events_filter: list[str],
                        partner: Any = None, user: Any = None, email_to: str = "",
                        url: str = "", digest: bool = False,
                        origin: Origin = events.SYSTEM) -> NewSubscription:
    """Create a subscription; a webhook gets a new signing secret, returned once."""
    subscription = Subscription(
        name=name.strip()[:120], scope=scope, channel=channel, partner=partner, user=user,
        events=_check_events(events_filter), email_to=_check_emails(email_to),
        url=url.strip(), digest=digest)
    if not subscription.name:
        raise InvalidInput("a subscription needs a name")
    _check_shape(subscription)
    secret = None
    if channel == Subscription.Channel.WEBHOOK:
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        subscription.secret_sealed = sealing.seal(secret, context=secret_context(subscription))
    with transaction.atomic():
        subscription.save()
        events.admin_change(origin=origin, action="notification.subscription.create",
                            obj=subscription, after=snapshot(subscription))
    return NewSubscription(subscription, secret)


def rotate_secret(subscription: Subscription, *, origin: Origin) -> str:
    """Give a webhook subscription a new signing secret; return it (shown once)."""
    if subscription.channel != Subscription.Channel.WEBHOOK:
        raise InvalidInput("only webhook subscriptions have a signing secret")
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        subscription.secret_sealed = sealing.seal(secret, context=secret_context(subscription))
        subscription.updated_at = timezone.now()
        subscription.save(update_fields=["secret_sealed", "updated_at"])
        events.admin_change(origin=origin, action="notification.subscription.rotate_secret",
                            obj=subscription)
    return secret


def set_enabled(subscription: Subscription, enabled: bool, *, origin: Origin) -> None:
    """Switch a subscription on or off; switched off, it collects and sends nothing."""
    before = snapshot(subscription)
    with transaction.atomic():
        subscription.enabled = enabled
        subscription.updated_at = timezone.now()
        subscription.save(update_fields=["enabled", "updated_at"])
        events.admin_change(origin=origin, action="notification.subscription.change",
                            obj=subscription, before=before, after=snapshot(subscription))


def reseal_secrets() -> int:
    """Re-seal every webhook secret under the current master key (after a rotation)."""
    count = 0
    for subscription in Subscription.objects.exclude(secret_sealed=""):
        new = sealing.reseal(subscription.secret_sealed, context=secret_context(subscription))
        if new != subscription.secret_sealed:
            subscription.secret_sealed = new
            subscription.save(update_fields=["secret_sealed"])
            count += 1
    return count
