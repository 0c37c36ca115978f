"""Map protocol-neutral service errors to FTP replies, once for the whole gateway."""

from __future__ import annotations

import logging

from mft import errors

log = logging.getLogger(__name__)

_CODES: list[tuple[type[errors.PortsideError], str]] = [
    (errors.QuotaExceeded, "552"),
    (errors.TransferRejected, "553"),
    (errors.InvalidInput, "553"),
    (errors.FileNotReady, "550"),
    (errors.NotFound, "550"),
    (errors.PermissionDenied, "550"),
    (errors.Conflict, "550"),
    (errors.LoginRefused, "530"),
    (errors.TemporarilyUnavailable, "421"),
]


def for_error(error: BaseException | None, default: str = "451 Internal error; try again.") -> str:
    """Return the FTP reply line for an error raised by a service."""
    if isinstance(error, errors.PortsideError):
        code = next((c for cls, c in _CODES if isinstance(error, cls)), "550")
        text = str(error).rstrip(".") or "Refused"
        return f"{code} {text[0].upper()}{text[1:]}."
    if isinstance(error, OSError):
        log.warning("file system error: %s", error)
        return "451 Local error in processing; try again."
    if error is not None:
        log.error("unexpected gateway error", exc_info=error)
    return default
