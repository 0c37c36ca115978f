"""The embedded broker: kombu's filesystem transport, with messages that appear whole.

kombu's filesystem channel creates a message file under its final name, then locks and
writes it; a reader (which never takes the lock) that lists the folder in between moves
the file away and reads it empty or cut short, and the worker dies on the JSON error.
Here a message is written under a name no reader picks (it does not end in
`.<queue>.msg`) and renamed into place when complete; a rename within one folder is
atomic. Everything else is kombu's. For `filesystem://`, mft.settings names this transport
in CELERY_BROKER_TRANSPORT, which kombu prefers to the URL's scheme.
"""

from __future__ import annotations

import os
import uuid
from queue import Empty
from time import monotonic, sleep
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

_PARTIAL = ".part"


class Channel(filesystem.Channel):
    """A filesystem channel whose messages are renamed into the queue folder when whole."""

    # kombu's own base classes disagree on this signature; this is the filesystem one.
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        write_whole(final, str_to_bytes(dumps(payload)))


def write_whole(final: str, data: bytes) -> None:
    """Write data under a name readers skip, then rename it to `final`."""
    partial = final + _PARTIAL
    try:
        with open(partial, "wb", buffering=0) as handle:
            handle.write(data)
        os.replace(partial, final)
    except OSError as exc:
        try:
            os.unlink(partial)
        except OSError:
            pass
        raise ChannelError(f"Cannot add file {final!r} to directory") from exc


# How often a worker whose prefetch slots are all taken looks for a free one: that costs
# no I/O, unlike listing an empty queue folder (every polling_interval).
SLOT_WAIT = 0.005


class Transport(filesystem.Transport):
    """kombu's filesystem transport with the channel above, and a short wait for a slot."""

    Channel = Channel

    # The virtual transport's signature (kombu's stubs give the base class's).
    def drain_events(  # type: ignore[override]
            self, connection: Any, timeout: float | None = None) -> None:
        """Deliver one message; wait `SLOT_WAIT` between looks while every slot is taken.

        kombu's loop sleeps the whole polling interval whenever nothing was delivered, also
        when a consumer had a message waiting but no free prefetch slot: a worker that
        finished a task then idled up to 0.1 s before taking the next one (about ten tasks
        a second per worker process, the embedded pipeline's limit in docs/PERFORMANCE.md).
        """
        started, cycle = monotonic(), self.cycle
        assert cycle is not None, "the transport has no channel yet"
        while True:
            try:
                cycle.get(self._deliver, timeout=timeout)
                return
            except Empty:
                if timeout is not None and monotonic() - started >= timeout:
                    raise TimeoutError() from None
                sleep(self.pause())

    def pause(self) -> float:
        """Return how long to wait before looking again for a message to deliver."""
        slots_taken = any(channel._consumers and not channel.qos.can_consume()
                          for channel in self.channels or ())
        return SLOT_WAIT if slots_taken else float(self.polling_interval or SLOT_WAIT)
