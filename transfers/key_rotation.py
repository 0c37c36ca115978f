"""Rotate the at-rest master key: re-wrap every file's data key, never touching its chunks.

Crash-safe and resumable: the new key is written to `master.key.next` first; files are
re-wrapped one by one (each re-wrap is itself crash-safe and idempotent); only then do the
key files change places (`master.key` → `master.key.old`, `.next` → `master.key`). Running
the command again after a crash finishes the job. Readers pick keys by the id in each
file's header, so the platform keeps working throughout.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from accounts.models import User
from transfers import atrest, signals, storage


@dataclass(frozen=True)
class RotationReport:
    rewrapped: int
    already_done: int
    new_key_id: str


def _encrypted_files() -> Iterator[Path]:
    """Yield every encrypted file under the homes, quarantine and the data dir."""
    roots = {Path(settings.HOMES_DIR), Path(settings.DATA_DIR) / storage.QUARANTINE_DIRNAME}
    roots.update(Path(home) for home in User.objects.exclude(home_dir="")
                 .values_list("home_dir", flat=True))
    seen: set[Path] = set()
    for root in sorted(roots):
        if not root.is_dir():
            continue
        for path in root.rglob("*"):
            real = path.resolve()
            if real in seen or path.is_symlink() or not path.is_file():
                continue
            seen.add(real)
            if atrest.is_encrypted(path):
                yield path


def _write_key_file(path: Path, key: bytes) -> None:
    """Write a key file (0600), fsynced."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(base64.b64encode(key).decode() + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def rotate() -> RotationReport:
    """Re-wrap every file to a new master key and make it current."""
    if settings.MASTER_KEY:
        raise ImproperlyConfigured(
            "MFT_MASTER_KEY is set in the environment: rotate by setting the new key in your "
            "secret store; this command rotates the key file in MFT_DATA_DIR")
    current_path = Path(settings.MASTER_KEY_PATH)
    next_path = current_path.with_name(current_path.name + ".next")
    old_path = current_path.with_name(current_path.name + ".old")
    storage.master_key()  # make sure a current key exists before anything moves
    if not next_path.exists():
        _write_key_file(next_path, os.urandom(atrest.KEY_SIZE))
    new = storage._key_from_text(next_path.read_text(), str(next_path))
    rewrapped = already = 0
    for path in _encrypted_files():
        ids = atrest.key_ids(path)
        if ids == [new.key_id]:
            already += 1
            continue
        old = storage.key_for(path)
        atrest.rewrap(path, old, new)
        rewrapped += 1
    # Never a moment without master.key: keep a hard link to the outgoing key as .old, then
    # atomically replace master.key with the new one.
    old_path.unlink(missing_ok=True)
    os.link(current_path, old_path)
    os.replace(next_path, current_path)
    storage.master_key.cache_clear()
    signals.master_key_rotated.send(sender=RotationReport, key_id=new.key_id)
    return RotationReport(rewrapped, already, new.key_id)
