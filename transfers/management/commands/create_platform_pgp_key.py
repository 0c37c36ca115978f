"""Generate the platform's OpenPGP key (partners encrypt uploads to it)."""

from __future__ import annotations

from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from transfers import pgp
from transfers.pgp_step import platform_keyring


class Command(BaseCommand):
    help = "Create the platform OpenPGP key; prints its fingerprint and writes the public key."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--name", default="Portside")
        parser.add_argument("--email", required=True)
        parser.add_argument("--algorithm", choices=["ed25519", "rsa3072"], default="ed25519")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.PGP_PASSPHRASE:
            raise CommandError("set MFT_PGP_PASSPHRASE (or MFT_PGP_PASSPHRASE_FILE) first")
        try:
            fingerprint = platform_keyring().generate_platform_key(
                options["name"], options["email"], settings.PGP_PASSPHRASE,
                algorithm=options["algorithm"])
        except pgp.PgpError as exc:
            raise CommandError(str(exc)) from None
        public = Path(settings.PGP_HOME) / "platform-public.asc"
        public.write_text(platform_keyring().export_public(fingerprint))
        self.stderr.write(f"public key written to {public}: send it to partners")
        self.stdout.write(fingerprint)
