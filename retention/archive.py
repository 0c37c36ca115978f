"""The archive folder: retired files keep their at-rest encryption, with a JSON sidecar."""

from __future__ import annotations

import json
import os
import posixpath
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings

from transfers.models import StoredFile

SIDECAR_SUFFIX = ".json"


def destination(stored: StoredFile, now: datetime) -> Path:
    """Return where a stored file goes: archive/partner-<id>/<date>/<file id>-<name>."""
    name = posixpath.basename(stored.path) or "file"
    return (Path(settings.ARCHIVE_DIR) / f"partner-{stored.partner_id}" / f"{now:%Y-%m-%d}"
            / f"{stored.pk}-{name}")


def sidecar(stored: StoredFile, now: datetime) -> dict[str, Any]:
    """Return what the archive keeps about a file next to its bytes."""
    return {"id": stored.pk, "owner": stored.owner_username, "partner_id": stored.partner_id,
            "partner": stored.partner.name if stored.partner is not None else None,
            "path": stored.path, "size": stored.size, "sha256": stored.sha256,
            "state": stored.state, "protocol": stored.protocol,
            "encrypted_at_rest": stored.encrypted_at_rest,
            "received_at": stored.received_at.isoformat() if stored.received_at else None,
            "ready_at": stored.ready_at.isoformat() if stored.ready_at else None,
            "archived_at": now.isoformat()}


def move(stored: StoredFile, now: datetime) -> Path:
    """Move a stored file's bytes (as stored: encrypted at rest) into the archive; return
    the archived path. The sidecar is written first, so no archived file lacks one."""
    target = destination(stored, now)
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    meta = target.with_name(target.name + SIDECAR_SUFFIX)
    fd = os.open(meta, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(sidecar(stored, now), handle, indent=2)
    # Homes may live on another filesystem than the data dir: move copies when it must.
    shutil.move(stored.storage_path, target)
    return target
