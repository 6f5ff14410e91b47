"""Benchmark bookkeeping: summaries, discovery accuracy and the README table."""

import json
import sys

import numpy as np
import pytest
import torch
from helpers import benchmark_script, fails

from softequiv.bench import (
    dispatch_order,
    markdown_table,
    run_benchmark,
    summarize,
    update_readme,
)
from softequiv.errors import InputError

GROUPS = [{"name": n, "lambda": 1.0, "model_error": 0.1, "true_error": None}
          for n in ("O(3)", "O2xy", "O2yz", "O2xz")]


def run(label, seed, mse, ranking, method="per"):
    return {"label": label, "method": method, "group": 0, "seed": seed,
            "setting": {"axis": "z", "eps": 0.3}, "test_mse": mse, "valid_mse": mse,
            "seconds": 2.0, "ranking": ranking, "exact_reported": [],
            "truly_exact": ["O2xy"], "groups": GROUPS}


def test_summary_statistics_and_discovery_accuracy():
    runs = [run("PER", 0, 1.0, ["O2xy", "O2yz", "O2xz"]),
            run("PER", 1, 3.0, ["O2yz", "O2xy", "O2xz"]),
            run("MLP", 0, 5.0, ["O2xy", "O2xz", "O2yz"], method="mlp")]
    summary = summarize(runs)
    per = next(s for s in summary if s["method"] == "PER")
    assert per["runs"] == 2 and per["test_mse_mean"] == 2.0 and per["test_mse_std"] == 1.0
    assert per["discovery_accuracy"] == 0.5 and per["lambdas_mean"] == [1.0] * 4
    mlp = next(s for s in summary if s["method"] == "MLP")
    assert mlp["discovery_accuracy"] == 1.0 and "lambdas_mean" not in mlp


def test_accuracy_is_undefined_without_a_single_exact_candidate():
    row = run("PER", 0, 1.0, ["O2xy", "O2yz", "O2xz"])
    row["truly_exact"] = []
    assert summarize([row])[0]["discovery_accuracy"] is None


def test_markdown_table_and_readme_markers(tmp_path):
    summary = summarize([run("PER", 0, 1.0, ["O2xy", "O2yz", "O2xz"])])
    table = markdown_table("inertia", summary, {"epochs": 10})
    assert table.splitlines()[0].startswith("| setting | method | runs | test MSE")
    assert "axis=z, eps=0.3 | PER | 1 | 1 ± 0" in table and "100%" in table
    assert "- axis=z, eps=0.3, PER: O(3) 1 / 0.1, 0/1 exact; O2xy 1 / 0.1, 0/1 exact" in table
    readme = tmp_path / "README.md"
    readme.write_text("a\n<!-- bench:inertia -->\nSTALE\n<!-- /bench:inertia -->\nb\n")
    update_readme("inertia", table, readme)
    text = readme.read_text()
    assert "STALE" not in text and table in text and text.startswith("a\n") and text.endswith("b\n")


def judged(verdicts, truths, lambdas=None):
    return [{"name": n, "lambda": 1.0, "model_error": 0.1, "true_error": t, "verdict": v}
            for n, v, t in zip(("O(3)", "O2xy", "O2yz", "O2xz"), verdicts, truths, strict=True)]


def test_summary_counts_verdicts_false_holds_and_compares_rules():
    truths = [0.4, 1e-16, 0.3, 0.3]
    rows = [run("PER", seed, 1.0, ["O2xy", "O2yz", "O2xz"]) for seed in range(3)]
    rows[0]["groups"] = judged(["broken", "holds", "broken", "broken"], truths)
    rows[1]["groups"] = judged(["broken", "undetermined", "holds", "broken"], truths)
    rows[2]["groups"] = judged(["undetermined", "holds", "broken", "broken"], truths)
    rules = [{"fit": [0, 100, 1, 2], "gradient": [0, 100, 100, 3]},
             {"fit": [0, 100, 10, 1], "gradient": [0, 50, 100, 3]},
             {"fit": [0, 100, 4, 4], "gradient": [0, 100, 1, 1]}]
    for row, lam in zip(rows, rules, strict=True):
        row["rule_lambdas"] = lam
    (per,) = summarize(rows)
    assert per["verdicts"]["O2xy"] == {"holds": 2, "broken": 0, "undetermined": 1}
    assert per["verdicts"]["O(3)"] == {"holds": 0, "broken": 2, "undetermined": 1}
    assert per["false_holds"] == 1  # O2yz holds in run 1, but the truth breaks it
    assert per["rules"]["fit"] == {"exact_strongest": 1.0, "broken_over_exact": 0.04}
    assert per["rules"]["gradient"]["exact_strongest"] == pytest.approx(1 / 3)
    assert "published" not in per["rules"]  # no run measured it
    table = markdown_table("inertia", [per], {"epochs": 10})
    assert "(false holds: 1): O(3) 1 / 0.1 (truth 0.4), 0/2/1" in table
    assert "| axis=z, eps=0.3 | PER | - | 100%, 0.04 | - | - | 33%, 1 |" in table


def test_bad_task_method_and_seeds_are_input_errors():
    with pytest.raises(InputError, match="unknown benchmark task"):
        run_benchmark("nope")
    with pytest.raises(InputError, match="unknown method"):
        run_benchmark("inertia", methods=["XYZ"])
    with pytest.raises(InputError, match="seeds"):
        run_benchmark("inertia", seeds=0)


def test_a_tiny_grid_runs_end_to_end_without_touching_the_readme(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "README.md").write_text("<!-- bench:cossim -->\nold\n<!-- /bench:cossim -->\n")
    out = tmp_path / "cossim.json"
    tiny = {"epochs": 4, "t_adj": 2, "window": 1, "ch": 8, "layers": 1,
            "refit_steps": 4, "rule_steps": 2}
    result = run_benchmark("cossim", seeds=1, methods=["MLP", "PER"],
                           settings=[{"variant": "so3"}], workers=1, protocol=tiny, out=out,
                           readme=False)
    saved = json.loads(out.read_text())
    assert saved["summary"] == result["summary"] and len(saved["runs"]) == 2
    assert {r["label"] for r in saved["runs"]} == {"MLP", "PER"}
    per = next(r for r in saved["runs"] if r["label"] == "PER")
    assert per["truly_exact"] == ["SO(3)"] and len(per["ranking"]) == 2
    assert all(g["verdict"] in ("holds", "broken", "undetermined") for g in per["groups"])
    assert set(per["rule_lambdas"]) >= {"error", "published", "relative"}
    assert np.isfinite(per["test_mse"]) and saved["protocol"]["epochs"] == 4
    assert "old" in (tmp_path / "README.md").read_text()


def test_a_row_with_its_own_options_trains_with_them(tmp_path):
    tiny = {"epochs": 3, "t_adj": 1, "window": 1, "ch": 8, "layers": 1,
            "refit_steps": 4, "rule_steps": 2}
    result = run_benchmark("inertia", seeds=1, methods=["PER (published recipe)"],
                           settings=[{"axis": "z", "eps": -1.0}], workers=1, protocol=tiny,
                           out=tmp_path / "inertia.json", readme=False)
    (row,) = result["runs"]
    assert row["label"] == "PER (published recipe)"
    assert row["protocol"] == tiny | {"lambda_init": 100.0, "p": 2.0, "rule": "published",
                                      "penalty": "coupled"}


def test_merge_keeps_the_other_methods_rows(tmp_path):
    tiny = {"epochs": 3, "t_adj": 1, "window": 1, "ch": 8, "layers": 1,
            "refit_steps": 4, "rule_steps": 2}
    out = tmp_path / "cossim.json"
    common = dict(seeds=1, settings=[{"variant": "so3"}], workers=1, protocol=tiny, out=out,
                  readme=False)
    first = run_benchmark("cossim", methods=["MLP", "PER"], **common)
    merged = run_benchmark("cossim", methods=["PER"], merge=True, **common)
    assert sorted(r["label"] for r in merged["runs"]) == ["MLP", "PER"]
    mlp = [r for r in merged["runs"] if r["label"] == "MLP"]
    assert mlp == [r for r in first["runs"] if r["label"] == "MLP"]
    assert [m["label"] for m in merged["methods"]] == ["MLP", "PER"]
    assert merged["wall_seconds"] > first["wall_seconds"]


def test_merge_adds_seeds_and_settings_without_redoing_the_rest(tmp_path):
    tiny = {"epochs": 3, "t_adj": 1, "window": 1, "ch": 8, "layers": 1,
            "refit_steps": 4, "rule_steps": 2}
    out = tmp_path / "cossim.json"
    common = dict(methods=["MLP"], workers=1, protocol=tiny, out=out, readme=False)
    first = run_benchmark("cossim", seeds=1, settings=[{"variant": "so3"}], **common)
    more = run_benchmark("cossim", seeds=1, first_seed=1, settings=[{"variant": "scale"}],
                         merge=True, **common)
    keys = sorted((r["setting"]["variant"], r["seed"]) for r in more["runs"])
    assert keys == [("scale", 1), ("so3", 0)]
    assert [r for r in more["runs"] if r["seed"] == 0] == first["runs"]
    with pytest.raises(InputError, match="first-seed"):
        run_benchmark("cossim", seeds=1, first_seed=-1, **common)


def test_a_row_for_a_named_group_skips_settings_without_it(tmp_path, monkeypatch):
    from softequiv import bench

    tiny = {"epochs": 2, "t_adj": 1, "window": 1, "ch": 8, "layers": 1,
            "refit_steps": 4, "rule_steps": 2}
    task = bench.TASKS["cossim"]
    rows = [bench.Method("EMLP-Scaling", "emlp", "Scaling(3)"),
            bench.Method("EMLP-absent", "emlp", "O2xy")]
    monkeypatch.setitem(bench.TASKS, "cossim", bench.Task(task.dataset, task.settings, rows,
                                                          task.protocol))
    result = run_benchmark("cossim", seeds=1, settings=[{"variant": "scale"}], workers=1,
                           protocol=tiny, out=tmp_path / "c.json", readme=False)
    assert [(r["label"], r["group"]) for r in result["runs"]] == [("EMLP-Scaling", "Scaling(3)")]


def test_bench_only_picks_settings_and_rejects_unknown_keys():
    from softequiv.bench import matching_settings

    assert matching_settings("inertia", ["axis=z", "eps=-1"]) == [{"axis": "z", "eps": -1.0}]
    assert matching_settings("mujoco-ant", ["bodies=all"]) == [{"variant": "o3", "bodies": "all"}]
    assert matching_settings("inertia", None) is None
    with pytest.raises(InputError, match="KEY=VALUE"):
        matching_settings("inertia", ["colour=red"])
    with pytest.raises(InputError, match="matches no setting"):
        matching_settings("inertia", ["axis=w"])


TINY = {"epochs": 3, "t_adj": 1, "window": 1, "ch": 8, "layers": 1}


def _without_timings(result):
    runs = [{k: v for k, v in r.items() if k != "seconds"} for r in result["runs"]]
    summary = [{k: v for k, v in s.items() if k != "seconds_mean"} for s in result["summary"]]
    return runs, summary


def test_ray_tasks_give_the_serial_results(tmp_path):
    """Two local Ray workers and one serial run of the same seeds store identical rows
    (every number but the timings), in grid order."""
    pytest.importorskip("ray")
    common = dict(seeds=1, methods=["MLP", "PER"], settings=[{"variant": "so3"}],
                  protocol=TINY, readme=False)
    serial = run_benchmark("cossim", workers=1, out=tmp_path / "serial.json", **common)
    on_ray = run_benchmark("cossim", workers=2, out=tmp_path / "ray.json", **common)
    assert _without_timings(on_ray) == _without_timings(serial)
    assert [r["label"] for r in on_ray["runs"]] == ["MLP", "PER"]


def test_workers_take_the_costliest_runs_first_and_otherwise_the_grid_order():
    jobs = [{"method": m} for m in ("mlp", "per", "mlp", "emlp", "per")]
    assert dispatch_order(jobs) == [1, 3, 4, 0, 2]


def test_one_worker_needs_no_ray_and_more_name_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails
    common = dict(seeds=1, methods=["MLP"], settings=[{"variant": "so3"}], protocol=TINY,
                  out=tmp_path / "cossim.json", readme=False)
    assert len(run_benchmark("cossim", workers=1, **common)["runs"]) == 1
    fails(lambda: run_benchmark("cossim", workers=2, **common), "softequiv[ray]")
    fails(lambda: run_benchmark("cossim", address="auto", **common), "softequiv[ray]")


def test_workers_and_address_are_checked(tmp_path):
    common = dict(seeds=1, methods=["MLP"], out=tmp_path / "x.json", readme=False)
    fails(lambda: run_benchmark("cossim", workers=0, **common), "--workers", "at least 1")
    fails(lambda: run_benchmark("cossim", address=" ", **common), "--address")


def field_run(seed, variant, asymmetry, c4_error, ranking, verdicts=("broken",) * 4):
    truth = {"D4": 0.6 * asymmetry, "C4": 0.6 * asymmetry, "FlipX": 0.0, "FlipY": 0.0}
    groups = [{"name": n, "lambda": 1.0, "model_error": c4_error if n in ("D4", "C4") else 1e-3,
               "true_error": t, "verdict": v}
              for (n, t), v in zip(truth.items(), verdicts, strict=True)]
    return {"label": "PER", "method": "per", "group": 0, "seed": seed,
            "setting": {"variant": variant} | ({"level": asymmetry} if variant == "levels"
                                               else {}),
            "test_mse": 1.0, "valid_mse": 1.0, "seconds": 2.0, "ranking": ranking,
            "exact_reported": [], "groups": groups, "asymmetry": asymmetry,
            "truly_exact": [n for n, t in truth.items() if t == 0], "parameters": 10,
            "test_sets": {"future": {"rows": 3, "mse": 4.0, "rmse": 2.0},
                          "domain": {"rows": 3, "mse": 1.0, "rmse": 1.0}}}


def test_field_table_rmse_per_test_set_ranking_verdicts_and_levels():
    good, bad = ["FlipX", "FlipY", "C4"], ["C4", "FlipX", "FlipY"]
    holds = ("broken", "broken", "holds", "holds")
    runs = [field_run(0, "rotation", 0.2, 0.025, good, holds),
            field_run(1, "rotation", 0.2, 0.025, bad, ("holds",) * 4)]
    runs += [field_run(seed, "levels", a, 0.1 * a + 0.01 * seed, good)
             for seed in (0, 1) for a in (0.0, 0.1, 0.4)]
    summary = summarize(runs)
    rotation = summary[0]
    assert rotation["rmse"]["future"] == {"mean": 2.0, "std": 0.0}
    assert rotation["ranking_agrees"] == 1  # the second ranks the broken C4 first
    assert rotation["holds"] == [4, 4, 2]  # exact candidates held 4/4; 2 false holds
    table = markdown_table("smoke", summary, {"epochs": 60})
    assert "| setting | method | params | runs | RMSE future | RMSE domain |" in table
    assert "| variant=rotation | PER | 10 | 2 | 2.0000 ± 0 | 1.0000 ± 0 |" in table
    assert "| 1/2 | 4/4 | 2 |" in table
    assert "- C4: rho = 1.00 (per seed: 1.00, 1.00)" in table


@pytest.mark.parametrize("case", ["grid-advection", "grid-isotropic"])
def test_held_out_grid_simulator_holds_exactly_the_stated_candidates(case):
    """The advection held-out case's truth, in float64 over every element of each lattice
    group: error below 1e-12 for the candidates it calls exact, above 1e-3 for the others."""
    from softequiv.fields import field_equivariance_error
    from softequiv.spec import parse_groups, parse_rep

    bench = benchmark_script("bench_heldout")
    held_out = bench.cases()[case]
    stated, anisotropy = held_out["exact"], held_out["anisotropy"]
    X, _ = bench.advection(n=3, anisotropy=anisotropy, seed=5)

    def simulate(x):
        return torch.as_tensor(bench.advect(x.numpy(), anisotropy))

    rep_in, rep_out = parse_rep("Scalar + Vector"), parse_rep("Scalar")
    for group in parse_groups("D4, C4, C2, D2, FlipX, FlipY"):
        error = float(field_equivariance_error(simulate, torch.as_tensor(X), group, rep_in,
                                               rep_out))
        assert (error < 1e-12) if group.name in stated else (error > 1e-3), (group.name, error)
