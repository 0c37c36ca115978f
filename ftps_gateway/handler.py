"""The FTPS control and data handlers: protocol translation onto accounts and transfers.

Every call that may block (password hashing, database, audit, fsync) goes to the
process's BlockingPool; the reply is sent from the callback on the loop thread, and
commands that arrive meanwhile wait in a small queue, so one slow login never stalls the
other sessions on the loop.
"""

from __future__ import annotations

import collections
import logging
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from OpenSSL import SSL
from pyftpdlib.filesystems import FilesystemError
from pyftpdlib.handlers import TLS_FTPHandler

from accounts import bans, services
from accounts.models import User
from audit import events
from audit.events import Origin
from ftps_gateway import masquerade, proxy_protocol, replies, tls
from ftps_gateway.authorizer import SessionAuthorizer
from ftps_gateway.data_channel import DataChannel, NoPassivePort, RangePassiveDTP
from ftps_gateway.filesystem import HomeFS
from ftps_gateway.transfer_files import DownloadFile, Producer, UploadFile
from mft import metrics
from mft.errors import LoginRefused, PortsideError, TemporarilyUnavailable
from transfers import download_audit, files, pipeline, uploads

log = logging.getLogger(__name__)

_MAX_QUEUED_LINES = 32


class ControlHandler(TLS_FTPHandler):
    """One FTPS session. Class attributes are set by ftps_gateway.server, never mutated."""

    dtp_handler = DataChannel
    passive_dtp = RangePassiveDTP
    abstracted_fs = HomeFS
    tls_control_required = True
    tls_data_required = True
    banner = "Portside FTPS ready."
    implicit = False
    proxy_policy = proxy_protocol.OFF
    proxied_by: str | None = None  # the balancer, when a PROXY header named the client
    masquerade_address: str | None = None
    masquerade_map: masquerade.MasqueradeMap = ()
    pool: Any = None
    audit_spool: Any = None  # the process's audit.spool.AuditSpool, set by the server
    auth_failed_delay = 1.0
    active_mode = False
    use_sendfile = False
    # Attributes pyftpdlib (untyped) sets; declared so the type checker knows them.
    _in_buffer: list[bytes]
    _in_dtp_queue: Any
    _out_dtp_queue: Any
    _restart_position: int
    _rnfr: Any

    proto_cmds = TLS_FTPHandler.proto_cmds.copy()
    proto_cmds.update({
        "HASH": dict(perm="l", auth=True, arg=True,
                     help="Syntax: HASH <SP> file-name (SHA-256 of the file)."),
        "CCC": dict(perm=None, auth=False, arg=False,
                    help="Syntax: CCC (refused: the control channel stays encrypted)."),
        "PROXY": dict(perm=None, auth=False, arg=None,
                      help="Syntax: PROXY (refused: a header from an untrusted peer)."),
    })

    # --- session set-up -----------------------------------------------------------------

    def __init__(self, conn: Any, server: Any, ioloop: Any = None) -> None:
        self.authorizer = SessionAuthorizer()
        self.user: User | None = None
        self.session_id = uuid.uuid4().hex[:12]
        self.tls_session_token: bytes | None = None
        self._busy = False
        self._counted = False  # in the live sessions gauge
        self._aborting = False
        self._queued: collections.deque[bytes] = collections.deque()
        self._upload_started: dict[int, float] = {}
        self.last_command_at: float | None = None  # wall clock, for the sessions list
        super().__init__(conn, server, ioloop)
        if self.connected:
            self._extra_feats = ["AUTH TLS", "PBSZ", "PROT", "HASH SHA-256*", "MFMT"]

    def handle(self) -> None:
        """Start the session, after reading its PROXY header when one is expected."""
        if not proxy_protocol.read_first(self, self._open_session):
            self._open_session()

    def _open_session(self) -> None:
        """Greet once the address is known not to be banned; implicit TLS starts at once."""
        self.masquerade_address = masquerade.address_for(
            self.remote_ip, self.masquerade_map, self.masquerade_address)
        self.on_connect()
        self._busy = True
        self._ban_checked = False
        if self.implicit:
            # Start TLS before anything else: the client's ClientHello is already on its
            # way and must never be read as FTP commands.
            self.secure_connection(self.ssl_context)
            self._pbsz = True
            self._prot = True
        address = self.remote_ip
        if bans.known_clear(address):  # checked within the last second (accounts.bans)
            self._after_ban_check(False, None)
            return
        self.pool.submit(lambda: bans.is_banned(address), self._after_ban_check)

    def _after_ban_check(self, banned: bool | None, error: BaseException | None) -> None:
        if self._closed:
            return
        if error is not None or banned:
            if error is not None:
                log.error("ban check failed", exc_info=error)
            if not self.implicit or self._ssl_established:
                self.respond("421 Service not available: this address is banned.")
                self.close_when_done()
            else:
                self.close()
            return
        self._ban_checked = True
        self.audit_session("connect", details={"implicit": self.implicit})
        metrics.ftps_session_opened()
        self._counted = True
        if not self.implicit or self._ssl_established:
            self._greet()

    def _greet(self) -> None:
        """Send the 220 greeting and start reading commands."""
        self.respond(f"220 {self.banner}")
        self._busy = False
        self._drain_queue()

    def secure_connection(self, ssl_context: Any) -> None:
        super().secure_connection(ssl_context)
        if isinstance(self.socket, SSL.Connection):
            self.tls_session_token = tls.new_session_token()
            tls.bind_session_context(self.socket, self.tls_session_token)

    def handle_ssl_established(self) -> None:
        details = {"tls_version": self.socket.get_protocol_version_name(),
                   "cipher": self.socket.get_cipher_name(),
                   "client_cert_sha256": tls.peer_certificate_sha256(self.socket)}
        self.tls_details = details
        self.audit_session("tls", details=details)
        if self.implicit and self._ban_checked:
            self._greet()

    def handle_failed_ssl_handshake(self) -> None:
        self.audit_session("tls", outcome=events.FAILURE,
                           details={"error": str(sys.exc_info()[1])[:200]})
        super().handle_failed_ssl_handshake()

    # --- deferring blocking work ---------------------------------------------------------

    def defer(self, work: Callable[[], Any],
              then: Callable[[Any, BaseException | None], None]) -> None:
        """Run work on the pool and continue on the loop; commands queue meanwhile."""
        self._busy = True

        def done(result: Any, error: BaseException | None) -> None:
            if self._closed:
                return
            self._busy = False
            try:
                then(result, error)
            except Exception:
                log.exception("gateway callback failed")
                self.respond("451 Internal error; try again.")
            self._drain_queue()

        self.pool.submit(work, done)

    def background(self, work: Callable[[], Any]) -> None:
        """Run work on the pool without waiting for it (audit of routine events)."""
        self.pool.submit(work)

    def found_terminator(self) -> None:
        if self._busy:
            if len(self._queued) >= _MAX_QUEUED_LINES:
                self.respond("421 Too many commands while busy.")
                self.close_when_done()
                return
            self._queued.append(b"".join(self._in_buffer))
            self._in_buffer = []
            self._in_buffer_len = 0
            return
        super().found_terminator()

    def _drain_queue(self) -> None:
        """Process queued command lines while the session is free."""
        while self._queued and not self._busy and not self._closed:
            self._in_buffer = [self._queued.popleft()]
            self._in_buffer_len = len(self._in_buffer[0])
            super().found_terminator()

    def pre_process_command(self, line: str, cmd: str, arg: str) -> None:
        self.last_command_at = time.time()
        if not cmd and proxy_protocol.refuse_blank_line(self):
            return
        try:
            super().pre_process_command(line, cmd, arg)
        except FilesystemError as exc:
            self.respond(f"550 {exc}.")

    def process_command(self, cmd: str, *args: Any, **kwargs: Any) -> None:
        if cmd in ("USER", "PASS") and not self._ssl_established and not self.implicit:
            if cmd == "USER":
                return self._plain_user(args[0])
            if not (self.user_allows_plain()):
                return self.refuse(cmd, "530 Log in over TLS: send AUTH TLS first.")
        if cmd in ("PASV", "EPSV", "PORT", "EPRT") and not self._prot:
            if not (self.user and self.user.allow_clear_data):
                return self.refuse(cmd, "534 Data connections must be protected: send PBSZ 0 "
                                   "and PROT P first.")
            self.audit_session("clear-data", details={"command": cmd})
        if cmd in ("PORT", "EPRT") and not self.active_mode:
            return self.refuse(cmd, "502 Active mode is disabled on this server; use EPSV or "
                               "PASV.")
        # pyftpdlib's own checks (TLS required) are handled above with clearer replies.
        super(TLS_FTPHandler, self).process_command(cmd, *args, **kwargs)

    # --- login ---------------------------------------------------------------------------

    def _plain_user(self, username: str) -> None:
        """Accept USER before AUTH only for a user explicitly allowed plain FTP."""
        def then(ok: bool | None, error: BaseException | None) -> None:
            if ok and error is None:
                self._plain_allowed_for = username
                self.ftp_USER(username)
            else:
                self.refuse("USER", "530 Log in over TLS: send AUTH TLS before USER.")

        self.defer(lambda: services.allows_plain_login(username), then)

    def user_allows_plain(self) -> bool:
        """Return True when USER before AUTH was accepted for this username."""
        return getattr(self, "_plain_allowed_for", None) == self.username

    def ftp_PASS(self, line: str) -> None:
        if self.authenticated:
            return self.respond("503 User already authenticated.")
        if not self.username:
            return self.respond("503 Login with USER first.")
        certificate = None
        if isinstance(self.socket, SSL.Connection):
            certificate = tls.peer_certificate_der(self.socket)
        attempt = services.LoginAttempt(
            username=self.username, password=line, protocol="ftps",
            source_ip=self.remote_ip, certificate_der=certificate,
            encrypted=bool(self._ssl_established))
        origin = self.origin()
        self.defer(lambda: services.login(attempt, origin=origin, spool=self.audit_spool),
                   self._after_login)

    def _after_login(self, user: User | None, error: BaseException | None) -> None:
        if error is not None or user is None:
            self._login_failed(error)
            return
        self.user = user
        self.authorizer.bind(self.username, user.permissions or [])
        home = uploads.home_of(user)
        self.handle_auth_success(str(home), "", "Login successful.")

    def _login_failed(self, error: BaseException | None) -> None:
        """Reply 530 after a delay, the same for every reason; 421 for a banned address, or
        when the login could not be checked (the directory is down)."""
        if error is not None and not isinstance(error, LoginRefused):
            if not isinstance(error, TemporarilyUnavailable):
                log.error("login error", exc_info=error)
            self.respond("421 Service temporarily unavailable; try again later.")
            self.close_when_done()
            return
        self.username = ""
        self.attempted_logins += 1
        self._busy = True
        banned = isinstance(error, LoginRefused) and error.reason == "address banned"

        def reply() -> None:
            if self._closed:
                return
            if banned or self.attempted_logins >= self.max_login_attempts:
                self.respond("530 Login incorrect. Disconnecting.")
                self.close_when_done()
            else:
                self.respond("530 Login incorrect.")
            self._busy = False
            self._drain_queue()

        self.ioloop.call_later(self.auth_failed_delay, reply, _errback=self.handle_error)

    @property
    def session_user(self) -> User:
        """Return the logged-in user (file commands run only after login)."""
        assert self.user is not None, "file command before login"
        return self.user

    def flush_account(self) -> None:
        if self.user is not None:
            self.authorizer.forget(self.username)
        self.user = None
        super().flush_account()

    # --- audit ---------------------------------------------------------------------------

    def origin(self) -> Origin:
        """Return who and where this session is, for audit events."""
        extra = {"session": self.session_id, "implicit": self.implicit,
                 **getattr(self, "tls_details", {}), **proxy_protocol.origin_details(self)}
        base = Origin(source_ip=self.remote_ip or None, protocol="ftps", extra=extra)
        return base.as_user(self.user) if self.user is not None else base

    def audit_session(self, action: str, *, outcome: str = events.INFO,
                      details: dict[str, Any] | None = None,
                      origin: Origin | None = None) -> None:
        """Record a session event through the process's durable audit spool: the loop never
        waits on the database, and the event survives the process being killed."""
        origin = origin or self.origin()
        if self.audit_spool is not None:
            try:
                self.audit_spool.append("session", origin=origin, action=action,
                                        outcome=outcome, details=details)
                return
            except (OSError, ValueError):  # disk full, or the spool already closed at exit
                log.exception("audit spool unavailable; writing %s in the background", action)
        self.background(lambda: events.session_event(origin=origin, action=action,
                                                     outcome=outcome, details=details))

    def audit_refusal(self, command: str, reply: str) -> None:
        """Record a refused command."""
        self.audit_session("refused", outcome=events.FAILURE,
                           details={"command": command, "reply": reply[:200]})

    def refuse(self, command: str, reply: str) -> None:
        """Record a refusal, then send its reply: a security event is never left queued."""
        origin = self.origin()
        details = {"command": command, "reply": reply[:200]}

        def then(_result: Any, error: BaseException | None) -> None:
            if error is not None:
                # Not lost: the spool writes it once the database answers again.
                log.error("could not record a refusal; spooled", exc_info=error)
                self.audit_session("refused", outcome=events.FAILURE, details=details,
                                   origin=origin)
            self.respond(reply)

        self.defer(lambda: events.session_event(origin=origin, action="refused",
                                                outcome=events.FAILURE, details=details),
                   then)

    def on_disconnect(self) -> None:
        self.audit_session("disconnect")
        if self._counted:
            self._counted = False
            metrics.ftps_session_closed()

    # --- data connections ----------------------------------------------------------------

    def _make_epasv(self, extmode: bool = False) -> None:
        try:
            super()._make_epasv(extmode)
        except NoPassivePort:
            self._dtp_acceptor = None
            self.respond("425 No free passive port; try again shortly.")

    def _make_eport(self, ip: str, port: int) -> None:
        # pyftpdlib refuses these itself (RFC 2577) with a 501; record the refusal too.
        if ip != self.remote_ip.removeprefix("::ffff:") or port < 1024:
            self.audit_refusal("PORT", f"data connection to {ip}:{port} refused (FTP bounce)")
        super()._make_eport(ip, port)

    def take_queued_file(self) -> Any:
        """Remove and return the file waiting for a data connection, if any."""
        if self._in_dtp_queue is not None:
            file_obj = self._in_dtp_queue[0]
            self._in_dtp_queue = None
            return file_obj
        if self._out_dtp_queue is not None:
            file_obj = self._out_dtp_queue[2]
            self._out_dtp_queue = None
            return file_obj
        return None

    # --- transfers -----------------------------------------------------------------------

    def ftp_STOR(self, file: str, mode: str = "w") -> None:
        offset = self._restart_position or None
        self._restart_position = 0
        append = "a" in mode
        command = "APPE" if append else "STOR"
        virtual = self.fs.fs2ftp(file)
        user, origin = self.user, self.origin()
        assert user is not None

        def begin() -> uploads.Upload:
            return uploads.begin_upload(user, virtual, origin=origin, offset=offset,
                                        append=append)

        def then(upload: uploads.Upload | None, error: BaseException | None) -> None:
            if error is not None or upload is None:
                return self.respond(replies.for_error(error))
            handle = UploadFile(upload, file, self.pool)
            if self.data_channel is not None:
                self.respond("125 Data connection already open. Transfer starting.")
                self.data_channel.file_obj = handle
                self.data_channel.enable_receiving(self._current_type, command)
            else:
                self.respond("150 File status okay. About to open data connection.")
                self._in_dtp_queue = (handle, command)

        # A new file at a free name without quotas needs no database: no pool round trip.
        upload = uploads.begin_upload_offline(user, virtual, origin=origin, offset=offset,
                                              append=append)
        if upload is not None:
            return then(upload, None)
        self.defer(begin, then)

    def ftp_APPE(self, file: str) -> None:
        if self._restart_position:
            return self.respond("450 Can't APPE while REST request is pending.")
        self.ftp_STOR(file, mode="a")

    def ftp_ABOR(self, line: str) -> None:
        self._aborting = True
        try:
            super().ftp_ABOR(line)
        finally:
            self._aborting = False

    def ftp_STOU(self, line: str) -> None:
        self.respond("502 STOU is not supported; use STOR with a name.")

    def upload_closed(self, upload: UploadFile, *, completed: bool,
                      refusal: PortsideError | None, reply: str | None) -> None:
        """Finish, keep as resumable, or drop an upload, then send the final reply.

        After ABOR the final replies are ABOR's own (426 then 226): none is added here.
        """
        self._busy = True
        if refusal is not None:
            self.defer(lambda: upload.upload.abort(str(refusal)),
                       lambda _r, _e: self.respond(reply or replies.for_error(refusal)))
            return
        if not completed:
            aborted = self._aborting

            def kept(_result: Any, _error: BaseException | None) -> None:
                if not aborted:
                    self.respond("426 Transfer aborted; the part received is kept: resume "
                                 "with REST or APPE.")

            self.defer(lambda: upload.upload.interrupt("connection closed before the end"),
                       kept)
            return

        def finish() -> tuple[Any, list[int]]:
            with pipeline.held_sends() as held:
                return upload.upload.finish(), held

        def then(result: tuple[Any, list[int]] | None, error: BaseException | None) -> None:
            if error is not None or result is None:
                log.error("upload finish failed", exc_info=error)
                self.respond(replies.for_error(error, default="451 Could not store the file."))
                return
            stored, held = result
            self.respond(f"226 Transfer complete: {stored.size} bytes, SHA-256 "
                         f"{stored.sha256}.")
            # The file is durable and recorded; the broker message may follow the reply.
            self.background(lambda: pipeline.send_held(held))

        self.defer(finish, then)

    def ftp_RETR(self, file: str) -> None:
        offset = self._restart_position
        self._restart_position = 0
        virtual = self.fs.fs2ftp(file)
        user, origin = self.user, self.origin()
        assert user is not None

        def then(download: files.Download | None, error: BaseException | None) -> None:
            if error is not None or download is None:
                return self.respond(replies.for_error(error))
            handle = DownloadFile(download, file, offset, time.monotonic(), virtual)
            self.push_dtp_data(Producer(handle), isproducer=True, file=handle, cmd="RETR")

        self.defer(lambda: files.open_download(user, virtual, offset=offset, origin=origin),
                   then)

    def on_file_sent(self, file: str) -> None:
        self._audit_download(file, completed=True)

    def on_incomplete_file_sent(self, file: str) -> None:
        self._audit_download(file, completed=False)

    def _audit_download(self, file: str, *, completed: bool) -> None:
        handle = self.data_channel.file_obj if self.data_channel else None
        if not isinstance(handle, DownloadFile):
            return  # a listing, not a stored file
        origin, virtual = self.origin(), self.fs.fs2ftp(file) if self.fs else file
        sent, seconds = handle.sent, time.monotonic() - handle.started
        self.background(lambda: download_audit.record_download(
            handle.download, origin=origin, path=virtual, sent=sent, completed=completed,
            offset=handle.offset, seconds=seconds))

    # --- file commands -------------------------------------------------------------------

    def _file_command(self, work: Callable[[], Any], ok: Callable[[Any], str]) -> None:
        """Run a file service call off the loop and reply with its outcome."""
        def then(result: Any, error: BaseException | None) -> None:
            self.respond(replies.for_error(error) if error is not None else ok(result))

        self.defer(work, then)

    def ftp_DELE(self, path: str) -> None:
        user, origin, virtual = self.session_user, self.origin(), self.fs.fs2ftp(path)
        self._file_command(lambda: files.delete(user, virtual, origin=origin),
                           lambda _r: "250 File removed.")

    def ftp_RNTO(self, path: str) -> None:
        if not self._rnfr:
            return self.respond("503 Bad sequence of commands: use RNFR first.")
        source, self._rnfr = self.fs.fs2ftp(self._rnfr), None
        user, origin, target = self.session_user, self.origin(), self.fs.fs2ftp(path)
        self._file_command(lambda: files.rename(user, source, target, origin=origin),
                           lambda _r: "250 Renaming ok.")

    def ftp_MKD(self, path: str) -> None:
        user, origin, virtual = self.session_user, self.origin(), self.fs.fs2ftp(path)
        self._file_command(lambda: files.make_dir(user, virtual, origin=origin),
                           lambda v: '257 "{}" directory created.'.format(v.replace('"', '""')))

    def ftp_RMD(self, path: str) -> None:
        user, origin, virtual = self.session_user, self.origin(), self.fs.fs2ftp(path)
        self._file_command(lambda: files.remove_dir(user, virtual, origin=origin),
                           lambda _r: "250 Directory removed.")

    def ftp_MFMT(self, path: str, timeval: str) -> None:
        try:
            when = datetime.strptime(timeval, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
        except ValueError:
            return self.respond("501 Invalid time format: use YYYYMMDDHHMMSS.")
        user, origin, virtual = self.session_user, self.origin(), self.fs.fs2ftp(path)
        name = virtual.rsplit("/", 1)[-1]
        self._file_command(lambda: files.set_mtime(user, virtual, when, origin=origin),
                           lambda _r: f"213 Modify={timeval}; {name}.")

    def ftp_HASH(self, path: str) -> None:
        user, virtual = self.session_user, self.fs.fs2ftp(path)
        self._file_command(lambda: files.file_hash(user, virtual),
                           lambda r: f"213 SHA-256 0-{r[1]} {r[0]} {virtual.rsplit('/', 1)[-1]}")

    def ftp_OPTS(self, line: str) -> None:
        if line.upper().startswith("HASH"):
            algorithm = line[4:].strip().upper()
            if algorithm in ("", "SHA-256"):
                return self.respond("200 SHA-256")
            return self.respond("501 Only SHA-256 is supported.")
        super().ftp_OPTS(line)

    def ftp_PROXY(self, line: str = "") -> None:
        proxy_protocol.refuse(self, "PROXY header from an untrusted peer",
                              reply="421 PROXY header refused: not a trusted balancer.")

    def ftp_CCC(self, line: str) -> None:
        self.refuse("CCC", "534 CCC refused: the control connection stays encrypted.")

    def ftp_PROT(self, line: str) -> None:
        if line.upper() == "C" and self.user is not None and not self.user.allow_clear_data:
            return self.refuse("PROT", "534 Clear data connections are not allowed: use PROT P.")
        super().ftp_PROT(line)

    def ftp_SITE_CHMOD(self, path: str, mode: str) -> None:
        self.respond("502 SITE CHMOD is not supported.")
