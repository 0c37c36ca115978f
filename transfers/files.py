"""File operations inside a user's home, the same for every edge: read, list, change.

Visibility: the uploader sees their own files at once; reading bytes needs the file to be
clean (the uploader) or ready (everyone else).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from audit import events
from audit.events import Origin
from mft.errors import Conflict, FileNotReady, InvalidInput, NotFound, PermissionDenied
from transfers import paths, storage
from transfers.models import LIVE_STATES, FileState, StoredFile
from transfers.uploads import home_of, live_file, require

READABLE_BY_OWNER = (FileState.CLEAN, FileState.DLP, FileState.READY)
_NOT_READY_REASONS = {
    FileState.PARTIAL: "upload incomplete; resume it with REST or APPE",
    FileState.RECEIVED: "file is waiting to be scanned",
    FileState.DECRYPTING: "file is being decrypted",
    FileState.SCANNING: "file is being scanned",
    FileState.HELD: "file is held",
}


def resolve(user: User, virtual: str, cwd: str = "/") -> tuple[str, Path]:
    """Return the normalized virtual path and the real path inside the user's home."""
    clean = paths.normalize(virtual, cwd)
    return clean, paths.to_real(home_of(user), clean)


def size_of(real: Path) -> int:
    """Return the plaintext size of a file on disk (0 for folders)."""
    if real.is_dir():
        return 0
    try:
        return storage.plaintext_size(real)
    except (OSError, ValueError):
        return real.stat().st_size


@dataclass(frozen=True)
class Download:
    """An open read of a stored file's plaintext."""

    stored: StoredFile
    reader: storage.Reader
    size: int


def open_download(user: User, virtual: str, *, offset: int = 0, origin: Origin) -> Download:
    """Open a file for reading at an offset, if the user may read it now."""
    require(user, "download")
    clean, real = resolve(user, virtual)
    stored = live_file(user, clean)
    if stored is None:
        if real.is_file():
            raise FileNotReady("file is not registered with Portside and cannot be read")
        raise NotFound("no such file")
    if stored.state not in READABLE_BY_OWNER:
        reason = _NOT_READY_REASONS.get(FileState(stored.state), f"file is {stored.state}")
        if stored.state == FileState.HELD and stored.state_reason:
            reason = f"file is held: {stored.state_reason}"
        raise FileNotReady(reason)
    size = storage.plaintext_size(real)
    if offset < 0 or offset > size:
        raise InvalidInput(f"restart offset {offset} is beyond the file size {size}")
    reader = storage.open_reader(real)
    reader.seek(offset)
    return Download(stored=stored, reader=reader, size=size)


def file_hash(user: User, virtual: str) -> tuple[str, int]:
    """Return the SHA-256 recorded at upload and the size, without reading the file."""
    require(user, "list")
    clean, _ = resolve(user, virtual)
    stored = live_file(user, clean)
    if stored is None:
        raise NotFound("no such file")
    if not stored.sha256:
        raise FileNotReady("upload incomplete: no hash yet")
    return stored.sha256, stored.size


def delete(user: User, virtual: str, *, origin: Origin) -> None:
    """Delete a file and its record."""
    require(user, "delete")
    clean, real = resolve(user, virtual)
    if real.is_dir():
        raise InvalidInput("is a folder; use RMD")
    if not real.exists():
        raise NotFound("no such file")
    with transaction.atomic():
        stored = live_file(user, clean)
        if stored is not None:
            StoredFile.objects.filter(pk=stored.pk).update(
                state=FileState.DELETED, state_changed_at=timezone.now(),
                state_reason="deleted by the user")
        real.unlink()
        events.file_event(origin=origin, action="delete", stored_file=stored, path=clean)


def rename(user: User, source: str, target: str, *, origin: Origin) -> None:
    """Rename a file or folder; replacing an existing file needs the overwrite permission."""
    require(user, "rename")
    src, real_src = resolve(user, source)
    dst, real_dst = resolve(user, target)
    if not real_src.exists():
        raise NotFound("no such file or folder")
    if src == "/" or dst == "/":
        raise PermissionDenied("the home folder cannot be renamed")
    if real_dst.is_dir():
        raise Conflict("a folder has the target name")
    if dst.startswith(src + "/"):
        raise InvalidInput("a folder cannot be moved into itself")
    _require_parent(dst, real_dst)
    with transaction.atomic():
        replaced = live_file(user, dst) if real_dst.exists() else None
        if real_dst.exists():
            require(user, "overwrite")
            if replaced is not None:
                StoredFile.objects.filter(pk=replaced.pk).update(
                    state=FileState.DELETED, state_changed_at=timezone.now(),
                    state_reason="replaced by a rename")
        _move_records(user, src, dst, real_dst, is_dir=real_src.is_dir())
        os.replace(real_src, real_dst)
        events.file_event(origin=origin, action="rename", path=src,
                          details={"to": dst, "replaced": replaced is not None})


def _require_parent(clean: str, real: Path) -> None:
    """Refuse a new name in a folder that does not exist."""
    if not real.parent.is_dir():
        folder = clean.rsplit("/", 1)[0] or "/"
        raise NotFound(f"folder {folder} does not exist")


def _move_records(user: User, src: str, dst: str, real_dst: Path, *, is_dir: bool) -> None:
    """Point the stored-file records at their new paths."""
    rows = StoredFile.objects.filter(owner=user, state__in=LIVE_STATES)
    if not is_dir:
        rows.filter(path=src).update(path=dst, storage_path=str(real_dst))
        return
    for row in rows.filter(path__startswith=src + "/"):
        row.path = dst + row.path[len(src):]
        row.storage_path = str(real_dst) + row.path[len(dst):]
        row.save(update_fields=["path", "storage_path"])


def make_dir(user: User, virtual: str, *, origin: Origin) -> str:
    """Create a folder."""
    require(user, "mkdir")
    clean, real = resolve(user, virtual)
    if real.exists():
        raise Conflict("already exists")
    _require_parent(clean, real)
    real.mkdir()
    events.file_event(origin=origin, action="mkdir", path=clean)
    return clean


def remove_dir(user: User, virtual: str, *, origin: Origin) -> None:
    """Remove an empty folder."""
    require(user, "delete")
    clean, real = resolve(user, virtual)
    if clean == "/":
        raise PermissionDenied("the home folder cannot be removed")
    if not real.is_dir():
        raise NotFound("no such folder")
    if any(real.iterdir()):
        raise Conflict("folder is not empty")
    real.rmdir()
    events.file_event(origin=origin, action="rmdir", path=clean)


def set_mtime(user: User, virtual: str, when: datetime, *, origin: Origin) -> None:
    """Set a file's modification time (FTP MFMT, sent by FileZilla and WinSCP after STOR)."""
    require(user, "upload")
    clean, real = resolve(user, virtual)
    if not real.is_file():
        raise NotFound("no such file")
    stamp = when.timestamp()
    os.utime(real, (stamp, stamp))
    events.file_event(origin=origin, action="mfmt", path=clean,
                      details={"mtime": when.isoformat()})


def list_names(user: User, real: Path) -> list[str]:
    """Return the visible names in a folder (our hidden folders left out)."""
    require(user, "list")
    return sorted(n for n in os.listdir(real) if n != storage.TEMP_DIRNAME)


def remove_tree_contents(home: Path) -> None:
    """Remove everything inside a home (used when deleting a user)."""
    for child in home.iterdir():
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()
