"""The gateway's event loop serves readable channels before writable ones in each pass."""

from __future__ import annotations

import socket

from ftps_gateway.session_context import SessionIOLoop


class Channel:
    """The least a channel needs for the loop: records which of its events ran."""

    def __init__(self, sock: socket.socket, name: str, calls: list[str]) -> None:
        self.sock, self.name, self.calls = sock, name, calls
        self._fileno = sock.fileno()  # what the loop sorts by when it closes

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def handle_read_event(self) -> None:
        self.calls.append(f"{self.name} read")
        self.sock.recv(64)

    def handle_write_event(self) -> None:
        self.calls.append(f"{self.name} write")

    def handle_close(self) -> None:
        self.calls.append(f"{self.name} close")

    def close(self) -> None:
        """Nothing to do: the test closes the sockets."""


def test_a_command_is_read_before_downloads_listed_ahead_of_it_are_written():
    loop = SessionIOLoop()
    calls: list[str] = []
    pairs = [socket.socketpair() for _ in range(3)]
    try:
        downloads = [Channel(ours, f"download{i}", calls) for i, (ours, _) in enumerate(pairs[:2])]
        for channel in downloads:  # writable at once: first on epoll's ready list
            loop.register(channel.sock.fileno(), channel, loop.WRITE)
        control, client = pairs[2]
        session = Channel(control, "session", calls)
        loop.register(control.fileno(), session, loop.READ)
        client.sendall(b"NOOP\r\n")  # readable last

        loop.poll(0)

        assert calls[0] == "session read"
        assert sorted(calls[1:]) == ["download0 write", "download1 write"]
    finally:
        for ours, theirs in pairs:
            ours.close()
            theirs.close()
        loop.close()


def test_a_channel_closed_by_a_read_is_not_written_in_the_same_pass():
    loop = SessionIOLoop()
    calls: list[str] = []
    ours, theirs = socket.socketpair()
    try:
        channel = Channel(ours, "data", calls)

        def read_then_close() -> None:
            calls.append("data read")
            loop.unregister(ours.fileno())

        channel.handle_read_event = read_then_close  # type: ignore[method-assign]
        loop.register(ours.fileno(), channel, loop.READ | loop.WRITE)
        theirs.sendall(b"x")

        loop.poll(0)

        assert calls == ["data read"]
    finally:
        ours.close()
        theirs.close()
        loop.close()
