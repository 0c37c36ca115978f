"""Run the FTPS gateway (explicit and implicit listeners) in the foreground."""

from __future__ import annotations

from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand

from ftps_gateway import server
from mft import bootstrap


class Command(BaseCommand):
    help = "Run the FTPS gateway."
    requires_system_checks: list[str] = []

    def handle(self, *args: Any, **options: Any) -> None:
        bootstrap.ensure_certificate()
        call_command("check", tags=["gateway"], fail_level="ERROR")
        config = server.GatewayConfig.from_settings()
        raise SystemExit(server.run_forever(config))
