"""Where file bytes live on disk, and the at-rest encryption every read and write goes through.

Every open of a stored file goes through `open_writer`/`open_reader`, so with encryption on
(the default) no plaintext byte is ever written to disk, temporary files included.
"""

from __future__ import annotations

import base64
import functools
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Protocol

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from transfers import atrest, writeback
from transfers.writeback import Writer

log = logging.getLogger(__name__)

# Hidden folder inside each home for uploads in progress: same filesystem as the home, so
# moving a finished upload into place is one atomic rename.
TEMP_DIRNAME = ".portside-tmp"
QUARANTINE_DIRNAME = "quarantine"


class Reader(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...
    def seek(self, offset: int, /) -> object: ...
    def close(self) -> None: ...


@functools.cache
def master_key() -> atrest.MasterKey:
    """Return the install's current master key, generating it into the data dir on first use."""
    if settings.MASTER_KEY:
        return _key_from_text(settings.MASTER_KEY, "MFT_MASTER_KEY")
    path = Path(settings.MASTER_KEY_PATH)
    if not path.exists():
        _create_master_key(path)
    return _key_from_text(path.read_text(), str(path))


def _key_from_text(text: str, source: str) -> atrest.MasterKey:
    """Parse a base64 master key, naming its source in the error."""
    try:
        return atrest.MasterKey(base64.b64decode(text.strip(), validate=True))
    except ValueError as exc:
        raise ImproperlyConfigured(f"master key from {source} is invalid: {exc}") from None


def known_keys() -> dict[str, atrest.MasterKey]:
    """Return every master key this install knows, by key id: current, next and previous.

    Readers pick the key a file's header names, so files stay readable while a rotation is
    under way and from processes that started before it.
    """
    keys = {master_key().key_id: master_key()}
    base = Path(settings.MASTER_KEY_PATH)
    for suffix in (".next", ".old"):
        candidate = base.with_name(base.name + suffix)
        if candidate.exists():
            key = _key_from_text(candidate.read_text(), str(candidate))
            keys.setdefault(key.key_id, key)
    return keys


def key_for(path: Path) -> atrest.MasterKey:
    """Return the known master key that wraps an encrypted file."""
    keys = known_keys()
    for key_id in atrest.key_ids(path):
        if key_id in keys:
            return keys[key_id]
    return master_key()  # the reader then reports which key ids would have been needed


def _create_master_key(path: Path) -> None:
    """Write a new master key file (0600) unless another process just did.

    The key is written to a temporary file and hard-linked into place, so a crash never
    leaves an empty or partial key file, and of two racing processes exactly one wins.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(base64.b64encode(os.urandom(atrest.KEY_SIZE)).decode() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    try:
        os.link(temp, path)
    except FileExistsError:
        return
    finally:
        temp.unlink(missing_ok=True)
    log.warning("generated a new master key at %s: BACK IT UP. Losing it loses every stored "
                "file, because files are encrypted at rest with it.", path)


class _PlainWriter:
    """A writer for installs that switched encryption at rest off."""

    def __init__(self, path: Path, *, append: bool, offset: int | None) -> None:
        mode = "r+b" if (append or offset is not None) and path.exists() else "wb"
        self._file: IO[bytes] = open(path, mode)  # noqa: SIM115 - closed by close()
        if append:
            self._file.seek(0, os.SEEK_END)
        elif offset is not None:
            self._file.truncate(offset)
            self._file.seek(offset)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        return self._file.write(data)

    def fileno(self) -> int:
        return self._file.fileno()

    def close(self, fsync: bool = False) -> None:
        self._file.flush()
        if fsync:
            os.fsync(self._file.fileno())
        self._file.close()


class _PlainReader:
    def __init__(self, path: Path) -> None:
        self._file: IO[bytes] = open(path, "rb")  # noqa: SIM115 - closed by close()

    def read(self, n: int = -1) -> bytes:
        return self._file.read(n)

    def seek(self, offset: int) -> int:
        return self._file.seek(offset)

    def close(self) -> None:
        self._file.close()


def open_writer(path: Path, *, append: bool = False, offset: int | None = None) -> Writer:
    """Open a stored file for writing: new, appended to, or kept up to an offset.

    A large file is written out to the disk as it grows (transfers.writeback), so the
    fsync at its end does not write it all at once, and what is written out leaves the
    page cache behind it.
    """
    return writeback.wrap(_open_writer(path, append=append, offset=offset),
                          settings.WRITE_BEHIND_BYTES, drop=settings.WRITE_BEHIND_DROP)


def _open_writer(path: Path, *, append: bool, offset: int | None) -> Writer:
    resuming = append or offset is not None
    if resuming and path.exists() and path.stat().st_size and atrest.is_encrypted(path):
        return atrest.EncryptedWriter(path, key_for(path), append=append, offset=offset)
    if not settings.ENCRYPT_AT_REST and not (path.exists() and atrest.is_encrypted(path)):
        return _PlainWriter(path, append=append, offset=offset)
    return atrest.EncryptedWriter(path, master_key(), append=append, offset=offset)


def open_reader(path: Path) -> Reader:
    """Open a stored file for reading its plaintext, whichever way it is stored."""
    if atrest.is_encrypted(path):
        return atrest.EncryptedReader(path, key_for(path))
    return _PlainReader(path)


def plaintext_size(path: Path) -> int:
    """Return the plaintext size of a stored file without decrypting it."""
    if atrest.is_encrypted(path):
        return atrest.plaintext_size(path)
    return path.stat().st_size


def quarantine_dir() -> Path:
    """Return the folder holding quarantined files, outside every user's home."""
    path = Path(settings.DATA_DIR) / QUARANTINE_DIRNAME
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def temp_dir(home: Path) -> Path:
    """Return the hidden folder for uploads in progress inside a home."""
    path = home / TEMP_DIRNAME
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def iter_plaintext(path: Path, chunk: int = 1024 * 1024) -> Iterator[bytes]:
    """Yield a stored file's plaintext in chunks (for scanners that stream)."""
    reader = open_reader(path)
    try:
        while block := reader.read(chunk):
            yield block
    finally:
        reader.close()
