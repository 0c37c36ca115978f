"""POST an event to a webhook subscription, signed (see `notifications.signing`).

Any 2xx answer is success; anything else — another status, a redirect (never followed), a
timeout, a refused connection — is retried with back-off by the outbox.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from django.conf import settings

from notifications import services, signing, subscriptions
from notifications.models import Notification
from notifications.outcome import SendResult

USER_AGENT = "Portside-Webhook/1"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: the signed request goes to the configured URL or nowhere."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def body_of(notification: Notification) -> bytes:
    """Return the JSON body for a notification's event (the same bytes on every try)."""
    assert notification.event is not None  # webhooks carry one event each, never digests
    return json.dumps(services.payload(notification.event), sort_keys=True,
                      separators=(",", ":")).encode()


def send(notification: Notification) -> SendResult:
    """Send one signed POST and return what came of it."""
    subscription = notification.subscription
    body = body_of(notification)
    timestamp = int(time.time())
    secret = subscriptions.webhook_secret(subscription)
    assert notification.event is not None
    if not subscription.url.startswith(("https://", "http://")):
        return SendResult(ok=False, permanent=True, error="webhook URL is not http(s)")
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked just above
        subscription.url, data=body, method="POST", headers={
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Portside-Event": notification.event.event,
            "X-Portside-Event-Id": str(notification.event.pk),
            "X-Portside-Notification": str(notification.pk),
            signing.TIMESTAMP_HEADER: str(timestamp),
            signing.SIGNATURE_HEADER: signing.signature(secret, timestamp, body),
        })
    try:
        with _opener.open(request, timeout=settings.NOTIFY_WEBHOOK_TIMEOUT) as response:
            return SendResult(ok=True, status=response.status)
    except urllib.error.HTTPError as exc:
        reply = exc.read(300).decode(errors="replace").strip()
        return SendResult(ok=False, status=exc.code,
                          error=f"HTTP {exc.code} {exc.reason}: {reply}"[:1000])
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return SendResult(ok=False, error=f"{type(exc).__name__}: {reason}"[:1000])
