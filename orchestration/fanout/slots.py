"""The global cap on fan-out model calls in flight: a lease-based semaphore in Redis.

One sorted set holds a member per call in flight, scored with its lease expiry (Redis
server time, so workers on other machines agree). Acquiring first drops expired members,
then adds ours only if fewer than ``cap`` remain, all in one Lua script, so the cap holds
across every process and machine that shares the Redis. A worker SIGKILLed mid-call never
releases its slot; the slot comes back when its lease expires (FANOUT_SLOT_LEASE_SECONDS,
longer than one call may take), so the cap never leaks permanently.

Redis being unreachable is treated like a full semaphore: the job is handed back and tried
again later, never failed (an outage is not the job's fault); a release that cannot reach
Redis is logged and the lease frees the slot.
"""

from __future__ import annotations

import functools
import logging
import random
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from django.conf import settings

KEY = "countersign:fanout:slots"
logger = logging.getLogger(__name__)
# What an unreachable or restarting Redis raises.
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)

_ACQUIRE = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], t + tonumber(ARGV[2]), ARGV[3])
  return 1
end
return 0
"""


class NoSlot(Exception):
    """No global slot came free within the wait; the caller re-queues its work."""


@functools.cache
def _client() -> redis.Redis:
    return redis.Redis.from_url(settings.FANOUT_SLOT_URL)


@functools.cache
def _script() -> object:
    return _client().register_script(_ACQUIRE)


def reset() -> None:
    _client.cache_clear()
    _script.cache_clear()


def key() -> str:
    return settings.FANOUT_SLOT_KEY or KEY


def try_acquire(token: str) -> bool:
    return bool(
        _script()(
            keys=[key()],
            args=[settings.FANOUT_GLOBAL_CONCURRENCY, settings.FANOUT_SLOT_LEASE_SECONDS, token],
        )
    )


def release(token: str) -> None:
    _client().zrem(key(), token)


def in_use() -> int:
    """Slots held right now (expired leases included until the next acquire drops them)."""
    return int(_client().zcard(key()))


@contextmanager
def slot(label: str, wait_seconds: float) -> Iterator[str]:
    """Hold one global slot for the block; raise NoSlot if none frees up within the wait.

    Polls with jittered sleeps (20-120 ms): slots free up as calls finish, and the jitter
    keeps waiting threads from stampeding Redis in step.
    """
    token = f"{label}:{uuid.uuid4().hex[:12]}"
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            if try_acquire(token):
                break
        except REDIS_DOWN as exc:
            raise NoSlot(f"fan-out slots unavailable (Redis: {exc})") from exc
        if time.monotonic() >= deadline:
            raise NoSlot(f"no fan-out slot free within {wait_seconds:g}s")
        time.sleep(random.uniform(0.02, 0.12))  # noqa: S311 - jitter, not crypto
    try:
        yield token
    finally:
        try:
            release(token)
        except REDIS_DOWN as exc:
            # The call is done and recorded; the slot's lease frees it.
            logger.warning(
                "could not release fan-out slot %s (Redis: %s); its lease frees it", token, exc
            )
