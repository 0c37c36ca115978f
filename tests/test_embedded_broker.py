"""The embedded broker never hands a reader a message that is still being written."""

from __future__ import annotations

import json
import queue as queue_module

import pytest
from kombu import Connection

from mft import embedded_broker


def _connection(tmp_path, transport):
    folder = tmp_path / "queue"
    folder.mkdir(exist_ok=True)
    return Connection("filesystem://", transport=transport, transport_options={
        "data_folder_in": str(folder), "data_folder_out": str(folder),
        "control_folder": str(tmp_path / "control"), "store_processed": False})


def test_a_message_being_written_is_invisible_to_readers(tmp_path, monkeypatch):
    with _connection(tmp_path, embedded_broker.Transport) as conn:
        channel = conn.default_channel
        seen_mid_write: list[object] = []
        real_replace = embedded_broker.os.replace

        def replace_after_a_reader_looked(src, dst):
            # The bytes are written, the rename not yet done: a reader must find nothing.
            try:
                seen_mid_write.append(channel._get("jobs"))
            except queue_module.Empty:
                seen_mid_write.append("empty")
            real_replace(src, dst)

        monkeypatch.setattr(embedded_broker.os, "replace", replace_after_a_reader_looked)
        channel._put("jobs", {"body": "x" * 10_000})
        assert seen_mid_write == ["empty"]
        assert channel._get("jobs") == {"body": "x" * 10_000}
        assert channel._size("jobs") == 0
        assert list((tmp_path / "queue").iterdir()) == []


def test_kombus_own_channel_hands_a_reader_a_file_it_is_still_writing(tmp_path, monkeypatch):
    """Why the transport exists: kombu's channel creates the file under its final name, so
    a reader in between fails on an empty message and the message is lost."""
    from kombu.transport import filesystem

    with _connection(tmp_path, filesystem.Transport) as conn:
        channel = conn.default_channel
        errors: list[BaseException] = []

        def dumps_while_a_reader_looks(payload):
            try:
                channel._get("jobs")  # the file exists, empty, before anything is written
            except (ValueError, queue_module.Empty) as exc:
                errors.append(exc)
            return json.dumps(payload)

        monkeypatch.setattr(filesystem, "dumps", dumps_while_a_reader_looks)
        channel._put("jobs", {"body": "x"})
        assert errors and isinstance(errors[0], ValueError)
        with pytest.raises(queue_module.Empty):
            channel._get("jobs")


def test_the_platform_uses_our_transport_for_its_broker(settings):
    from kombu.transport import resolve_transport

    from mft import redis_broker

    ours = {"filesystem": embedded_broker.Transport, "redis": redis_broker.Transport}
    scheme = settings.CELERY_BROKER_URL.split(":", 1)[0]
    assert resolve_transport(settings.CELERY_BROKER_TRANSPORT) is ours[scheme]


def _consumer(conn, delivered):
    channel = conn.channel()
    channel.basic_qos(prefetch_size=0, prefetch_count=1)
    consumer = conn.Consumer(conn.SimpleQueue("jobs").queue, channel=channel,
                             callbacks=[lambda body, message: delivered.append(message)],
                             accept=["json"])
    consumer.consume()
    return consumer


def test_a_worker_with_its_slot_taken_looks_again_soon_not_after_the_polling_interval(
        tmp_path, monkeypatch):
    with _connection(tmp_path, embedded_broker.Transport) as conn:
        delivered: list = []
        _consumer(conn, delivered)
        with conn.Producer() as producer:
            for n in (1, 2):
                producer.publish({"n": n}, routing_key="jobs", serializer="json")
        conn.drain_events(timeout=5)
        # Either first: two messages put within one millisecond are ordered by their uuid.
        assert len(delivered) == 1
        waits: list[float] = []

        def task_finishes_while_waiting(seconds):
            waits.append(seconds)
            if len(waits) == 1:
                delivered[0].ack()  # the slot frees while the worker waits

        monkeypatch.setattr(embedded_broker, "sleep", task_finishes_while_waiting)
        conn.drain_events(timeout=5)

        assert waits == [embedded_broker.SLOT_WAIT]
        assert sorted(m.payload["n"] for m in delivered) == [1, 2]


def test_an_idle_worker_lists_the_queue_folder_every_polling_interval(tmp_path, monkeypatch):
    with _connection(tmp_path, embedded_broker.Transport) as conn:
        _consumer(conn, [])
        waits: list[float] = []
        monkeypatch.setattr(embedded_broker, "sleep", waits.append)
        with pytest.raises(TimeoutError):
            conn.drain_events(timeout=0.05)
        interval = conn.transport.polling_interval
        assert waits and set(waits) == {interval} and interval > embedded_broker.SLOT_WAIT
