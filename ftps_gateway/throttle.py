"""Per-user bandwidth limits on data connections, without blocking the event loop.

Like pyftpdlib's ThrottledDTPHandler, a channel that has moved more than its user's rate
allows is taken off the loop (`del_channel`) and put back by a loop timer; nothing ever
sleeps. Unlike it, the budget is a token bucket shared by all of a user's data
connections in this process, so two downloads of one user share one limit, and a channel
that wakes early only deepens the debt it must wait off. A user without limits gets no
`UserBandwidth` at all: the data path then costs one `is None` test per call.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

BURST_SECONDS = 0.25  # how far ahead of the rate a user may be (the bucket's depth)
MIN_PIECE = 16 * 1024  # one TLS record
MAX_PIECE = 256 * 1024  # the data channel's usual piece size


class TokenBucket:
    """A byte budget that refills at `rate` bytes/s up to BURST_SECONDS of it."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.capacity = max(rate * BURST_SECONDS, MIN_PIECE)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def take(self, count: int) -> float:
        """Spend count bytes; return how long to pause (0 while within the budget)."""
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
    """The upload and download budgets of one user in this process."""

    def __init__(self, upload: int, download: int) -> None:
        self.key = (upload, download)
        self.upload = TokenBucket(upload) if upload else None
        self.download = TokenBucket(download) if download else None

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


# One budget per user per process, alive while any of the user's channels holds it.
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
        budget = UserBandwidth(upload, download)
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

    channel._bandwidth_timer = channel.call_later(0, leave)
    return True
