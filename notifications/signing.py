"""Sign webhook requests, and verify them (as a receiver does).

The signature is HMAC-SHA256, keyed with the subscription's secret, over
`<timestamp>.<raw body>`; it travels as `X-Portside-Signature: sha256=<hex>` next to
`X-Portside-Timestamp: <unix seconds>`. Signing the timestamp with the body lets a
receiver refuse a replayed request: a captured one stops verifying after the tolerance.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Portside-Signature"
TIMESTAMP_HEADER = "X-Portside-Timestamp"
DEFAULT_TOLERANCE = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """Return the signature header's value for a body sent at a timestamp."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify(secret: str, body: bytes, timestamp: str, signature_header: str, *,
           tolerance: int = DEFAULT_TOLERANCE, now: float | None = None) -> bool:
    """Return True when the signature is the secret's over this body and timestamp, and the
    timestamp is within the tolerance of now (a replay outside it fails)."""
    try:
        sent_at = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - sent_at) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, sent_at, body), signature_header or "")
