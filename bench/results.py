"""Machine-readable benchmark results, next to the lines each benchmark prints.

When BENCH_RESULTS names a file, `record` appends one JSON object per call to it:

    {"row": "webhooks.single", "backend": "sqlite", "figure": "4,762",
     "numbers": {"events_per_s": 4762.3}}

`row` is a row of the table in docs/benchmarks.md (its spec, with the target, is in
bench/run_all.py, which sets BENCH_RESULTS and regenerates the table). Without BENCH_RESULTS,
`record` does nothing, so a benchmark run by hand only prints.
"""

from __future__ import annotations

import json
import os

ENV = "BENCH_RESULTS"


def record(row: str, backend: str, figure: str, **numbers: float) -> None:
    """One table cell: `figure` as shown (without ✓/✗, which run_all adds from the row's target),
    and the raw `numbers` the target is checked against."""
    path = os.environ.get(ENV)
    if not path:
        return
    line = {"row": row, "backend": backend, "figure": figure, "numbers": numbers}
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(line, ensure_ascii=False) + "\n")
