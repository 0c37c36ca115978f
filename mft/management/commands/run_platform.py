"""`make run`: migrate, bootstrap, then run web, gateway, worker and beat in the foreground."""

from __future__ import annotations

import sys
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from mft import bootstrap, metrics
from mft.supervisor import Child, Supervisor


def _admin_bind() -> list[str]:
    """Return gunicorn's extra listener for the admin UI, when it has one."""
    if settings.ADMIN_PORT is None:
        return []
    return ["--bind", f"{settings.ADMIN_BIND_ADDRESS}:{settings.ADMIN_PORT}"]


def children() -> list[Child]:
    """Return the processes of a whole platform, built from settings."""
    python = sys.executable
    manage = str(settings.BASE_DIR / "manage.py")
    result: list[Child] = []
    if settings.WEB_PORT is not None:
        result.append(Child("web", [
            python, "-m", "gunicorn", "mft.wsgi:application",
            "--bind", f"{settings.BIND_ADDRESS}:{settings.WEB_PORT}", *_admin_bind(),
            "--workers", str(settings.WEB_WORKERS), "--threads", "4",
            "--graceful-timeout", "10", "--access-logfile", "-",
            "--chdir", str(settings.BASE_DIR)]))
    result.append(Child("gateway", [python, manage, "run_gateway"]))
    result.append(Child("worker", [
        python, "-m", "celery", "-A", "mft", "worker", "--loglevel", "INFO",
        "--queues", settings.CELERY_TASK_DEFAULT_QUEUE,
        "--concurrency", str(settings.WORKER_CONCURRENCY), "--without-gossip",
        "--without-mingle", "--hostname", f"worker-{settings.WEB_PORT}@%h"]))
    result.append(Child("outbound", [
        python, "-m", "celery", "-A", "mft", "worker", "--loglevel", "INFO",
        "--queues", settings.OUTBOUND_QUEUE, "--pool", "threads",
        "--concurrency", str(settings.OUTBOUND_CONCURRENCY), "--without-gossip",
        "--without-mingle", "--hostname", f"outbound-{settings.WEB_PORT}@%h"]))
    result.append(Child("beat", [
        python, "-m", "celery", "-A", "mft", "beat", "--loglevel", "INFO",
        "--pidfile", "", "--schedule", str(settings.DATA_DIR / "celerybeat-schedule")]))
    return result


class Command(BaseCommand):
    help = "Run the whole platform (web, FTPS gateway, worker, beat) in the foreground."

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        report = bootstrap.run()
        # Counters of processes from an earlier run must not add into this run's totals.
        metrics.clear_directory()
        if report.admin_password:
            self.stdout.write(f"\n  First admin: {settings.ADMIN_USER} / {report.admin_password}"
                              "\n  (shown once: change it after the first login)\n")
        self._print_listeners()
        sys.stdout.flush()
        grace = max(20.0, settings.GATEWAY_STOP_GRACE + 10.0)
        raise SystemExit(Supervisor(children(), grace=grace).run())

    def _print_listeners(self) -> None:
        """Print what listens where."""
        host = settings.BIND_ADDRESS
        engine = str(settings.DATABASES["default"]["ENGINE"]).rsplit(".", 1)[-1]
        lines = [f"  data dir       {settings.DATA_DIR}",
                 f"  database       {engine}",
                 f"  broker         {settings.CELERY_BROKER_URL.split('://')[0]}"]
        if settings.WEB_PORT is not None:
            lines.append(f"  web + API      http://{host}:{settings.WEB_PORT}/  "
                         f"(health: /healthz, API docs: /api/docs/)")
        if settings.ADMIN_PORT is not None:
            lines.append(f"  admin UI       http://{settings.ADMIN_BIND_ADDRESS}:"
                         f"{settings.ADMIN_PORT}/  (the web port then serves the API only)")
        if settings.FTPS_PORT is not None:
            lines.append(f"  FTPS explicit  {host}:{settings.FTPS_PORT} (AUTH TLS)")
        if settings.FTPS_IMPLICIT_PORT is not None:
            lines.append(f"  FTPS implicit  {host}:{settings.FTPS_IMPLICIT_PORT}")
        low, high = settings.PASSIVE_PORTS
        lines.append(f"  passive ports  {low}-{high}")
        lines.append(f"  TLS cert       {settings.TLS_CERT_FILE}")
        self.stdout.write("Portside is starting:\n" + "\n".join(lines) + "\nCtrl-C stops it.")
