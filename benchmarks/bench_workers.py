"""Sweep benchmark (issue 13): wall time of a reduced inertia table with 1 and with 2
local Ray workers (one torch thread each), on this machine, back to back, and whether
both give the same results.

Reduced grid: 2 settings (axis z eps -1, axis x eps 0.3) x 2 methods (MLP, PER) x 2 seeds,
100 epochs, T_adj 25 (the full table: 6 settings x 6 methods x 5 seeds x 400 epochs). Needs
``softequiv[ray]``. Writes benchmarks/results/workers.json. Run:
``.venv/bin/python benchmarks/bench_workers.py``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from softequiv.bench import run_benchmark
from softequiv.data.cache import write_json

RESULTS = Path(__file__).parent / "results" / "workers.json"
GRID = {"seeds": 2, "methods": ["MLP", "PER"],
        "settings": [{"axis": "z", "eps": -1.0}, {"axis": "x", "eps": 0.3}],
        "protocol": {"epochs": 100, "t_adj": 25, "window": 12}}


def main() -> dict:
    walls, results = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            result = run_benchmark("inertia", workers=workers, out=Path(tmp) / f"{workers}.json",
                                   readme=False, **GRID)
            walls[workers] = result["wall_seconds"]
            results[workers] = [{k: v for k, v in r.items() if k != "seconds"}
                                for r in result["runs"]]
    out = {"machine": {"cpu_count": os.cpu_count(),
                       "note": "2 CPU cores; no other job running while measured"},
           "grid": GRID | {"runs": len(results[1])},
           "wall_seconds": {"1 worker": walls[1], "2 workers": walls[2]},
           "speedup_2_workers": walls[1] / walls[2],
           "identical_results": results[1] == results[2]}
    write_json(RESULTS, out)
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
