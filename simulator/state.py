"""Where the simulator keeps what must outlive one request: prompt-cache entries and batches.

`InMemoryState` serves one process (tests, the standalone server); its clock is
injectable so tests can move time past a cache TTL without sleeping.
`RedisState` lets web, worker and beat processes share one prompt cache and one
batch store, as they would share the real API; cache expiry uses Redis key TTLs.
"""

from __future__ import annotations

import json
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}
BATCH_RETENTION_SECONDS = 29 * 24 * 3600  # results stay available 29 days, like the API


class SimulatorState(ABC):
    """Storage interface of the simulator. Implementations must be thread-safe."""

    @abstractmethod
    def now(self) -> float:
        """Current time in epoch seconds."""

    @abstractmethod
    def cache_lookup(self, keys: Sequence[str]) -> list[str | None]:
        """For each key, the TTL label ("5m"/"1h") of its live cache entry, else None."""

    @abstractmethod
    def cache_store(self, key: str, ttl: str) -> None:
        """Create or refresh a cache entry that lives TTL_SECONDS[ttl] from now."""

    @abstractmethod
    def batch_save(self, batch_id: str, record: dict[str, Any]) -> None: ...

    @abstractmethod
    def batch_load(self, batch_id: str) -> dict[str, Any] | None: ...

    @abstractmethod
    def batch_ids(self) -> list[str]:
        """All stored batch ids, newest first."""

    @abstractmethod
    def batch_delete(self, batch_id: str) -> None: ...

    @abstractmethod
    def try_lock(self, name: str, seconds: float) -> bool:
        """Take a named lock that expires by itself; False if someone holds it."""

    @abstractmethod
    def unlock(self, name: str) -> None: ...

    @abstractmethod
    def count(self, name: str) -> int:
        """Add one to the named counter and return its new value (shared by every process
        on the same store: a fault's "first N times" holds across worker processes)."""

    @abstractmethod
    def clear(self) -> None:
        """Forget everything (tests)."""


class InMemoryState(SimulatorState):
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.RLock()
        self._cache: dict[str, tuple[float, str]] = {}  # key -> (expires_at, ttl label)
        # id -> (created, insertion number, record); the number orders batches created
        # within the same clock tick.
        self._batches: dict[str, tuple[float, int, dict[str, Any]]] = {}
        self._seq = 0
        self._locks: dict[str, float] = {}
        self._counters: dict[str, int] = {}

    def now(self) -> float:
        return self._clock()

    def cache_lookup(self, keys: Sequence[str]) -> list[str | None]:
        now = self.now()
        with self._lock:
            found: list[str | None] = []
            for key in keys:
                entry = self._cache.get(key)
                found.append(entry[1] if entry and entry[0] > now else None)
            return found

    def cache_store(self, key: str, ttl: str) -> None:
        with self._lock:
            self._cache[key] = (self.now() + TTL_SECONDS[ttl], ttl)
            if len(self._cache) > 50_000:  # keep a long-running server bounded
                now = self.now()
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}

    def batch_save(self, batch_id: str, record: dict[str, Any]) -> None:
        # Stored as JSON so callers can never share mutable structures with the store.
        with self._lock:
            if batch_id in self._batches:
                created, seq, _ = self._batches[batch_id]
            else:
                self._seq += 1
                created, seq = self.now(), self._seq
            self._batches[batch_id] = (created, seq, json.loads(json.dumps(record)))

    def batch_load(self, batch_id: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._batches.get(batch_id)
            return json.loads(json.dumps(entry[2])) if entry else None

    def batch_ids(self) -> list[str]:
        with self._lock:
            ordered = sorted(self._batches.items(), key=lambda kv: kv[1][:2], reverse=True)
            return [batch_id for batch_id, _ in ordered]

    def batch_delete(self, batch_id: str) -> None:
        with self._lock:
            self._batches.pop(batch_id, None)

    def try_lock(self, name: str, seconds: float) -> bool:
        with self._lock:
            now = self.now()
            if self._locks.get(name, 0.0) > now:
                return False
            self._locks[name] = now + seconds
            return True

    def unlock(self, name: str) -> None:
        with self._lock:
            self._locks.pop(name, None)

    def count(self, name: str) -> int:
        with self._lock:
            self._counters[name] = self._counters.get(name, 0) + 1
            return self._counters[name]

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()
            self._batches.clear()
            self._locks.clear()
            self._counters.clear()


class RedisState(SimulatorState):
    """Shared state in Redis. Keys live under `prefix`; cache keys expire by Redis TTL."""

    def __init__(self, url: str, prefix: str = "countersign:simulator:") -> None:
        import redis  # imported here so the in-memory simulator does not need the client

        self._redis = redis.Redis.from_url(url)
        self._prefix = prefix

    def _k(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    def now(self) -> float:
        return time.time()

    def cache_lookup(self, keys: Sequence[str]) -> list[str | None]:
        if not keys:
            return []
        values = self._redis.mget([self._k("cache", key) for key in keys])
        return [v.decode() if isinstance(v, bytes) else v for v in values]

    def cache_store(self, key: str, ttl: str) -> None:
        self._redis.set(self._k("cache", key), ttl, px=int(TTL_SECONDS[ttl] * 1000))

    def batch_save(self, batch_id: str, record: dict[str, Any]) -> None:
        pipe = self._redis.pipeline()
        pipe.set(self._k("batch", batch_id), json.dumps(record), ex=BATCH_RETENTION_SECONDS)
        pipe.zadd(self._k("batches"), {batch_id: self.now()}, nx=True)
        pipe.execute()

    def batch_load(self, batch_id: str) -> dict[str, Any] | None:
        raw = self._redis.get(self._k("batch", batch_id))
        return json.loads(raw) if raw else None

    def batch_ids(self) -> list[str]:
        ids = self._redis.zrevrange(self._k("batches"), 0, -1)
        return [i.decode() if isinstance(i, bytes) else i for i in ids]

    def batch_delete(self, batch_id: str) -> None:
        pipe = self._redis.pipeline()
        pipe.delete(self._k("batch", batch_id))
        pipe.zrem(self._k("batches"), batch_id)
        pipe.execute()

    def try_lock(self, name: str, seconds: float) -> bool:
        return bool(self._redis.set(self._k("lock", name), "1", nx=True, px=int(seconds * 1000)))

    def unlock(self, name: str) -> None:
        self._redis.delete(self._k("lock", name))

    def count(self, name: str) -> int:
        pipe = self._redis.pipeline()
        pipe.incr(self._k("count", name))
        pipe.expire(self._k("count", name), BATCH_RETENTION_SECONDS)
        value, _ = pipe.execute()
        return int(value)

    def clear(self) -> None:
        keys = list(self._redis.scan_iter(match=self._prefix + "*"))
        if keys:
            self._redis.delete(*keys)


def state_from_url(url: str | None) -> SimulatorState:
    """RedisState for a redis:// URL, else a fresh InMemoryState."""
    if url:
        return RedisState(url)
    return InMemoryState()
