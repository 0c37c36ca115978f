"""Create the gateway certificate and the first admin when missing."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from mft import bootstrap


class Command(BaseCommand):
    help = "Create the self-signed gateway certificate and the first admin if missing."

    def handle(self, *args: Any, **options: Any) -> None:
        report = bootstrap.run()
        if report.certificate_created:
            self.stderr.write(f"created a self-signed certificate at {settings.TLS_CERT_FILE}")
        if report.admin_created:
            self.stderr.write(f"created admin user {settings.ADMIN_USER!r}")
        if report.admin_password:
            self.stderr.write("generated admin password (shown once, change it after the "
                              f"first login): {report.admin_password}")
