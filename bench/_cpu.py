"""CPU time spent by the parts of a benchmark (the worker, Postgres, Redis) and by the machine.

Read from /proc (Linux): a process's user + system time, with its children's once they were
waited for (a Postgres backend that exited is counted in the postmaster's). Taken before and
after a measurement, the difference says how much CPU each part used, whatever else shared
the machine, and the machine's total says how much the others used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # after "pid (comm) "


def _seconds(pid: int, *, children: bool) -> float:
    fields = _stat(pid)
    if fields is None:
        return 0.0
    # fields[0] is field 3 (state): utime 14, stime 15, cutime 16, cstime 17.
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICK


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def tree_seconds(root: int) -> float:
    """CPU seconds of ``root``, its exited children, and its living children."""
    total = _seconds(root, children=True)
    for pid in _pids():
        fields = _stat(pid)
        if fields is not None and int(fields[1]) == root:
            total += _seconds(pid, children=True)
    return total


def session_seconds(sid: int) -> float:
    """CPU seconds of every living process of session ``sid`` (a worker and its pool)."""
    total = 0.0
    for pid in _pids():
        fields = _stat(pid)
        if fields is not None and int(fields[3]) == sid:
            total += _seconds(pid, children=True)
    return total


def machine_seconds() -> float:
    """Busy CPU seconds of the whole machine (every core), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / TICK


@dataclass
class CpuUse:
    worker: float
    postgres: float
    redis: float
    machine: float

    @property
    def ours(self) -> float:
        return self.worker + self.postgres + self.redis


class CpuMeter:
    """Snapshot at start(), difference at stop()."""

    def __init__(self, worker_sid: int, postmaster: int, redis: int) -> None:
        self.worker_sid, self.postmaster, self.redis = worker_sid, postmaster, redis
        self._start = self._now()

    def _now(self) -> CpuUse:
        return CpuUse(
            worker=session_seconds(self.worker_sid),
            postgres=tree_seconds(self.postmaster),
            redis=_seconds(self.redis, children=True),
            machine=machine_seconds(),
        )

    def stop(self) -> CpuUse:
        end = self._now()
        return CpuUse(
            worker=end.worker - self._start.worker,
            postgres=end.postgres - self._start.postgres,
            redis=end.redis - self._start.redis,
            machine=end.machine - self._start.machine,
        )


def postmaster_pid(cursor: object) -> int:
    """The postmaster of the server ``cursor`` talks to: its backend's parent."""
    cursor.execute("SELECT pg_backend_pid()")  # type: ignore[attr-defined]
    backend = cursor.fetchone()[0]  # type: ignore[attr-defined]
    fields = _stat(backend)
    if fields is None:
        raise RuntimeError("the Postgres server is not on this machine: no CPU figures")
    return int(fields[1])


def redis_pid(url: str) -> int:
    import redis

    return int(redis.Redis.from_url(url).info("server")["process_id"])
