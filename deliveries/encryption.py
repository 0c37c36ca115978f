"""Encrypt a per-route copy of a stored file to a partner's PGP keys, streamed to the wire.

The ciphertext never exists on disk and the stored original is only read: a thread feeds
the decrypted-at-rest plaintext to gpg and writes gpg's output into a pipe; the upload reads
the pipe and sends each block to the partner's server as it comes. The partner's keys go
into a throwaway keyring (public keys only) that is removed afterwards — unless the route
signs the copy: then gpg runs in the platform's own keyring, which holds the signing key
and already keeps partners' public keys to check their signatures.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from django.conf import settings

from deliveries.errors import PermanentProblem
from transfers import pgp, storage
from transfers.models import StoredFile
from transfers.pgp_step import platform_keyring

BLOCK = 256 * 1024


class _ReaderFile(io.RawIOBase):
    """A stored-file reader as the binary file object gpg's input pump wants."""

    def __init__(self, reader: storage.Reader, stop: threading.Event) -> None:
        super().__init__()
        self._reader, self._stop = reader, stop
        self.total = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._stop.is_set():
            return 0  # the upload gave up: let gpg finish at once
        data = self._reader.read(len(buffer))
        buffer[:len(data)] = data
        self.total += len(data)
        return len(data)


class _Encryptor(threading.Thread):
    """Write the file's ciphertext into the pipe's write end, then close it."""

    def __init__(self, stored: StoredFile, keyring: pgp.Keyring, recipients: list[str],
                 write_fd: int, signer: str | None = None) -> None:
        super().__init__(name=f"pgp-encrypt-{stored.pk}", daemon=True)
        self.path, self.size = Path(stored.storage_path), stored.size
        self.keyring, self.recipients, self.write_fd = keyring, recipients, write_fd
        self.signer = signer
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        sink: BinaryIO = os.fdopen(self.write_fd, "wb")
        reader = None
        try:
            reader = storage.open_reader(self.path)
            plaintext = _ReaderFile(reader, self.stop)
            self.keyring.encrypt_stream(
                io.BufferedReader(plaintext, BLOCK), sink, self.recipients,
                sign_with=self.signer,
                passphrase=settings.PGP_PASSPHRASE if self.signer else None)
            if plaintext.total != self.size and not self.stop.is_set():
                # gpg got EOF early: its output is a valid message of part of the file.
                raise pgp.PgpError(f"read {plaintext.total} of {self.size} bytes")
        except BaseException as exc:  # noqa: BLE001 - reported by the reading side
            self.error = exc
        finally:
            if reader is not None:
                reader.close()
            try:
                sink.close()
            except OSError:
                pass  # the reading side hung up first


def _blocks(source: BinaryIO, encryptor: _Encryptor) -> Iterator[bytes]:
    """Yield ciphertext as it comes; at the end, fail if encryption did not finish."""
    while block := source.read(BLOCK):
        yield block
    encryptor.join(timeout=60)
    if encryptor.is_alive() or encryptor.error is not None:
        raise PermanentProblem(f"PGP encryption failed: {encryptor.error or 'gpg hung'}")


@contextmanager
def encrypted_blocks(stored: StoredFile, armored_keys: list[str], *,
                     sign: bool = False) -> Iterator[Iterator[bytes]]:
    """Yield an iterator over the file's ciphertext for these public keys (signed if asked)."""
    if sign:
        keyring, signer = _signing_keyring()
        with _encrypting(stored, keyring, armored_keys, signer) as blocks:
            yield blocks
        return
    home = Path(tempfile.mkdtemp(prefix="psgpg-"))  # short: gpg-agent's socket path is limited
    throwaway: pgp.Keyring | None = None
    try:
        throwaway = pgp.Keyring(home)
        with _encrypting(stored, throwaway, armored_keys, None) as blocks:
            yield blocks
    finally:
        _discard(throwaway, home)


def _signing_keyring() -> tuple[pgp.Keyring, str]:
    """Return the platform's keyring and its signing key, or refuse: nothing can sign."""
    if not settings.PGP_PASSPHRASE:
        raise PermanentProblem("the route signs with the platform's key, but no platform key "
                               "is configured (MFT_PGP_PASSPHRASE)")
    keyring = platform_keyring()
    try:
        return keyring, keyring.signing_key()
    except pgp.PgpError as exc:
        raise PermanentProblem(f"the route signs with the platform's key: {exc}") from None


@contextmanager
def _encrypting(stored: StoredFile, keyring: pgp.Keyring, armored_keys: list[str],
                signer: str | None) -> Iterator[Iterator[bytes]]:
    """Run the encryptor thread in a keyring holding the partner's keys; yield its output."""
    try:
        recipients = [keyring.import_public_key(key).fingerprint for key in armored_keys]
    except pgp.PgpError as exc:
        raise PermanentProblem(f"the partner's PGP key cannot be used: {exc}") from None
    read_fd, write_fd = os.pipe()
    encryptor = _Encryptor(stored, keyring, recipients, write_fd, signer)
    source: BinaryIO = os.fdopen(read_fd, "rb", buffering=0)
    try:
        encryptor.start()
        yield _blocks(source, encryptor)
    finally:
        encryptor.stop.set()
        source.close()  # an encryptor still writing gets a broken pipe and stops
        encryptor.join(timeout=60)


def _discard(keyring: pgp.Keyring | None, home: Path) -> None:
    if keyring is not None:
        keyring.stop_agent()
    shutil.rmtree(home, ignore_errors=True)
