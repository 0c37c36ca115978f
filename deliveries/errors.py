"""Why a delivery attempt stopped, beyond what the FTPS client reports."""

from __future__ import annotations


class DeliveryProblem(Exception):
    """An attempt failed; `permanent` says whether trying again can help."""

    permanent = False


class VerificationFailed(DeliveryProblem):
    """The remote copy does not match what was sent (size or SHA-256): send it again."""


class PermanentProblem(DeliveryProblem):
    """Something retrying cannot fix: a configuration or a local file is wrong."""

    permanent = True


class Cancelled(DeliveryProblem):
    """The delivery no longer makes sense (its file was deleted or replaced, or changed)."""

    permanent = True


class LeaseLost(Exception):
    """Another worker took the delivery over (this one was presumed dead): stop at once."""
