"""Send audit events to a SIEM: JSON lines to a rotating file, and syslog (RFC 5424).

Events are read from the database after a per-sink cursor, so a SIEM outage never blocks
a transfer and loses nothing: the cursor only moves after a batch was delivered. Written by
hand because Python's SysLogHandler speaks RFC 3164 without octet-counting or TLS.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from django.db import transaction

from audit.models import AuditEvent, ExportCursor

_BATCH = 500
_SEVERITY = {"failure": 4, "success": 6, "info": 6}  # warning, informational
_FACILITY = 13  # log audit


def event_record(event: AuditEvent) -> dict[str, Any]:
    """Return the exported form of an event."""
    return {"id": event.pk, "time": event.created_at.isoformat(), "actor": event.actor,
            "actor_id": event.actor_id, "source_ip": event.source_ip,
            "protocol": event.protocol, "action": event.action,
            "object_type": event.object_type, "object_id": event.object_id,
            "object": event.object_repr, "outcome": event.outcome, "details": event.details,
            "hash": event.hash, "prev_hash": event.prev_hash}


class Sink(Protocol):
    name: str

    def send(self, events: list[AuditEvent]) -> None: ...


class JsonLinesFile:
    """Append events as JSON lines to a file, rotating it past a size (like logrotate)."""

    def __init__(self, path: Path, *, max_bytes: int = 100 * 1024 * 1024, backups: int = 10):
        self.name = f"jsonl:{path}"
        self.path, self.max_bytes, self.backups = path, max_bytes, backups

    def send(self, events: list[AuditEvent]) -> None:
        """Write and fsync a batch, rotating first when the file is full."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.path.stat().st_size >= self.max_bytes:
            self._rotate()
        data = "".join(json.dumps(event_record(e), separators=(",", ":")) + "\n"
                       for e in events)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    def _rotate(self) -> None:
        """Shift file.N to file.N+1 and the live file to file.1."""
        for index in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{index + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))


@dataclass(frozen=True)
class SyslogTarget:
    transport: str  # udp, tcp, tls
    host: str
    port: int


def parse_syslog_url(url: str) -> SyslogTarget:
    """Parse udp://host:514, tcp://host:601 or tls://host:6514."""
    parts = urlsplit(url)
    if parts.scheme not in ("udp", "tcp", "tls") or not parts.hostname:
        raise ValueError(f"syslog address {url!r} must be udp://, tcp:// or tls://host:port")
    default = {"udp": 514, "tcp": 601, "tls": 6514}[parts.scheme]
    return SyslogTarget(parts.scheme, parts.hostname, parts.port or default)


def rfc5424(event: AuditEvent, hostname: str) -> bytes:
    """Format one event as an RFC 5424 syslog message with the JSON record as its body."""
    priority = _FACILITY * 8 + _SEVERITY.get(event.outcome, 6)
    timestamp = event.created_at.isoformat().replace("+00:00", "Z")
    body = json.dumps(event_record(event), separators=(",", ":"))
    structured = f'[portside@32473 id="{event.pk}" action="{_sd(event.action)}"]'
    return (f"<{priority}>1 {timestamp} {hostname} portside - audit {structured} "
            f"\ufeff{body}").encode()


def _sd(value: str) -> str:
    """Escape a structured-data parameter value."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


class Syslog:
    """Send events over UDP, TCP (octet-counting, RFC 6587) or TLS (RFC 5425)."""

    def __init__(self, url: str, *, ca_file: str | None = None, timeout: float = 10.0):
        self.name = f"syslog:{url}"
        self.target = parse_syslog_url(url)
        self.ca_file, self.timeout = ca_file, timeout
        self.hostname = socket.gethostname()

    def send(self, events: list[AuditEvent]) -> None:
        """Deliver a batch or raise OSError (the cursor then stays put)."""
        messages = [rfc5424(e, self.hostname) for e in events]
        if self.target.transport == "udp":
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                for message in messages:
                    sock.sendto(message[:65000], (self.target.host, self.target.port))
            return
        framed = b"".join(str(len(m)).encode() + b" " + m for m in messages)
        with self._connect() as sock:
            sock.sendall(framed)

    def _connect(self) -> socket.socket:
        """Open a TCP or TLS connection to the collector."""
        raw = socket.create_connection((self.target.host, self.target.port), self.timeout)
        if self.target.transport == "tcp":
            return raw
        context = ssl.create_default_context(cafile=self.ca_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context.wrap_socket(raw, server_hostname=self.target.host)


def export_pending(sink: Sink, *, limit: int | None = None) -> int:
    """Send events after the sink's cursor in batches; return how many were sent."""
    sent = 0
    while limit is None or sent < limit:
        cursor, _ = ExportCursor.objects.get_or_create(name=sink.name)
        batch = list(AuditEvent.objects.filter(id__gt=cursor.last_id).order_by("id")[:_BATCH])
        if not batch:
            break
        sink.send(batch)
        with transaction.atomic():
            ExportCursor.objects.filter(pk=cursor.pk).update(last_id=batch[-1].pk)
        sent += len(batch)
    return sent


def configured_sinks(jsonl_path: str, syslog_url: str, ca_file: str) -> Iterable[Sink]:
    """Return the sinks the settings turn on."""
    if jsonl_path:
        yield JsonLinesFile(Path(jsonl_path))
    if syslog_url:
        yield Syslog(syslog_url, ca_file=ca_file or None)
