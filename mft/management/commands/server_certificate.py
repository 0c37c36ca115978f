"""Show, import (PEM or PKCS#12) or generate the gateway's server certificate.

Running gateways pick up a replaced certificate within seconds; live sessions keep theirs.
"""

from __future__ import annotations

import sys
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from audit import events
from mft import server_certificate as certificate


class Command(BaseCommand):
    help = "Manage the FTPS gateway's server certificate."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("show")
        pem = sub.add_parser("import-pem")
        pem.add_argument("certificate", help="PEM certificate (chain) file")
        pem.add_argument("key", help="PEM private key file")
        p12 = sub.add_parser("import-pkcs12")
        p12.add_argument("bundle")
        p12.add_argument("--password-stdin", action="store_true")
        gen = sub.add_parser("generate")
        gen.add_argument("--name", action="append", help="DNS name or IP (repeat)")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        origin = events.SYSTEM
        try:
            if action == "import-pem":
                info = certificate.import_pem(Path(options["certificate"]).read_bytes(),
                                              Path(options["key"]).read_bytes(), origin=origin)
            elif action == "import-pkcs12":
                password = sys.stdin.readline().rstrip("\n").encode() \
                    if options["password_stdin"] else None
                info = certificate.import_pkcs12(Path(options["bundle"]).read_bytes(), password,
                                                 origin=origin)
            elif action == "generate":
                names = options["name"] or certificate.default_names(settings.BIND_ADDRESS)
                info = certificate.generate(names, origin=origin)
            else:
                info = certificate.describe(settings.TLS_CERT_FILE)
        except (OSError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        for key, value in info.items():
            self.stdout.write(f"{key:12} {value}")
