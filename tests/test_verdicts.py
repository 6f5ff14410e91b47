"""Verdicts (SPEC 9) on hand-made evidence: per-row validation errors of a free model and of
models constrained to each candidate, with known ratios and spreads."""

import numpy as np
import pytest
import torch

from softequiv import verdicts as V


def errors(n: int, mean: float, spread: float, seed: int) -> torch.Tensor:
    """Positive per-row squared errors with a given mean and relative spread."""
    rng = np.random.default_rng(seed)
    return torch.tensor(mean * rng.gamma(1 / spread**2, spread**2, size=n))


NAMES = ["A", "B", "C"]


def targets(n: int, variance: float, seed: int = 9) -> torch.Tensor:
    return torch.tensor(np.random.default_rng(seed).normal(0, variance ** 0.5, size=(n, 2)))


def test_a_constraint_that_costs_nothing_holds():
    free = errors(1000, 0.01, 0.5, 0)
    constrained = free * (1 + 0.002 * torch.randn(1000, dtype=torch.float64).abs())
    evidence = V.ratio_evidence(constrained, free)
    assert evidence.verdict() == V.HOLDS
    assert 1.0 <= evidence.value <= evidence.interval[1] <= V.TOLERANCE
    assert evidence.reason is None


def test_a_constraint_that_costs_far_more_than_the_tolerance_is_broken():
    free = errors(400, 0.01, 0.8, 1)
    constrained = free + errors(400, 0.01, 0.8, 2)  # about twice the error
    evidence = V.ratio_evidence(constrained, free)
    assert evidence.verdict() == V.BROKEN
    assert V.TOLERANCE < evidence.interval[0] <= evidence.value <= evidence.interval[1]


def test_a_noisy_cost_near_the_tolerance_is_undetermined_with_a_reason():
    free = errors(60, 0.01, 1.0, 3)
    constrained = free * torch.tensor(np.random.default_rng(4).uniform(0.8, 1.3, size=60))
    evidence = V.ratio_evidence(constrained, free)
    assert evidence.interval[0] <= V.TOLERANCE < evidence.interval[1]
    assert evidence.verdict() == V.UNDETERMINED
    assert "straddles the tolerance" in evidence.reason


def test_interval_covers_the_point_estimate_and_is_seeded():
    free = errors(300, 1.0, 0.7, 5)
    constrained = free * torch.tensor(np.random.default_rng(6).uniform(0.9, 1.4, size=300))
    a = V.ratio_evidence(constrained, free, seed=3)
    b = V.ratio_evidence(constrained, free, seed=3)
    assert a == b
    assert a.interval[0] < a.value < a.interval[1]
    assert a.value == pytest.approx(float(constrained.sum() / free.sum()))


def test_identical_models_give_a_point_interval_at_one():
    free = errors(100, 0.5, 0.5, 7)
    evidence = V.ratio_evidence(free.clone(), free)
    assert evidence.interval == [1.0, 1.0] and evidence.verdict() == V.HOLDS


def test_blocks_of_rows_are_resampled_together():
    # Rows come in runs of identical values (windows of one trajectory): the block
    # bootstrap sees fewer independent pieces of evidence, so its interval is wider than
    # what the same values shuffled would give.
    base = errors(40, 1.0, 0.8, 8).repeat_interleave(25)
    ratios = torch.tensor(np.random.default_rng(9).uniform(0.7, 1.5, size=40)).repeat_interleave(25)
    blocked = V.ratio_evidence(base * ratios, base)
    order = torch.randperm(len(base), generator=torch.Generator().manual_seed(0))
    shuffled = V.ratio_evidence((base * ratios)[order], base[order])
    width = lambda e: e.interval[1] - e.interval[0]  # noqa: E731
    assert blocked.value == pytest.approx(shuffled.value)
    assert width(blocked) > 1.5 * width(shuffled)


def test_judge_gives_each_candidate_its_verdict():
    n = 500
    free = errors(n, 0.02, 0.6, 10)
    constrained = [free * 3.0, free.clone(), free * 1.5]
    found, warnings = V.judge(free, constrained, targets(n, 1.0), names=NAMES)
    assert [f["verdict"] for f in found] == [V.BROKEN, V.HOLDS, V.BROKEN]
    assert warnings == []
    for f in found:
        assert set(f["evidence"]) >= {"statistic", "value", "interval", "level", "tolerance",
                                      "reason"}
        assert f["evidence"]["statistic"] == V.STATISTIC


def test_too_few_rows_leave_every_candidate_undetermined():
    free = errors(V.MIN_ROWS - 1, 0.01, 0.5, 11)
    found, warnings = V.judge(free, [free * 5, free.clone()], targets(V.MIN_ROWS - 1, 1.0),
                              names=NAMES[:2])
    assert [f["verdict"] for f in found] == [V.UNDETERMINED] * 2
    assert all(f["evidence"]["value"] is None and f["evidence"]["interval"] is None
               and "validation rows" in f["evidence"]["reason"] for f in found)
    assert len(warnings) == 1 and "\n" not in warnings[0]


def test_an_underfit_model_leaves_every_candidate_undetermined():
    # The free model explains 20% of the variance: a constraint that costs nothing here
    # says nothing about the symmetry.
    n = 400
    free = errors(n, 0.8, 0.3, 12)
    found, warnings = V.judge(free, [free.clone(), free * 2], targets(n, 1.0), names=NAMES[:2])
    assert [f["verdict"] for f in found] == [V.UNDETERMINED] * 2
    assert "R^2" in found[0]["evidence"]["reason"] and "R^2" in warnings[0]


def _judged_scaled(scales: list[float], *, spread: float, seed: int, n: int = 500):
    """Judge constrained refits whose row errors are the free refit's times ``scales``."""
    free = errors(n, 0.02, spread, seed)
    return V.judge(free, [free * scale for scale in scales], targets(n, 1.0), names=NAMES)


def test_no_candidate_holds_unless_the_ambient_group_is_shown_broken():
    # Even the most constrained model fits as well as the free one: the data shows no
    # break at all, so "holds" cannot be told from "too little data to see the break".
    found, warnings = _judged_scaled([1.01, 1.0, 3.0], spread=0.6, seed=13)
    assert [f["verdict"] for f in found] == [V.UNDETERMINED, V.UNDETERMINED, V.BROKEN]
    assert "ambient group A is not shown broken" in found[1]["evidence"]["reason"]
    assert found[1]["evidence"]["interval"][1] <= V.TOLERANCE  # the evidence stays
    assert len(warnings) == 1 and "no candidate holds" in warnings[0]


def test_a_constrained_model_that_beats_the_free_one_still_holds():
    # Holding a symmetry the data has usually generalizes better than the free model: a
    # ratio clearly below 1 is evidence for the constraint, not a reason to withhold it.
    found, warnings = _judged_scaled([3.0, 1.0, 0.7], spread=0.3, seed=15)
    assert [f["verdict"] for f in found] == [V.BROKEN, V.HOLDS, V.HOLDS]
    assert warnings == []


def test_rejudging_stored_evidence_reproduces_the_verdicts():
    n = 500
    free = errors(n, 0.02, 0.6, 16)
    cases = [[free * 3.0, free.clone(), free * 1.04],   # broken, holds, straddles
             [free * 1.01, free.clone(), free * 3.0]]   # ambient not shown broken
    for constrained in cases:
        found, warnings = V.judge(free, constrained, targets(n, 1.0), names=NAMES)
        stored = [{"name": name} | f for name, f in zip(NAMES, found, strict=True)]
        again, again_warnings = V.rejudge(stored)
        assert [f["verdict"] for f in again] == [f["verdict"] for f in found]
        assert again_warnings == warnings


def test_a_candidate_is_judged_by_the_best_refit_inside_its_subspace():
    # The ambient group's subspace lies inside candidate 1's: its refit is a G_1 model
    # too, and a better one than G_1's own refit here (which got stuck).
    n = 500
    free = errors(n, 0.02, 0.6, 14)
    constrained = [free * 1.5, free * 3.0, free * 2.5]
    found, _ = V.judge(free, constrained, targets(n, 1.0), names=NAMES,
                       inside=[[0], [1, 0], [2]])
    assert found[1]["evidence"]["value"] == pytest.approx(1.5)
    assert found[2]["evidence"]["value"] == pytest.approx(2.5)


def test_a_candidate_is_measured_against_the_best_refit_that_does_not_impose_it():
    # Candidate 1 holds and its refit generalizes twice as well as the free one, which
    # hides the break of candidate 2 (and of the ambient group) behind the free model's
    # excess error; measured against candidate 1's refit, both are broken.
    n = 500
    free = errors(n, 0.02, 0.3, 17)
    constrained = [free * 1.0, free * 0.5, free * 1.0]
    inside = [[0], [1, 0], [2, 0]]
    alone, _ = V.judge(free, constrained, targets(n, 1.0), names=NAMES)
    assert [f["verdict"] for f in alone] == [V.UNDETERMINED] * 3
    found, warnings = V.judge(free, constrained, targets(n, 1.0), names=NAMES, inside=inside)
    assert [f["verdict"] for f in found] == [V.BROKEN, V.HOLDS, V.BROKEN]
    assert [f["evidence"]["reference"] for f in found] == ["B", V.FREE, "B"]
    assert found[2]["evidence"]["value"] == pytest.approx(2.0)
    assert warnings == []


def test_a_verdict_needs_the_retrained_and_symmetrized_answers_to_agree():
    # Retrained: A broken, B holds, C holds. Symmetrized: A broken, B holds, C broken (the
    # trained model needed its break of C, which a retrained model made up for otherwise).
    n = 500
    free = errors(n, 0.02, 0.3, 18)
    retrained = [free * 3.0, free.clone(), free * 0.98]
    averaged = [free * 2.5, free * 1.01, free * 1.6]
    found, warnings = V.judge(free, retrained, targets(n, 1.0), names=NAMES,
                              symmetrized=(free, averaged))
    assert [f["verdict"] for f in found] == [V.BROKEN, V.HOLDS, V.UNDETERMINED]
    reason = found[2]["evidence"]["reason"]
    assert "disagree" in reason and "retrained" in reason and "symmetrized" in reason
    assert found[2]["evidence"]["symmetrized"]["value"] == pytest.approx(1.6)
    assert found[2]["evidence"]["symmetrized"]["reference"] == V.FREE
    assert "touch_up" not in found[2]["evidence"]
    assert len(warnings) == 1 and "C (the two answers disagree)" in warnings[0]
    # and the other way round: broken once retrained, not when symmetrized
    found, _ = V.judge(free, [free * 3.0, free.clone(), free * 1.6], targets(n, 1.0),
                       names=NAMES, symmetrized=(free, [free * 2.5, free.clone(), free * 0.99]))
    assert found[2]["verdict"] == V.UNDETERMINED
    stored = [{"name": name} | f for name, f in zip(NAMES, found, strict=True)]
    assert [f["verdict"] for f in V.rejudge(stored)[0]] == [f["verdict"] for f in found]


def test_stored_touched_up_answers_are_judged_as_they_were():
    # Reports written before the symmetrized answer carry a touched-up one in its place.
    legacy = V.Evidence(value=0.98, interval=[0.9, 1.04], reference=V.FREE).as_dict()
    legacy["touch_up"] = {"value": 1.6, "interval": [1.4, 1.8], "reference": V.FREE}
    found, _ = V.rejudge([{"name": "A", "verdict": V.HOLDS, "evidence": legacy}])
    assert found[0]["verdict"] == V.UNDETERMINED
    assert "touched-up [1.4, 1.8] says broken" in found[0]["evidence"]["reason"]
    assert found[0]["evidence"]["touch_up"] == legacy["touch_up"]


def test_unsure_warning_names_the_unsure_candidates():
    found = [{"verdict": V.HOLDS, "evidence": V.Evidence(value=1.0, interval=[1, 1]).as_dict()},
             {"verdict": V.UNDETERMINED,
              "evidence": V.Evidence(value=1.04, interval=[0.98, 1.1],
                                     reason="the interval straddles").as_dict()}]
    line = V.unsure_warning(["A", "B"], found)
    assert "B" in line and "A" not in line.split(":")[1]
    assert V.unsure_warning(["A"], found[:1]) is None


def test_candidates_held_exactly_are_ranked_by_their_strength():
    # A snap onto O2xy's subspace makes the model exactly SO2xy-equivariant too: both
    # errors are float rounding, so the strength the data allowed orders them.
    from softequiv.report import rank

    groups = [{"name": "O2xy", "model_error": 3e-7, "lambda": 70.0},
              {"name": "O2yz", "model_error": 0.3, "lambda": 50.0},
              {"name": "SO2xy", "model_error": 4e-7, "lambda": 100.0},
              {"name": "O2xz", "model_error": 0.2, "lambda": None}]
    assert rank(groups) == ["SO2xy", "O2xy", "O2xz", "O2yz"]


def test_the_free_refit_averaged_over_a_candidate_counts_on_both_sides():
    # Candidate 1's own refit missed the free refit's fit by 8% (a separate training);
    # the free refit averaged over it fits better than the free one: a G_1 model that
    # fits as well as any, so G_1 holds. Averaged over candidate 2 the free refit fits
    # 3x worse, and that average does not impose G_1: it never becomes G_1's reference.
    n = 500
    free = errors(n, 0.02, 0.3, 19)
    constrained = [free * 3.0, free * 1.08, free * 2.0]
    averaged = [free * 3.0, free * 0.9, free * 3.0]
    inside = [[0], [1, 0], [2, 0]]
    before, _ = V.judge(free, constrained, targets(n, 1.0), names=NAMES, inside=inside)
    assert [f["verdict"] for f in before] == [V.BROKEN, V.BROKEN, V.BROKEN]
    found, _ = V.judge(free, constrained, targets(n, 1.0), names=NAMES, inside=inside,
                       free_averaged=averaged)
    assert [f["verdict"] for f in found] == [V.BROKEN, V.HOLDS, V.BROKEN]
    assert found[1]["evidence"]["value"] == pytest.approx(0.9)
    assert found[1]["evidence"]["imposing"] == V.averaged_name("B")
    assert found[1]["evidence"]["reference"] == V.FREE
    # the break of C is measured against the best model not imposing it: B's average
    assert found[2]["evidence"]["reference"] == V.averaged_name("B")
    assert found[2]["evidence"]["value"] == pytest.approx(2.0 / 0.9)
    stored = [{"name": name} | f for name, f in zip(NAMES, found, strict=True)]
    assert [f["verdict"] for f in V.rejudge(stored)[0]] == [f["verdict"] for f in found]


def test_averaged_refits_count_for_the_candidates_they_impose_and_against_the_others():
    # B's own refit misses the best fit (C's refit, which does not impose B) by 18% and the
    # free refit averaged over B by 16%, but C's refit averaged over the group it
    # generates with B (imposing B and C) fits within 1% of it: B holds.
    n = 500
    free = errors(n, 0.02, 0.3, 23)
    constrained = [free * 3.0, free * 1.12, free * 0.95]
    averaged = [free * 3.0, free * 1.10, free * 1.5]
    inside = [[0], [1, 0], [2, 0]]
    before, _ = V.judge(free, constrained, targets(n, 1.0), names=NAMES, inside=inside,
                        free_averaged=averaged)
    assert [f["verdict"] for f in before] == [V.BROKEN, V.BROKEN, V.HOLDS]
    both = V.Averaged(V.averaged_name("B", refit="C"), free * 0.96, frozenset({1, 2}))
    only_c = V.Averaged(V.averaged_name("A", refit="C"), free * 0.5, frozenset({0, 1, 2}))
    found, _ = V.judge(free, constrained, targets(n, 1.0), names=NAMES, inside=inside,
                       free_averaged=averaged, averaged=[both],
                       symmetrized=(free, [free * 3.0, free, free]))
    assert [f["verdict"] for f in found] == [V.BROKEN, V.HOLDS, V.HOLDS]
    assert found[1]["evidence"]["imposing"] == "C averaged over B"
    assert found[1]["evidence"]["reference"] == "C"
    # a model imposing every candidate that fits best shows no break of any
    found, _ = V.judge(free, constrained, targets(n, 1.0), names=NAMES, inside=inside,
                       free_averaged=averaged, averaged=[both, only_c])
    assert [f["evidence"]["imposing"] for f in found] == ["C averaged over A"] * 3
    # an average not imposing a candidate is its reference
    not_b = V.Averaged(V.averaged_name("C", refit="A"), free * 0.5, frozenset({2}))
    found, _ = V.judge(free, constrained, targets(n, 1.0), names=NAMES, inside=inside,
                       free_averaged=averaged, averaged=[not_b])
    assert found[1]["evidence"]["reference"] == "A averaged over C"
    assert found[1]["verdict"] == V.BROKEN
