"""Create an API token from the shell; the secret goes to stdout once."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts import tokens
from accounts.models import User
from mft.errors import PortsideError


class Command(BaseCommand):
    help = "Create an API token for a user and print it once."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--scope", action="append", required=True,
                            choices=list(tokens.SCOPES), help="repeat for several scopes")
        parser.add_argument("--name", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        user = User.objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"no user {options['username']!r}")
        try:
            made = tokens.create_api_token(user, scopes=options["scope"], name=options["name"])
        except PortsideError as exc:
            raise CommandError(str(exc)) from None
        self.stderr.write(f"token {made.token.prefix}… for {user.username} with scopes "
                          f"{', '.join(made.token.scopes)}; it is shown only this once")
        self.stdout.write(made.secret)
