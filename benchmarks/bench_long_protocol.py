"""Does the short benchmark protocol reach the accuracy of the published long one?

Issue 3 asks to show it on one setting: modified inertia, axis z, eps 0.3, seed 0 (the
setting of the published JAX reference run). PER with the bench protocol (400 epochs,
T_adj 100) against PER with the published schedule (8000 epochs, T_adj 2000), plus the
MLP at 8000 epochs for scale. Writes benchmarks/results/long-protocol.json (about 10
minutes on 2 CPU cores). Run: ``.venv/bin/python benchmarks/bench_long_protocol.py``.
"""

from __future__ import annotations

from pathlib import Path

from softequiv.atomic import write_json
from softequiv.bench import PER_PROTOCOL, run_benchmark

RESULTS = Path(__file__).parent / "results" / "long-protocol.json"
SETTING = {"axis": "z", "eps": 0.3}
LONG = {"epochs": 8000, "t_adj": 2000, "window": 1000}


def main() -> dict:
    rows = {}
    for name, methods, protocol in (("per_long", ["PER"], LONG), ("mlp_long", ["MLP"], LONG),
                                    ("per_short", ["PER"], {})):
        result = run_benchmark("inertia", seeds=1, methods=methods, settings=[SETTING],
                               workers=1, protocol=protocol, readme=False,
                               out=RESULTS.with_name(f"long-protocol-{name}.json"))
        run = result["runs"][0]
        rows[name] = {"protocol": result["protocol"], "test_mse": run["test_mse"],
                      "valid_mse": run["valid_mse"], "seconds": run["seconds"],
                      "ranking": run["ranking"], "exact": run["exact_reported"],
                      "lambdas": [g["lambda"] for g in run["groups"]]}
        RESULTS.with_name(f"long-protocol-{name}.json").unlink()
    out = {"setting": SETTING | {"seed": 0}, "bench_protocol": PER_PROTOCOL, "runs": rows}
    write_json(RESULTS, out, indent=2)
    return out


if __name__ == "__main__":
    for name, row in main()["runs"].items():
        print(f"{name}: test MSE {row['test_mse']:.4g} in {row['seconds']:.0f} s, "
              f"ranking {row['ranking']}, exact {row['exact']}")
