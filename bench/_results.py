"""bench/RESULTS.md: each benchmark rewrites its own "## " section and leaves the others alone."""

from __future__ import annotations

import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def write_section(
    heading: str, section: str, *, keep_analysis: bool = False, path: Path = RESULTS
) -> None:
    """Put ``section`` (which starts with ``heading``) where that section was, or append it.

    With ``keep_analysis`` the generated block ends at the first "### " subsection, so the
    hand-written analysis that follows it survives a rerun."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    end = r"(?=\n### |\n## |\Z)" if keep_analysis else r"(?=\n## |\Z)"
    pattern = re.compile(re.escape(heading) + r"\n.*?" + end, flags=re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)  # a function: no escapes read in it
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text)


def reproduce(command: str, host: str) -> str:
    """The line under a section's heading: how to rerun it, and where it was measured."""
    return (
        f"Reproduce: `{command}` (`--quick` for a smoke pass). Measured on {host}, "
        "while other work shared the 2 cores: rerun on a quiet machine for numbers to quote."
    )
