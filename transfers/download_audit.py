"""Record the end of a download, complete or not, the same way for every edge."""

from __future__ import annotations

from audit import events
from audit.events import Origin
from transfers.files import Download


def record_download(download: Download, *, origin: Origin, path: str, sent: int,
                    completed: bool, offset: int = 0, seconds: float | None = None) -> None:
    """Write the download's audit event with its bytes, SHA-256 and outcome."""
    stored = download.stored
    details: dict[str, object] = {"completed": completed, "bytes": sent, "offset": offset,
                                  "sha256": stored.sha256}
    if seconds is not None:
        details["seconds"] = round(seconds, 3)
    events.file_event(origin=origin, action="download", stored_file=stored, path=path,
                      outcome=events.SUCCESS if completed else events.FAILURE,
                      details=details)
