"""Import a signed configuration document made by `export_config`, all or nothing."""

from __future__ import annotations

import json
import sys
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.events import Origin
from mft.config_backup import document, services


class Command(BaseCommand):
    help = ("Import a configuration document into an empty database (or, with --merge, "
            "update rows by name). Nothing is written unless all of it is.")

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("path", help="the document; '-' for stdin")
        parser.add_argument("--merge", action="store_true",
                            help="import into a database that has configuration: update rows "
                                 "by natural key (partner name, username, endpoint name...)")
        parser.add_argument("--public-key", default="",
                            help="PEM public key of the exporting install "
                                 "(its MFT_DATA_DIR/audit-signing.key.pub); default: this "
                                 "install's own key")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            raw = sys.stdin.read() if options["path"] == "-" else \
                Path(options["path"]).read_text(encoding="utf-8")
            doc = json.loads(raw)
            trusted = (document.load_public_key(Path(options["public_key"]).read_bytes())
                       if options["public_key"] else None)
            counts = services.import_config(doc, merge=options["merge"], trusted=trusted,
                                            origin=Origin(actor="cli", protocol="cli"))
        except (OSError, json.JSONDecodeError) as exc:
            raise CommandError(f"cannot read the document: {exc}") from None
        except (document.DocumentRefused, services.ImportRefused) as exc:
            raise CommandError(f"import refused: {exc}") from None
        summary = ", ".join(f"{count} {name}" for name, count in counts.items() if count)
        self.stdout.write(f"imported {summary or 'nothing'}")
