"""Print the compliance posture; exit 1 when an unaccepted high or critical finding exists."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from mft import posture


class Command(BaseCommand):
    help = "Report compliance findings with severity and mapped controls."

    def handle(self, *args: Any, **options: Any) -> None:
        found = posture.findings()
        for item in found:
            mark = " (accepted)" if item.accepted else ""
            self.stdout.write(f"{item.severity.upper():8} {item.id}: {item.title} — "
                              f"{item.detail} [{'; '.join(item.controls)}]{mark}")
        serious = [f for f in found if f.severity in ("critical", "high") and not f.accepted]
        if serious:
            raise CommandError(f"{len(serious)} unaccepted high or critical finding(s)")
