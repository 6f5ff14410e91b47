"""Derive the verdicts of stored benchmark runs again by the current decision rule.

A verdict is a decision on evidence (the refits' validation-MSE ratio and its interval,
stored with every run); the decision rule (:mod:`softequiv.verdicts`) can change without
the evidence changing, since the refits do not depend on it. This rewrites each run's
verdicts, ``exact_reported``, ``warnings`` and ``ranking`` (:func:`softequiv.report.rank`),
the summaries, and the README tables, exactly as rerunning ``softequiv bench`` with the
same seeds would, without the hours of training.

Run: ``.venv/bin/python benchmarks/rejudge.py [TASK ...]`` (default: every results file,
``heldout`` included).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from softequiv.atomic import write_json
from softequiv.bench import RESULTS_DIR, TASKS, markdown_table, summarize, update_readme
from softequiv.report import rank
from softequiv.verdicts import HOLDS, rejudge


def rejudge_row(row: dict) -> bool:
    """Rejudge one run in place; False when it carries no verdicts."""
    groups = row.get("groups", [])
    if not groups or not all("evidence" in g for g in groups):
        return False
    found, warnings = rejudge(groups)
    for group, verdict in zip(groups, found, strict=True):
        group.update(verdict)
    if "exact_reported" in row:
        row["exact_reported"] = [g["name"] for g in groups if g["verdict"] == HOLDS]
    if "ranking" in row and all(g.get("model_error") is not None for g in groups[1:]):
        row["ranking"] = rank(groups[1:])
    row["warnings"] = [w for w in row.get("warnings", []) if w.startswith("verdicts undetermined")]
    row["warnings"] += warnings
    return True


def rejudge_heldout() -> None:
    """The held-out cases of ``bench_heldout.py`` (their own results file and table)."""
    sys.path.insert(0, str(Path(__file__).parent))
    import bench_heldout

    if not bench_heldout.RESULTS.exists():
        return
    results = json.loads(bench_heldout.RESULTS.read_text())
    for case in results["cases"]:
        rejudge_row(case)
        case["false_holds"] = [g["name"] for g in case["groups"]
                               if g["verdict"] == HOLDS and not g["truly_exact"]]
    write_json(bench_heldout.RESULTS, results, indent=2)
    update_readme("heldout", bench_heldout.table(results["cases"]))
    print(f"heldout: {len(results['cases'])} cases rejudged")


def main(tasks: list[str]) -> None:
    if "heldout" in tasks:
        rejudge_heldout()
    for task in (t for t in tasks if t in TASKS):
        path = RESULTS_DIR / f"{task}.json"
        if not path.exists():
            continue
        result = json.loads(path.read_text())
        changed = sum(rejudge_row(row) for row in result["runs"])
        result["summary"] = summarize(result["runs"])
        write_json(path, result, indent=2)
        update_readme(task, markdown_table(task, result["summary"], result["protocol"]),
                      Path("README.md"))
        print(f"{task}: {changed} runs rejudged")


if __name__ == "__main__":
    main(sys.argv[1:] or [*TASKS, "heldout"])
