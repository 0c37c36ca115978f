"""Re-wrap every stored file's data key with a new master key."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from audit import events
from transfers import key_rotation


class Command(BaseCommand):
    help = "Rotate the at-rest master key (re-wraps data keys; file contents are untouched)."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            report = key_rotation.rotate()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        events.admin_change(origin=events.SYSTEM, action="masterkey.rotate", obj=None,
                            after={"key_id": report.new_key_id, "files": report.rewrapped})
        self.stdout.write(f"master key rotated to {report.new_key_id}: {report.rewrapped} "
                          f"files re-wrapped, {report.already_done} already done. Back up the "
                          "new key file; keep master.key.old until backups made with it expire.")
