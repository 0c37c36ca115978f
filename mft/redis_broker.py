"""The Redis broker: kombu's Redis transport, with one command client per channel.

kombu's Redis channel builds a new `redis.Redis` object for every synchronous command it
sends: each message a worker takes (recorded as unacked, then acked) and each one it
publishes. The object only wraps the channel's connection pool, but building it costs
about 0.16 ms of Python on our 2-core machines, and a py-spy profile of the outbound
worker under the pipeline benchmark put 8 % of the time it held the GIL there
(docs/PERFORMANCE.md). A `redis.Redis` object holds no connection of its own and may be
shared between threads (redis-py takes a connection from the pool for each command or
pipeline), so the channel keeps one per pool and builds a new one only when kombu
replaced its pool (after a fork or a lost connection). Everything else is kombu's.

For `redis://` URLs mft.settings names this transport in CELERY_BROKER_TRANSPORT, which
kombu prefers to the URL's scheme; `rediss://` keeps kombu's own transport, whose TLS
defaults depend on that scheme.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis


class Channel(redis.Channel):
    """A Redis channel that reuses its synchronous client while its pool is the same."""

    _command_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        build = super()._create_client  # type: ignore[misc]  # (not in kombu's stubs)
        if asynchronous:
            return build(asynchronous=True)
        client = self._command_client
        if client is None or client.connection_pool is not self.pool:
            client = self._command_client = build()
        return client


class Transport(redis.Transport):
    """kombu's Redis transport with the channel above."""

    Channel = Channel
