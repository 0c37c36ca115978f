"""System checks for notifications (ids notifications.W0xx)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Warning, register


@register()
def check_email(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Warn when no mail server is configured: alerts are written to files, not sent."""
    if settings.EMAIL_CONFIGURED:
        return []
    return [Warning(f"no mail server configured: email alerts are written to "
                    f"{settings.EMAIL_FILE_PATH}, not sent",
                    hint="set MFT_EMAIL_URL, e.g. smtp+tls://user:password@mail.example.com",
                    id="notifications.W001")]
