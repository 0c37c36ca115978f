"""Tests for ftps_gateway.tls: hardened server context and data-channel TLS
session binding (vsftpd's require_ssl_reuse).

Server side: pyOpenSSL (the gateway's stack) in a thread over a socketpair.
Client side: Python's ssl module (OpenSSL 3.0 here) and pyOpenSSL (OpenSSL 4.x).
The last tests run a real pyftpdlib TLS_FTPHandler wired as documented in the
module docstring of ftps_gateway/tls.py.
"""

from __future__ import annotations

import datetime
import ftplib
import hashlib
import io
import os
import secrets
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL
from OpenSSL._util import lib as _lib

from ftps_gateway import tls

pytestmark = pytest.mark.timeout(120)

TLS_VERSIONS = {
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
}
PYOPENSSL_MAX = {"TLSv1.3": SSL.TLS1_3_VERSION, "TLSv1.2": SSL.TLS1_2_VERSION}
REPLY = b"200 PBSZ=0 successful.\r\n"
JOIN_TIMEOUT = 15


# --------------------------------------------------------------------------- PKI


STOCK_PASSWORD = "Stock-" + secrets.token_urlsafe(12)


@dataclass
class PKI:
    server_cert: str
    server_key: str
    client_ca: str
    client_cert: str
    client_key: str
    client_der: bytes
    stranger_cert: str  # self-signed client cert, unknown to the server
    stranger_key: str
    stranger_der: bytes


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _make_cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    *,
    issuer: str | None = None,
    issuer_key: ec.EllipticCurvePrivateKey | None = None,
    ca: bool = False,
    san: list[x509.GeneralName] | None = None,
    eku: list[x509.ObjectIdentifier] | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    signer = issuer_key or key
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer or subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
            critical=False,
        )
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return builder.sign(signer, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    """Throw-away ECDSA P-256 certificates: server, client CA + client, stranger."""
    d = tmp_path_factory.mktemp("pki")
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _make_cert(
        "localhost",
        server_key,
        san=[x509.DNSName("localhost")],
        eku=[ExtendedKeyUsageOID.SERVER_AUTH],
    )
    _write(d / "server", server, server_key)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _make_cert("Portside test client CA", ca_key, ca=True)
    _write(d / "client-ca", ca, ca_key)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _make_cert(
        "partner-acme",
        client_key,
        issuer="Portside test client CA",
        issuer_key=ca_key,
        eku=[ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    _write(d / "client", client, client_key)

    stranger_key = ec.generate_private_key(ec.SECP256R1())
    stranger = _make_cert("stranger", stranger_key, eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    _write(d / "stranger", stranger, stranger_key)
    return PKI(
        server_cert=str(d / "server.crt"),
        server_key=str(d / "server.key"),
        client_ca=str(d / "client-ca.crt"),
        client_cert=str(d / "client.crt"),
        client_key=str(d / "client.key"),
        client_der=client.public_bytes(serialization.Encoding.DER),
        stranger_cert=str(d / "stranger.crt"),
        stranger_key=str(d / "stranger.key"),
        stranger_der=stranger.public_bytes(serialization.Encoding.DER),
    )


@pytest.fixture
def server_ctx(pki: PKI) -> SSL.Context:
    return tls.build_server_context(pki.server_cert, pki.server_key)


@pytest.fixture(autouse=True)
def no_leaked_threads():
    before = set(threading.enumerate())
    yield
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert not leaked, f"leaked threads: {leaked}"


# ------------------------------------------------------------------ server harness


@dataclass
class ServerResult:
    error: BaseException | None = None
    reused: bool | None = None
    version: str | None = None
    cipher: str | None = None
    peer_sha256: str | None = None
    peer_der: bytes | None = None
    received: bytes = b""
    sent: int = 0


@dataclass
class ServerPlan:
    token: bytes | None = None
    require_reuse: bool = False
    upload: int = 0  # bytes expected from the client after the reply
    download: bytes = b""  # bytes sent to the client after the upload
    before_handshake: Callable[[SSL.Connection], None] | None = None


def _serve(ctx: SSL.Context, sock: socket.socket, plan: ServerPlan, res: ServerResult) -> None:
    """One server-side connection: handshake, reply, upload, download, wait for close."""
    conn = SSL.Connection(ctx, sock)
    conn.set_accept_state()
    try:
        if plan.token is not None:
            tls.bind_session_context(conn, plan.token, require_reuse=plan.require_reuse)
        if plan.before_handshake is not None:
            plan.before_handshake(conn)
        conn.do_handshake()
        res.reused = tls.session_reused(conn)
        res.version = conn.get_protocol_version_name()
        res.cipher = conn.get_cipher_name()
        res.peer_der = tls.peer_certificate_der(conn)
        res.peer_sha256 = tls.peer_certificate_sha256(conn)
        conn.sendall(REPLY)
        received = bytearray()
        while len(received) < plan.upload:
            received += conn.recv(min(65536, plan.upload - len(received)))
        res.received = bytes(received)
        if plan.download:
            conn.sendall(plan.download)
            res.sent = len(plan.download)
        # Wait for the client to finish (close_notify or EOF).
        while True:
            try:
                if not conn.recv(65536):
                    break
            except (SSL.ZeroReturnError, SSL.SysCallError):
                break
        try:
            conn.shutdown()
        except SSL.Error:
            pass
    except (SSL.Error, OSError, ValueError, AssertionError) as exc:
        res.error = exc
    finally:
        sock.close()


def run_pair(
    ctx: SSL.Context,
    plan: ServerPlan,
    client: Callable[[socket.socket], Any],
) -> tuple[ServerResult, Any]:
    """Run ``client(sock)`` in this thread against a pyOpenSSL server thread."""
    csock, ssock = socket.socketpair()
    res = ServerResult()
    thread = threading.Thread(target=_serve, args=(ctx, ssock, plan, res), daemon=True)
    thread.start()
    try:
        csock.settimeout(JOIN_TIMEOUT)
        out = client(csock)
    finally:
        csock.close()
        thread.join(JOIN_TIMEOUT)
    assert not thread.is_alive(), "server thread hung"
    return res, out


# ------------------------------------------------------------------- clients


def py_client_ctx(pki: PKI, version: str | None = None, **kw: Any) -> ssl.SSLContext:
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.load_verify_locations(pki.server_cert)
    if version is not None:
        cctx.maximum_version = TLS_VERSIONS[version]
    if kw.get("cert"):
        cctx.load_cert_chain(*kw["cert"])
    return cctx


@dataclass
class PyOut:
    reused: bool
    session: ssl.SSLSession | None
    version: str | None
    downloaded: bytes = b""
    ticket_before_read: bool | None = None


def py_client(
    cctx: ssl.SSLContext,
    *,
    session: ssl.SSLSession | None = None,
    upload: bytes = b"",
    download: int = 0,
) -> Callable[[socket.socket], PyOut]:
    def run(sock: socket.socket) -> PyOut:
        with cctx.wrap_socket(sock, server_hostname="localhost", session=session) as s:
            before = s.session
            ticket_before = before.has_ticket if before is not None else None
            line = s.recv(len(REPLY))
            assert line == REPLY
            if upload:
                s.sendall(upload)
            got = bytearray()
            while len(got) < download:
                chunk = s.recv(65536)
                assert chunk
                got += chunk
            out = PyOut(bool(s.session_reused), s.session, s.version(), bytes(got),  # type: ignore[arg-type]
                        ticket_before)
            s.unwrap()
            return out

    return run


@dataclass
class OsslOut:
    reused: bool
    session: SSL.Session | None
    version: str


def ossl_client_ctx(pki: PKI, version: str, *, no_ticket: bool = False) -> SSL.Context:
    cctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    cctx.set_max_proto_version(PYOPENSSL_MAX[version])
    cctx.load_verify_locations(pki.server_cert)
    cctx.set_verify(SSL.VERIFY_PEER)
    if no_ticket:
        cctx.set_options(SSL.OP_NO_TICKET)
    return cctx


def ossl_client(
    cctx: SSL.Context, *, session: SSL.Session | None = None
) -> Callable[[socket.socket], OsslOut]:
    """pyOpenSSL client; like Python's ssl it resumes only with the same Context."""

    def run(sock: socket.socket) -> OsslOut:
        sock.settimeout(None)  # pyOpenSSL wants a blocking socket
        conn = SSL.Connection(cctx, sock)
        conn.set_connect_state()
        conn.set_tlsext_host_name(b"localhost")
        if session is not None:
            conn.set_session(session)
        conn.do_handshake()
        assert conn.recv(len(REPLY)) == REPLY  # processes TLS 1.3 tickets too
        out = OsslOut(
            tls.session_reused(conn), conn.get_session(), conn.get_protocol_version_name()
        )
        conn.shutdown()
        return out

    return run


# ===================================================================== context


def test_context_options_and_session_cache(pki: PKI) -> None:
    ctx = tls.build_server_context(pki.server_cert, pki.server_key, session_timeout=3600)
    opts = _lib.SSL_CTX_get_options(ctx._context)
    for flag in (SSL.OP_NO_COMPRESSION, SSL.OP_CIPHER_SERVER_PREFERENCE, SSL.OP_NO_RENEGOTIATION):
        assert opts & flag == flag
    assert not opts & SSL.OP_NO_TICKET, "tickets must stay on (TLS 1.3 resumption)"
    assert ctx.get_session_cache_mode() == SSL.SESS_CACHE_SERVER
    assert ctx.get_timeout() == 3600
    assert ctx.get_verify_mode() == SSL.VERIFY_NONE


def test_cipher_list_is_aead_only(server_ctx: SSL.Context) -> None:
    conn = SSL.Connection(server_ctx, None)
    offered = set(conn.get_cipher_list())
    allowed = set(tls.TLS12_CIPHERS.split(":")) | set(tls.TLS13_CIPHERSUITES.split(":"))
    assert offered == allowed
    for name in offered:
        assert "GCM" in name or "CHACHA20-POLY1305" in name or "CHACHA20_POLY1305" in name
        assert name.startswith(("ECDHE-", "TLS_"))


@pytest.mark.parametrize("version", ["TLSv1.3", "TLSv1.2"])
def test_handshake_versions_and_ciphers(pki: PKI, server_ctx: SSL.Context, version: str) -> None:
    res, out = run_pair(server_ctx, ServerPlan(), py_client(py_client_ctx(pki, version)))
    assert res.error is None
    assert res.version == out.version == version
    if version == "TLSv1.3":
        assert res.cipher in tls.TLS13_CIPHERSUITES.split(":")
    else:
        assert res.cipher in tls.TLS12_CIPHERS.split(":")
        assert res.cipher.startswith("ECDHE-ECDSA-")
    assert res.reused is False and out.reused is False


def test_tls13_is_preferred_by_default(pki: PKI, server_ctx: SSL.Context) -> None:
    res, out = run_pair(server_ctx, ServerPlan(), py_client(py_client_ctx(pki)))
    assert res.error is None and res.version == out.version == "TLSv1.3"


def _expect_client_failure(
    ctx: SSL.Context, client: Callable[[socket.socket], Any]
) -> ServerResult:
    def wrapped(sock: socket.socket) -> None:
        with pytest.raises((ssl.SSLError, OSError)):
            client(sock)

    res, _ = run_pair(ctx, ServerPlan(), wrapped)
    assert isinstance(res.error, SSL.Error)
    return res


def test_cbc_and_non_ecdhe_tls12_ciphers_refused(pki: PKI, server_ctx: SSL.Context) -> None:
    for weak in (
        "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA",  # CBC, SHA-1 MAC
        "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384",  # CBC
        "AES128-GCM-SHA256:AES256-GCM-SHA384",  # static RSA key exchange, no PFS
    ):
        cctx = py_client_ctx(pki, "TLSv1.2")
        cctx.set_ciphers(weak)
        res = _expect_client_failure(server_ctx, py_client(cctx))
        assert "no shared cipher" in str(res.error).lower()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls11_refused(pki: PKI, server_ctx: SSL.Context) -> None:
    cctx = py_client_ctx(pki)
    cctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    cctx.minimum_version = ssl.TLSVersion.TLSv1
    cctx.maximum_version = ssl.TLSVersion.TLSv1_1
    res = _expect_client_failure(server_ctx, py_client(cctx))
    assert "unsupported protocol" in str(res.error).lower()


def test_min_version_tls13(pki: PKI) -> None:
    ctx = tls.build_server_context(pki.server_cert, pki.server_key, min_version="TLSv1.3")
    _expect_client_failure(ctx, py_client(py_client_ctx(pki, "TLSv1.2")))
    res, out = run_pair(ctx, ServerPlan(), py_client(py_client_ctx(pki)))
    assert res.error is None and out.version == "TLSv1.3"


@pytest.mark.parametrize("bad", ["TLSv1.1", "TLSv1", "SSLv3", "tls1.2"])
def test_invalid_min_version(pki: PKI, bad: str) -> None:
    with pytest.raises(ValueError, match="min_version"):
        tls.build_server_context(pki.server_cert, pki.server_key, min_version=bad)


def test_custom_tls12_cipher_list(pki: PKI) -> None:
    ctx = tls.build_server_context(
        pki.server_cert, pki.server_key, ciphers="ECDHE-ECDSA-CHACHA20-POLY1305"
    )
    res, _ = run_pair(ctx, ServerPlan(), py_client(py_client_ctx(pki, "TLSv1.2")))
    assert res.cipher == "ECDHE-ECDSA-CHACHA20-POLY1305"


def test_client_initiated_renegotiation_refused(pki: PKI, server_ctx: SSL.Context) -> None:
    cctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    cctx.set_max_proto_version(SSL.TLS1_2_VERSION)

    def client(sock: socket.socket) -> str:
        sock.settimeout(None)
        conn = SSL.Connection(cctx, sock)
        conn.set_connect_state()
        conn.do_handshake()
        assert conn.recv(len(REPLY)) == REPLY
        assert conn.renegotiate()
        with pytest.raises(SSL.Error) as exc_info:
            conn.do_handshake()
            conn.recv(1)
        return str(exc_info.value).lower()

    res, err = run_pair(server_ctx, ServerPlan(), client)
    assert "no renegotiation" in err
    assert res.version == "TLSv1.2"


# ============================================================ session binding


def _control(ctx: SSL.Context, cctx: ssl.SSLContext, token: bytes) -> tuple[ServerResult, PyOut]:
    """A control connection bound to ``token``; Python's ssl resumes only with
    the same client SSLContext, so callers pass theirs."""
    res, out = run_pair(ctx, ServerPlan(token=token), py_client(cctx))
    assert res.error is None and res.reused is False
    assert out.session is not None and out.session.has_ticket
    return res, out


@pytest.mark.parametrize("version", ["TLSv1.3", "TLSv1.2"])
@pytest.mark.parametrize("require_reuse", [False, True])
def test_python_client_resuming_its_control_session_is_accepted(
    pki: PKI, server_ctx: SSL.Context, version: str, require_reuse: bool
) -> None:
    token = tls.new_session_token()
    cctx = py_client_ctx(pki, version)
    _, ctl = _control(server_ctx, cctx, token)
    res, out = run_pair(
        server_ctx,
        ServerPlan(token=token, require_reuse=require_reuse),
        py_client(cctx, session=ctl.session),
    )
    assert res.error is None
    assert res.reused is True and out.reused is True
    assert res.version == version


@pytest.mark.parametrize(
    ("version", "no_ticket"),
    [("TLSv1.3", False), ("TLSv1.2", False), ("TLSv1.2", True)],
    ids=["tls13-ticket", "tls12-ticket", "tls12-session-id-cache"],
)
def test_pyopenssl_client_resuming_its_control_session_is_accepted(
    pki: PKI, server_ctx: SSL.Context, version: str, no_ticket: bool
) -> None:
    token = tls.new_session_token()
    cctx = ossl_client_ctx(pki, version, no_ticket=no_ticket)
    ctl_res, ctl = run_pair(server_ctx, ServerPlan(token=token), ossl_client(cctx))
    assert ctl_res.error is None and ctl.reused is False and ctl.session is not None
    res, out = run_pair(
        server_ctx,
        ServerPlan(token=token, require_reuse=True),
        ossl_client(cctx, session=ctl.session),
    )
    assert res.error is None
    assert res.reused is True and out.reused is True and out.version == version


@pytest.mark.parametrize("version", ["TLSv1.3", "TLSv1.2"])
def test_fresh_handshake_is_not_reused(pki: PKI, server_ctx: SSL.Context, version: str) -> None:
    token = tls.new_session_token()
    cctx = py_client_ctx(pki, version)
    _control(server_ctx, cctx, token)
    # Without require_reuse the full handshake succeeds but is detected.
    res, out = run_pair(server_ctx, ServerPlan(token=token), py_client(py_client_ctx(pki, version)))
    assert res.error is None and res.reused is False and out.reused is False
    # With require_reuse it never completes: no application data either way.
    res, _ = run_pair(
        server_ctx,
        ServerPlan(token=token, require_reuse=True),
        _failing(py_client(py_client_ctx(pki, version))),
    )
    assert tls.is_reuse_refusal(res.error)
    assert res.reused is None and res.received == b""


def _failing(client: Callable[[socket.socket], Any]) -> Callable[[socket.socket], str]:
    def run(sock: socket.socket) -> str:
        with pytest.raises(ssl.SSLError) as exc_info:
            client(sock)
        return str(exc_info.value)

    return run


@pytest.mark.parametrize("version", ["TLSv1.3", "TLSv1.2"])
def test_session_from_other_control_connection_is_not_reused(
    pki: PKI, server_ctx: SSL.Context, version: str
) -> None:
    token_a, token_b = tls.new_session_token(), tls.new_session_token()
    cctx = py_client_ctx(pki, version)
    _, ctl_a = _control(server_ctx, cctx, token_a)
    _, ctl_b = _control(server_ctx, cctx, token_b)

    # Baseline: without binding, the shared context resumes any session it
    # issued on any connection, which is why session_reused() alone is not enough.
    _, unbound_ctl = run_pair(server_ctx, ServerPlan(), py_client(cctx))
    res, _ = run_pair(server_ctx, ServerPlan(), py_client(cctx, session=unbound_ctl.session))
    assert res.reused is True

    # Bound to A: B's session falls back to a full handshake ...
    res, out = run_pair(
        server_ctx,
        ServerPlan(token=token_a),
        py_client(cctx, session=ctl_b.session),
    )
    assert res.error is None and res.reused is False and out.reused is False
    # ... which require_reuse refuses outright,
    res, err = run_pair(
        server_ctx,
        ServerPlan(token=token_a, require_reuse=True),
        _failing(py_client(cctx, session=ctl_b.session)),
    )
    assert tls.is_reuse_refusal(res.error)
    assert "internal error" in err.lower()
    # while A's own session still works, and so does B's on B.
    for token, ctl in ((token_a, ctl_a), (token_b, ctl_b)):
        res, out = run_pair(
            server_ctx,
            ServerPlan(token=token, require_reuse=True),
            py_client(cctx, session=ctl.session),
        )
        assert res.error is None and res.reused is True and out.reused is True


def test_session_from_other_control_connection_pyopenssl_client(
    pki: PKI, server_ctx: SSL.Context
) -> None:
    token_a, token_b = tls.new_session_token(), tls.new_session_token()
    for version in ("TLSv1.3", "TLSv1.2"):
        cctx = ossl_client_ctx(pki, version)
        _, ctl_a = run_pair(server_ctx, ServerPlan(token=token_a), ossl_client(cctx))
        _, ctl_b = run_pair(server_ctx, ServerPlan(token=token_b), ossl_client(cctx))
        res, out = run_pair(
            server_ctx, ServerPlan(token=token_a), ossl_client(cctx, session=ctl_b.session)
        )
        assert res.error is None and res.reused is False and out.reused is False
        res, out = run_pair(
            server_ctx,
            ServerPlan(token=token_a, require_reuse=True),
            ossl_client(cctx, session=ctl_a.session),
        )
        assert res.error is None and res.reused is True and out.reused is True


@pytest.mark.parametrize("version", ["TLSv1.3", "TLSv1.2"])
def test_resumption_after_long_transfers(pki: PKI, server_ctx: SSL.Context, version: str) -> None:
    token = tls.new_session_token()
    cctx = py_client_ctx(pki, version)
    _, ctl = _control(server_ctx, cctx, token)
    size = 8 * 1024 * 1024
    payload_up = os.urandom(size)
    payload_down = os.urandom(size)
    res, out = run_pair(
        server_ctx,
        ServerPlan(token=token, require_reuse=True, upload=size, download=payload_down),
        py_client(cctx, session=ctl.session, upload=payload_up, download=size),
    )
    assert res.error is None and res.reused is True
    assert hashlib.sha256(res.received).digest() == hashlib.sha256(payload_up).digest()
    assert hashlib.sha256(out.downloaded).digest() == hashlib.sha256(payload_down).digest()
    # The same control session (same ticket, for TLS 1.3) keeps resuming, as
    # FTP clients do for every data connection.
    for _ in range(3):
        res, out = run_pair(
            server_ctx,
            ServerPlan(token=token, require_reuse=True),
            py_client(cctx, session=ctl.session),
        )
        assert res.error is None and res.reused is True and out.reused is True


def test_tls13_tickets_arrive_after_handshake_and_need_a_read(
    pki: PKI, server_ctx: SSL.Context
) -> None:
    token = tls.new_session_token()
    cctx = py_client_ctx(pki, "TLSv1.3")
    res, ctl = run_pair(server_ctx, ServerPlan(token=token), py_client(cctx))
    assert res.error is None
    # Right after the handshake the client has not processed the tickets yet ...
    assert ctl.ticket_before_read is False
    # ... after reading the server's reply it has.
    assert ctl.session is not None and ctl.session.has_ticket

    # A session grabbed before that read cannot be resumed.
    grabbed: dict[str, ssl.SSLSession] = {}

    def grab_early(sock: socket.socket) -> None:
        with cctx.wrap_socket(sock, server_hostname="localhost") as s:
            grabbed["early"] = s.session  # type: ignore[assignment]
            s.recv(len(REPLY))

    run_pair(server_ctx, ServerPlan(token=token), grab_early)
    assert not grabbed["early"].has_ticket
    res, _ = run_pair(
        server_ctx,
        ServerPlan(token=token, require_reuse=True),
        _failing(py_client(cctx, session=grabbed["early"])),
    )
    assert tls.is_reuse_refusal(res.error)


def test_tls12_ticket_available_right_after_handshake(pki: PKI, server_ctx: SSL.Context) -> None:
    res, ctl = run_pair(
        server_ctx,
        ServerPlan(token=tls.new_session_token()),
        py_client(py_client_ctx(pki, "TLSv1.2")),
    )
    assert res.error is None and ctl.ticket_before_read is True


def test_tls13_resumption_with_hello_retry_request(pki: PKI) -> None:
    ctx = tls.build_server_context(pki.server_cert, pki.server_key)
    # Server only accepts P-256; the client's first key share is X25519 -> HRR.
    assert _lib.SSL_CTX_set1_curves_list(ctx._context, b"P-256") == 1
    token = tls.new_session_token()
    cctx = py_client_ctx(pki, "TLSv1.3")
    _, ctl = _control(ctx, cctx, token)
    res, out = run_pair(
        ctx,
        ServerPlan(token=token, require_reuse=True),
        py_client(cctx, session=ctl.session),
    )
    assert res.error is None and res.reused is True and out.reused is True


def test_bind_session_context_validation(server_ctx: SSL.Context) -> None:
    conn = SSL.Connection(server_ctx, None)
    conn.set_accept_state()
    for bad in (b"", b"x" * 33, "text"):
        with pytest.raises(ValueError, match="token"):
            tls.bind_session_context(conn, bad)  # type: ignore[arg-type]
    tls.bind_session_context(conn, b"x" * 32)
    assert len(tls.new_session_token()) == tls.SESSION_TOKEN_BYTES
    assert tls.new_session_token() != tls.new_session_token()


def test_bind_after_handshake_is_rejected(pki: PKI, server_ctx: SSL.Context) -> None:
    seen: dict[str, BaseException] = {}

    def late_bind(conn: SSL.Connection) -> None:
        conn.do_handshake()
        try:
            tls.bind_session_context(conn, tls.new_session_token())
        except ValueError as exc:
            seen["exc"] = exc

    res, _ = run_pair(
        server_ctx, ServerPlan(before_handshake=late_bind), py_client(py_client_ctx(pki))
    )
    assert res.error is None
    assert "before the handshake" in str(seen["exc"])


def test_is_reuse_refusal_other_errors() -> None:
    assert not tls.is_reuse_refusal(None)
    assert not tls.is_reuse_refusal(OSError("x"))
    assert not tls.is_reuse_refusal(SSL.Error([("SSL routines", "", "no shared cipher")]))


# ========================================================= client certificates


def test_no_client_certificate(pki: PKI, server_ctx: SSL.Context) -> None:
    res, _ = run_pair(server_ctx, ServerPlan(), py_client(py_client_ctx(pki)))
    assert res.peer_der is None and res.peer_sha256 is None


@pytest.mark.parametrize("version", ["TLSv1.3", "TLSv1.2"])
def test_client_certificate_requested_and_carried_into_resumed_sessions(
    pki: PKI, version: str
) -> None:
    ctx = tls.build_server_context(
        pki.server_cert, pki.server_key, ca_file=pki.client_ca, request_client_cert=True
    )
    assert ctx.get_verify_mode() == SSL.VERIFY_PEER | SSL.VERIFY_CLIENT_ONCE
    expected = hashlib.sha256(pki.client_der).hexdigest()
    token = tls.new_session_token()
    cctx = py_client_ctx(pki, version, cert=(pki.client_cert, pki.client_key))
    ctl_res, ctl = _control(ctx, cctx, token)
    assert ctl_res.peer_der == pki.client_der
    assert ctl_res.peer_sha256 == expected and len(expected) == 64
    res, _ = run_pair(
        ctx,
        ServerPlan(token=token, require_reuse=True),
        py_client(cctx, session=ctl.session),
    )
    assert res.error is None and res.reused is True
    assert res.peer_sha256 == expected


def test_client_certificate_is_optional_and_any_chain_accepted(pki: PKI) -> None:
    ctx = tls.build_server_context(
        pki.server_cert, pki.server_key, ca_file=pki.client_ca, request_client_cert=True
    )
    res, _ = run_pair(ctx, ServerPlan(), py_client(py_client_ctx(pki)))
    assert res.error is None and res.peer_sha256 is None
    res, _ = run_pair(
        ctx,
        ServerPlan(),
        py_client(py_client_ctx(pki, cert=(pki.stranger_cert, pki.stranger_key))),
    )
    assert res.error is None
    assert res.peer_sha256 == hashlib.sha256(pki.stranger_der).hexdigest()


def test_client_ca_names_are_advertised(pki: PKI) -> None:
    ctx = tls.build_server_context(
        pki.server_cert, pki.server_key, ca_file=pki.client_ca, request_client_cert=True
    )
    cctx = SSL.Context(SSL.TLS_CLIENT_METHOD)

    def client(sock: socket.socket) -> list[str]:
        sock.settimeout(None)
        conn = SSL.Connection(cctx, sock)
        conn.set_connect_state()
        conn.do_handshake()
        assert conn.recv(len(REPLY)) == REPLY
        names = [str(n.CN) for n in conn.get_client_ca_list()]
        conn.shutdown()
        return names

    res, names = run_pair(ctx, ServerPlan(), client)
    assert res.error is None
    assert names == ["Portside test client CA"]


# ===================================================== pyftpdlib integration


@pytest.fixture
def ftps_server(pki: PKI, tmp_path: Path):
    """A TLS_FTPHandler wired exactly as the tls.py docstring prescribes."""
    import logging
    import sys

    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import TLS_DTPHandler, TLS_FTPHandler
    from pyftpdlib.ioloop import IOLoop
    from pyftpdlib.servers import FTPServer

    logging.getLogger("pyftpdlib").setLevel(logging.CRITICAL)

    class GatewayDTP(TLS_DTPHandler):
        def secure_connection(self, ssl_context):
            super().secure_connection(ssl_context)
            if isinstance(self.socket, SSL.Connection):
                token = getattr(self.cmd_channel, "tls_session_token", None)
                if token is None:
                    self.cmd_channel.respond(tls.REUSE_REQUIRED_REPLY)
                    self.close()
                    return
                tls.bind_session_context(self.socket, token, require_reuse=True)

        def handle_failed_ssl_handshake(self):
            refused = tls.is_reuse_refusal(sys.exc_info()[1])
            self.cmd_channel.respond(
                tls.REUSE_REQUIRED_REPLY if refused else "522 SSL handshake failed."
            )
            self.close()

        def handle_ssl_established(self):
            if not tls.session_reused(self.socket):
                self.cmd_channel.respond(tls.REUSE_REQUIRED_REPLY)
                self.close()

        def initiate_send(self):
            if self._ssl_accepting:
                return
            super().initiate_send()

    class GatewayFTP(TLS_FTPHandler):
        dtp_handler = GatewayDTP
        tls_control_required = True
        tls_data_required = True
        ssl_context = tls.build_server_context(pki.server_cert, pki.server_key)

        def secure_connection(self, ssl_context):
            super().secure_connection(ssl_context)
            if isinstance(self.socket, SSL.Connection):
                self.tls_session_token = tls.new_session_token()
                tls.bind_session_context(self.socket, self.tls_session_token)

    home = tmp_path / "home"
    home.mkdir()
    (home / "report.csv").write_bytes(b"id,amount\n" + b"1,2\n" * 50000)
    auth = DummyAuthorizer()
    auth.add_user("acme", STOCK_PASSWORD, str(home), perm="elrw")
    GatewayFTP.authorizer = auth

    ioloop = IOLoop()
    server = FTPServer(("127.0.0.1", 0), GatewayFTP, ioloop=ioloop)
    stop = threading.Event()

    def loop() -> None:
        try:
            while not stop.is_set():
                server.serve_forever(timeout=0.02, blocking=False, handle_exit=False)
        finally:
            server.close_all()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield server.address, home
    finally:
        stop.set()
        thread.join(JOIN_TIMEOUT)
        assert not thread.is_alive()


class ReusingFTP_TLS(ftplib.FTP_TLS):
    """ftplib does not resume the control session on data connections
    (CPython gh-63699); this is the usual fix."""

    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(
                conn, server_hostname=self.host, session=self.sock.session
            )
        return conn, size


def _ftp_login(cls: type[ftplib.FTP_TLS], pki: PKI, address, version: str) -> ftplib.FTP_TLS:
    cctx = py_client_ctx(pki, version)
    ftp = cls(context=cctx, timeout=JOIN_TIMEOUT)
    ftp.connect("localhost", address[1])
    ftp.auth()
    ftp.login("acme", STOCK_PASSWORD)  # the replies read here deliver the TLS 1.3 tickets
    ftp.prot_p()
    return ftp


PYFTPDLIB_WARNINGS = pytest.mark.filterwarnings(
    "ignore:The (asyncore|asynchat) module is deprecated:DeprecationWarning"
)


@PYFTPDLIB_WARNINGS
@pytest.mark.parametrize("version", ["TLSv1.3", "TLSv1.2"])
def test_pyftpdlib_gateway_accepts_session_reuse(pki: PKI, ftps_server, version: str) -> None:
    address, home = ftps_server
    ftp = _ftp_login(ReusingFTP_TLS, pki, address, version)
    try:
        buf = io.BytesIO()
        ftp.retrbinary("RETR report.csv", buf.write)
        assert buf.getvalue() == (home / "report.csv").read_bytes()
        ftp.storbinary("STOR up.bin", io.BytesIO(b"z" * 300_000))
        assert (home / "up.bin").read_bytes() == b"z" * 300_000
        assert "report.csv" in ftp.nlst()
    finally:
        ftp.quit()


@PYFTPDLIB_WARNINGS
@pytest.mark.parametrize("version", ["TLSv1.3", "TLSv1.2"])
def test_pyftpdlib_gateway_refuses_data_without_reuse(pki: PKI, ftps_server, version: str) -> None:
    address, home = ftps_server
    ftp = _ftp_login(ftplib.FTP_TLS, pki, address, version)  # stock: no reuse
    try:
        with pytest.raises(ssl.SSLError):
            ftp.retrbinary("RETR report.csv", lambda _: None)
        with pytest.raises(ftplib.error_perm, match=r"^522 .*session reuse required"):
            ftp.getresp()
        # The control connection survives; a reusing data connection works.
        ftp.__class__ = ReusingFTP_TLS
        buf = io.BytesIO()
        ftp.retrbinary("RETR report.csv", buf.write)
        assert buf.getvalue() == (home / "report.csv").read_bytes()
    finally:
        ftp.quit()
