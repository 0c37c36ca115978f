"""Apply the partners' retention policies now, or report what they would retire."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Partner
from retention import services


class Command(BaseCommand):
    help = "Delete or archive files and delivery records past their partner's retention."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--dry-run", action="store_true",
                            help="list what would go and change nothing")
        parser.add_argument("--partner", help="only this partner (by name)")

    def handle(self, *args: Any, **options: Any) -> None:
        partner = None
        if options["partner"]:
            partner = Partner.objects.filter(name=options["partner"]).first()
            if partner is None:
                raise CommandError(f"no partner named {options['partner']!r}")
        dry_run = options["dry_run"]
        verb = "would " if dry_run else ""
        for report in services.apply(dry_run=dry_run, partner=partner):
            self.stdout.write(f"{report.partner}: {verb}{report.action} {len(report.files)} "
                              f"file(s), {report.file_bytes} bytes; {verb}delete "
                              f"{report.deliveries} delivery record(s) with "
                              f"{report.attempts} attempt(s)")
            for stored in report.files:
                self.stdout.write(f"  {verb}{report.action} file {stored.pk} "
                                  f"{stored.owner_username}:{stored.path} ({stored.state}, "
                                  f"{stored.size} bytes)")
