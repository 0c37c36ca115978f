"""PROXY protocol v1/v2 on the gateway's listeners: the real client behind a balancer.

Opt-in (`MFT_PROXY_PROTOCOL`), and only from trusted balancers (`MFT_PROXY_TRUSTED`):
a connection from a trusted peer must start with a header, which then names the client
for everything that follows (bans, allow-lists, per-address caps, audit, the passive data
check, the masquerade address); a header from any other peer is refused.

The header is read before the session starts (before the 220, before the implicit TLS
handshake) without blocking the loop: a `HeaderReader` takes the socket's place in the
event loop, peeks at what has arrived, consumes exactly the header's bytes (whatever
follows, such as a TLS ClientHello, stays in the socket for the session) and gives the
socket back. The read is bounded in size (v1 107 bytes, v2 `V2_MAX_BYTES`) and in time.

Framing (how many bytes the header has) is done here because it must be exact and
bounded; the parsing of a complete header (families, addresses, TLVs) is the maintained
`proxy-protocol` library's.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from proxyprotocol.result import ProxyResult, ProxyResultIPv4, ProxyResultIPv6
from proxyprotocol.v1 import ProxyProtocolV1
from proxyprotocol.v2 import ProxyProtocolV2

log = logging.getLogger(__name__)

MODES = ("off", "v1", "v2", "any")
V1_PREFIX = b"PROXY "
V1_MAX_BYTES = 107  # the longest v1 line the specification allows, CRLF included
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED_BYTES = 16
V2_MAX_BYTES = 1024  # addresses (≤ 216 bytes) plus the TLVs balancers commonly add
DEFAULT_TIMEOUT = 5.0

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class HeaderRefused(Exception):
    """The bytes at the start of a connection are not an acceptable PROXY header."""


@dataclass(frozen=True)
class ProxyPolicy:
    """Which PROXY header versions are read, and from which peers."""

    mode: str = "off"
    trusted: tuple[Network, ...] = ()
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def build(cls, mode: str, trusted: Iterable[str], timeout: float = DEFAULT_TIMEOUT
              ) -> ProxyPolicy:
        """Return a policy from a mode name (`on` means `any`) and trusted networks."""
        mode = "any" if mode == "on" else mode
        if mode not in MODES:
            raise ValueError(f"PROXY protocol mode {mode!r} is not one of {', '.join(MODES)}")
        networks = tuple(ipaddress.ip_network(item, strict=False) for item in trusted)
        return cls(mode, networks, timeout)

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def trusts(self, address: str) -> bool:
        """Return True when a peer is a balancer whose headers are believed."""
        if not self.enabled or not self.trusted:
            return False
        try:
            ip = ipaddress.ip_address(address.removeprefix("::ffff:"))
        except ValueError:
            return False
        return any(ip in network for network in self.trusted)

    def header_length(self, data: bytes) -> int | None:
        """Return the header's full length once `data` holds it all, None while it may grow.

        Raise HeaderRefused when `data` cannot start an acceptable header or is too long.
        """
        if self.mode in ("v2", "any") and _could_be(data, V2_SIGNATURE):
            if len(data) < V2_FIXED_BYTES:
                return None
            (length,) = struct.unpack_from("!H", data, 14)
            total = V2_FIXED_BYTES + length
            if total > V2_MAX_BYTES:
                raise HeaderRefused(f"PROXY v2 header of {total} bytes is too long")
            return total if len(data) >= total else None
        if self.mode in ("v1", "any") and _could_be(data, V1_PREFIX):
            end = data.find(b"\r\n", 0, V1_MAX_BYTES)
            if end >= 0:
                return end + 2
            if len(data) >= V1_MAX_BYTES:
                raise HeaderRefused("PROXY v1 header longer than 107 bytes")
            return None
        raise HeaderRefused(f"no PROXY header (accepted: {self.mode})")


OFF = ProxyPolicy()


def _could_be(data: bytes, prefix: bytes) -> bool:
    """Return True when data starts with prefix, or is a start of it."""
    return data[:len(prefix)] == prefix[:len(data)]


def parse_header(header: bytes) -> tuple[str, int]:
    """Return the client address and port a complete header names.

    Headers that name no TCP client (v2 LOCAL, v1 UNKNOWN, UNIX sockets) are refused:
    bans and allow-lists would otherwise see the balancer instead of the client.
    """
    parser = ProxyProtocolV2() if header.startswith(V2_SIGNATURE) else ProxyProtocolV1()
    try:
        result: ProxyResult = parser.unpack(header)
    except Exception as exc:  # noqa: BLE001 - the library raises several kinds on junk
        raise HeaderRefused(f"malformed PROXY header: {exc}") from None
    if not isinstance(result, ProxyResultIPv4 | ProxyResultIPv6):
        raise HeaderRefused("PROXY header names no TCP client")
    address, port = result.source
    return str(address), int(port)


class HeaderBuffer:
    """Read one header from a non-blocking socket without taking a byte more."""

    def __init__(self, policy: ProxyPolicy) -> None:
        self.policy = policy
        self.data = b""

    def step(self, sock: socket.socket) -> tuple[str, int] | None:
        """Consume what has arrived; return the client once the header is complete."""
        limit = V2_MAX_BYTES if self.policy.mode != "v1" else V1_MAX_BYTES
        # Peek first: past the header's end the bytes are the session's (TLS ClientHello).
        peeked = sock.recv(limit - len(self.data), socket.MSG_PEEK)
        if not peeked:
            raise HeaderRefused("connection closed before the PROXY header")
        length = self.policy.header_length(self.data + peeked)
        take = len(peeked) if length is None else length - len(self.data)
        # Everything short of a complete header is header: consume it so the socket stops
        # reporting readable, and the loop never spins on bytes it has already seen.
        self.data += sock.recv(take)
        if length is None or len(self.data) < length:
            return None
        return parse_header(self.data)


Done = Callable[[tuple[str, int] | None, str | None], None]


class HeaderReader:
    """Hold a socket's place in the event loop until its header is read or refused.

    With `forbid=True` it only looks at the first byte and refuses a connection that
    starts like a header (an untrusted peer on the implicit listener, where the client
    speaks first), then gives the untouched socket back.
    """

    def __init__(self, sock: socket.socket, ioloop: Any, policy: ProxyPolicy, done: Done,
                 *, forbid: bool = False) -> None:
        self.socket = sock
        self.ioloop = ioloop
        self._fileno = sock.fileno()
        self._buffer = HeaderBuffer(policy)
        self._forbid = forbid
        self._done = done
        self._finished = False
        self._timeout = policy.timeout
        sock.setblocking(False)
        ioloop.register(self._fileno, self, ioloop.READ)
        self._timer = ioloop.call_later(policy.timeout, self._expire, _errback=self.handle_error)

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def handle_read_event(self) -> None:
        try:
            if self._forbid:
                return self._sniff()
            client = self._buffer.step(self.socket)
        except (BlockingIOError, InterruptedError):
            return None
        except (HeaderRefused, OSError) as exc:
            return self._finish(None, str(exc))
        if client is not None:
            self._finish(client, None)
        return None

    def _sniff(self) -> None:
        """Refuse a header-like first byte ('P' or CR); anything else is the session's."""
        first = self.socket.recv(1, socket.MSG_PEEK)
        if not first:
            return self._finish(None, "connection closed")
        if first in (b"P", b"\r"):
            return self._finish(None, "PROXY header from an untrusted peer")
        return self._finish(("", 0), None)

    def handle_close(self) -> None:
        self._finish(None, "connection closed before the PROXY header")

    def handle_error(self) -> None:
        log.exception("PROXY header read failed")
        self._finish(None, "internal error reading the PROXY header")

    def close(self) -> None:
        """Give up (the loop is closing)."""
        self._finish(None, "server shutting down")

    def _expire(self) -> None:
        self._finish(None, f"no PROXY header within {self._timeout:g} s")

    def _finish(self, client: tuple[str, int] | None, reason: str | None) -> None:
        if self._finished:
            return
        self._finished = True
        if not self._timer.cancelled:
            self._timer.cancel()
        self.ioloop.unregister(self._fileno)
        self._done(client, reason)


# --- the control connection ----------------------------------------------------------------


def read_first(session: Any, start: Callable[[], None]) -> bool:
    """Read (or forbid) a header before the session starts; return False when not needed.

    Called from the control handler's handle(); `start` runs the usual session start once
    the real client is known.
    """
    policy: ProxyPolicy = session.proxy_policy
    if not policy.enabled:
        return False
    trusted = policy.trusts(session.remote_ip)
    if not trusted and not session.implicit:
        return False  # the client waits for the 220: a header arrives as a command line
    session.del_channel()

    def done(client: tuple[str, int] | None, reason: str | None) -> None:
        if client is None:
            return refuse(session, reason or "PROXY header refused")
        session.add_channel()
        if trusted and not _adopt(session, client):
            return None
        return start()

    HeaderReader(session.socket, session.ioloop, policy, done, forbid=not trusted)
    return True


def _adopt(session: Any, client: tuple[str, int]) -> bool:
    """Make the header's client the session's address; apply the per-address cap to it."""
    server = session.server
    if session.remote_ip in server.ip_map:
        server.ip_map.remove(session.remote_ip)
    session.proxied_by = session.remote_ip
    session.remote_ip, session.remote_port = client
    server.ip_map.append(session.remote_ip)
    cap = server.max_cons_per_ip
    if cap and server.ip_map.count(session.remote_ip) > cap:
        session.handle_max_cons_per_ip()
        return False
    return True


def refuse(session: Any, reason: str, *, reply: str | None = None) -> None:
    """Log, audit and close a session whose PROXY header was refused (once)."""
    if getattr(session, "_proxy_refused", False):
        return
    session._proxy_refused = True
    log.warning("PROXY protocol: refused %s: %s", session.remote_ip, reason)
    session.audit_refusal("PROXY", reason)
    if reply is None:
        session.close()
    else:
        session.respond(reply)
        session.close_when_done()


def refuse_blank_line(session: Any) -> bool:
    """Refuse a blank command line before login while PROXY protocol is on; return True.

    On the explicit listener a v2 header from an untrusted peer reaches the command parser
    as lines, the first of them blank (its signature starts with CRLF); clients never send
    a blank line.
    """
    if not session.proxy_policy.enabled or session.authenticated:
        return False
    refuse(session, "PROXY header from an untrusted peer",
           reply="421 PROXY header refused: not a trusted balancer.")
    return True


def origin_details(session: Any) -> dict[str, str]:
    """Return the balancer a session came through, for its audit events."""
    via = getattr(session, "proxied_by", None)
    return {"proxied_by": via} if via else {}


class ClientAddresses(list[str]):
    """pyftpdlib's per-address connection list, blind to trusted balancers: their sessions
    are counted under the real client's address once its header has been read."""

    def __init__(self, policy: ProxyPolicy) -> None:
        super().__init__()
        self.policy = policy

    def count(self, value: str) -> int:
        return 0 if self.policy.trusts(value) else super().count(value)


# --- passive data connections --------------------------------------------------------------


def accept_data(acceptor: Any, sock: socket.socket, addr: tuple[Any, ...],
                accept: Callable[[socket.socket, tuple[Any, ...]], None]) -> bool:
    """Read the header of a data connection to a proxied session; return False when none.

    The balancer proxies the passive ports too, so the data connection arrives from the
    balancer with its own header, whose client must be the control connection's client.
    """
    session = acceptor.cmd_channel
    if getattr(session, "proxied_by", None) is None:
        return False  # a direct session: pyftpdlib's own address check applies
    policy: ProxyPolicy = session.proxy_policy
    if not policy.trusts(addr[0]):
        _refuse_data(session, sock, f"data connection from {addr[0]}, not the balancer")
        return True

    def done(client: tuple[str, int] | None, reason: str | None) -> None:
        if client is None:
            return _refuse_data(session, sock, reason or "PROXY header refused")
        if client[0] != session.remote_ip:
            return _refuse_data(session, sock, f"data connection for {client[0]}, not the "
                                "session's client")
        if acceptor._closed or session._dtp_acceptor is not acceptor:
            sock.close()  # another data connection was taken meanwhile
            return None
        return accept(sock, client)

    HeaderReader(sock, acceptor.ioloop, policy, done)
    return True


def _refuse_data(session: Any, sock: socket.socket, reason: str) -> None:
    """Close a data connection that did not prove it is the session's client."""
    try:
        sock.close()
    except OSError:
        pass
    log.warning("PROXY protocol: refused a data connection: %s", reason)
    if session.connected:
        session.respond("425 Rejected data connection: " + reason[:120] + ".")
        session.audit_refusal("PROXY-data", reason)
