"""Engine overhead per tool-loop step: Countersign (through Celery) next to LangGraph.

    make bench                      # every bench/*.py, this one included
    bash scripts/with-services.sh -- python bench/engine_overhead.py [--runs 5] [--steps 20,200]
    bash scripts/with-services.sh -- python bench/engine_overhead.py --quick

One step = one model call, one tool call, and what each engine persists about them.
Both engines run the same workflow (bench/loop_workflow.py: `steps` turns that each call a
trivial `increment` tool, then a final answer) against the same scripted responder: the
simulated Messages API at zero latency, called through the same `anthropic` SDK and the
same in-process transport, answered by the same policy function. Both persist to the same
Postgres server:

- Countersign, through a real `celery worker` (prefork, 1 process), and its engine alone (the
  task body called in-process, no queue): a task runs the run's consecutive steps under one
  lease (ENGINE_TASK_SLICE_SECONDS), every model call streamed; every model call, tool call
  and audit event is committed before the next step starts.
- LangGraph 1.2 with `PostgresSaver` (langgraph-checkpoint-postgres) in a throw-away
  database on the same server, the canonical ReAct graph (`agent` node + prebuilt
  `ToolNode` + `tools_condition`), invoked in-process. Measured with `durability="sync"`
  (each checkpoint written before the next step starts: the same promise Countersign
  makes) and with LangGraph's default `durability="async"`.

Overhead per step = (wall time - time inside the model call - time inside the tool) /
model calls. Model time is measured around the Messages API call in both engines
(Countersign streams it: ModelCall.latency_ms, whole milliseconds, around
`client.messages.stream`; LangGraph: perf_counter around `client.messages.create`). Tool time is the handler's own time, also measured around it in LangGraph; it
is microseconds. Each run length (--steps, default 20 and 200) is measured for every engine in
the same invocation, so the table compares them side by side and shows whether the overhead
stays flat with run length. The floor under a step (bench/_step_floor.py: the writes the
controls require, as plain SQL) is measured in the same invocation. Results go to
bench/RESULTS.md, section "Engine overhead per step".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._results import reproduce, write_section  # noqa: E402
from bench._workers import ROOT, Worker, machine, purge_queues, setup_django  # noqa: E402

SECTION = "## Engine overhead per step"


# --- Countersign ----------------------------------------------------------------------


def countersign_run(steps: int) -> dict[str, float]:
    from django.db.models import Sum

    from bench._workers import start_loop_run, wait_final
    from orchestration.models import AuditEvent, ModelCall, Run, ToolCall

    run = start_loop_run(steps)
    wait_final([run.pk], timeout=60 + steps * 5)
    run = Run.objects.get(pk=run.pk)
    calls = ModelCall.objects.filter(run=run)
    model_ms = calls.aggregate(t=Sum("latency_ms"))["t"] or 0
    n_calls = calls.count()
    assert n_calls == steps + 1, (n_calls, steps)
    assert ToolCall.objects.filter(run=run, status="ok").count() == steps
    wall_ms = (run.finished_at - run.queued_at).total_seconds() * 1000
    return {
        "wall_ms": wall_ms,
        "model_ms": float(model_ms),
        "tool_ms": 0.0,  # the handler (n + 1) is microseconds; see tool_cost_ms()
        "steps": n_calls,
        "events": AuditEvent.objects.filter(run=run).count(),
    }


def countersign_in_process(steps: int) -> dict[str, float]:
    """The same run, its steps called in this process: no queue, no worker. Separates the
    engine's own cost (and its SQL) from the Celery hop. Its statements and commits per step
    are counted on this thread's connection (bench/_step_profile.py)."""
    from unittest import mock

    from django.db.models import Sum

    from bench._step_profile import DatabaseCounter
    from bench._workers import start_loop_run
    from orchestration import dispatch, engine
    from orchestration.models import ModelCall, Run

    with mock.patch.object(dispatch, "enqueue_step", lambda *a, **k: None):
        run = start_loop_run(steps)
        wall = 0.0
        with DatabaseCounter() as counted:
            for _ in range(steps + 2):
                began = time.perf_counter()
                engine.run_step(run.pk)
                wall += time.perf_counter() - began
                done = Run.objects.filter(pk=run.pk, status=Run.Status.SUCCEEDED).exists()
                counted.statements -= 1  # the check above is the bench's, not the engine's
                counted.commits -= 1
                if done:
                    break
    assert Run.objects.get(pk=run.pk).status == Run.Status.SUCCEEDED
    calls = ModelCall.objects.filter(run=run)
    n_calls = calls.count()
    return {
        "wall_ms": wall * 1000,
        "model_ms": float(calls.aggregate(t=Sum("latency_ms"))["t"] or 0),
        "tool_ms": 0.0,
        "steps": n_calls,
        "queries": counted.statements / n_calls,
        "commits": counted.commits / n_calls,
    }


# --- LangGraph ------------------------------------------------------------------------


class Timer:
    def __init__(self) -> None:
        self.model = 0.0
        self.tool = 0.0
        self.calls = 0


def _anthropic_messages(messages: list[Any]) -> list[dict[str, Any]]:
    """LangChain messages -> the Messages API's alternating user/assistant turns."""
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    out: list[dict[str, Any]] = []
    for m in messages:
        if isinstance(m, HumanMessage):
            out.append({"role": "user", "content": [{"type": "text", "text": m.content}]})
        elif isinstance(m, AIMessage):
            blocks: list[dict[str, Any]] = []
            if m.content:
                blocks.append({"type": "text", "text": m.content})
            for tc in m.tool_calls:
                blocks.append(
                    {"type": "tool_use", "id": tc["id"], "name": tc["name"], "input": tc["args"]}
                )
            out.append({"role": "assistant", "content": blocks})
        elif isinstance(m, ToolMessage):
            block = {"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content}
            if out and out[-1]["role"] == "user" and out[-1]["content"][0]["type"] == "tool_result":
                out[-1]["content"].append(block)
            else:
                out.append({"role": "user", "content": [block]})
    if out:
        out[-1]["content"][-1] = {**out[-1]["content"][-1], "cache_control": {"type": "ephemeral"}}
    return out


def langgraph_graph(saver: Any, timer: Timer) -> Any:
    import anthropic
    from langchain_core.messages import AIMessage
    from langchain_core.tools import tool
    from langgraph.graph import START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode, tools_condition

    from bench import loop_workflow
    from orchestration.workflows.versions import api_tools, snapshot
    from simulator import SimulatorTransport
    from simulator.django import make_api_from_settings

    version = snapshot(loop_workflow.WORKFLOW)  # the same prompt and tools Countersign sends
    client = anthropic.Anthropic(
        api_key="sim",
        base_url="http://simulator.local",
        max_retries=2,
        http_client=anthropic.DefaultHttpxClient(
            transport=SimulatorTransport(make_api_from_settings())
        ),
        default_headers={"x-countersign-workflow": loop_workflow.NAME},
    )
    params = {
        "model": loop_workflow.WORKFLOW.orchestrator_model,
        "max_tokens": loop_workflow.WORKFLOW.constraints.max_output_tokens,
        "system": [
            {"type": "text", "text": version.system_prompt, "cache_control": {"type": "ephemeral"}}
        ],
        "tools": api_tools(version),
    }

    def agent(state: MessagesState) -> dict[str, Any]:
        messages = _anthropic_messages(state["messages"])
        started = time.perf_counter()
        response = client.messages.create(**params, messages=messages)
        timer.model += time.perf_counter() - started
        timer.calls += 1
        text = "".join(b.text for b in response.content if b.type == "text")
        tool_calls = [
            {"id": b.id, "name": b.name, "args": b.input, "type": "tool_call"}
            for b in response.content
            if b.type == "tool_use"
        ]
        return {"messages": [AIMessage(content=text, tool_calls=tool_calls)]}

    @tool
    def increment(n: int) -> str:
        """Add one to n."""
        started = time.perf_counter()
        out = json.dumps(loop_workflow.increment({"n": n}))
        timer.tool += time.perf_counter() - started
        return out

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_node("tools", ToolNode([increment]))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    return builder.compile(checkpointer=saver)


def langgraph_run(graph: Any, timer: Timer, steps: int, durability: str) -> dict[str, float]:
    from langchain_core.messages import HumanMessage

    timer.model = timer.tool = 0.0
    timer.calls = 0
    started = time.perf_counter()
    state = graph.invoke(
        {"messages": [HumanMessage(content=json.dumps({"steps": steps}))]},
        {"configurable": {"thread_id": str(uuid.uuid4())}, "recursion_limit": 4 * steps + 10},
        durability=durability,
    )
    wall = time.perf_counter() - started
    answer = json.loads(state["messages"][-1].content)
    assert answer == {"count": steps}, answer
    assert timer.calls == steps + 1
    return {
        "wall_ms": wall * 1000,
        "model_ms": timer.model * 1000,
        "tool_ms": timer.tool * 1000,
        "steps": timer.calls,
    }


def langgraph_database() -> str:
    """A throw-away database on the same Postgres server; its conninfo."""
    import psycopg
    from django.db import connection

    base = connection.get_connection_params()
    name = f"{connection.settings_dict['NAME']}_langgraph"
    with psycopg.connect(**{**base, "autocommit": True}) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    params = {**base, "dbname": name}
    return " ".join(
        f"{k}={v}"
        for k, v in params.items()
        if k in ("host", "port", "user", "password", "dbname") and v
    )


def drop_database(conninfo: str) -> None:
    import psycopg
    from django.db import connection

    name = dict(p.split("=", 1) for p in conninfo.split())["dbname"]
    with psycopg.connect(**{**connection.get_connection_params(), "autocommit": True}) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


# --- measuring --------------------------------------------------------------------------


def overhead(r: dict[str, float]) -> float:
    return (r["wall_ms"] - r["model_ms"] - r["tool_ms"]) / r["steps"]


def summarise(rows: list[dict[str, float]]) -> dict[str, float]:
    per_step = [overhead(r) for r in rows]
    return {
        "runs": len(rows),
        "steps": int(statistics.median(r["steps"] for r in rows)),
        "wall_per_step": statistics.median(r["wall_ms"] / r["steps"] for r in rows),
        "model_per_step": statistics.median(r["model_ms"] / r["steps"] for r in rows),
        "overhead_p50": statistics.median(per_step),
        "overhead_min": min(per_step),
        "overhead_max": max(per_step),
    }


WORKER = "Countersign (Celery worker, 1 process)"
IN_PROCESS = "Countersign engine alone (steps called in-process, no queue)"
SYNC = 'LangGraph + PostgresSaver, durability="sync"'


def measure(runs: int, steps: int) -> dict[str, dict[str, float]]:
    from langgraph.checkpoint.postgres import PostgresSaver

    purge_queues()
    worker = Worker(concurrency=1, name="overhead")
    try:
        countersign_run(steps)  # warm-up: imports, connections, the workflow version row
        ours = [countersign_run(steps) for _ in range(runs)]
    finally:
        worker.stop()
    countersign_in_process(2)  # warm-up: this process's caches
    inproc = [countersign_in_process(steps) for _ in range(runs)]
    conninfo = langgraph_database()
    results = {WORKER: summarise(ours), IN_PROCESS: summarise(inproc)}
    try:
        with PostgresSaver.from_conn_string(conninfo) as saver:
            saver.setup()
            timer = Timer()
            graph = langgraph_graph(saver, timer)
            for durability in ("sync", "async"):
                langgraph_run(graph, timer, steps, durability)  # warm-up
                rows = [langgraph_run(graph, timer, steps, durability) for _ in range(runs)]
                results[f'LangGraph + PostgresSaver, durability="{durability}"'] = summarise(rows)
    finally:
        drop_database(conninfo)
    results["_events_per_run"] = {
        "events": ours[-1]["events"],
        "queries": statistics.median(r["queries"] for r in inproc),
        "commits": statistics.median(r["commits"] for r in inproc),
    }
    return results


def table(by_length: dict[int, dict[str, dict[str, float]]]) -> list[str]:
    lines = [
        "| engine | tool calls per run | runs x model calls | wall / step (ms) | model call / step (ms) "
        "| overhead / step p50 (ms) | min - max (ms) | vs LangGraph sync |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for steps, results in by_length.items():
        sync = results[SYNC]["overhead_p50"]
        for name, r in results.items():
            if name.startswith("_"):
                continue
            lines.append(
                f"| {name} | {steps} | {r['runs']} x {r['steps']} | {r['wall_per_step']:.1f} | "
                f"{r['model_per_step']:.1f} | **{r['overhead_p50']:.1f}** | "
                f"{r['overhead_min']:.1f} - {r['overhead_max']:.1f} | {r['overhead_p50'] / sync:.2f}x |"
            )
    return lines


def verdicts(by_length: dict[int, dict[str, dict[str, float]]]) -> list[str]:
    lines = []
    for steps, results in by_length.items():
        sync = results[SYNC]["overhead_p50"]
        for name in (IN_PROCESS, WORKER):
            ours = results[name]["overhead_p50"]
            ratio = ours / sync
            line = (
                f"- {steps} tool calls, {name}: {ratio:.2f}x LangGraph's overhead per step "
                f"(goal <= 0.5x): **{'met' if ratio <= 0.5 else 'missed'}**"
            )
            if ratio > 0.5:
                line += f", by {ours - 0.5 * sync:.1f} ms per step"
            lines.append(line + ".")
    return lines


def floor_ms() -> float:
    """bench/_step_floor.py in this run: the writes the controls require, as plain SQL."""
    from django.db import connection

    from bench import _step_floor

    settings_dict = connection.settings_dict
    conninfo = os.environ.get("DATABASE_URL") or (
        f"postgresql://{settings_dict['USER']}@{settings_dict['HOST']}:{settings_dict['PORT']}"
        f"/{settings_dict['NAME']}"
    )
    _step_floor.measure(conninfo, 100, sign=True, pipeline=False)  # warm-up
    return _step_floor.measure(conninfo, 1000, sign=True, pipeline=False)


def write_results(
    by_length: dict[int, dict[str, dict[str, float]]], command: str, host: str, floor: float
) -> None:
    longest = by_length[max(by_length)]["_events_per_run"]
    lines = [
        SECTION,
        "",
        reproduce(command, host),
        "",
        *table(by_length),
        "",
        *verdicts(by_length),
        "",
        f"Countersign persists per run: every model call, every tool call attempt and "
        f"{longest['events']} hash-chained audit events (at {max(by_length)} tool calls), in "
        f"{longest['queries']:.1f} SQL statements and {longest['commits']:.1f} commits per step "
        "(in-process run; bench/_step_profile.py counts them); LangGraph persists one checkpoint "
        "per super-step (two super-steps per step: the model node and the tool node).",
        "",
        f"The floor, same run: the durable writes a step's controls require (the answer, the "
        f"charge, two chained signed audit events, the tool attempt before it runs, its result, "
        f"the next call's reservation and pending row) in two transactions, as plain SQL with "
        f"psycopg and no engine logic, take {floor:.2f} ms per step (bench/_step_floor.py).",
        "",
    ]
    write_section(SECTION, "\n".join(lines), keep_analysis=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runs", type=int, default=5, help="measured runs per engine and length (default 5)"
    )
    parser.add_argument(
        "--steps",
        default="20,200",
        help="tool calls per run, comma-separated: each length is measured (default 20,200)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="3 runs of 5 steps; RESULTS.md untouched"
    )
    args = parser.parse_args()
    try:
        lengths = [int(n) for n in str(args.steps).split(",") if n.strip()]
    except ValueError:
        parser.error("--steps must be whole numbers separated by commas, e.g. 20,200")
    if args.quick:
        args.runs, lengths = 3, [5]
    if not 1 <= args.runs <= 100 or not lengths or not all(1 <= n <= 200 for n in lengths):
        parser.error("--runs must be 1..100 and every --steps 1..200")
    host = machine()
    setup_django()
    by_length = {steps: measure(args.runs, steps) for steps in lengths}
    floor = floor_ms()
    print("\n".join([*table(by_length), "", *verdicts(by_length)]))
    print(f"floor (bench/_step_floor.py): {floor:.2f} ms per step")
    if not args.quick:
        command = (
            "bash scripts/with-services.sh -- python bench/engine_overhead.py "
            f"--runs {args.runs} --steps {','.join(map(str, lengths))}"
        )
        write_results(by_length, command, host, floor)
        print(f"written to {ROOT / 'bench' / 'RESULTS.md'}")


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    main()
