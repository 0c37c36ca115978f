"""What one try at sending a notification came to."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SendResult:
    """Sent, or not, and whether trying again could help."""

    ok: bool
    error: str = ""
    status: int | None = None
    permanent: bool = False
