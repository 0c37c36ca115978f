"""Celery tasks (beat, hourly): thin wrappers over account hygiene."""

from __future__ import annotations

from celery import shared_task

from accounts import inactivity, passwords


@shared_task(name="accounts.hygiene", ignore_result=True)
def hygiene() -> dict[str, int]:
    """Warn of expiring passwords and disable unused accounts."""
    warned = passwords.warn_expiring()
    disabled = inactivity.disable_inactive()
    return {"warned": len(warned), "disabled": len(disabled)}
