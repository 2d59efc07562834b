"""python -m bench [NAME ...]: run the benchmarks (all, or the named ones). See bench/RESULTS.md."""

from __future__ import annotations

import sys

BENCHMARKS = {"runs_list": "bench.runs_list"}


def main(argv: list[str]) -> int:
    import importlib

    names = argv or list(BENCHMARKS)
    for name in names:
        if name not in BENCHMARKS:
            print(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
            return 2
        importlib.import_module(BENCHMARKS[name]).main()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
