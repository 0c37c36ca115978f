"""Empty the metrics folder before starting Portside's processes."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from mft import metrics


class Command(BaseCommand):
    help = ("Remove every process's metric files (PROMETHEUS_MULTIPROC_DIR) before the "
            "processes start; --this-host for containers sharing the folder.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--this-host", action="store_true",
                            help="only files written on this host (container)")

    def handle(self, *args: Any, **options: Any) -> None:
        removed = metrics.clear_directory(this_host_only=options["this_host"])
        self.stderr.write(f"removed {removed} metric file(s) from {metrics.DIRECTORY}")
