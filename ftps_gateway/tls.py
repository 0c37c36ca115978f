"""TLS plumbing for the Portside FTPS gateway (pure pyOpenSSL, no Django).

Public API
==========

* :func:`build_server_context` -- hardened ``OpenSSL.SSL.Context`` for the
  control *and* data channels (one context per listener; it is immutable once a
  connection has been made from it -- pyOpenSSL 26 raises ``ValueError`` on any
  setter after first use).
* :func:`new_session_token` / :func:`bind_session_context` /
  :func:`session_reused` / :func:`is_reuse_refusal` -- vsftpd-style
  ``require_ssl_reuse``: a data connection must resume the TLS session of *its
  own* control connection.
* :func:`peer_certificate_der` / :func:`peer_certificate_sha256` -- the client
  certificate (if any) for the application's own fingerprint / CA check.

How data-channel session binding works
======================================

OpenSSL stamps every session it creates (session-cache entry, TLS 1.2 ticket or
TLS 1.3 ticket/PSK) with the *session id context* (``sid_ctx``) of the ``SSL``
object that created it, and refuses to resume a session whose ``sid_ctx`` differs
from the resuming ``SSL``'s: ``ssl_get_prev_session`` "treat[s it] like a cache
miss" and the handshake silently falls back to a full one.  tests/test_tls.py
checks this for TLS 1.2 session ids, TLS 1.2 tickets and TLS 1.3 tickets (PSK).
So: give each control connection a random 32-byte token as ``sid_ctx``,
give its data connections the same token, and only sessions born on that control
connection (or on its data connections) can ever be resumed there.  A session
from another control connection of the same server context -> full handshake.

The binding cryptography 50.0.2 ships (``cryptography.hazmat.bindings.openssl.
binding.Binding.lib`` == ``OpenSSL._util.lib``, statically linked OpenSSL 4.0.x,
no exported C symbols to reach with ctypes) has:

* present and used: ``SSL_session_reused``, ``SSL_CTX_set_session_id_context``,
  ``SSL_set_SSL_CTX``, ``SSL_CTX_new``/``SSL_CTX_free``/``TLS_method``,
  ``SSL_set_cert_cb``, ``SSL_OP_NO_RENEGOTIATION`` (also public as
  ``SSL.OP_NO_RENEGOTIATION``);
* present, not needed: ``SSL_get_session``, ``SSL_get1_session``,
  ``SSL_SESSION_get_master_key``, ``SSL_set_session``, ``SSL_get_finished``;
* ABSENT: ``SSL_set_session_id_context``, ``SSL_SESSION_get_id``,
  ``SSL_SESSION_get0_id_context``, ``SSL_SESSION_set1_id_context``,
  ``SSL_SESSION_is_resumable``, ``SSL_CTX_set_num_tickets``,
  ``SSL_CTX_sess_set_new_cb``, ``SSL_get_SSL_CTX``, ``SSL_in_init``.

Without ``SSL_set_session_id_context`` the per-connection ``sid_ctx`` is set
through a long-standing ``SSL_set_SSL_CTX`` rule (ssl/ssl_lib.c, OpenSSL 1.0 to
4.0): "if the SSL's sid_ctx equals its current SSL_CTX's, it is replaced by the
new SSL_CTX's; otherwise (it was set per-SSL) it is left alone".  We switch
the fresh ``SSL`` to a throw-away ``SSL_CTX`` whose ``sid_ctx`` is the token
(the SSL inherits the token), change the throw-away context's ``sid_ctx`` so it
no longer matches, and switch back to the real context (the SSL keeps the token,
and gets back the real context's certificate/key).  ``SSL_set_SSL_CTX`` never
touches ``session_ctx``, so the session cache and ticket keys stay those of the
real context.  BoringSSL (and its fork AWS-LC) copies ``sid_ctx``
unconditionally and LibreSSL is untested, so cryptography builds against those
are refused (``RuntimeError``).

Comparing ids or master keys instead (the other route the brief allowed) does not
work for TLS 1.3: every ticket carries its own PSK (resumption secret + nonce),
the server re-issues tickets on each resumption, and neither ``SSL_SESSION_get_id``
nor the id context getter is in the binding.

``require_reuse=True`` (data connections) additionally installs a per-SSL
certificate callback that fails the handshake.  OpenSSL calls it only for full
handshakes (``if (!s->hit && s->cert->cert_cb != NULL)`` in
``tls_post_process_client_hello``, TLS 1.2 and 1.3, also after a
HelloRetryRequest), so a client that does not resume this control
connection's session never completes the handshake and not one byte of file data
can be exchanged, no matter which pyftpdlib code path drives the handshake (see
below).  The client sees an ``internal_error`` alert; the server's ``do_handshake``
raises ``SSL.Error`` for which :func:`is_reuse_refusal` is true.

TLS 1.3 tickets (checked with Python 3.11 ssl / OpenSSL 3.0 and pyOpenSSL
clients): the server sends its NewSessionTicket messages (OpenSSL default: 2 after
a full handshake, 1 after a resumption) inside the ``do_handshake()`` call that
completes the control handshake; nothing else is needed server side.  Clients only
*process* them on their next read, so a Python ``ssl`` client's ``session`` has
``has_ticket == False`` (and does not resume) until it has read something after
the handshake.  In FTPS this is natural -- AUTH TLS -> handshake -> client sends
PBSZ 0 and reads "200" over TLS -> tickets processed -> PROT P, PASV, RETR.  The
gateway must therefore just (1) keep tickets enabled (never set
``OP_NO_TICKET``: with it OpenSSL uses stateful, *single-use* TLS 1.3 tickets and
the second data connection of a session would fail), and (2) answer PBSZ/PROT
over TLS as pyftpdlib already does.  Resuming the *same* control session (same
ticket) on every data connection, as a ``session=control_sock.session`` Python
client does, works: OpenSSL's stateless tickets are not single-use without early
data.  Tickets are encrypted with keys held by the server context, so they only
resume on the process/context that issued them.

Hook points in pyftpdlib 2.2.0
==============================

(The code is the package ``pyftpdlib/handlers/``, not a ``handlers.py`` module:
``handlers/ftps/ssl.py`` = ``SSLConnectionMixin``, ``handlers/ftps/control.py`` =
``TLS_FTPHandler``, ``handlers/ftps/data.py`` = ``TLS_DTPHandler``,
``handlers/ftp/dispatchers.py`` = ``PassiveDTP``/``ActiveDTP``; ``ioloop.py`` has
no TLS code.)

* Context: set ``TLS_FTPHandler.ssl_context = build_server_context(...)`` on the
  gateway's handler class; ``get_ssl_context()`` then returns it and ignores
  ``certfile``/``keyfile``/``ssl_options``.  Data connections use the *same*
  object (``TLS_DTPHandler.__init__`` passes ``self.cmd_channel.ssl_context``),
  which is required: session cache and ticket keys live in the context.
* Control channel: ``TLS_FTPHandler.ftp_AUTH`` replies ``234`` and calls
  ``self.secure_connection(self.ssl_context)`` (``SSLConnectionMixin``: wraps
  ``self.socket`` in ``SSL.Connection`` and ``set_accept_state()``; the handshake
  runs later from ``handle_read_event``/``handle_write_event`` ->
  ``_do_ssl_handshake`` -> ``handle_ssl_established()``).  Override
  ``secure_connection`` in the gateway's ``TLS_FTPHandler`` subclass::

      def secure_connection(self, ssl_context):
          super().secure_connection(ssl_context)
          if isinstance(self.socket, SSL.Connection):  # may have closed instead
              self.tls_session_token = tls.new_session_token()
              tls.bind_session_context(self.socket, self.tls_session_token)

* Data channel: ``PassiveDTP.handle_accepted`` / ``ActiveDTP.handle_connect``
  instantiate ``cmd_channel.dtp_handler(sock, cmd_channel)``;
  ``TLS_DTPHandler.__init__`` calls ``self.secure_connection(cmd_channel.
  ssl_context)`` when PROT P is on, *then* the dispatcher immediately calls
  ``cmd_channel._on_dtp_connection()``, which may ``push_with_producer`` a queued
  RETR/LIST.  Override in the gateway's ``TLS_DTPHandler`` subclass::

      def secure_connection(self, ssl_context):
          super().secure_connection(ssl_context)
          if isinstance(self.socket, SSL.Connection):
              token = getattr(self.cmd_channel, "tls_session_token", None)
              if token is None:  # PROT P without a bound control channel
                  self.cmd_channel.respond(tls.REUSE_REQUIRED_REPLY)
                  self.close()
                  return
              tls.bind_session_context(self.socket, token, require_reuse=True)

      def handle_failed_ssl_handshake(self):  # called inside the except block
          refused = tls.is_reuse_refusal(sys.exc_info()[1])
          self.cmd_channel.respond(
              tls.REUSE_REQUIRED_REPLY if refused else "522 SSL handshake failed.")
          self.close()

      def handle_ssl_established(self):  # belt and braces
          if not tls.session_reused(self.socket):
              self.cmd_channel.respond(tls.REUSE_REQUIRED_REPLY)
              self.close()

      def initiate_send(self):  # see the caveat below
          if self._ssl_accepting:
              return  # the handshake is driven by handle_*_event; data follows
          super().initiate_send()

  Refusal reply: ``522`` on the *control* connection (RFC 4217 section 10.2;
  vsftpd's text "522 SSL connection failed: session reuse required"), then close
  the data connection only.  ``DTPHandler.close()`` adds no reply of its own when
  no transfer started (``_resp`` empty), so the client sees exactly one 522 for
  the RETR/STOR/LIST.  Do not close the control connection.

  Caveat the ``initiate_send`` override fixes: ``push``/``push_with_producer``
  call ``initiate_send()`` -> ``send()`` -> ``SSL_write`` directly, and
  ``SSL_write`` on an un-finished accept-state connection runs the handshake
  itself.  If the handshake completes (or fails) inside that call,
  ``handle_ssl_established``/``handle_failed_ssl_handshake`` are never called:
  a refusal then surfaces as an ``SSL.Error`` -> ``handle_error()`` with no 522
  reply (the client waits for a final reply forever).  With ``require_reuse``
  no file data can leak either way; the override only keeps the replies right.
"""

from __future__ import annotations

import hashlib
import secrets

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
    tmp = _lib.SSL_CTX_new(_lib.TLS_method())
    if tmp == _ffi.NULL:
        raise MemoryError("SSL_CTX_new failed")
    try:
        if _lib.SSL_CTX_set_session_id_context(tmp, token, len(token)) != 1:
            raise RuntimeError("SSL_CTX_set_session_id_context failed")
        # 1. ssl.sid_ctx == real_ctx.sid_ctx (inherited at SSL_new): it becomes token.
        if _lib.SSL_set_SSL_CTX(ssl, tmp) == _ffi.NULL:
            raise RuntimeError("SSL_set_SSL_CTX(tmp) failed")
        # 2. Make tmp's sid_ctx differ from the token ...
        other = b"\x01" if token == b"\x00" else b"\x00"
        set_other = _lib.SSL_CTX_set_session_id_context(tmp, other, len(other))
        # 3. ... so switching back keeps the token in ssl.sid_ctx while the
        #    certificate/key are copied back from real_ctx.  Always switch back.
        if _lib.SSL_set_SSL_CTX(ssl, real_ctx) == _ffi.NULL or set_other != 1:
            raise RuntimeError("could not restore the connection's SSL_CTX")
    finally:
        _lib.SSL_CTX_free(tmp)  # the SSL no longer references it
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
