"""List files stuck short of a final pipeline state; exit 1 when there are any."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from transfers import pipeline


class Command(BaseCommand):
    help = "Report files that have not reached ready/infected/rejected within a threshold."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--older-than", type=int, default=settings.PIPELINE_STUCK_SECONDS,
                            help="seconds (default MFT_PIPELINE_STUCK_SECONDS)")

    def handle(self, *args: Any, **options: Any) -> None:
        stuck = pipeline.stuck_files(options["older_than"])
        for stored in stuck:
            since = stored.state_changed_at.strftime("%Y-%m-%d %H:%M:%S")
            self.stdout.write(f"{stored.pk}\t{stored.state}\t{since}\t"
                              f"{stored.owner_username}:{stored.path}\t{stored.state_reason}")
        if stuck:
            raise CommandError(f"{len(stuck)} file(s) stuck for more than "
                               f"{options['older_than']} s")
        self.stderr.write("no stuck files")
