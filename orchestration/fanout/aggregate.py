"""Checking the orchestrator's aggregate against the job results, in code.

The workflow computes, from the settled jobs, what the final result must state
(``FanoutSpec.expected_aggregate``): the counts, and the lists (every finding of every
passing job, every job that failed). ``problems(output, expected)`` compares the
orchestrator's answer with it, key by key:

- a number, string or boolean must be equal (``1`` is not ``true``);
- an object is compared key by key, and a key the job results do not give is refused;
- a list is compared as a multiset. An aggregate item matches an expected item when it has
  the same values on the keys the expected item names (so the aggregate may add prose such as
  a reason or a remediation, but not change a file, a line or a rule). An expected item no
  aggregate item matches is *dropped*; an aggregate item that matches no expected item (or
  one more time than the job results give it) is *not from a passing job*.

Keys of the output that ``expected`` does not name are left to the output schema.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

MAX_LISTED = 10


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _project(item: Any, keys: list[str] | None) -> str:
    if keys is None or not isinstance(item, dict):
        return _canon(item)
    return _canon({k: item.get(k, _MISSING) for k in keys})


_MISSING = "\u2205 (missing)"


def _shown(items: list[str]) -> str:
    listed = "; ".join(items[:MAX_LISTED])
    more = len(items) - MAX_LISTED
    return listed + (f"; and {more:,} more" if more > 0 else "")


def _compare_list(path: str, got: list[Any], want: list[Any]) -> list[str]:
    dict_items = want and all(isinstance(w, dict) for w in want)
    keys = sorted({k for w in want for k in w}) if dict_items else None
    expected = Counter(_project(w, keys) for w in want)
    actual = Counter(_project(g, keys) for g in got)
    dropped = list((expected - actual).elements())
    invented = list((actual - expected).elements())
    problems = []
    if dropped:
        problems.append(
            f"{path}: {len(dropped):,} item(s) of the job results are missing: {_shown(dropped)}"
        )
    if invented:
        problems.append(
            f"{path}: {len(invented):,} item(s) are not from any passing job: {_shown(invented)}"
        )
    return problems


def _compare(path: str, got: Any, want: Any) -> list[str]:
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return [f"{path} is {_canon(got)[:200]} but the job results give an object"]
        problems = []
        for key, value in want.items():
            sub = f"{path}.{key}" if path else str(key)
            if key not in got:
                problems.append(f"{sub} is missing (the job results give {_canon(value)[:200]})")
            else:
                problems += _compare(sub, got[key], value)
        if path:  # at the top level, extra keys are the output schema's business
            extra = sorted(set(got) - set(want))
            if extra:
                problems.append(
                    f"{path} has {', '.join(map(str, extra[:MAX_LISTED]))}, which the job results do not give"
                )
        return problems
    if isinstance(want, list):
        if not isinstance(got, list):
            return [f"{path} is {_canon(got)[:200]} but the job results give a list"]
        return _compare_list(path, got, want)
    if type(got) is not type(want) or got != want:
        return [f"{path} is {_canon(got)[:200]} but the job results give {_canon(want)[:200]}"]
    return []


def problems(output: Any, expected: dict[str, Any]) -> list[str]:
    """What the aggregate gets wrong against the facts the job results give (empty: none)."""
    return _compare("", output, expected)
