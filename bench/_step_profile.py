"""What one tool-loop step costs the database: SQL statements and transactions (commits).

    bash scripts/with-services.sh -- python bench/_step_profile.py [--steps 20]

Runs one bench/loop_workflow.py run in-process (engine.run_step called until the run ends,
no queue) and counts, on this thread's connection, every statement and every commit
(an atomic block's commit, or a statement run outside one: autocommit). The tool handler's
own thread is not counted (it opens no connection for this workflow). These counts are not
noisy: they are the same on any machine. bench/engine_overhead.py reports them too.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._workers import setup_django  # noqa: E402


class DatabaseCounter:
    """Statements and commits on the default connection while active."""

    def __init__(self) -> None:
        self.statements = 0
        self.commits = 0
        self.kinds: Counter[str] = Counter()

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        from django.db import connection

        self.statements += 1
        self.kinds[sql.split(None, 1)[0].upper() if sql else "?"] += 1
        if not connection.in_atomic_block:
            self.commits += 1  # autocommit: the statement is its own transaction
        return execute(sql, params, many, context)

    def __enter__(self) -> DatabaseCounter:
        from django.db import connection

        self._wrapper = connection.execute_wrapper(self)
        self._wrapper.__enter__()
        original = connection.commit

        def commit() -> None:
            self.commits += 1
            original()

        self._original = original
        connection.commit = commit  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: Any) -> None:
        from django.db import connection

        connection.commit = self._original  # type: ignore[method-assign]
        self._wrapper.__exit__(*exc)


def profile(steps: int) -> dict[str, Any]:
    """Statements and commits per model call of one in-process run of ``steps`` tool calls."""
    from unittest import mock

    from bench._workers import start_loop_run
    from orchestration import dispatch, engine
    from orchestration.models import ModelCall, Run

    with mock.patch.object(dispatch, "enqueue_step", lambda *a, **k: None):
        run = start_loop_run(steps)
        with DatabaseCounter() as counted:
            for _ in range(steps + 2):
                engine.run_step(run.pk)
                status = Run.objects.filter(pk=run.pk).values_list("status", flat=True).first()
                counted.statements -= 1  # the status check above is the bench's
                counted.commits -= 1
                counted.kinds["SELECT"] -= 1
                if status == Run.Status.SUCCEEDED:
                    break
    assert status == Run.Status.SUCCEEDED, status
    calls = ModelCall.objects.filter(run=run).count()
    return {
        "model_calls": calls,
        "statements_per_step": counted.statements / calls,
        "commits_per_step": counted.commits / calls,
        "kinds_per_step": {k: round(v / calls, 1) for k, v in counted.kinds.most_common()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    setup_django()
    profile(2)  # warm-up: the workflow version row, caches, connections
    result = profile(args.steps)
    print(
        f"{result['model_calls']} model calls: {result['statements_per_step']:.1f} statements and "
        f"{result['commits_per_step']:.1f} commits per step; by kind: {result['kinds_per_step']}"
    )


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    main()
