"""A minimal SMTP server on loopback for tests (Python 3.12 drops `smtpd`).

Speaks just enough SMTP for Django's backend: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Mail:
    """One message as received: envelope and raw content."""

    sender: str
    recipients: list[str]
    data: bytes


@dataclass
class SmtpReceiver:
    port: int
    messages: list[Mail] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)


def _serve_one(conn: socket.socket, receiver: SmtpReceiver) -> None:
    reader = conn.makefile("rb")

    def reply(line: str) -> None:
        conn.sendall(line.encode() + b"\r\n")

    reply("220 test-smtp ready")
    sender, recipients = "", list[str]()
    for raw in reader:
        command = raw.decode(errors="replace").strip()
        verb = command[:4].upper()
        if verb in ("EHLO", "HELO"):
            reply("250 test-smtp")
        elif verb == "MAIL":
            sender, recipients = command.partition(":")[2].strip(" <>"), []
            reply("250 OK")
        elif verb == "RCPT":
            recipients.append(command.partition(":")[2].strip(" <>"))
            reply("250 OK")
        elif verb == "DATA":
            reply("354 end with <CRLF>.<CRLF>")
            lines = []
            for data_line in reader:
                if data_line in (b".\r\n", b".\n"):
                    break
                lines.append(data_line[1:] if data_line.startswith(b"..") else data_line)
            receiver.messages.append(Mail(sender, recipients, b"".join(lines)))
            receiver.arrived.set()
            reply("250 queued")
        elif verb == "QUIT":
            reply("221 bye")
            break
        elif verb in ("RSET", "NOOP"):
            reply("250 OK")
        else:
            reply("502 not implemented")
    reader.close()


@contextmanager
def smtp_receiver() -> Iterator[SmtpReceiver]:
    """Accept SMTP sessions on 127.0.0.1 in a thread; stop and join it afterwards."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    receiver = SmtpReceiver(listener.getsockname()[1])
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(10)
                _serve_one(conn, receiver)

    thread = threading.Thread(target=serve, name="smtp-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        stop.set()
        thread.join(timeout=10)
        listener.close()
        assert not thread.is_alive(), "SMTP receiver thread did not stop"
