"""The Redis broker (mft.redis_broker): kombu's Redis transport, whose channel sends its
commands through one client instead of building one per command; after a fork or a lost
connection (a new pool) it builds a new one. Messages go, come and are acked as before."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import redis
from django.conf import settings
from kombu import Connection
from kombu.transport import resolve_transport

from mft import env, redis_broker


def test_redis_urls_use_it_and_rediss_keeps_kombus_own():
    assert resolve_transport(env.broker_transport("redis://127.0.0.1:6379/0")) is (
        redis_broker.Transport)
    assert env.broker_transport("rediss://127.0.0.1:6380/0") is None
    assert env.broker_transport("filesystem://") == "mft.embedded_broker:Transport"


@pytest.fixture
def connection():
    with Connection(settings.CELERY_BROKER_URL,
                    transport=env.broker_transport(settings.CELERY_BROKER_URL),
                    transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS) as conn:
        assert isinstance(conn.transport, redis_broker.Transport)
        yield conn


def _round_trip(conn: Connection, count: int) -> list[int]:
    """Publish count messages on a queue of our own, take and ack each; return them in
    the order taken, after checking none is left unacked."""
    queue = conn.SimpleQueue(f"test-redis-broker-{uuid.uuid4().hex}")
    try:
        for n in range(count):
            queue.put({"n": n})
        taken, tags = [], []
        for _ in range(count):
            message = queue.get(timeout=10)
            taken.append(message.payload["n"])
            tags.append(message.delivery_tag)
            message.ack()
        channel: Any = conn.default_channel
        assert not any(channel.client.hexists(channel.unacked_key, tag) for tag in tags)
        return taken
    finally:
        queue.queue.delete()
        queue.close()


@pytest.mark.redis
def test_messages_published_taken_and_acked_share_one_command_client(connection, monkeypatch):
    built: list[object] = []
    init = redis.Redis.__init__

    def counted(self, *args, **kwargs):
        built.append(kwargs.get("connection_pool"))
        init(self, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "__init__", counted)
    assert _round_trip(connection, 20) == list(range(20))
    # kombu's own channel builds one per put, per take (unacked) and per ack: 60 here.
    assert len(built) <= 3, len(built)


@pytest.mark.redis
def test_a_channel_whose_pool_was_replaced_uses_a_new_client(connection):
    channel = connection.default_channel
    first = channel._create_client()
    assert channel._create_client() is first
    channel._disconnect_pools()  # what kombu does after a fork or a lost connection
    second = channel._create_client()
    assert second is not first and second.connection_pool is channel.pool
    assert _round_trip(connection, 3) == [0, 1, 2]
