"""The floor under a Countersign step: the writes its controls require, and nothing else.

    bash scripts/with-services.sh -- python bench/_step_floor.py [--steps 2000]

What a tool-loop step must make durable, in the fewest transactions its guarantees allow
(docs/architecture.md, "What a step costs"), written as plain SQL with psycopg on scratch
tables of the same shape (no Django, no ORM, no engine logic, no validation):

1. after the model call: the answer and its usage on the call's row, the charge on the run,
   a hash-chained signed audit event (one statement: the head moved and the event inserted),
   and the tool attempt inserted before the tool runs (exactly-once tools); one commit;
2. after the tool: its result, a second audit event, the next call's reservation on the run
   and the next call's pending row (a billed call is never lost); one commit.

Two commits per step, as LangGraph's ``durability="sync"`` makes (a checkpoint after the
model node and one after the tool node). Measured three ways: the round trips alone (no
hashing), the round trips with the hashing and signing a chained event needs, and the same
with psycopg's pipeline mode (the statements of a transaction sent without waiting for each
answer). bench/engine_overhead.py compares the engine's overhead per step to this floor
(bench/RESULTS.md, "Engine overhead per step").
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SCHEMA = """
CREATE TEMP TABLE f_run (id bigserial PRIMARY KEY, status text NOT NULL DEFAULT 'running',
    cost_usd numeric(12,6) NOT NULL DEFAULT 0, reserved_usd numeric(12,6) NOT NULL DEFAULT 0,
    reserved_tokens bigint NOT NULL DEFAULT 0, input_tokens bigint NOT NULL DEFAULT 0,
    output_tokens bigint NOT NULL DEFAULT 0, lease_expires_at timestamptz);
CREATE TEMP TABLE f_modelcall (id bigserial PRIMARY KEY, run_id bigint NOT NULL REFERENCES f_run,
    turn int NOT NULL, status text NOT NULL, request_content jsonb NOT NULL,
    response_content jsonb, usage jsonb, cost_usd numeric(12,6), reserved_usd numeric(12,6),
    created_at timestamptz NOT NULL DEFAULT now());
CREATE TEMP TABLE f_toolcall (id bigserial PRIMARY KEY, run_id bigint NOT NULL REFERENCES f_run,
    model_call_id bigint NOT NULL REFERENCES f_modelcall, tool_use_id text NOT NULL,
    status text NOT NULL, input jsonb NOT NULL, output jsonb);
CREATE TEMP TABLE f_head (run_id bigint PRIMARY KEY REFERENCES f_run, run_seq int NOT NULL,
    hash text NOT NULL, mac text NOT NULL);
CREATE TEMP TABLE f_event (id bigserial PRIMARY KEY, run_id bigint NOT NULL REFERENCES f_run,
    run_seq int NOT NULL, kind text NOT NULL, payload jsonb NOT NULL, hash text NOT NULL,
    run_prev_hash text NOT NULL, mac text NOT NULL, created_at timestamptz NOT NULL,
    UNIQUE (run_id, run_seq));
"""

APPEND = """
WITH head AS (UPDATE f_head SET run_seq = %s, hash = %s, mac = %s
              WHERE run_id = %s AND run_seq = %s AND hash = %s RETURNING run_id)
INSERT INTO f_event (run_id, run_seq, kind, payload, hash, run_prev_hash, mac, created_at)
SELECT run_id, %s, %s, %s, %s, %s, %s, now() FROM head RETURNING id
"""
KEY = b"floor-key"


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Chain:
    """One run's audit chain head, kept in memory as the engine's process does."""

    def __init__(self, run_id: int) -> None:
        self.run_id, self.seq, self.hash = run_id, 0, "0" * 64

    def params(self, kind: str, payload: dict[str, Any], sign: bool) -> list[Any]:
        body = {"run": self.run_id, "run_seq": self.seq + 1, "kind": kind}
        if sign:
            body["payload_digest"] = hashlib.sha256(canonical(payload).encode()).hexdigest()
            new = hashlib.sha256((self.hash + canonical(body)).encode()).hexdigest()
            mac = hmac.new(KEY, f"event:{new}".encode(), hashlib.sha256).hexdigest()
            head_mac = hmac.new(
                KEY, f"head:{self.run_id}:{self.seq + 1}:{new}".encode(), hashlib.sha256
            ).hexdigest()
        else:
            new = f"{self.seq + 1:064d}"
            mac = head_mac = ""
        params = [self.seq + 1, new, head_mac, self.run_id, self.seq, self.hash]
        params += [self.seq + 1, kind, json.dumps(payload), new, self.hash, mac]
        self.seq, self.hash = self.seq + 1, new
        return params


def one_step(conn: Any, chain: Chain, state: dict[str, Any], turn: int, sign: bool) -> None:
    usage = {"input_tokens": 1200 + turn, "output_tokens": 80, "cache_read_input_tokens": 900}
    answer = [
        {"type": "tool_use", "id": f"toolu_{turn}", "name": "increment", "input": {"n": turn}}
    ]
    with conn.transaction(), conn.cursor() as cur:  # 1: after the model call
        cur.execute(
            "UPDATE f_modelcall SET status = 'ok', response_content = %s, usage = %s, "
            "cost_usd = 0.0031, reserved_usd = 0 WHERE id = %s",
            [json.dumps(answer), json.dumps(usage), state["call"]],
        )
        cur.execute(
            "UPDATE f_run SET cost_usd = cost_usd + 0.0031, reserved_usd = reserved_usd - 0.05, "
            "input_tokens = input_tokens + %s, output_tokens = output_tokens + 80 "
            "WHERE id = %s RETURNING status",
            [usage["input_tokens"], chain.run_id],
        )
        cur.execute(APPEND, chain.params("model.called", {"turn": turn, "usage": usage}, sign))
        cur.execute(
            "INSERT INTO f_toolcall (run_id, model_call_id, tool_use_id, status, input) "
            "VALUES (%s, %s, %s, 'running', %s) RETURNING id",
            [chain.run_id, state["call"], f"toolu_{turn}", json.dumps({"n": turn})],
        )
        tool = cur.fetchone()
    with conn.transaction(), conn.cursor() as cur:  # 2: after the tool
        cur.execute(
            "UPDATE f_toolcall SET status = 'ok', output = %s WHERE id = %s",
            [json.dumps({"n": turn + 1}), tool[0] if tool else None],
        )
        cur.execute(APPEND, chain.params("tool.called", {"tool_use_id": f"toolu_{turn}"}, sign))
        cur.execute(
            "UPDATE f_run SET reserved_usd = reserved_usd + 0.05, reserved_tokens = "
            "reserved_tokens + 9000, lease_expires_at = now() + interval '60 s' "
            "WHERE id = %s AND status = 'running' AND cost_usd + reserved_usd < 100",
            [chain.run_id],
        )
        cur.execute(
            "INSERT INTO f_modelcall (run_id, turn, status, request_content, reserved_usd) "
            "VALUES (%s, %s, 'pending', %s, 0.05) RETURNING id",
            [chain.run_id, turn + 1, json.dumps([{"type": "tool_result", "content": "ok"}])],
        )
        row = cur.fetchone()
        state["call"] = row[0] if row else None


def measure(conninfo: str, steps: int, *, sign: bool, pipeline: bool) -> float:
    """Median milliseconds per step over ``steps`` steps (in runs of 20 steps)."""
    import psycopg

    with psycopg.connect(conninfo) as conn:
        conn.autocommit = True
        conn.execute(SCHEMA)
        per_step: list[float] = []
        for _ in range(max(1, steps // 20)):
            run_id = conn.execute("INSERT INTO f_run DEFAULT VALUES RETURNING id").fetchone()[0]
            conn.execute("INSERT INTO f_head VALUES (%s, 0, %s, '')", [run_id, "0" * 64])
            call = conn.execute(
                "INSERT INTO f_modelcall (run_id, turn, status, request_content) "
                "VALUES (%s, 0, 'pending', '[]') RETURNING id",
                [run_id],
            ).fetchone()[0]
            chain, state = Chain(run_id), {"call": call}
            started = time.perf_counter()
            for turn in range(20):
                if pipeline:
                    with conn.pipeline():
                        one_step(conn, chain, state, turn, sign)
                else:
                    one_step(conn, chain, state, turn, sign)
            per_step.append((time.perf_counter() - started) * 1000 / 20)
        return statistics.median(per_step)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    conninfo = os.environ["DATABASE_URL"]
    measure(conninfo, 100, sign=True, pipeline=False)  # warm-up
    for label, sign, pipeline in (
        ("round trips only (12 per step: 8 statements, 2 BEGIN, 2 COMMIT)", False, False),
        ("+ hashing and signing two chained events", True, False),
        ("+ pipeline mode (a transaction's statements sent together)", True, True),
    ):
        ms = measure(conninfo, args.steps, sign=sign, pipeline=pipeline)
        print(f"{label}: {ms:.2f} ms per step")


if __name__ == "__main__":
    main()
