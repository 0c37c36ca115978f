"""The authentication backend every edge reaches through django.contrib.auth.authenticate()."""

from __future__ import annotations

from django.contrib.auth.backends import ModelBackend


class PortsideBackend(ModelBackend):
    """Check passwords with Django's hashers (Argon2); login policy lives in accounts.services.

    ModelBackend already runs the hasher for unknown usernames, so an unknown user costs
    the same time as a wrong password, and it refuses disabled users.
    """
