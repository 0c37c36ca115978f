"""Report that this process is alive, and read who is alive; the worker reports by thread."""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import timedelta
from typing import Any

from celery import signals
from django.conf import settings
from django.db import close_old_connections, connections
from django.utils import timezone

from mft.models import ProcessHeartbeat

log = logging.getLogger(__name__)


def beat(kind: str, name: str, info: dict[str, Any] | None = None) -> None:
    """Record that the named process is alive now."""
    now = timezone.now()
    updated = ProcessHeartbeat.objects.filter(name=name).update(
        last_seen=now, pid=os.getpid(), info=info or {}
    )
    if not updated:
        ProcessHeartbeat.objects.update_or_create(
            name=name,
            defaults={"kind": kind, "pid": os.getpid(), "started_at": now, "last_seen": now,
                      "info": info or {}},
        )


def forget(name: str) -> None:
    """Remove a process's heartbeat when it stops cleanly."""
    ProcessHeartbeat.objects.filter(name=name).delete()


def alive(kind: str) -> list[ProcessHeartbeat]:
    """Return the processes of a kind that reported within three heartbeat periods."""
    cutoff = timezone.now() - timedelta(seconds=3 * settings.WORKER_HEARTBEAT_SECONDS)
    return list(ProcessHeartbeat.objects.filter(kind=kind, last_seen__gte=cutoff))


class HeartbeatThread(threading.Thread):
    """Beat every few seconds in the background until stopped."""

    def __init__(self, kind: str, name: str, info: dict[str, Any] | None = None) -> None:
        super().__init__(name=f"heartbeat-{kind}", daemon=True)
        self.kind, self.beat_name, self.info = kind, name, info or {}
        self.stopped = threading.Event()

    def run(self) -> None:
        """Beat until stopped; a failed beat (database briefly away) is retried next period."""
        while not self.stopped.is_set():
            try:
                beat(self.kind, self.beat_name, self.info)
            except Exception:
                log.warning("heartbeat failed; retrying next period", exc_info=True)
            finally:
                close_old_connections()
            self.stopped.wait(settings.WORKER_HEARTBEAT_SECONDS)
        connections.close_all()

    def stop(self) -> None:
        """Stop beating and remove the heartbeat row."""
        self.stopped.set()
        self.join(timeout=5)
        try:
            forget(self.beat_name)
        finally:
            close_old_connections()


_worker_thread: HeartbeatThread | None = None


@signals.worker_ready.connect
def _start_worker_heartbeat(sender: Any = None, **kwargs: Any) -> None:
    """Start beating once the worker consumes tasks."""
    global _worker_thread
    name = f"worker@{socket.gethostname()}:{os.getpid()}"
    _worker_thread = HeartbeatThread(ProcessHeartbeat.Kind.WORKER, name)
    _worker_thread.start()


@signals.worker_shutdown.connect
def _stop_worker_heartbeat(sender: Any = None, **kwargs: Any) -> None:
    """Remove the worker's heartbeat on a clean shutdown."""
    if _worker_thread is not None:
        _worker_thread.stop()
