"""Archive audit events older than N days to a signed file, then delete them."""

from __future__ import annotations

from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from audit import retention


class Command(BaseCommand):
    help = "Archive (signed JSON lines) and delete audit events older than --older-than days."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--older-than", type=int, required=True, help="days")
        parser.add_argument("--dir", default=str(Path(settings.DATA_DIR) / "audit-archive"))

    def handle(self, *args: Any, **options: Any) -> None:
        if options["older_than"] < 1:
            raise CommandError("--older-than must be at least 1 day")
        result = retention.archive_before(retention.cutoff_for(options["older_than"]),
                                          Path(options["dir"]))
        if result.record is None:
            self.stdout.write("nothing to archive")
            return
        self.stdout.write(f"archived {result.count} events through id "
                          f"{result.record.through_id} to {result.record.path}")
