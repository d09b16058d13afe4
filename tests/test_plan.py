"""The plan: estimates, the budget's leave-outs and shares, durations (no timing)."""

from __future__ import annotations

import json

import pytest

from bench.harness import cases as matrix
from bench.harness import plan as planner

pytestmark = pytest.mark.backend_free

PEAK = 130.0  # GFLOP/s, an AVX2 2-core machine's float32 calibration


def _estimates(name="full", history=None):
    return [planner.estimate_case(c, PEAK, history=history)
            for c in matrix.build_matrix(name, ["cpu"])]


def test_durations_parse_and_bad_ones_say_what_to_write():
    assert planner.parse_duration("45m") == 2700
    assert planner.parse_duration("1.5h") == 5400
    assert planner.parse_duration("600") == planner.parse_duration("600s") == 600
    for bad in ("", "soon", "-5m", "0", "10 weeks"):
        with pytest.raises(ValueError, match="e.g. 45m"):
            planner.parse_duration(bad)
    assert planner.format_duration(45) == "45 s"
    assert planner.format_duration(750) == "12.5 min"


def test_every_case_has_a_positive_estimate_and_whole_trainings_cost_more():
    estimates = {(e.case.suite, e.case.id): e for e in _estimates()}
    assert all(e.expected > 0 and e.minimum > 0 for e in estimates.values())
    tta = estimates[("tta", "cnn-cpu-b128-fp32-noxla")]  # up to 15 epochs
    train = estimates[("train", "cnn-cpu-b128-fp32-noxla")]  # a few rounds of 0.5 s
    assert tta.expected > 5 * train.expected
    # A round lasts the target at least: never less than 0.5 s of timed work a round.
    assert all(e.round >= 0.5 for e in estimates.values()
               if e.case.suite in ("train", "inference") and e.rounds_expected)


def test_history_replaces_the_model_where_this_machine_ran_the_case(tmp_path):
    folder = tmp_path / "machine"
    folder.mkdir()
    rows = [{"suite": "train", "case": "mlp-cpu-b128-fp32-xla", "case_seconds": s}
            for s in (9.0, 11.0, 10.0)]
    rows.append({"suite": "train", "case": "mlp-cpu-b1024-fp32-xla", "case_seconds": 99.0,
                 "contended": True})  # a spoiled row teaches nothing
    (folder / "0001_x.json").write_text(json.dumps(
        {"benchmarks": [{"extra_info": r} for r in rows]}))
    (folder / "0002_x.json").write_text("{not json")  # passed over
    history = planner.history_seconds(folder)
    assert history == {("train", "mlp-cpu-b128-fp32-xla"): 10.0}
    [known] = [e for e in _estimates("quick", history) if e.case.id == "mlp-cpu-b128-fp32-xla"
               and e.case.suite == "train"]
    assert (known.source, known.expected) == ("history", 10.0)
    scale = planner.model_scale(_estimates("quick", history), history, {"cpu": PEAK})
    model = planner.estimate_case(known.case, PEAK).expected
    assert scale == pytest.approx(10.0 / model)


def test_a_budget_leaves_out_the_known_slow_and_least_informative_first():
    estimates = _estimates()
    everything = planner.make_plan(estimates, None)
    assert not everything.left_out and len(everything.estimates) == len(estimates)
    budget = everything.total / 3
    plan = planner.make_plan(estimates, budget)
    assert plan.left_out and sum(plan.minimum(e) for e in plan.estimates) <= budget
    first = plan.left_out[0][0]
    assert first.note and first.model == "cnn"  # a known-slow path goes first
    left = {(c.suite, c.id) for c, _ in plan.left_out}
    kept = {(e.case.suite, e.case.id) for e in plan.estimates}
    assert not left & kept and len(left) + len(kept) == len(estimates)
    assert ("train", "mlp-cpu-b128-fp32-xla") in kept  # the headline case stays
    assert all("budget" in reason for _, reason in plan.left_out)
    assert any("left out" in line for line in plan.render())


def test_the_budget_shares_what_is_left_and_leaves_out_a_case_past_it():
    estimates = _estimates("quick")
    plan = planner.make_plan(estimates, budget=100.0)
    clock = [0.0]
    budget = planner.Budget(plan, started=0.0)
    budget_now = planner.time.monotonic
    planner.time.monotonic = lambda: clock[0]
    try:
        first = plan.estimates[0]
        share, reason = budget.start(first.case)
        assert reason is None and 0 < share <= 100.0
        clock[0] = 99.9  # the budget is almost spent
        share, reason = budget.start(plan.estimates[1].case)
        assert share is None and "was spent" in reason
    finally:
        planner.time.monotonic = budget_now
    assert planner.Budget(planner.make_plan(estimates, None)).start(first.case) == (None, None)


def test_the_full_matrix_measures_known_slow_cpu_paths_once_with_a_note():
    cases = matrix.build_matrix("full", ["cpu"])
    slow = [c for c in cases if c.model == "cnn" and c.xla]
    assert len(slow) == 1 and slow[0].note and "once" in slow[0].note
    half = [c for c in cases if c.model == "cnn" and c.precision == "fp16"]
    assert [(c.suite, c.batch_size, c.xla) for c in half] == [("train", 128, False)]
    assert "float16" in half[0].note
    # TensorFlow's float16 MLP without XLA (85x float32 a step on a CPU): once, too.
    mlp = [c for c in cases if c.model == "mlp" and c.precision == "fp16" and not c.xla]
    assert [(c.suite, c.batch_size) for c in mlp] == [("train", 128)] and mlp[0].note
    assert any(c.model == "mlp" and c.precision == "fp16" and c.xla and c.suite == "inference"
               for c in cases)  # with XLA it is swept
    gpu = [c for c in matrix.build_matrix("full", ["gpu:0"]) if c.model == "cnn" and c.xla]
    assert len(gpu) > 20  # on a GPU, XLA convolutions are swept like the rest


def test_the_case_time_caps_an_estimate_but_never_below_its_minimum_rounds():
    case = matrix.Case("train", "mlp", "cpu", 128)
    history = {("train", case.id): 40.0}  # an earlier run that took 20 rounds, 40 s
    free = planner.estimate_case(case, PEAK, history=history)
    capped = planner.estimate_case(case, PEAK, history=history, case_time=12.0)
    assert free.expected == 40.0
    assert capped.expected == pytest.approx(max(capped.minimum, 12.0 + capped.round))
    assert capped.expected < free.expected
    # A case whose minimum rounds alone outlast the cap: the minimum stands.
    slow = planner.estimate_case(case, PEAK, history={("train", case.id): 400.0},
                                 case_time=12.0)
    assert slow.expected == pytest.approx(slow.minimum) and slow.minimum > 12.0
    # Fixed-round suites run their rounds whatever the cap.
    tta = matrix.Case("tta", "mlp", "cpu", 128, rounds=1)
    assert planner.estimate_case(tta, PEAK, case_time=1.0).cap is None


def test_the_quick_matrix_is_capped_harder_than_the_full_one():
    quick, full = matrix.matrix_defaults("quick"), matrix.matrix_defaults("full")
    assert quick["max_rounds"] < full["max_rounds"] and quick["case_time"] < full["case_time"]
    assert matrix.matrix_defaults("tiny")["round_time"] < full["round_time"]
    # A first look within 3 minutes: the quick matrix fits a budget unless one is given.
    assert quick["budget"] == 150.0 and full["budget"] is None


def test_a_case_left_out_is_listed_once_and_never_beside_its_row():
    from bench.harness.session import merge_not_run

    parent = [{"suite": "train", "case": "a", "reason": "over the budget of 10.0 min"},
              {"suite": "train", "case": "b", "reason": "over the budget of 10.0 min"}]
    worker = [{"suite": "train", "case": "a", "reason": "over the budget of 60 s"},
              {"suite": "inference", "case": "a", "reason": "over the budget of 60 s"},
              {"suite": "train", "case": "c", "reason": "over the budget of 60 s"}]
    # The parent's entries come back from the journal too; "c" ran after all.
    merged = merge_not_run(parent + parent + worker, ran={("train", "c")})
    assert [(e["suite"], e["case"], e["reason"]) for e in merged] == [
        ("train", "a", "over the budget of 10.0 min"),
        ("train", "b", "over the budget of 10.0 min"),
        ("inference", "a", "over the budget of 60 s")]
