"""What a pipeline step reports back: go on, stop the file, or wait and retry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class StepResult:
    NEXT: ClassVar[str] = "next"
    STOP: ClassVar[str] = "stop"
    RETRY: ClassVar[str] = "retry"

    kind: str
    outcome: str
    details: dict[str, Any] = field(default_factory=dict)
    auto_retry: bool = True
    # The file's new state, applied in the same transaction as the step's record and audit
    # event, so nobody sees the state before its story is written.
    state: str | None = None
    reason: str = ""
    fields: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def next(cls, outcome: str, *, state: str | None = None, reason: str = "",
             fields: dict[str, Any] | None = None, **details: Any) -> StepResult:
        """Return a result that moves the file to its next step."""
        return cls(cls.NEXT, outcome, details, state=state, reason=reason,
                   fields=fields or {})

    @classmethod
    def stop(cls, outcome: str, *, state: str, reason: str = "",
             fields: dict[str, Any] | None = None, **details: Any) -> StepResult:
        """Return a result that ends the file's pipeline (infected, rejected)."""
        return cls(cls.STOP, outcome, details, state=state, reason=reason, fields=fields or {})

    @classmethod
    def retry(cls, outcome: str, *, auto: bool = True, state: str | None = None,
              reason: str = "", **details: Any) -> StepResult:
        """Return a result that holds the file; auto=False waits for an admin."""
        return cls(cls.RETRY, outcome, details, auto_retry=auto, state=state, reason=reason)
