"""Protocol-neutral errors raised by services and mapped once per edge.

The REST API maps them to HTTP problems (mft.api_errors), the gateway to FTP replies.
"""

from __future__ import annotations


class PortsideError(Exception):
    """Base of every error a service raises on purpose; the message is safe to show."""

    code = "error"


class NotFound(PortsideError):
    code = "not_found"


class PermissionDenied(PortsideError):
    code = "permission_denied"


class InvalidInput(PortsideError):
    code = "invalid"


class Conflict(PortsideError):
    code = "conflict"


class LoginRefused(PortsideError):
    """A login was refused; `reason` is for the audit log, the message for the client."""

    code = "login_refused"

    def __init__(self, reason: str, message: str = "Login incorrect.") -> None:
        super().__init__(message)
        self.reason = reason


class TemporarilyUnavailable(PortsideError):
    code = "unavailable"


class LoginUnavailable(TemporarilyUnavailable):
    """A login could not be checked (the directory is down); never a refusal, never a ban."""

    def __init__(self, reason: str,
                 message: str = "Login temporarily unavailable; try again later.") -> None:
        super().__init__(message)
        self.reason = reason


class QuotaExceeded(PortsideError):
    code = "quota_exceeded"


class TransferRejected(PortsideError):
    code = "transfer_rejected"


class FileNotReady(PortsideError):
    """The file exists but may not be read yet (scanning, held, quarantined)."""

    code = "not_ready"
