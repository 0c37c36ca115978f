"""File-like adapters between pyftpdlib's data channel and transfers' upload and download."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from transfers.files import Download
from transfers.uploads import Upload

READ_SIZE = 256 * 1024

ClaimDone = Callable[[int, BaseException | None], None]


class UploadFile:
    """What the data channel writes to: forwards bytes to an Upload (quota, hash, encrypt).

    Quota is claimed ahead on the blocking pool (claim()), never by write() on the loop:
    the data channel writes only bytes already claimed. close() only marks it closed:
    finishing (fsync, database) runs on the pool, started by the control handler once the
    data channel has closed.
    """

    def __init__(self, upload: Upload, name: str, pool: Any) -> None:
        self.upload = upload
        self.name = name
        self.pool = pool
        self.closed = False
        self.claiming: int | None = None  # bytes the claim in flight must cover (0: ahead)

    def write(self, data: bytes | memoryview) -> int:
        self.upload.write(data)
        return len(data)

    def claim(self, needed: int, done: ClaimDone) -> None:
        """Claim quota on the blocking pool, one claim at a time; then done(needed, error)."""
        self.claiming = needed
        upload = self.upload

        def finished(_result: Any, error: BaseException | None) -> None:
            self.claiming = None
            done(needed, error)

        self.pool.submit(lambda: upload.claim(needed), finished)

    def close(self) -> None:
        self.closed = True


class DownloadFile:
    """What the data channel reads from: the decrypted plaintext of a stored file."""

    def __init__(self, download: Download, name: str, offset: int, started: float,
                 virtual: str = "") -> None:
        self.download = download
        self.name = name
        self.virtual = virtual  # the client's path, for the live-sessions table
        self.offset = offset
        self.started = started
        self.sent = 0
        self.closed = False

    def read(self, size: int = READ_SIZE) -> bytes:
        data = self.download.reader.read(size)
        self.sent += len(data)
        return data

    def readinto(self, buffer: memoryview) -> int:
        """Fill buffer with the next plaintext (decrypted in place where the reader can)."""
        reader = self.download.reader
        fill = getattr(reader, "readinto", None)
        if fill is not None:
            count = int(fill(buffer))
        else:
            data = reader.read(len(buffer))
            count = len(data)
            buffer[:count] = data
        self.sent += count
        return count

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.download.reader.close()


class Producer:
    """An asynchat producer over a DownloadFile, in large pieces (fewer loop passes)."""

    def __init__(self, file: DownloadFile) -> None:
        self.file = file

    def more(self) -> Any:
        return self.file.read(READ_SIZE)
