"""Run the FTPS gateway (explicit and implicit listeners) in the foreground."""

from __future__ import annotations

import errno
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from ftps_gateway import server
from mft import bootstrap


class Command(BaseCommand):
    help = "Run the FTPS gateway."
    requires_system_checks: list[str] = []

    def handle(self, *args: Any, **options: Any) -> None:
        bootstrap.ensure_certificate()
        call_command("check", tags=["gateway"], fail_level="ERROR")
        config = server.GatewayConfig.from_settings()
        try:
            code = server.run_forever(config)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            ports = [p for p in (config.explicit_port, config.implicit_port) if p is not None]
            raise CommandError(
                f"cannot listen on {config.bind_address} port(s) {ports}: another process "
                "(another gateway?) already uses one of them") from exc
        raise SystemExit(code)
