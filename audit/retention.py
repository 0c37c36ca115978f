"""Retention: archive old audit events to a signed file, then (and only then) delete them.

The one sanctioned way events leave the table. The archive holds the events as JSON lines
with their hashes; an Ed25519 signature over its SHA-256 is kept beside it and in the
database with the chain's head at the cut, so the remaining chain still verifies from there.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit import chain, siem
from audit.models import ArchiveRecord, AuditEvent, ChainHead

_KEY_NAME = "audit-signing.key"


def signing_key() -> Ed25519PrivateKey:
    """Return the install's archive signing key, generating it once into the data dir."""
    path = Path(settings.DATA_DIR) / _KEY_NAME
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        raw = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
        (path.with_suffix(".pub")).write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(loaded, Ed25519PrivateKey)
    return loaded


@dataclass(frozen=True)
class ArchiveResult:
    record: ArchiveRecord | None
    count: int


def archive_before(cutoff: datetime, directory: Path) -> ArchiveResult:
    """Archive and delete every event older than the cutoff; return the record."""
    directory.mkdir(parents=True, exist_ok=True)
    with transaction.atomic():
        chain._lock_head()
        old = AuditEvent.objects.filter(created_at__lt=cutoff).order_by("id")
        last = old.last()
        if last is None:
            return ArchiveResult(None, 0)
        path = directory / f"audit-through-{last.pk}-{timezone.now():%Y%m%dT%H%M%SZ}.jsonl"
        digest, count = _write(path, old.iterator(chunk_size=5000))
        signature = base64.b64encode(signing_key().sign(bytes.fromhex(digest))).decode()
        path.with_suffix(".jsonl.sig").write_text(signature + "\n")
        record = ArchiveRecord.objects.create(through_id=last.pk, last_hash=last.hash,
                                              count=count, path=str(path), sha256=digest,
                                              signature=signature)
        _delete_through(last.pk)
        head = ChainHead.objects.get(pk=1)
        ChainHead.objects.filter(pk=1).update(count=head.count - count)
    return ArchiveResult(record, count)


def _write(path: Path, events: object) -> tuple[str, int]:
    """Write events as JSON lines (fsynced); return the file's SHA-256 and the count."""
    hasher, count = hashlib.sha256(), 0
    with open(path, "wb") as handle:
        for event in events:  # type: ignore[attr-defined]
            line = (json.dumps(siem.event_record(event), separators=(",", ":")) + "\n").encode()
            handle.write(line)
            hasher.update(line)
            count += 1
        handle.flush()
        os.fsync(handle.fileno())
    return hasher.hexdigest(), count


def _delete_through(last_id: int) -> None:
    """Delete archived rows past the append-only guards (this is their one sanctioned exit)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL portside.audit_archive = 'on'")
        cursor.execute("DELETE FROM audit_auditevent WHERE id <= %s", [last_id])


def verify_archive(path: Path) -> bool:
    """Return True when an archive file matches its signature and its internal chain."""
    signature = base64.b64decode(path.with_suffix(".jsonl.sig").read_text().strip())
    data = path.read_bytes()
    public: Ed25519PublicKey = signing_key().public_key()
    try:
        public.verify(signature, hashlib.sha256(data).digest())
    except InvalidSignature:
        return False
    previous = None
    for line in data.decode().splitlines():
        row = json.loads(line)
        if previous is not None and row["prev_hash"] != previous:
            return False
        previous = row["hash"]
    return True


def cutoff_for(days: int) -> datetime:
    """Return the time before which events are archived."""
    return timezone.now() - timedelta(days=days)
