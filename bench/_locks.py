"""Lock waits as Postgres sees them: sample pg_stat_activity and pg_locks in a thread.

Used by bench/throughput.py and bench/load/run.py. Each sample lists the sessions of our
database waiting on a lock (``wait_event_type = 'Lock'``) and, from ``pg_locks`` (the lock
not granted), what they wait for: a relation, a row (``tuple``), another transaction
(``transactionid``: a row lock held by it) or an advisory lock. The advisory lock that used
to serialise every audit append (and now only the sequencer and run-less appends) is named
"audit sequencer lock".
"""

from __future__ import annotations

import threading
from collections import Counter

AUDIT_LOCK_ID = 0x636F756E  # orchestration.audit._SEQUENCER_LOCK_ID (the old chain lock)
AUDIT_LOCK = "advisory: audit sequencer lock"

_WAITING = """
    SELECT a.pid, left(regexp_replace(a.query, '\\s+', ' ', 'g'), 90), l.locktype,
           l.classid::bigint << 32 | l.objid::bigint, l.relation::regclass::text
    FROM pg_stat_activity a
    LEFT JOIN pg_locks l ON l.pid = a.pid AND NOT l.granted
    WHERE a.datname = current_database() AND a.wait_event_type = 'Lock'
"""


def lock_kind(locktype: str | None, advisory_key: int | None, relation: str | None) -> str:
    if locktype == "advisory":
        return AUDIT_LOCK if advisory_key == AUDIT_LOCK_ID else f"advisory: {advisory_key:#x}"
    if locktype in ("relation", "tuple") and relation:
        return f"{locktype}: {relation}"
    return locktype or "unknown"


class LockWaits:
    """Samples every ``interval`` s until stop(): samples, samples with a waiter, the most
    sessions waiting at once, what they waited for (``kinds``) and their statements."""

    def __init__(self, database_url: str, interval: float = 0.5) -> None:
        self.url, self.interval = database_url, interval
        self.samples = self.waiting_samples = self.peak = 0
        self.kinds: Counter[str] = Counter()
        self.queries: Counter[str] = Counter()
        self.holders: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.wait(self.interval):
                rows = conn.execute(_WAITING).fetchall()
                self.samples += 1
                pids = {r[0] for r in rows}
                self.waiting_samples += bool(pids)
                self.peak = max(self.peak, len(pids))
                seen = set()
                for pid, query, locktype, key, relation in rows:
                    if pid in seen:
                        continue
                    seen.add(pid)
                    self.kinds[lock_kind(locktype, key, relation)] += 1
                    self.queries[query] += 1
                if pids:
                    # Who holds what they wait for: state and last statement of each lock holder.
                    held = conn.execute(
                        "SELECT a.state, left(regexp_replace(a.query, '\\s+', ' ', 'g'), 90)"
                        " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                        " WHERE l.granted AND a.datname = current_database() AND l.pid IN"
                        " (SELECT unnest(pg_blocking_pids(pid)) FROM pg_stat_activity"
                        "  WHERE wait_event_type = 'Lock')"
                    ).fetchall()
                    self.holders.update(f"[{state}] {query}" for state, query in set(held))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def as_dict(self) -> dict:
        return {
            "samples": self.samples,
            "with_waiters": self.waiting_samples,
            "peak": self.peak,
            "kinds": self.kinds.most_common(8),
            "audit_lock": self.kinds.get(AUDIT_LOCK, 0),
            "top": self.queries.most_common(5),
            "holders": self.holders.most_common(8),
        }
