"""Start a real Celery worker process against the test database and broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def current_database_url() -> str:
    """Return a DATABASE_URL naming the database the tests are using right now."""
    params = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{params['NAME']}"
    user = params.get("USER") or "postgres"
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    host = params.get("HOST") or "127.0.0.1"
    port = params.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{params['NAME']}"


class LiveWorker:
    """A `celery worker` child process; stop() or kill() it."""

    def __init__(self, log_path: Path, env: dict[str, str] | None = None,
                 queues: str = "celery,outbound", pool: str = "solo",
                 concurrency: int = 1) -> None:
        self.log_path = log_path
        child_env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
                     "DATABASE_URL": current_database_url(),
                     "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
                     "MFT_DATA_DIR": str(settings.DATA_DIR), **(env or {})}
        self._log = open(log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "mft", "worker", "--pool", pool,
             "--concurrency", str(concurrency), "--queues", queues,
             "--without-gossip", "--without-mingle", "--without-heartbeat",
             "--loglevel", "INFO", "--hostname", f"test-{os.getpid()}-{time.monotonic_ns()}@%h"],
            cwd=ROOT, env=child_env, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 60) -> None:
        """Wait until the worker reports a heartbeat."""
        from mft.models import ProcessHeartbeat

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ProcessHeartbeat.objects.filter(kind="worker", pid=self.process.pid).exists():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"worker did not start; log:\n{self.log()}")

    def log(self) -> str:
        """Return the end of the worker's log."""
        return self.log_path.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        """SIGKILL the worker, as a crash would."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """Stop the worker cleanly (warm shutdown), killing it if it hangs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()
