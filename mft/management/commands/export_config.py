"""Write the platform's configuration as one signed JSON document (to a file or stdout)."""

from __future__ import annotations

import json
import os
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from audit.events import Origin
from mft.config_backup import services


class Command(BaseCommand):
    help = ("Export partners, users, keys, certificates, endpoints, routes, pulls and the "
            "rest of the configuration as one signed JSON document.")

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--output", "-o", default="-",
                            help="file to write (created 0600); '-' for stdout")

    def handle(self, *args: Any, **options: Any) -> None:
        doc = services.export_config(origin=Origin(actor="cli", protocol="cli"))
        text = json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
        if options["output"] == "-":
            self.stdout.write(text, ending="")
            return
        # Password hashes and sealed secrets: readable by the owner only.
        fd = os.open(options["output"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        counts = ", ".join(f"{len(rows)} {name}" for name, rows in doc["body"]["sections"].items()
                           if rows)
        self.stderr.write(f"exported {counts or 'nothing'} to {options['output']}")
