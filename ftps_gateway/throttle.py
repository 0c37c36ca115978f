"""Per-user bandwidth limits on data connections, without blocking the event loop.

Like pyftpdlib's ThrottledDTPHandler, a channel that has moved more than its user's rate
allows is taken off the loop (`del_channel`) and put back by a loop timer; nothing ever
sleeps. Unlike it, the budget is a token bucket shared by all of a user's data
connections, so two downloads of one user share one limit, and a channel that wakes early
only deepens the debt it must wait off. A user without limits gets no `UserBandwidth` at
all: the data path then costs one `is None` test per call.

The gateway's worker processes share the buckets (`share_across_processes`, called by the
parent before it forks): a user whose sessions land on different workers still gets one
limit. Hand-written because the buckets live in a small table of shared memory and a
semaphore the forked workers inherit, which no library offers for pyftpdlib; a worker
killed while holding the semaphore costs the others only a short wait, after which they
fall back to their own bucket.
"""

from __future__ import annotations

import logging
import mmap
import multiprocessing
import struct
import time
import weakref
from typing import Any

log = logging.getLogger(__name__)

BURST_SECONDS = 0.25  # how far ahead of the rate a user may be (the bucket's depth)
MIN_PIECE = 16 * 1024  # one TLS record
MAX_PIECE = 256 * 1024  # the data channel's usual piece size


class SharedBuckets:
    """Token-bucket state in shared memory: one slot per (user, direction), found by key."""

    SLOTS = 4096
    LOCK_WAIT = 0.05  # seconds; past that, the caller uses its own process's bucket
    _record = struct.Struct("qqdd")  # key (0: free), rate, tokens, stamp

    def __init__(self) -> None:
        # An anonymous mmap is MAP_SHARED: forked workers see one table.
        self._table = mmap.mmap(-1, self.SLOTS * self._record.size)
        self._lock = multiprocessing.get_context("fork").Lock()

    def take(self, key: int, rate: int, capacity: float, count: int) -> float | None:
        """Spend count bytes from key's bucket; return the pause, or None when unavailable."""
        if not self._lock.acquire(timeout=self.LOCK_WAIT):
            log.warning("shared bandwidth table busy; using this process's budget")
            return None
        try:
            offset = self._slot(key)
            if offset is None:
                return None
            found, old_rate, tokens, stamp = self._record.unpack_from(self._table, offset)
            now = time.monotonic()  # CLOCK_MONOTONIC: the same clock in every process
            if found != key or old_rate != rate:
                tokens, stamp = capacity, now
            tokens = min(capacity, tokens + (now - stamp) * rate) - count
            self._record.pack_into(self._table, offset, key, rate, tokens, now)
        finally:
            self._lock.release()
        return 0.0 if tokens >= 0 else -tokens / rate

    def _slot(self, key: int) -> int | None:
        """Return the offset of key's slot, or of a free one (linear probing); None if full."""
        size = self._record.size
        for probe in range(self.SLOTS):
            offset = ((key + probe) % self.SLOTS) * size
            found = struct.unpack_from("q", self._table, offset)[0]
            if found in (key, 0):
                return offset
        return None


_shared: SharedBuckets | None = None


def share_across_processes() -> None:
    """Make buckets shared by the processes this one forks from now on (call before fork)."""
    global _shared
    _shared = SharedBuckets()


class TokenBucket:
    """A byte budget that refills at `rate` bytes/s up to BURST_SECONDS of it."""

    def __init__(self, rate: int, key: int = 0) -> None:
        self.rate = rate
        self.key = key  # its slot in the shared table; 0: this process only
        self.capacity = max(rate * BURST_SECONDS, MIN_PIECE)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def take(self, count: int) -> float:
        """Spend count bytes; return how long to pause (0 while within the budget)."""
        if _shared is not None and self.key:
            pause = _shared.take(self.key, self.rate, self.capacity, count)
            if pause is not None:
                return pause
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= count
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    @property
    def piece(self) -> int:
        """Return the largest piece worth moving at once: about a tenth of a second."""
        return max(MIN_PIECE, min(MAX_PIECE, self.rate // 8))


class UserBandwidth:
    """The upload and download budgets of one user (shared by the gateway's processes)."""

    def __init__(self, upload: int, download: int, user_id: int = 0) -> None:
        self.key = (upload, download)
        self.upload = TokenBucket(upload, key=2 * user_id + 1) if upload else None
        self.download = TokenBucket(download, key=2 * user_id + 2) if download else None

    def received(self, channel: Any, count: int) -> bool:
        """Account bytes read from a channel; return True when it was paused."""
        return self.upload is not None and _pause(channel, self.upload.take(count))

    def sent(self, channel: Any, count: int) -> bool:
        """Account bytes written to a channel; return True when it was paused."""
        return self.download is not None and _pause(channel, self.download.take(count))

    def size_buffers(self, channel: Any) -> None:
        """Shrink a channel's pieces so a limited transfer flows evenly, not in bursts."""
        if self.upload is not None:
            channel.ac_in_buffer_size = min(channel.ac_in_buffer_size, self.upload.piece)
        if self.download is not None:
            channel.ac_out_buffer_size = min(channel.ac_out_buffer_size, self.download.piece)


# One budget object per user per process, alive while any of the user's channels holds it.
_budgets: weakref.WeakValueDictionary[int, UserBandwidth] = weakref.WeakValueDictionary()


def for_user(user: Any) -> UserBandwidth | None:
    """Return the user's shared budget, or None when the user has no limit."""
    if user is None:
        return None
    upload = user.upload_bytes_per_second or 0
    download = user.download_bytes_per_second or 0
    if not upload and not download:
        return None
    budget = _budgets.get(user.pk)
    if budget is None or budget.key != (upload, download):
        budget = UserBandwidth(upload, download, user_id=user.pk)
        _budgets[user.pk] = budget
    return budget


def _pause(channel: Any, seconds: float) -> bool:
    """Take a channel off the loop for `seconds`; return False when there is no need."""
    if seconds <= 0 or channel._closed:
        return False
    if getattr(channel, "_bandwidth_timer", None) is not None:
        return True  # already pausing; the debt is in the bucket
    events = channel.ioloop.READ if channel.receive else channel.ioloop.WRITE

    def leave() -> None:
        # Only once the event that charged the bucket has returned: on its way out of an
        # event pyftpdlib's TLS mixin re-registers the channel (modify_ioloop_events adds
        # a missing fd back), which would undo a pause taken inside it.
        channel.del_channel()
        channel._bandwidth_timer = channel.call_later(seconds, resume)

    def resume() -> None:
        channel._bandwidth_timer = None
        held = getattr(channel, "_held", None) is not None  # waiting for a quota claim
        if not channel._closed and not held and channel._fileno not in channel.ioloop.socket_map:
            channel.add_channel(events=events)
            if channel.receive:
                # TLS may hold records, or the stream's end (read with the last block),
                # that the socket will never signal again: read them now.
                channel.call_later(0, channel.handle_read_event)

    channel._bandwidth_timer = channel.call_later(0, leave)
    return True
