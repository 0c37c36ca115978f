"""Receive a file from any edge: check, count quota, hash and encrypt while bytes arrive.

The FTPS gateway and the HTTPS upload both drive an `Upload`; only `finish()` makes the
file visible at its name, and it starts the pipeline after the transaction commits.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import User
from audit import chain, events
from audit.events import Origin
from mft.errors import InvalidInput, NotFound, PermissionDenied, PortsideError, TransferRejected
from transfers import paths, pipeline, quota, storage
from transfers.models import LIVE_STATES, FileState, QuotaReservation, StoredFile

_HASH_READ = 1024 * 1024


def home_of(user: User) -> Path:
    """Return the user's home folder, creating it when missing."""
    if not user.home_dir:
        raise PermissionDenied("user has no home folder")
    home = Path(user.home_dir)
    home.mkdir(parents=True, exist_ok=True)
    return home


def require(user: User, word: str) -> None:
    """Refuse unless the user holds the permission word."""
    if word not in (user.permissions or []):
        raise PermissionDenied(f"permission denied: {word}")


def live_file(user: User, virtual: str) -> StoredFile | None:
    """Return the user's live stored file at a virtual path, if any."""
    return StoredFile.objects.filter(owner=user, path=virtual, state__in=LIVE_STATES).first()


def _check_name(virtual: str) -> None:
    """Refuse file names matching the configured deny patterns."""
    name = virtual.rsplit("/", 1)[-1]
    if not name:
        raise InvalidInput("a file name is required")
    for pattern in settings.UPLOAD_DENY_PATTERNS:
        if fnmatch.fnmatch(name.lower(), pattern.lower()):
            raise TransferRejected(f"file names matching {pattern} are not accepted")


class NeedsDatabase(Exception):
    """Starting this upload needs the database (quota, a file at the name, a resume)."""


class Upload:
    """One file arriving; write() as bytes come, then finish(), interrupt() or abort()."""

    def __init__(self, user: User, virtual: str, *, offset: int | None, append: bool,
                 origin: Origin, make_parents: bool = False, offline: bool = False) -> None:
        self.user, self.virtual, self.origin = user, virtual, origin
        self.home = home_of(user)
        self.target = paths.to_real(self.home, virtual)
        if offline and (offset or append or make_parents or user.quota_bytes is not None
                        or user.quota_files is not None or os.path.lexists(self.target)):
            raise NeedsDatabase(virtual)
        self.temp = storage.temp_dir(self.home) / f"{uuid.uuid4().hex}.part"
        self.started = time.monotonic()
        self.received = 0
        self.resumed: StoredFile | None = None
        self._reservation: QuotaReservation | None = None
        self._claimed = 0
        self._hasher = hashlib.sha256()
        self._ensure_parent(make_parents)
        self._open(offset, append)

    def _ensure_parent(self, make_parents: bool) -> None:
        """Refuse an upload into a folder that does not exist, or create it when asked."""
        parent = self.target.parent
        if parent.is_dir():
            return
        folder = self.virtual.rsplit("/", 1)[0] or "/"
        if not make_parents:
            raise NotFound(f"folder {folder} does not exist")
        require(self.user, "mkdir")
        if parent.exists():
            raise InvalidInput(f"{folder} is a file, not a folder")
        parent.mkdir(parents=True)

    def _open(self, offset: int | None, append: bool) -> None:
        """Check permissions and quota, then open the encrypted temporary file."""
        _check_name(self.virtual)
        require(self.user, "upload")
        if self.target.is_dir():
            raise InvalidInput("a folder has that name")
        resuming = bool(offset) or append
        on_disk = self.target.exists()
        # A live file's bytes are at its name (a partial file's too), so a free name needs
        # no lookup; a row left without its bytes is still retired, overwrite permission
        # checked, when the upload lands (_retire_current).
        existing = live_file(self.user, self.virtual) if on_disk or resuming else None
        if existing is not None and existing.state == FileState.PARTIAL and resuming:
            self.resumed = existing
        elif resuming:
            raise TransferRejected("only an interrupted upload can be resumed; delete the "
                                   "complete file or upload it again from the start")
        elif existing is not None or on_disk:
            require(self.user, "overwrite")  # checked again when the file lands
        quota.check_new_file(self.user, replacing=existing is not None)
        self._reservation = quota.open_reservation(self.user)
        self._claimed = self._reservation.bytes if self._reservation is not None else 0
        self.kept = 0
        try:
            if self.resumed is not None:
                self.kept = self._adopt_partial(offset, append)
            self._writer = storage.open_writer(
                self.temp, append=append and self.resumed is not None,
                offset=offset if self.resumed is not None and not append else None)
        except BaseException:
            quota.release(self._reservation)
            if self.resumed is not None and self.temp.exists():
                os.replace(self.temp, self.target)
            raise

    def _adopt_partial(self, offset: int | None, append: bool) -> int:
        """Move the partial file aside, re-hash the part kept, and return its length."""
        os.replace(self.target, self.temp)
        size = storage.plaintext_size(self.temp)
        keep = size if append or offset is None else offset
        if keep > size:
            os.replace(self.temp, self.target)
            raise InvalidInput(f"restart offset {keep} is beyond the stored size {size}")
        reader = storage.open_reader(self.temp)
        try:
            remaining = keep
            while remaining:
                block = reader.read(min(_HASH_READ, remaining))
                if not block:
                    break
                self._hasher.update(block)
                remaining -= len(block)
        finally:
            reader.close()
        return keep

    @property
    def size(self) -> int:
        """Return the plaintext bytes the finished file will hold so far."""
        return self.kept + self.received

    def shortfall(self, length: int) -> int:
        """Return the quota bytes still to claim before `length` more bytes may be written."""
        if self._reservation is None:
            return 0
        return max(0, self.received + length - self._claimed)

    def running_low(self) -> bool:
        """Return True when less than half a claim step of claimed quota is left."""
        return (self._reservation is not None
                and self._claimed - self.received < quota.CLAIM_STEP // 2)

    def claim(self, needed: int) -> None:
        """Claim at least `needed` more quota bytes (a database call: not on an event loop).

        `needed=0` tops the claim up by a step where the quota allows; QuotaExceeded when
        `needed` bytes are not free. Callers run one claim at a time per upload.
        """
        assert self._reservation is not None and self.user.quota_bytes is not None
        self._claimed = quota.claim(self._reservation, needed, quota=self.user.quota_bytes)

    def write(self, data: bytes | memoryview) -> None:
        """Take the next piece of the file; raise QuotaExceeded or TransferRejected to stop.

        Claims quota itself when short (blocking callers); an event loop claims ahead with
        claim() off the loop so that write() never reaches the database.
        """
        length = len(data)
        if settings.MAX_FILE_BYTES and self.size + length > settings.MAX_FILE_BYTES:
            raise TransferRejected(f"file larger than the limit of {settings.MAX_FILE_BYTES} "
                                   "bytes")
        needed = self.shortfall(length)
        if needed:
            self.claim(needed)
        self._writer.write(data)
        self._hasher.update(data)
        self.received += length

    def finish(self) -> StoredFile:
        """Land the complete file at its name, record it and queue the pipeline."""
        self._writer.close(fsync=True)
        sha256 = self._hasher.hexdigest()

        def announce(stored: StoredFile) -> None:
            events.file_event(origin=self.origin, action="upload", stored_file=stored,
                              path=self.virtual, details=self._transfer_details(sha256))
            pipeline.start(stored, new=self.resumed is None)

        return self._land(FileState.RECEIVED, sha256, announce)

    def _land(self, state: str, sha256: str,
              announce: Callable[[StoredFile], None]) -> StoredFile:
        """Record this upload, replacing the live file at its name, and move it in place.

        The live file is looked up again here, not taken from the start of the upload:
        another session may have landed a file at the same name meanwhile, and its row
        must not be left pointing at our bytes. The rename comes last, so a refusal or a
        database error leaves the name as it was.
        """
        for attempt in (1, 2):
            try:
                with transaction.atomic():
                    if attempt == 2 or not self._name_is_free():
                        self._retire_current()
                    stored = self._record(state, sha256)
                    quota.release(self._reservation)
                    with chain.appended_together():
                        announce(stored)
                    os.replace(self.temp, self.target)
                return stored
            except IntegrityError:
                # Another upload inserted the live row for this name first (PostgreSQL
                # runs them side by side): try once more, now replacing it.
                if attempt == 2:
                    self._give_up_landing()
                    raise
            except BaseException:
                self._give_up_landing()
                raise
        raise AssertionError("unreachable")

    def _name_is_free(self) -> bool:
        """Return True when a new file's name has nothing on disk: no row to retire, as a rule.

        A live row left without its bytes is caught by the live-name constraint when our
        row is inserted, and the second attempt retires it (_land): a new file at a free
        name, the common case, costs no UPDATE.
        """
        return self.resumed is None and not os.path.lexists(self.target)

    def _retire_current(self) -> None:
        """Mark the file now live at this name (not the part being resumed) replaced.

        One UPDATE: it locks the row it changes as SELECT ... FOR UPDATE would, and a
        concurrent landing that committed first is caught by the live-name constraint.
        A user without `overwrite` only needs to know whether a live file is there.
        """
        rows = StoredFile.objects.filter(owner=self.user, path=self.virtual,
                                         state__in=LIVE_STATES)
        if self.resumed is not None:
            rows = rows.exclude(pk=self.resumed.pk)
        if "overwrite" not in (self.user.permissions or []):
            if rows.exists():
                require(self.user, "overwrite")
            return
        rows.update(state=FileState.DELETED, state_changed_at=timezone.now(),
                    state_reason="replaced by a new upload")

    def _give_up_landing(self) -> None:
        """After a failed landing: put a resumed part back where it was, or drop the bytes."""
        if self.resumed is not None and self.temp.exists() and not self.target.exists():
            os.replace(self.temp, self.target)
            quota.release(self._reservation)
        else:
            self._discard()

    def _record(self, state: str, sha256: str) -> StoredFile:
        """Create or update the stored-file row for this upload."""
        now = timezone.now()
        row = self.resumed or StoredFile(
            owner=self.user, owner_username=self.user.username,
            partner_id=self.user.partner_id, path=self.virtual,
        )
        row.size, row.sha256, row.state = self.size, sha256, state
        row.storage_path = str(self.target)
        row.encrypted_at_rest = settings.ENCRYPT_AT_REST
        row.protocol, row.state_changed_at = self.origin.protocol, now
        row.received_at = now if state == FileState.RECEIVED else None
        row.save()
        return row

    def _transfer_details(self, sha256: str) -> dict[str, object]:
        """Describe the transfer for the audit log."""
        return {"bytes": self.received, "size": self.size, "sha256": sha256,
                "resumed_from": self.kept if self.resumed else None,
                "seconds": round(time.monotonic() - self.started, 3)}

    def interrupt(self, reason: str) -> StoredFile | None:
        """Keep what arrived as a resumable partial file after a broken connection."""
        self._writer.close(fsync=True)
        if self.size == 0 and self.resumed is None:
            self._discard()
            events.file_event(origin=self.origin, action="upload", path=self.virtual,
                              outcome=events.FAILURE, details={"reason": reason, "bytes": 0})
            return None

        def announce(stored: StoredFile) -> None:
            events.file_event(origin=self.origin, action="upload", stored_file=stored,
                              path=self.virtual, outcome=events.FAILURE,
                              details={"reason": reason, "bytes": self.received,
                                       "resumable_at": self.size})

        return self._land(FileState.PARTIAL, "", announce)

    def abort(self, reason: str) -> None:
        """Drop everything this upload wrote (over quota, refused): nothing is kept."""
        try:
            self._writer.close()
        finally:
            self._discard()
        if self.resumed is not None:
            StoredFile.objects.filter(pk=self.resumed.pk).update(
                state=FileState.DELETED, state_changed_at=timezone.now(),
                state_reason=f"partial upload removed: {reason}")
        events.file_event(origin=self.origin, action="upload", path=self.virtual,
                          outcome=events.FAILURE, details={"reason": reason,
                                                           "bytes": self.received})

    def _discard(self) -> None:
        """Remove the temporary file and give back the quota claim."""
        self.temp.unlink(missing_ok=True)
        quota.release(self._reservation)


def begin_upload_offline(user: User, virtual: str, *, origin: Origin, offset: int | None = None,
                         append: bool = False) -> Upload | None:
    """Start a new file at a free name for a user without quotas, touching no database.

    An event loop may call this (it only checks and creates files); None means the upload
    needs begin_upload() on a thread that may block: it counts quota, looks up the file at
    the name, or is refused or failed (begin_upload records the refusal in the audit log
    and raises the error for the caller to report).
    """
    try:
        return Upload(user, paths.normalize(virtual), offset=offset, append=append,
                      origin=origin, offline=True)
    except (NeedsDatabase, PortsideError, OSError):
        return None


def begin_upload(user: User, virtual: str, *, origin: Origin, offset: int | None = None,
                 append: bool = False, make_parents: bool = False) -> Upload:
    """Start receiving a file at a virtual path in the user's home."""
    clean = paths.normalize(virtual)
    try:
        return Upload(user, clean, offset=offset, append=append, origin=origin,
                      make_parents=make_parents)
    except PortsideError as exc:
        events.file_event(origin=origin, action="upload", path=clean, outcome=events.FAILURE,
                          details={"reason": str(exc)})
        raise
