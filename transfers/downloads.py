"""Reading a stored file by id (the API): who may read it, and its plaintext streamed and
audited like an FTPS download.

The owner reads through `transfers.files.open_download` (clean or ready, the download
permission); anyone else who may see the file reads it only once it is ready.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from accounts.models import User
from audit import events
from audit.events import Origin
from mft.errors import Conflict, FileNotReady, NotFound
from transfers import files, storage
from transfers.models import LIVE_STATES, FileState, StoredFile
from transfers.uploads import require

CHUNK = 256 * 1024


def open_stored(user: User, stored: StoredFile, *, origin: Origin) -> files.Download:
    """Open a stored file's plaintext for a caller allowed to see it, if readable now."""
    if stored.owner_id == user.pk:
        return _open_own(user, stored, origin)
    if stored.state != FileState.READY:
        raise FileNotReady(f"file is {stored.state}; it can be read once it is ready")
    if user.role == User.Role.PARTNER:
        require(user, "download")
    path = Path(stored.storage_path)
    try:
        reader = storage.open_reader(path)
        size = storage.plaintext_size(path)
    except FileNotFoundError:
        raise NotFound("the file's bytes are missing from storage") from None
    return files.Download(stored=stored, reader=reader, size=size)


def _open_own(user: User, stored: StoredFile, origin: Origin) -> files.Download:
    """Open the owner's own file through the same rules as an FTPS download."""
    # files.open_download finds the file by its path, which only a live file holds: a
    # stopped file no longer does, and another file may have taken the name since.
    if stored.state not in LIVE_STATES:
        raise FileNotReady(f"file is {stored.state}")
    download = files.open_download(user, stored.path, origin=origin)
    if download.stored.pk != stored.pk:
        download.reader.close()
        raise Conflict("another file has taken this file's name")
    return download


def stream(download: files.Download, *, origin: Origin, chunk: int = CHUNK) -> Iterator[bytes]:
    """Yield the plaintext in chunks; audit the download (complete or not) when it ends."""
    sent, completed = 0, False
    try:
        while block := download.reader.read(chunk):
            sent += len(block)
            yield block
        completed = True
    finally:
        download.reader.close()
        stored = download.stored
        events.file_event(
            origin=origin, action="download", stored_file=stored, path=stored.path,
            outcome=events.SUCCESS if completed else events.FAILURE,
            details={"completed": completed, "bytes": sent, "sha256": stored.sha256})
