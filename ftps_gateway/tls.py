"""TLS plumbing for the Portside FTPS gateway (pure pyOpenSSL, no Django).

`build_server_context` makes the hardened context shared by control and data channels;
`new_session_token`, `bind_session_context`, `session_reused` and `is_reuse_refusal`
make a data connection resume the TLS session of its own control connection (vsftpd's
`require_ssl_reuse`); `peer_certificate_der` / `peer_certificate_sha256` give the client
certificate. Why and how the session binding works, through the binding `cryptography`
ships, and where it hooks into pyftpdlib: docs/FTPS_TLS.md.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL
from OpenSSL._util import ffi as _ffi
from OpenSSL._util import lib as _lib

__all__ = [
    "DEFAULT_SESSION_ID_CONTEXT",
    "REUSE_REQUIRED_REPLY",
    "SESSION_TOKEN_BYTES",
    "TLS12_CIPHERS",
    "TLS13_CIPHERSUITES",
    "bind_session_context",
    "build_server_context",
    "is_reuse_refusal",
    "new_session_token",
    "peer_certificate_der",
    "peer_certificate_sha256",
    "session_reused",
]

# TLS 1.2: forward-secret ECDHE + AEAD only (Mozilla "intermediate" minus DHE).
# Nothing here is flagged by testssl.sh (no CBC, no RSA key exchange, no SHA-1 MAC,
# no 3DES/RC4/NULL/EXPORT/anon).
TLS12_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ]
)
# TLS 1.3 suites are all AEAD; pinned so an openssl.cnf cannot add the CCM ones.
TLS13_CIPHERSUITES = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

# Context-wide sid_ctx.  Needed anyway: with VERIFY_PEER set, OpenSSL aborts any
# resumption attempt on an SSL whose sid_ctx is empty ("session id context
# uninitialized").  Connections passed to bind_session_context() override it.
DEFAULT_SESSION_ID_CONTEXT = b"portside-ftps"
SESSION_TOKEN_BYTES = 32  # SSL_MAX_SID_CTX_LENGTH
REUSE_REQUIRED_REPLY = "522 SSL connection failed: session reuse required"

_MIN_VERSIONS = {"TLSv1.2": SSL.TLS1_2_VERSION, "TLSv1.3": SSL.TLS1_3_VERSION}
_STATE_BEFORE_HANDSHAKE = b"before SSL initialization"  # SSL_state_string_long(TLS_ST_BEFORE)
_CERT_CB_ERROR = "cert cb error"  # OpenSSL reason string for SSL_R_CERT_CB_ERROR


def _accept_any_chain(conn, cert, errnum, depth, ok) -> bool:
    # The application checks the client certificate itself (fingerprint or
    # issuing CA) after the handshake; never fail the TLS layer on the chain.
    return True


def build_server_context(
    certfile: str,
    keyfile: str,
    *,
    min_version: str = "TLSv1.2",
    ciphers: str | None = None,
    ca_file: str | None = None,
    request_client_cert: bool = False,
    session_timeout: int = 86400,
) -> SSL.Context:
    """Build the server context for control and data connections.

    ``min_version`` is "TLSv1.2" (default) or "TLSv1.3"; the maximum is whatever
    the library supports (TLS 1.3), so TLS 1.3 is negotiated whenever the client
    offers it.  ``ciphers`` replaces the TLS 1.2 list (OpenSSL cipher-string
    syntax); TLS 1.3 suites are always :data:`TLS13_CIPHERSUITES`.

    With ``request_client_cert`` the server asks for a client certificate
    (``VERIFY_PEER | VERIFY_CLIENT_ONCE`` without ``FAIL_IF_NO_PEER_CERT``) and
    accepts any chain; use :func:`peer_certificate_sha256` / the pyOpenSSL chain
    afterwards.  ``ca_file`` (PEM) is loaded as the verify store and as the CA
    name list sent in the CertificateRequest (it only matters with
    ``request_client_cert``).

    ``session_timeout`` (seconds) bounds how long a control session can be
    resumed by data connections (cache entries and ticket lifetime hint): keep it
    at least as long as the longest control connection you allow.
    """
    try:
        min_proto = _MIN_VERSIONS[min_version]
    except KeyError:
        raise ValueError(
            f"min_version must be one of {sorted(_MIN_VERSIONS)}, not {min_version!r}"
        ) from None
    if session_timeout <= 0:
        raise ValueError("session_timeout must be positive")

    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(min_proto)
    ctx.set_options(
        SSL.OP_NO_COMPRESSION
        | SSL.OP_CIPHER_SERVER_PREFERENCE
        # OpenSSL >= 3.0 already refuses *client-initiated* renegotiation unless
        # SSL_OP_ALLOW_CLIENT_RENEGOTIATION is set; OP_NO_RENEGOTIATION (in the
        # binding, and public as SSL.OP_NO_RENEGOTIATION) makes the refusal
        # explicit and version independent: any TLS <= 1.2 renegotiation request
        # gets a no_renegotiation alert.  TLS 1.3 has no renegotiation at all.
        # Secure renegotiation (RFC 5746) is still advertised, so testssl.sh
        # reports "secure renegotiation: supported" and "client-initiated: no".
        | SSL.OP_NO_RENEGOTIATION
    )
    ctx.set_cipher_list((ciphers or TLS12_CIPHERS).encode("ascii"))
    ctx.set_tls13_ciphersuites(TLS13_CIPHERSUITES.encode("ascii"))
    ctx.use_certificate_chain_file(certfile)
    ctx.use_privatekey_file(keyfile)
    ctx.check_privatekey()

    # Server-side session cache (TLS 1.2 session ids) + stateless tickets (TLS 1.2
    # and 1.3; OP_NO_TICKET deliberately NOT set, see module docstring).
    ctx.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
    ctx.set_timeout(session_timeout)
    ctx.set_session_id(DEFAULT_SESSION_ID_CONTEXT)

    if ca_file is not None:
        ctx.load_verify_locations(ca_file)
        ctx.load_client_ca(ca_file.encode())
    if request_client_cert:
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_CLIENT_ONCE, _accept_any_chain)
    else:
        ctx.set_verify(SSL.VERIFY_NONE)
    return ctx


def new_session_token() -> bytes:
    """A fresh random per-control-connection session id context."""
    return secrets.token_bytes(SESSION_TOKEN_BYTES)


def _unsupported_library() -> str | None:
    # cryptography's own flags for the TLS library it was built against.
    from cryptography.hazmat.bindings._rust import openssl as rust_openssl

    for flavour in ("BORINGSSL", "LIBRESSL", "AWSLC"):
        if getattr(rust_openssl, f"CRYPTOGRAPHY_IS_{flavour}", False):
            return flavour
    return None


_UNSUPPORTED_LIBRARY = _unsupported_library()


_SWAP = threading.local()


def _swap_context() -> Any:
    """Return this thread's throw-away SSL_CTX for bind_session_context.

    Building one per call cost ~0.1 ms (SSL_CTX_new loads the method's ciphers and
    algorithms); one per thread is enough, because only its sid_ctx is used and a call
    sets it before use and leaves no SSL pointing at it.  Per thread, not per process,
    so two threads binding at once never see each other's token.
    """
    context = getattr(_SWAP, "context", None)
    if context is None:
        context = _SWAP.context = SSL.Context(SSL.TLS_METHOD)
    return context._context


@_ffi.callback("int(SSL *, void *)")
def _refuse_full_handshake(ssl, arg):
    # Certificate callback; OpenSSL only calls it when the handshake is NOT a
    # resumption.  Returning 0 aborts the handshake (internal_error alert,
    # SSL_R_CERT_CB_ERROR).
    return 0


def bind_session_context(
    conn: SSL.Connection, token: bytes, *, require_reuse: bool = False
) -> None:
    """Set ``token`` as this connection's TLS session id context.

    Call it right after creating the server-side ``SSL.Connection`` and before
    the handshake starts, on the control connection (with a token from
    :func:`new_session_token`) and on each of its data connections (same token).
    Only sessions created on an ``SSL`` bound to the same token can then be
    resumed.  With ``require_reuse=True`` (data connections) a handshake that is
    not a resumption of such a session fails instead of falling back to a full
    handshake.

    It resets per-connection certificate settings to the context's (it goes
    through ``SSL_set_SSL_CTX``): do not call ``conn.use_certificate()`` before
    it.
    """
    if not isinstance(token, bytes) or not 1 <= len(token) <= SESSION_TOKEN_BYTES:
        raise ValueError(f"token must be 1..{SESSION_TOKEN_BYTES} bytes")
    if conn.get_state_string() != _STATE_BEFORE_HANDSHAKE:
        raise ValueError("bind_session_context() must be called before the handshake")
    if _UNSUPPORTED_LIBRARY:
        raise RuntimeError(
            "bind_session_context relies on OpenSSL's SSL_set_SSL_CTX sid_ctx semantics; "
            f"cryptography is linked against {_UNSUPPORTED_LIBRARY}"
        )

    ssl = conn._ssl
    real_ctx = conn.get_context()._context
    tmp = _swap_context()
    if _lib.SSL_CTX_set_session_id_context(tmp, token, len(token)) != 1:
        raise RuntimeError("SSL_CTX_set_session_id_context failed")
    # 1. ssl.sid_ctx == real_ctx.sid_ctx (inherited at SSL_new): it becomes token.
    if _lib.SSL_set_SSL_CTX(ssl, tmp) == _ffi.NULL:
        raise RuntimeError("SSL_set_SSL_CTX(tmp) failed")
    # 2. Make tmp's sid_ctx differ from the token ...
    other = b"\x01" if token == b"\x00" else b"\x00"
    set_other = _lib.SSL_CTX_set_session_id_context(tmp, other, len(other))
    # 3. ... so switching back keeps the token in ssl.sid_ctx while the
    #    certificate/key are copied back from real_ctx.  Always switch back: the SSL
    #    then no longer references tmp, which the next call reuses.
    if _lib.SSL_set_SSL_CTX(ssl, real_ctx) == _ffi.NULL or set_other != 1:
        raise RuntimeError("could not restore the connection's SSL_CTX")
    if require_reuse:
        # After the swaps: SSL_set_SSL_CTX replaces the per-SSL CERT, which is
        # where the certificate callback lives.
        _lib.SSL_set_cert_cb(ssl, _refuse_full_handshake, _ffi.NULL)


def session_reused(conn: SSL.Connection) -> bool:
    """True if the completed handshake resumed a session (``SSL_session_reused``)."""
    return bool(_lib.SSL_session_reused(conn._ssl))


def is_reuse_refusal(exc: BaseException | None) -> bool:
    """True if ``exc`` is the handshake failure caused by ``require_reuse``."""
    if not isinstance(exc, SSL.Error):
        return False
    return _CERT_CB_ERROR in str(exc).lower()


def peer_certificate_der(conn: SSL.Connection) -> bytes | None:
    """DER of the client's leaf certificate, or None if it sent none.

    On a resumed data connection this is the certificate from the control
    connection's handshake (it is stored in the session).
    """
    cert = conn.get_peer_certificate(as_cryptography=True)
    if cert is None:
        return None
    return cert.public_bytes(Encoding.DER)


def peer_certificate_sha256(conn: SSL.Connection) -> str | None:
    """Lower-case hex SHA-256 fingerprint (64 chars, no colons) of the client cert."""
    der = peer_certificate_der(conn)
    return None if der is None else hashlib.sha256(der).hexdigest()
