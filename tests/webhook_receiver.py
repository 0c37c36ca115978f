"""A webhook receiver on loopback for tests: records each request, answers scripted statuses."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookReceiver:
    """The receiver's address, what it received, and the statuses it will answer with."""

    url: str
    statuses: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def next_status(self) -> int:
        """Return the next scripted status (200 once the script runs out)."""
        return self.statuses.pop(0) if self.statuses else 200

    def wait_for(self, count: int, timeout: float = 30) -> list[Received]:
        """Wait until `count` requests arrived; return them."""
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.received) >= count, timeout)
        assert len(self.received) >= count, f"received {len(self.received)} of {count}"
        return self.received[:count]


@contextmanager
def webhook_receiver(statuses: list[int] | None = None) -> Iterator[WebhookReceiver]:
    """Run a receiver in a thread on 127.0.0.1; stop it and join the thread afterwards."""
    state: dict[str, WebhookReceiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            receiver = state["receiver"]
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            status = receiver.next_status()
            with receiver.arrived:
                receiver.received.append(Received(self.path, dict(self.headers.items()), body))
                receiver.arrived.notify_all()
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver = WebhookReceiver(f"http://127.0.0.1:{server.server_address[1]}/hooks/portside",
                               list(statuses or []))
    state["receiver"] = receiver
    thread = threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        assert not thread.is_alive(), "webhook receiver thread did not stop"
