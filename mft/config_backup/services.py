"""Export the configuration as one signed document; import one in a single transaction.

An import into an empty database recreates every row. Into a database holding any row
of the carried models it is refused unless merging: then rows are matched by natural key
and updated, rows the document lacks are left alone. Either way it is all or nothing.
Audit events are not carried (they have their own archive, `audit.retention`); the
import and the export are themselves audited.
"""

from __future__ import annotations

import socket
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit import events
from audit.events import Origin
from mft.config_backup import document, sections


class ImportRefused(Exception):
    """The document was not imported, and nothing of it was written."""


def export_config(*, origin: Origin = events.SYSTEM) -> dict[str, Any]:
    """Return the signed document of the whole configuration, and audit the export."""
    carried = sections.all_sections()
    body: dict[str, Any] = {
        "exported_at": timezone.now().isoformat(),
        "source": {"public_url": settings.PUBLIC_URL, "host": socket.gethostname()},
        "sections": {section.name: sections.export_section(section) for section in carried},
    }
    counts = {name: len(rows) for name, rows in body["sections"].items()}
    events.config_exported(origin=origin, counts=counts)
    return document.sign(body)


def is_empty() -> bool:
    """Return True when no carried model has a row (a fresh database)."""
    return not any(section.model._default_manager.exists()
                   for section in sections.all_sections())


def import_config(doc: Any, *, merge: bool = False, trusted: Ed25519PublicKey | None = None,
                  origin: Origin = events.SYSTEM) -> dict[str, int]:
    """Import a verified document; return how many rows each section created or updated."""
    try:
        return _import(doc, merge=merge, trusted=trusted, origin=origin)
    except ImportRefused as exc:
        events.config_import_refused(origin=origin, reason=str(exc))
        raise


def _import(doc: Any, *, merge: bool, trusted: Ed25519PublicKey | None,
            origin: Origin) -> dict[str, int]:
    """Verify, then write every section in one transaction."""
    try:
        body = document.verified_body(doc, trusted)
    except document.DocumentRefused as exc:
        raise ImportRefused(str(exc)) from None
    rows = body.get("sections")
    if not isinstance(rows, dict):
        raise ImportRefused("the document has no sections")
    carried = sections.all_sections()
    unknown = set(rows) - {section.name for section in carried}
    if unknown:
        raise ImportRefused(f"unknown sections {sorted(unknown)}: exported by a newer "
                            "Portside?")
    with transaction.atomic():
        if not merge and not is_empty():
            raise ImportRefused("the database already holds configuration: import into an "
                                "empty database, or pass --merge to update by name")
        try:
            counts = _import_sections(carried, rows, merge=merge)
        except (sections.SectionError, IntegrityError, ValidationError) as exc:
            raise ImportRefused(f"nothing imported: {exc}") from None
        events.config_imported(origin=origin, counts=counts, merge=merge,
                               exported_at=str(body.get("exported_at", "")))
    return counts


def _import_sections(carried: list[sections.Section], rows: dict[str, Any], *,
                     merge: bool) -> dict[str, int]:
    """Import each section's rows in order; return the count per section."""
    counts: dict[str, int] = {}
    for section in carried:
        section_rows = rows.get(section.name, [])
        if not isinstance(section_rows, list):
            raise sections.SectionError(f"{section.name}: not a list of rows")
        for row in section_rows:
            sections.import_row(section, row, merge=merge)
        counts[section.name] = len(section_rows)
    return counts
