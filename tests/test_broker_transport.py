"""The broker transport (config/broker.py): a worker that loses Redis must not shut down.

Celery 5.7.0's consumer, on a lost broker, calls ``connection.collect()`` and then
``connection.close()``. When the collect could not close the default channel (it was waiting
in BRPOP as the socket died), the transport has already dropped its settings (``client`` is
None) while the channel still holds unacknowledged deliveries; the close then restores them,
and kombu's own Redis transport raises AttributeError there (Celery: "Unrecoverable error",
the worker exits). The tests put a connection in exactly that state; tests/faults/test_restarts.py
restarts Redis eight times under a threads-pool worker.
"""

from __future__ import annotations

import uuid

import pytest
import redis
from django.conf import settings
from kombu import Connection
from kombu.transport import redis as kombu_redis

from config.broker import Transport


def _connection_with_unacked(transport: object, queue: str) -> tuple[Connection, object]:
    conn = Connection(settings.CELERY_BROKER_URL, transport=transport)
    channel = conn.default_channel
    simple = conn.SimpleQueue(queue, channel=channel)
    simple.put({"n": 1})
    message = simple.get(timeout=2)  # delivered, not acknowledged
    assert message.payload == {"n": 1}
    return conn, message


def test_settings_select_the_fixed_transport():
    assert settings.CELERY_BROKER_TRANSPORT == "config.broker:Transport"


def test_closing_a_collected_connection_restores_its_unacked_message():
    queue = f"test-broker-{uuid.uuid4().hex[:8]}"
    conn, _ = _connection_with_unacked(Transport, queue)

    conn.transport.client = None  # collected, the default channel still open
    conn.close()  # what the consumer does next: no exception

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        assert client.llen(queue) == 1, "the unacknowledged message is back on its queue"
    finally:
        client.delete(queue)


def test_kombus_own_transport_fails_that_sequence():
    """The bug the class exists for; when kombu fixes it, this fails and the class can go."""
    queue = f"test-broker-{uuid.uuid4().hex[:8]}"
    conn, _ = _connection_with_unacked(kombu_redis.Transport, queue)
    conn.transport.client = None
    try:
        with pytest.raises(AttributeError, match="hostname"):
            conn.close()
    finally:
        redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(queue)
