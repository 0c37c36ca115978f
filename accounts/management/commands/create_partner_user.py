"""Create a partner user from the shell, as pure-ftpd's pure-pw does."""

from __future__ import annotations

import sys
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts import services
from mft.errors import PortsideError


class Command(BaseCommand):
    help = "Create a partner user allowed FTPS; the generated password goes to stdout once."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--partner", required=True, help="partner name (created if new)")
        secret = parser.add_mutually_exclusive_group()
        secret.add_argument("--password-stdin", action="store_true",
                            help="read the password from the first line of stdin")
        secret.add_argument("--generate-password", action="store_true")
        parser.add_argument("--home", help="home folder (default: under MFT_DATA_DIR)")
        parser.add_argument("--quota-bytes", type=int)
        parser.add_argument("--quota-files", type=int)
        parser.add_argument("--update", action="store_true",
                            help="change an existing user instead of failing")

    def handle(self, *args: Any, **options: Any) -> None:
        password = None
        if options["password_stdin"]:
            password = sys.stdin.readline().rstrip("\r\n")
            if not password:
                raise CommandError("no password on stdin")
        try:
            made = services.create_partner_user(
                options["username"], partner_name=options["partner"], password=password,
                generate=options["generate_password"], home=options["home"],
                quota_bytes=options["quota_bytes"], quota_files=options["quota_files"],
                update=options["update"],
            )
        except PortsideError as exc:
            raise CommandError(str(exc)) from None
        verb = "created" if made.created else "updated"
        self.stderr.write(f"{verb} user {made.user.username} (partner {made.user.partner}), "
                          f"home {made.user.home_dir}")
        if made.password:
            self.stdout.write(made.password)
        elif made.created and password is None:
            self.stderr.write("no password set: use --password-stdin or --generate-password "
                              "(or a certificate) before this user can log in")
