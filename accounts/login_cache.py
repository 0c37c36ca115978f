"""A short-lived cache of verified passwords per process, and a cap on concurrent hash checks.

FTPS clients reconnect often (a connection per transfer, parallel connections), and each
login would pay a full Argon2 check: about 130 ms and 100 MiB on our machines. As SFTPGo
does, a process remembers for `MFT_LOGIN_CACHE_SECONDS` that a username and password matched
a given password hash. Nothing stored could verify or reveal the password elsewhere: the key
is an HMAC-SHA256 of username and password under a random key that exists only in this
process's memory (replaced after a fork), and an entry holds the user's id and password hash
string at the time, so a password change invalidates it. Only the hash check is skipped:
bans, disabled accounts, expiry, protocols and addresses are checked by `accounts.services`
on every login.

Uncached checks run at most `MFT_LOGIN_HASH_CONCURRENCY` at a time per process, so a burst of
logins queues for the hasher instead of multiplying its memory.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings

from accounts.models import User
from mft.errors import TemporarilyUnavailable

MAX_ENTRIES = 10_000
# A hash check that cannot start within this long means the process is swamped; the login
# fails as a temporary error rather than waiting forever.
HASH_WAIT_SECONDS = 60.0


@dataclass(frozen=True)
class Entry:
    """What the cache knows about one verified username and password."""

    user_id: int
    password_hash: str
    expires: float


class CredentialCache:
    """Verified credentials by keyed digest, bounded in size and age, safe across threads."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._key = secrets.token_bytes(32)
        self._entries: OrderedDict[bytes, Entry] = OrderedDict()

    def reset(self) -> None:
        """Forget every entry and draw a new key (after a fork, and in tests)."""
        with self._lock:
            self._key = secrets.token_bytes(32)
            self._entries.clear()

    def _digest(self, username: str, password: str) -> bytes:
        """Return the entry key: HMAC-SHA256 of the pair under this process's secret key."""
        message = f"{len(username)}:{username}:{password}".encode()
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def lookup(self, username: str, password: str) -> Entry | None:
        """Return the live entry for a username and password, if any."""
        digest = self._digest(username, password)
        with self._lock:
            entry = self._entries.get(digest)
            if entry is not None and entry.expires <= time.monotonic():
                del self._entries[digest]
                return None
            return entry

    def store(self, username: str, password: str, user: User, ttl: float) -> None:
        """Remember that the pair verified against the user's current password hash."""
        digest = self._digest(username, password)
        entry = Entry(user.pk, user.password, time.monotonic() + ttl)
        with self._lock:
            self._entries[digest] = entry
            self._entries.move_to_end(digest)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def forget(self, username: str, password: str) -> None:
        """Drop the entry for a pair (its user changed or went away)."""
        with self._lock:
            self._entries.pop(self._digest(username, password), None)

    def __len__(self) -> int:
        return len(self._entries)


class HashSlots:
    """A semaphore sized by MFT_LOGIN_HASH_CONCURRENCY, rebuilt when the setting changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._size = 0
        self._semaphore = threading.BoundedSemaphore(1)

    def reset(self) -> None:
        """Start with a fresh semaphore (a forked child must not inherit held slots)."""
        with self._lock:
            self._size = 0

    def _current(self) -> threading.BoundedSemaphore:
        with self._lock:
            if self._size != settings.LOGIN_HASH_CONCURRENCY:
                self._size = settings.LOGIN_HASH_CONCURRENCY
                self._semaphore = threading.BoundedSemaphore(self._size)
            return self._semaphore

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold one slot while a hash check runs."""
        semaphore = self._current()
        if not semaphore.acquire(timeout=HASH_WAIT_SECONDS):
            raise TemporarilyUnavailable("password checks are saturated; try again later")
        try:
            yield
        finally:
            semaphore.release()


CACHE = CredentialCache()
SLOTS = HashSlots()


def _after_fork() -> None:
    CACHE.reset()
    SLOTS.reset()


os.register_at_fork(after_in_child=_after_fork)


def cached_user(username: str, password: str) -> User | None:
    """Return the user when this pair verified lately and the password hash is unchanged."""
    if settings.LOGIN_CACHE_SECONDS <= 0:
        return None
    entry = CACHE.lookup(username, password)
    if entry is None:
        return None
    # The lookup ModelBackend makes, so a hit costs one query like a miss; with the partner
    # joined, which the login policy reads next (accounts.services.check_policy).
    try:
        user = User._default_manager.select_related("partner").get(
            **{User.USERNAME_FIELD: username})
    except User.DoesNotExist:
        user = None
    if (user is None or user.pk != entry.user_id
            or not hmac.compare_digest(user.password, entry.password_hash)):
        CACHE.forget(username, password)
        return None
    return user


def remember(username: str, password: str, user: User) -> None:
    """Cache a pair that just verified (nothing when the cache is off)."""
    if settings.LOGIN_CACHE_SECONDS > 0:
        CACHE.store(username, password, user, settings.LOGIN_CACHE_SECONDS)
