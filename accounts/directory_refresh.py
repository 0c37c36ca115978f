"""Re-read directory users between logins, so an entry disabled in the directory stops working.

A directory user's row is brought up to date at each login (a bind to the directory). Between
logins an API token or a dashboard session would keep the state of the last one. Before a
token or a session is honoured, the user's entry is read again with the service account when
this process last read it more than `MFT_LDAP_RECHECK_SECONDS` ago (0: on every request), so a
person disabled or removed in the directory is refused within that time.

When the directory cannot be asked, a token is refused as a temporary failure (as a login
would be); a signed-in session keeps its last known state until the next reading is due, so a
directory outage does not sign every operator out. python-ldap is imported only when a
directory is configured.
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings

from accounts.models import User
from mft.errors import LoginUnavailable

log = logging.getLogger(__name__)

DEFAULT_RECHECK_SECONDS = 900
_read_at: dict[int, float] = {}
_lock = threading.Lock()


def configured() -> bool:
    """Return True when a directory is configured for this deployment."""
    return bool(getattr(settings, "AUTH_LDAP_SERVER_URI", ""))


def mark_read(user_id: int) -> None:
    """Record that the directory described this user just now (a login or a re-reading)."""
    with _lock:
        _read_at[user_id] = time.monotonic()


def _due(user_id: int) -> bool:
    """Return True when this process has not read the user's entry within the interval."""
    interval = getattr(settings, "AUTH_LDAP_RECHECK_SECONDS", DEFAULT_RECHECK_SECONDS)
    with _lock:
        last = _read_at.get(user_id)
    return last is None or time.monotonic() - last >= interval


def current(user: User, *, keep_on_outage: bool = False) -> User:
    """Return a directory user as the directory describes them now (re-read when due);
    raise LoginUnavailable when it cannot be asked, unless `keep_on_outage`."""
    if user.source != User.Source.DIRECTORY or not configured() or not _due(user.pk):
        return user
    from accounts import directory

    try:
        fresh = directory.reread(user)
    except LoginUnavailable:
        if not keep_on_outage:
            raise
        log.warning("directory unavailable; %s keeps its last known state", user.username)
        fresh = user
    mark_read(user.pk)
    return fresh
