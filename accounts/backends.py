"""The authentication backend every edge reaches through django.contrib.auth.authenticate()."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest

from accounts import directory_refresh, login_cache
from accounts.models import User


class PortsideBackend(ModelBackend):
    """Check passwords with Django's hashers (Argon2); login policy lives in accounts.services.

    ModelBackend already runs the hasher for unknown usernames, so an unknown user costs
    the same time as a wrong password, and it refuses disabled users. A pair that verified
    lately skips the hasher (`accounts.login_cache`); every other check waits for a slot so
    bursts of logins keep memory bounded.
    """

    def authenticate(self, request: HttpRequest | None, username: str | None = None,
                     password: str | None = None, **kwargs: Any) -> User | None:
        if username is None or password is None:
            return super().authenticate(request, username, password, **kwargs)
        cached = login_cache.cached_user(username, password)
        if cached is not None:
            return cached if self.user_can_authenticate(cached) else None
        with login_cache.SLOTS.held():
            user = super().authenticate(request, username, password, **kwargs)
        if user is not None:
            login_cache.remember(username, password, user)
        return user

    def user_can_authenticate(self, user: Any) -> bool:
        """Refuse inactive users and directory users: only the directory checks their password."""
        local = getattr(user, "source", User.Source.LOCAL) != User.Source.DIRECTORY
        return local and super().user_can_authenticate(user)

    def get_user(self, user_id: int) -> User | None:
        """Return a signed-in session's user while active, directory users included."""
        user = User._default_manager.filter(pk=user_id).first()
        if user is not None:
            # A session outlives a directory outage; a token does not (accounts.tokens).
            user = directory_refresh.current(user, keep_on_outage=True)
        return user if user is not None and user.is_active else None
