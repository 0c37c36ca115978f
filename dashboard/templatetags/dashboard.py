"""Template helpers: role checks, the main menu's links, durations and state badges."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django import template
from django.urls import reverse
from django.utils.html import format_html

from dashboard import access

register = template.Library()

_STATE_TONES = {
    "ready": "good", "clean": "good",
    "held": "warn", "partial": "warn", "scanning": "busy", "received": "busy",
    "decrypting": "busy", "dlp": "busy",
    "infected": "bad", "rejected": "bad", "deleted": "muted",
    "success": "good", "failure": "bad", "info": "muted",
    "ok": "good", "warning": "warn", "degraded": "warn", "down": "bad",
    "not_configured": "warn", "disabled": "warn",
    "delivered": "good", "pending": "busy", "running": "busy", "waiting": "warn",
    "retry": "warn", "failed": "bad", "abandoned": "warn", "cancelled": "muted",
}


@register.filter
def can(user: Any, capability: str) -> bool:
    """Return True when the user's role holds the capability."""
    return access.can(user, capability)


@register.filter
def tone(value: Any) -> str:
    """Return the badge colour class for a state, outcome or health status."""
    return _STATE_TONES.get(str(value), "muted")


@register.simple_tag(takes_context=True)
def nav_link(context: dict[str, Any], name: str, label: str) -> str:
    """Return a main-menu link, marked as the current page when the path is under it."""
    url = reverse(name)
    path = context["request"].path
    current = path == url if url == "/" else path.startswith(url)
    if current:
        return format_html('<a href="{}" aria-current="page">{}</a>', url, label)
    return format_html('<a href="{}">{}</a>', url, label)


@register.filter
def seconds_between(start: datetime | None, end: datetime | None) -> str:
    """Return the time from start to end, readable ("0.42 s", "3 min 5 s"), or a dash."""
    if start is None or end is None:
        return "\u2013"  # en dash
    seconds = (end - start).total_seconds()
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


@register.filter
def compact_json(value: Any) -> str:
    """Return a value as one line of JSON, for details columns."""
    if value in (None, {}, []):
        return ""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
