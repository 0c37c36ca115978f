"""pyOpenSSL plumbing shared by the harness and its peer processes.

Streams expose a tiny socket-like interface (``sendall(view)``,
``recv_into(view) -> int``, ``close()``) so the same pump loops drive raw TCP,
TLS, and (later) FTPS data connections.

Two TLS I/O strategies per connection end:

``membio``
    ``SSL.Connection(ctx, None)`` with memory BIOs; we move ciphertext with
    big socket reads/writes.  Receiving, that is one ``recv`` per ~1 MiB
    instead of two ``read`` syscalls (header, body) per 16 KiB record, which is
    what OpenSSL does on a socket BIO without read-ahead (pyOpenSSL does not
    expose ``SSL_CTX_set_read_ahead``).  Sending, it costs extra copies
    (``bio_read`` allocates and copies twice).
``socket``
    ``SSL.Connection(ctx, sock)``: OpenSSL drives the fd itself, the way
    pyftpdlib's TLS handlers use pyOpenSSL.  Cheapest for sending: records are
    encrypted into OpenSSL's buffer and written straight to the socket.

``BENCH_TLS_IO`` picks the strategy: ``membio`` (default, both ends),
``socket`` (both ends) or ``auto`` (``socket`` on the sending end, ``membio``
on the receiving end).  Measured here, receiving via ``membio`` costs ~20%
less CPU than via ``socket``; for sending the two are within the noise.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import hashlib
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL

DEFAULT_CIPHERSUITE = "TLS_AES_256_GCM_SHA384"
# SSL_read returns at most one record (16 KiB plaintext).  pyOpenSSL's
# recv_into mallocs a temporary of the requested size on every call, so ask
# for a bounded amount rather than the caller's whole (MiB-sized) buffer.
SSL_READ_CHUNK = 64 * 1024
NET_CHUNK = 1024 * 1024  # ciphertext moved per socket syscall in membio mode


TLS_IO_CHOICES = ("auto", "membio", "socket")


class StreamEOF(ConnectionError):
    pass


def io_for(setting: str, *, sending: bool) -> str:
    """Resolve ``BENCH_TLS_IO`` for one end of a one-directional stream."""
    if setting not in TLS_IO_CHOICES:
        raise ValueError(f"BENCH_TLS_IO must be one of {TLS_IO_CHOICES}, not {setting!r}")
    if setting == "auto":
        return "socket" if sending else "membio"
    return setting


def make_cert(directory: Path, cn: str = "portside-bench.invalid") -> tuple[Path, Path]:
    """Throwaway self-signed ECDSA P-256 certificate; returns (cert_path, key_path)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "bench-cert.pem"
    key_path = directory / "bench-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def _base_context(ciphersuite: str | None) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
    ctx.set_max_proto_version(SSL.TLS1_3_VERSION)
    if ciphersuite:
        ctx.set_tls13_ciphersuites(ciphersuite.encode())
    return ctx


def server_context(cert: Path, key: Path, ciphersuite: str | None) -> SSL.Context:
    ctx = _base_context(ciphersuite)
    ctx.use_certificate_chain_file(str(cert))
    ctx.use_privatekey_file(str(key))
    ctx.check_privatekey()
    return ctx


def client_context(cafile: Path, ciphersuite: str | None) -> SSL.Context:
    ctx = _base_context(ciphersuite)
    ctx.load_verify_locations(str(cafile))
    ctx.set_verify(SSL.VERIFY_PEER, lambda _conn, _cert, _err, _depth, ok: bool(ok))
    return ctx


# --------------------------------------------------------------------------- streams


class RawStream:
    """Plain TCP."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def sendall(self, view: memoryview) -> None:
        self.sock.sendall(view)

    def recv_into(self, view: memoryview) -> int:
        return self.sock.recv_into(view)

    def close(self) -> None:
        self.sock.close()

    def info(self) -> dict[str, object]:
        return sockbuf_info(self.sock)


class TlsStream:
    """TLS over a connected blocking socket, ``io`` = ``membio`` or ``socket``."""

    def __init__(self, sock: socket.socket, ctx: SSL.Context, *, server: bool, io: str) -> None:
        if io not in ("membio", "socket"):
            raise ValueError(f"unknown TLS io strategy {io!r}")
        self.sock = sock
        self.io = io
        self.conn = SSL.Connection(ctx, sock if io == "socket" else None)
        if server:
            self.conn.set_accept_state()
        else:
            self.conn.set_connect_state()
        self._net = memoryview(bytearray(NET_CHUNK)) if io == "membio" else None

    # handshake ---------------------------------------------------------------
    def handshake(self) -> None:
        if self.io == "socket":
            self._call(self.conn.do_handshake)
            return
        for _ in range(1000):  # a TLS 1.3 handshake needs a handful of rounds
            try:
                self.conn.do_handshake()
            except SSL.WantReadError:
                self._flush()
                self._feed()
                continue
            self._flush()  # server: NewSessionTickets
            return
        raise ConnectionError("TLS handshake did not converge")

    # data --------------------------------------------------------------------
    def sendall(self, view: memoryview) -> None:
        if self.io == "socket":
            self._call(self.conn.sendall, view)
            return
        self.conn.sendall(view)  # encrypt into the memory BIO (never blocks)
        self._flush()

    def recv_into(self, view: memoryview) -> int:
        want = min(len(view), SSL_READ_CHUNK)
        if self.io == "socket":
            try:
                return self._call(self.conn.recv_into, view, want)
            except SSL.ZeroReturnError:
                return 0
        for _ in range(1_000_000):  # bounded: each round consumes socket data or returns
            try:
                return self.conn.recv_into(view, want)
            except SSL.WantReadError:
                if not self._feed():
                    return 0
            except SSL.ZeroReturnError:
                return 0
        raise ConnectionError("TLS read made no progress")

    def close(self) -> None:
        try:
            self.conn.shutdown()
            if self.io == "membio":
                self._flush()
        except (SSL.Error, OSError):
            pass
        self.sock.close()

    def info(self) -> dict[str, object]:
        out: dict[str, object] = {
            "tls_io": self.io,
            "cipher": self.conn.get_cipher_name(),
            "protocol": self.conn.get_protocol_version_name(),
        }
        out.update(sockbuf_info(self.sock))
        return out

    # internals -----------------------------------------------------------------
    def _flush(self) -> None:
        conn, sock = self.conn, self.sock
        for _ in range(1 << 20):  # the BIO holds what we just wrote: bounded
            try:
                data = conn.bio_read(NET_CHUNK)
            except SSL.WantReadError:
                return
            sock.sendall(data)
        raise ConnectionError("TLS output BIO did not drain")

    def _feed(self) -> bool:
        assert self._net is not None
        n = self.sock.recv_into(self._net)
        if n == 0:
            return False
        self.conn.bio_write(self._net[:n])
        return True

    @staticmethod
    def _call(fn, *args):
        try:
            return fn(*args)
        except (SSL.WantReadError, SSL.WantWriteError) as exc:
            # blocking fd + SO_RCVTIMEO/SO_SNDTIMEO: EAGAIN means the timeout hit
            raise TimeoutError(f"TLS I/O timed out ({type(exc).__name__})") from exc
        except SSL.SysCallError as exc:
            raise StreamEOF(f"TLS connection lost: {exc}") from exc


def sockbuf_info(sock: socket.socket) -> dict[str, object]:
    return {
        "so_sndbuf": sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
        "so_rcvbuf": sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
    }


# --------------------------------------------------------------------------- pumps


@contextlib.contextmanager
def gc_paused():
    """The hot loops allocate many short-lived acyclic objects: keep the cyclic GC out."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def pump_send(stream, total: int, bufsize: int, progress=None) -> int:
    """Send ``total`` bytes in ``bufsize`` writes from one preallocated buffer."""
    buf = memoryview(bytearray(pattern_bytes(bufsize)))
    sent = 0
    mark = progress.next_mark if progress is not None else total + 1
    sendall = stream.sendall
    with gc_paused():
        while sent < total:
            n = min(bufsize, total - sent)
            sendall(buf if n == bufsize else buf[:n])
            sent += n
            if sent >= mark:
                progress.at(sent)
                mark = progress.next_mark
    return sent


def pump_recv(stream, total: int, bufsize: int, progress=None) -> int:
    """Receive exactly ``total`` bytes into one preallocated buffer (data discarded)."""
    buf = memoryview(bytearray(bufsize))
    got = 0
    mark = progress.next_mark if progress is not None else total + 1
    recv_into = stream.recv_into
    with gc_paused():
        while got < total:
            left = total - got
            n = recv_into(buf if left >= bufsize else buf[:left])
            if n == 0:
                raise StreamEOF(f"EOF after {got} of {total} bytes")
            got += n
            if got >= mark:
                progress.at(got)
                mark = progress.next_mark
    return got


def recv_exact(stream, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = stream.recv_into(view[got:])
        if k == 0:
            raise StreamEOF(f"EOF after {got} of {n} control bytes")
        got += k
    return bytes(buf)


def pattern_bytes(n: int) -> bytes:
    # incompressible-looking, cheap, deterministic
    seed = hashlib.sha256(b"portside-bench").digest()
    block = hashlib.shake_256(seed).digest(min(n, 1 << 20))
    return (block * (n // len(block) + 1))[:n]
