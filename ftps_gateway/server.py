"""Build and run the gateway: listeners, per-server handler classes, event-loop processes.

Server model (see docs/PERFORMANCE.md): the parent reserves the listening ports, then forks
N worker processes. Each creates its own epoll loop after the fork (pyftpdlib's prefork
creates it before, so its workers share one epoll instance and misbehave), its own
blocking-work thread pool and its own database connections, and its own listening socket
on the reserved port (SO_REUSEPORT), so the kernel spreads new connections evenly over the
workers; with one shared listening socket, whichever worker woke first took them all.
Transfers run on the loops; hashing, database and audit run on the pools.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connections
from pyftpdlib.servers import FTPServer

from audit import spool
from ftps_gateway import masquerade, proxy_protocol, throttle, tls
from ftps_gateway.blocking import BlockingPool
from ftps_gateway.data_channel import DataChannel
from ftps_gateway.handler import ControlHandler
from ftps_gateway.session_context import SessionContext, SessionIOLoop
from ftps_gateway.sessions import SessionPublisher
from mft import heartbeat
from mft.models import ProcessHeartbeat

log = logging.getLogger(__name__)
CERT_CHECK_SECONDS = 2.0
# At exit, how long the audit spool may take to empty: inside the 5 s the parent allows past
# the stop grace before SIGKILL (what is left is replayed at the next start anyway).
SPOOL_CLOSE_SECONDS = 3.0


@dataclass(frozen=True)
class GatewayConfig:
    """Everything a gateway process needs, read once from settings."""

    bind_address: str
    explicit_port: int | None
    implicit_port: int | None
    passive_ports: tuple[int, int]
    masquerade_address: str | None
    certfile: str
    keyfile: str
    min_tls_version: str
    ciphers: str | None
    idle_timeout: int
    data_timeout: int
    max_connections: int
    max_connections_per_ip: int
    blocking_threads: int
    auth_failed_delay: float
    active_mode: bool
    workers: int = 1
    proxy_protocol: str = "off"
    proxy_trusted: tuple[str, ...] = ()
    proxy_timeout: float = 5.0  # seconds a PROXY header may take to arrive
    masquerade_map: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, **overrides: Any) -> GatewayConfig:
        """Return the configuration from Django settings, with overrides (tests)."""
        values: dict[str, Any] = dict(
            bind_address=settings.BIND_ADDRESS,
            explicit_port=settings.FTPS_PORT,
            implicit_port=settings.FTPS_IMPLICIT_PORT,
            passive_ports=settings.PASSIVE_PORTS,
            masquerade_address=settings.MASQUERADE_ADDRESS,
            certfile=str(settings.TLS_CERT_FILE),
            keyfile=str(settings.TLS_KEY_FILE),
            min_tls_version=settings.TLS_MIN_VERSION,
            ciphers=settings.TLS_CIPHERS,
            idle_timeout=settings.GATEWAY_IDLE_TIMEOUT,
            data_timeout=settings.GATEWAY_DATA_TIMEOUT,
            max_connections=settings.GATEWAY_MAX_CONNECTIONS,
            max_connections_per_ip=settings.GATEWAY_MAX_CONNECTIONS_PER_IP,
            blocking_threads=settings.GATEWAY_BLOCKING_THREADS,
            auth_failed_delay=settings.GATEWAY_AUTH_FAILED_DELAY,
            active_mode=settings.GATEWAY_ACTIVE_MODE,
            workers=settings.GATEWAY_WORKERS,
            proxy_protocol=settings.PROXY_PROTOCOL,
            proxy_trusted=tuple(settings.PROXY_TRUSTED),
            masquerade_map=settings.MASQUERADE_MAP,
        )
        values.update(overrides)
        return cls(**values)


LISTEN_BACKLOG = 256


def bind_listeners(config: GatewayConfig, *, listen: bool = True) -> dict[str, socket.socket]:
    """Bind the enabled listening sockets ("explicit", "implicit") before any fork.

    With listen=False the sockets only reserve their ports (SO_REUSEPORT, not listening, so
    they are never handed a connection) for the workers' own listeners (worker_listeners).
    """
    listeners: dict[str, socket.socket] = {}
    for name, port in (("explicit", config.explicit_port), ("implicit", config.implicit_port)):
        if port is None:
            continue
        family = socket.AF_INET6 if ":" in config.bind_address else socket.AF_INET
        address = (config.bind_address, port)
        try:
            if not listen:
                _refuse_if_served(family, address)
            listeners[name] = _listener(family, address, listen=listen, reuse_port=not listen)
        except OSError:
            for sock in listeners.values():
                sock.close()
            raise
    return listeners


def _refuse_if_served(family: int, address: Any) -> None:
    """Raise EADDRINUSE when a process already listens on address.

    SO_REUSEPORT lets any process of the same user bind the port too, so a second gateway
    (a stale one, or one started twice) would silently take half of the connections. A
    probe bound without SO_REUSEPORT conflicts with any listener already there; with
    SO_REUSEADDR it does not with the TIME_WAIT connections of a gateway just stopped.
    """
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)
    finally:
        probe.close()


def worker_listeners(reserved: dict[str, socket.socket]) -> dict[str, socket.socket]:
    """Open this worker's own listening sockets on the ports the parent reserved."""
    return {name: _listener(sock.family, sock.getsockname(), listen=True, reuse_port=True)
            for name, sock in reserved.items()}


def _listener(family: int, address: Any, *, listen: bool, reuse_port: bool) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        if listen:
            sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def server_context(config: GatewayConfig) -> Any:
    """Build the TLS context from the configured certificate and key."""
    return tls.build_server_context(
        config.certfile, config.keyfile, min_version=config.min_tls_version,
        ciphers=config.ciphers, request_client_cert=True,
        session_timeout=max(86400, config.idle_timeout * 4))


def proxy_policy(config: GatewayConfig) -> proxy_protocol.ProxyPolicy:
    """Return the PROXY protocol policy of the listeners."""
    return proxy_protocol.ProxyPolicy.build(config.proxy_protocol, config.proxy_trusted,
                                            config.proxy_timeout)


def handler_class(config: GatewayConfig, *, implicit: bool, pool: BlockingPool,
                  audit_spool: spool.AuditSpool | None = None) -> type:
    """Return a fresh handler subclass for one server: pyftpdlib classes are never mutated."""
    context = server_context(config)
    low, high = config.passive_ports
    data = type("GatewayDataChannel", (SessionContext, DataChannel),
                {"timeout": config.data_timeout})
    return type("GatewayHandler", (SessionContext, ControlHandler), {
        "ssl_context": context,
        "implicit": implicit,
        "pool": pool,
        "audit_spool": audit_spool,
        "dtp_handler": data,
        "timeout": config.idle_timeout,
        "passive_ports": range(low, high + 1),
        "masquerade_address": config.masquerade_address,
        "masquerade_map": masquerade.parse_map(config.masquerade_map),
        "proxy_policy": proxy_policy(config),
        "auth_failed_delay": config.auth_failed_delay,
        "active_mode": config.active_mode,
        "permit_foreign_addresses": False,
        "permit_privileged_ports": False,
        "max_login_attempts": 3,
    })


class GatewayProcess:
    """One event loop serving every listener, with its blocking pool and heartbeat."""

    def __init__(self, config: GatewayConfig, listeners: dict[str, socket.socket]) -> None:
        self.config = config
        self.ioloop = SessionIOLoop()
        self.pool = BlockingPool(self.ioloop, config.blocking_threads)
        self.spool = spool.AuditSpool()
        self._drainer = spool.Drainer(self.spool)
        self.servers: dict[str, FTPServer] = {}
        for name, sock in listeners.items():
            handler = handler_class(config, implicit=name == "implicit", pool=self.pool,
                                    audit_spool=self.spool)
            # The process owns the socket: closing it on drain must stop new connections
            # (a forked worker's copy is its own descriptor, closed only in that worker).
            server = FTPServer(sock, handler, ioloop=self.ioloop)
            server.max_cons = config.max_connections
            server.max_cons_per_ip = config.max_connections_per_ip
            # Sessions through a trusted balancer count under their real client's address.
            server.ip_map = proxy_protocol.ClientAddresses(proxy_policy(config))
            self.servers[name] = server
        self.ports = {name: s.address[1] for name, s in self.servers.items()}
        self._cert_stamp = self._certificate_stamp()
        self._next_cert_check = time.monotonic() + CERT_CHECK_SECONDS
        self._stop = threading.Event()
        self._drain = threading.Event()
        self._drain_deadline: float | None = None
        self._heartbeat: heartbeat.HeartbeatThread | None = None
        self.publisher: SessionPublisher | None = None

    def serve(self) -> None:
        """Run the loop until stop() is called."""
        name = f"gateway@{socket.gethostname()}:{os.getpid()}"
        self._heartbeat = heartbeat.HeartbeatThread(
            ProcessHeartbeat.Kind.GATEWAY, name, {"ports": self.ports})
        self._heartbeat.start()
        self._drainer.start()
        self.publisher = SessionPublisher(self.pool, self._sessions, name)
        self.publisher.start(self.ioloop)
        soonest: float | None = None
        try:
            # Our own loop instead of IOLoop.loop(): it must notice stop() and still run
            # scheduled calls (timeouts, delayed replies) on time.
            while not self._stop.is_set():
                self.ioloop.poll(0.5 if soonest is None else min(soonest, 0.5))
                soonest = self.ioloop.sched.poll()
                if self._drain.is_set() and self._drained():
                    break
                if time.monotonic() >= self._next_cert_check:
                    self._reload_certificate_if_changed()
        finally:
            self._shutdown()

    def _certificate_stamp(self) -> tuple[float, float]:
        """Return the modification times of the certificate and key files."""
        try:
            return (os.stat(self.config.certfile).st_mtime, os.stat(self.config.keyfile).st_mtime)
        except OSError:
            return (0.0, 0.0)

    def _reload_certificate_if_changed(self) -> None:
        """Serve a replaced certificate to new sessions; live sessions keep theirs.

        Only the handler subclasses this process built are changed (their class attribute),
        never pyftpdlib's own classes; each session copied the context it started with.
        """
        self._next_cert_check = time.monotonic() + CERT_CHECK_SECONDS
        stamp = self._certificate_stamp()
        if stamp == self._cert_stamp:
            return
        try:
            context = server_context(self.config)
        except Exception:
            log.exception("new certificate or key is unusable; still serving the old one")
            return
        self._cert_stamp = stamp
        for server in self.servers.values():
            server.handler.ssl_context = context
        log.info("now serving the replaced certificate %s to new sessions",
                 self.config.certfile)

    def stop(self) -> None:
        """Ask the loop to stop at once (safe from another thread or a signal handler)."""
        self._stop.set()

    def drain(self, grace: float) -> None:
        """Stop gracefully: accept nothing new, let transfers finish within the grace period,
        tell idle sessions 421, then stop (safe from a signal handler)."""
        self._drain_deadline = time.monotonic() + grace
        self._drain.set()

    def _sessions(self) -> list[Any]:
        """Return the control sessions on this loop."""
        return [c for c in list(self.ioloop.socket_map.values())
                if isinstance(c, ControlHandler) and not c._closed]

    def _drained(self) -> bool:
        """Close listeners and idle sessions; return True when nothing is left to wait for."""
        for server in self.servers.values():
            if server.socket is not None:
                server.close()
        busy = False
        for session in self._sessions():
            if session.data_channel is not None or session._busy:
                busy = True
            elif not getattr(session, "_told_to_leave", False):
                session._told_to_leave = True
                session.respond("421 Server shutting down; please reconnect shortly.")
                session.close_when_done()
        expired = self._drain_deadline is not None and time.monotonic() > self._drain_deadline
        return not busy or expired

    def _shutdown(self) -> None:
        """Close listeners and sessions, then the pool, the audit spool and the heartbeat."""
        for server in self.servers.values():
            server.close()
        self.ioloop.close()
        if self.publisher is not None:
            self.publisher.close()
        self.pool.close()
        # After the sessions (their disconnect events) and the pool (a refusal it could not
        # write falls back to the spool): empty the spool before the process exits.
        self._drainer.close(SPOOL_CLOSE_SECONDS)
        if self._heartbeat is not None:
            self._heartbeat.stop()
        connections.close_all()


def run_forever(config: GatewayConfig) -> int:
    """Run the gateway in `config.workers` processes until SIGTERM or SIGINT."""
    # One process listens itself; several each listen on the ports the parent reserves.
    listeners = bind_listeners(config, listen=config.workers <= 1)
    # Audit events a killed gateway left in its spool are written before serving again.
    spool.replay_or_log()
    if config.workers <= 1:
        return _serve_here(config, listeners)
    connections.close_all()  # never share a database connection across fork
    throttle.share_across_processes()  # the workers inherit one table of budgets
    children: dict[int, int] = {}
    stopping = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for slot in range(config.workers):
        children[_fork_worker(config, listeners)] = slot
    while not stopping:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            time.sleep(0.2)
            continue
        if pid in children and not stopping:
            log.error("gateway worker %s exited (%s); starting a new one", pid, status)
            children.pop(pid)
            time.sleep(0.5)
            children[_fork_worker(config, listeners)] = 0
            # After the fork, so a slow database never delays the replacement worker.
            spool.replay_or_log()
            connections.close_all()
    for sock in listeners.values():
        sock.close()  # the reservations; each worker closes its own listeners when draining
    for pid in children:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + settings.GATEWAY_STOP_GRACE + 5
    while children and time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid:
            children.pop(pid, None)
        else:
            time.sleep(0.1)
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    return 0


def _log_listening(listeners: dict[str, socket.socket]) -> None:
    for name, sock in listeners.items():
        log.info("FTPS %s listening on %s:%s", name, *sock.getsockname()[:2])


def _fork_worker(config: GatewayConfig, listeners: dict[str, socket.socket]) -> int:
    """Fork one worker process; return its pid in the parent."""
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        _drain_when_orphaned(parent)
        own = worker_listeners(listeners)
        for sock in listeners.values():
            sock.close()  # this process's copy of the parent's reservation
        code = _serve_here(config, own)
    finally:
        os._exit(code)


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _drain_when_orphaned(parent: int) -> None:
    """Get SIGTERM (drain, then exit) when the parent dies, however it dies.

    An orphaned worker would go on accepting on the gateway's ports with nobody left to
    replace or stop it, beside the workers of the gateway started in its place. prctl
    through ctypes: the standard library has no call for it (Linux only; elsewhere a
    no-op).
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _serve_here(config: GatewayConfig, listeners: dict[str, socket.socket]) -> int:
    """Serve in this process until SIGTERM or SIGINT."""
    process = GatewayProcess(config, listeners)
    grace = float(settings.GATEWAY_STOP_GRACE)
    signal.signal(signal.SIGTERM, lambda *_: process.drain(grace))
    signal.signal(signal.SIGINT, lambda *_: process.drain(grace))
    # Only now: whoever waits for this line may stop us (a SIGTERM before the handlers
    # killed the process without draining), and a worker's listeners are its own (the
    # parent's reservation accepts no connection).
    _log_listening(listeners)
    process.serve()
    return 0
