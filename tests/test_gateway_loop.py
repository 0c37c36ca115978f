"""The gateway's event loop serves readable channels before writable ones in each pass, and
again between slices of a long pass of writes."""

from __future__ import annotations

import functools
import socket
import time
from collections.abc import Callable, Iterator

import pytest

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


@pytest.fixture
def sliced_loop() -> Iterator[SessionIOLoop]:
    loop = SessionIOLoop()
    yield loop
    loop.close()


@pytest.fixture
def pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    made: list[tuple[socket.socket, socket.socket]] = []
    yield made
    for ours, theirs in made:
        ours.close()
        theirs.close()


def downloads_beside_a_session(
        loop: SessionIOLoop, pairs: list[tuple[socket.socket, socket.socket]], count: int,
        calls: list[str], on_write: Callable[[Channel, socket.socket], None],
) -> list[Channel]:
    """Register `count` writable downloads, each write calling on_write(channel, the idle
    session's client end), then the idle session; return the downloads."""
    pairs.extend(socket.socketpair() for _ in range(count + 1))
    control, client = pairs[count]
    downloads = [Channel(ours, f"download{i}", calls) for i, (ours, _) in enumerate(pairs[:count])]
    for channel in downloads:
        channel.handle_write_event = functools.partial(  # type: ignore[method-assign]
            on_write, channel, client)
        loop.register(channel.sock.fileno(), channel, loop.WRITE)
    loop.register(control.fileno(), Channel(control, "session", calls), loop.READ)
    return downloads


def test_a_command_arriving_during_a_long_pass_of_writes_is_read_before_the_rest(
        sliced_loop, pairs, monkeypatch):
    monkeypatch.setattr(sliced_loop, "write_slice", 0.005)
    calls: list[str] = []

    def slow_write(channel: Channel, client: socket.socket) -> None:
        calls.append(f"{channel.name} write")
        if channel.name == "download0":
            client.sendall(b"NOOP\r\n")  # the command arrives while the pass writes
        time.sleep(0.01)  # each share takes longer than a slice

    downloads_beside_a_session(sliced_loop, pairs, 3, calls, slow_write)

    sliced_loop.poll(0)

    assert len(calls) == 4 and calls.index("session read") == 1, calls
    assert sorted(calls[:1] + calls[2:]) == [
        "download0 write", "download1 write", "download2 write"]


def test_writes_within_one_slice_are_not_interrupted(sliced_loop, pairs, monkeypatch):
    monkeypatch.setattr(sliced_loop, "write_slice", 60.0)
    calls: list[str] = []

    def write_then_command(channel: Channel, client: socket.socket) -> None:
        calls.append(f"{channel.name} write")
        client.sendall(b"NOOP\r\n")

    downloads_beside_a_session(sliced_loop, pairs, 2, calls, write_then_command)

    sliced_loop.poll(0)

    assert sorted(calls) == ["download0 write", "download1 write"]  # read next pass
