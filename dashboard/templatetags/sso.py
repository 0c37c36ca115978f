"""Template helper: whether the sign-in page offers single sign-on."""

from __future__ import annotations

from django import template
from django.conf import settings

register = template.Library()


@register.simple_tag
def sso_enabled() -> bool:
    """Return True when OpenID Connect single sign-on is configured."""
    return bool(settings.OIDC_ENABLED)
