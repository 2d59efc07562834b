"""The Redis broker transport, with one fix: a worker survives the broker going away.

Celery 5.7.0's consumer, on losing the broker, first *collects* the connection (which drops
the transport's reference to its connection settings) and then *closes* it. Closing the
default channel restores its unacknowledged messages, and the restore needs those settings
to open a client: ``AttributeError: 'NoneType' object has no attribute 'hostname'``, which
is not a connection error, so Celery calls it unrecoverable and the whole worker shuts down.
It happens only when that channel holds unacknowledged deliveries at that moment, so a
threads-pool worker (many late-acknowledged tasks in flight) hits it after a few Redis
restarts; the fault suite's "Redis crash mid fan-out" scenario caught it as a run left
"running" with nobody to run it. ``tests/test_broker_transport.py`` reproduces it.

The fix keeps kombu's own behaviour: the channel remembers the settings it was opened with
and uses them for that last restore, which then works (or fails as a connection error, which
kombu ignores). Nothing else changes; ``CELERY_BROKER_TRANSPORT`` selects this class.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._opened_with = self.connection.client

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        transport = self.connection
        if transport.client is not None or self._opened_with is None:
            return super()._connparams(asynchronous=asynchronous)
        # Collected (Celery's consumer is tearing the connection down): the settings the
        # channel was opened with, for the restore of its unacknowledged messages.
        transport.client = self._opened_with
        try:
            return super()._connparams(asynchronous=asynchronous)
        finally:
            transport.client = None


class Transport(kombu_redis.Transport):
    Channel = Channel
