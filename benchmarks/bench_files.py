"""Benchmark: load and validate a 1,000,000-row x 40-column numeric CSV.

Targets (issue 4): under 10 s and under 2 GB peak memory on 2 CPU cores. The CSV is
written to a temporary directory first, by a separate process and not timed. The load
runs in a fresh child process pinned to at most 2 cores; its peak resident memory is
read from ``VmHWM`` in ``/proc/self/status`` (Linux; falls back to ``ru_maxrss``, which
Linux carries over from the parent across exec -- hence the lean parent), so it covers
only the interpreter, the imports and the load. The child also reports its peak right
after the imports, so the load's own share can be read off. Results go to
``benchmarks/results/files.json``.

Run: ``.venv/bin/python benchmarks/bench_files.py [--rows N] [--cols K] [--repeats R]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from softequiv.atomic import write_text

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "files.json"
CORES = 2

# The child: pin to CORES cores, import, load once, report time and peak RSS as JSON.
CHILD = """
import json, os, resource, sys, time

def peak_kb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

cores = sorted(os.sched_getaffinity(0))[: int(sys.argv[4])]
os.sched_setaffinity(0, cores)
import pyarrow
pyarrow.set_cpu_count(len(cores))
from softequiv.data.files import load_table
import_rss = peak_kb()
start = time.perf_counter()
table = load_table(sys.argv[1], x_cols=sys.argv[2], y_cols=sys.argv[3])
seconds = time.perf_counter() - start
peak = peak_kb()
print(json.dumps({
    "seconds": seconds, "peak_kb": peak, "import_kb": import_rss, "cores": len(cores),
    "X_shape": list(table.X.shape), "Y_shape": list(table.Y.shape),
    "X_dtype": str(table.X.dtype), "pyarrow": pyarrow.__version__,
    "checksum": float(table.X[:, 0].sum() + table.Y[:, 0].sum()),
}))
"""


def write_csv(path: Path, rows: int, cols: int, seed: int = 0) -> None:
    """A CSV of standard-normal float64 values, columns x0.. then y0..y2, full precision."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)
    names = [f"x{j}" for j in range(cols - 3)] + [f"y{j}" for j in range(3)]
    table = pa.table({name: rng.standard_normal(rows) for name in names})
    pacsv.write_csv(table, path)


def write_in_child(path: Path, rows: int, cols: int) -> None:
    """Write the CSV from another process so this one stays small (see the docstring)."""
    code = "import sys; from bench_files import write_csv; "
    code += "write_csv(__import__('pathlib').Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent)}
    subprocess.run(
        [sys.executable, "-c", code, str(path), str(rows), str(cols)], env=env, check=True
    )


def load_in_child(path: Path, cols: int) -> dict:
    """Run one load in a fresh interpreter and return what it reported."""
    x_cols, y_cols = f"x0:x{cols - 4}", f"{cols - 3}:{cols}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), x_cols, y_cols, str(CORES)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(done.stdout)


def main() -> None:
    """Write the CSV, load it ``--repeats`` times in child processes, save the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cols", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.csv"
        start = time.perf_counter()
        write_in_child(path, args.rows, args.cols)
        write_seconds = time.perf_counter() - start
        size_mb = path.stat().st_size / 2**20
        runs = [load_in_child(path, args.cols) for _ in range(args.repeats)]
    best = min(runs, key=lambda run: run["seconds"])
    result = {
        "rows": args.rows,
        "cols": args.cols,
        "seconds": round(best["seconds"], 3),
        "seconds_all": [round(run["seconds"], 3) for run in runs],
        "peak_mb": round(max(run["peak_kb"] for run in runs) / 1024, 1),
        "import_peak_mb": round(max(run["import_kb"] for run in runs) / 1024, 1),
        "arrays_mb": round(args.rows * args.cols * 8 / 2**20, 1),
        "file_mb": round(size_mb, 1),
        "write_seconds_excluded": round(write_seconds, 2),
        "cores": best["cores"],
        "X_shape": best["X_shape"],
        "Y_shape": best["Y_shape"],
        "note": "seconds: best of repeats (load_table only, file in page cache); peak_mb: "
        "worst child VmHWM (interpreter + imports + load); import_peak_mb: same, before load",
        "machine": f"{platform.machine()} {platform.processor() or ''} cpus={os.cpu_count()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pyarrow": best["pyarrow"],
        "date": time.strftime("%Y-%m-%d"),
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    write_text(RESULT, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
