"""bench.ab: revisions checked, pairs run alternately, verdicts from the pair ratios."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bench import ab
from bench.ab import cli as ab_cli
from tests.test_bench_harness import ROOT

pytestmark = pytest.mark.backend_free  # tox -e py runs these; jax and torch need not


def test_an_unknown_revision_is_one_line_exit_2_and_leaves_nothing(tmp_path, capsys):
    before = subprocess.run(["git", "worktree", "list"], capture_output=True, text=True,
                            cwd=ROOT).stdout
    code = ab.main(["HEAD", "no-such-revision-xyz", "--repo", str(ROOT), "--out",
                    str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "unknown revision 'no-such-revision-xyz'" in err
    assert not (tmp_path / "out").exists()
    assert subprocess.run(["git", "worktree", "list"], capture_output=True, text=True,
                          cwd=ROOT).stdout == before


def _ratios(rng, n: int, change: float, noise: float) -> list[float]:
    return list(change * np.exp(rng.normal(0, noise, n)))


def test_the_four_verdicts_from_the_interval_against_the_threshold():
    rng = np.random.default_rng(0)
    # Pairs of back-to-back runs agree within a few percent; B adds 15%.
    assert ab.verdict(_ratios(rng, 8, 1.15, 0.02), 0.05)["verdict"] == "slower"
    assert ab.verdict(_ratios(rng, 8, 0.80, 0.02), 0.05)["verdict"] == "faster"
    assert ab.verdict(_ratios(rng, 8, 1.00, 0.01), 0.05)["verdict"] == "same"
    assert ab.verdict(_ratios(rng, 5, 1.00, 0.10), 0.05)["verdict"] == "undecided"
    assert ab.verdict([1.3], 0.05)["verdict"] == "undecided"  # one pair: no interval
    # A ratio past the threshold whose interval still reaches below it is not "slower".
    row = ab.verdict([1.02, 1.10, 1.06], 0.05)
    assert row["low"] < 1.05 < row["ratio"] and row["verdict"] == "undecided"
    slower = sum(ab.verdict(_ratios(rng, 5, 1.0, 0.05), 0.05)["verdict"] == "slower"
                 for _ in range(300))
    assert slower <= 3  # A against A: under 1 in 100 by chance, at 99% confidence


def test_the_sequential_rule_holds_its_level_over_all_looks_and_is_narrower_at_the_end():
    one = ab.look_multipliers(5, 5)
    assert one == {5: pytest.approx(ab.t_quantile(0.99, 4))}  # one look: plain Student's t
    factors = ab.look_multipliers(3, 10)
    assert list(factors) == list(range(3, 11))
    assert all(a > b for a, b in zip(list(factors.values()), list(factors.values())[1:],
                                        strict=False))
    # At the last look: wider than one look's interval, narrower than the union bound's.
    assert ab.t_quantile(0.99, 9) < factors[10] < ab.t_quantile(1 - 0.01 / 8, 9)
    # Checked apart from its own simulation (another seed): an unchanged case's interval
    # leaves 1 at any of the 8 looks in about 1% of sequences, 0.5% each way.
    rng = np.random.default_rng(7)
    logs = rng.normal(0, 0.03, (20000, 10))
    wrong = 0
    for row in logs:
        for n in range(3, 11):
            x = row[:n]
            half = factors[n] * x.std(ddof=1) / np.sqrt(n)
            if abs(x.mean()) > half:
                wrong += 1
                break
    assert 0.006 < wrong / 20000 < 0.014


def test_an_eight_percent_change_settles_where_the_union_bound_could_not():
    rng = np.random.default_rng(3)
    factors = ab.look_multipliers(3, 10)
    union = {n: ab.t_quantile(1 - 0.01 / 8, n - 1) for n in range(3, 11)}
    settled = {"sequential": 0, "union": 0}
    for _ in range(400):
        ratios = _ratios(rng, 10, 1.08, 0.012)  # 1.2%: a pair's noise, round by round
        for name, table in (("sequential", factors), ("union", union)):
            settled[name] += any(ab.verdict(ratios[:n], 0.05, multipliers=table)["verdict"]
                                 == "slower" for n in range(3, 11))
    assert settled["sequential"] >= 0.95 * 400 and settled["sequential"] > settled["union"]


def test_a_pair_ratio_is_taken_round_by_round_so_drift_cancels():
    drift = [1.0, 1.4, 0.9, 1.2, 1.0]  # the machine, seen alike by both sides' round i
    base = ab.Timing(1.0, tuple(d for d in drift))
    head = ab.Timing(1.3, tuple(1.1 * d for d in drift) + (9.0,))  # an extra round: unpaired
    assert ab.pair_ratio(base, head) == pytest.approx(1.1)
    assert ab.pair_ratio(ab.Timing(2.0, (2.0, 2.0)), ab.Timing(3.0, (3.0,))) == 1.5  # medians


def _fake_pairs(tmp_path, ratio_of, seed: int, clock=None, seconds: float = 1.0):
    """make_pair for settle(): result files whose HEAD/BASE ratio of case c is
    ``ratio_of[c]`` times lognormal noise; records which cases each pair ran."""
    rng = np.random.default_rng(seed)
    ran = []

    def make_pair(index, only):
        cases = [c for c in ratio_of if not only or f"test_train_epoch[{c}]" in only]
        ran.append(cases)
        if clock is not None:
            clock[0] += seconds
        level = np.exp(rng.normal(0, 0.2))  # the machine's drift: both sides alike
        base = {c: level for c in cases}
        head = {c: level * ratio_of[c][0] * np.exp(rng.normal(0, ratio_of[c][1]))
                for c in cases}
        return (_result(tmp_path / f"s{seed}" / f"base{index}", base),
                _result(tmp_path / f"s{seed}" / f"head{index}", head))

    return make_pair, ran


def test_pairs_are_added_for_the_undecided_cases_only_until_each_settles(tmp_path):
    make_pair, ran = _fake_pairs(tmp_path, {"fast": (0.7, 0.01), "same": (1.0, 0.005),
                                            "slow": (1.2, 0.05), "noisy": (1.0, 0.5)}, 1)
    rows, made, why, _ = ab.settle(make_pair, 0.05, min_pairs=3, max_pairs=10,
                                   say=lambda _: 0)
    verdicts = {r["case"]: r["verdict"] for r in rows}
    assert verdicts["fast"] == "faster" and verdicts["same"] == "same"
    assert verdicts["noisy"] == "undecided"  # never settles: stops at max-pairs, listed
    assert why == "max-pairs" and len(made) == 10
    assert all(len(cases) == 4 for cases in ran[:3])  # every case until the minimum
    assert ran[-1] == ["noisy"] or set(ran[-1]) <= {"noisy", "slow"}
    assert {r["case"]: r["pairs"] for r in rows}["noisy"] == 10
    assert {r["case"]: r["pairs"] for r in rows}["fast"] == 3
    text = ab.render(rows, 0.05, "a" * 40, "b" * 40, pairs=(3, 10), why=why)
    assert "undecided: noisy" in text and "Stopped: max-pairs" in text
    assert all(line.split(" | ")[0].lstrip("| ") in ab.VERDICTS
               for line in text.splitlines()[4:4 + len(rows)])


def test_a_against_a_does_not_drift_into_slower_as_pairs_are_added(tmp_path):
    wrong, same = 0, 0
    for seed in range(60):
        make_pair, _ = _fake_pairs(tmp_path, {"a": (1.0, 0.06), "b": (1.0, 0.03)}, seed)
        rows, _, _, _ = ab.settle(make_pair, 0.05, min_pairs=3, max_pairs=10,
                                  say=lambda _: 0)
        wrong += sum(r["verdict"] in ("slower", "faster") for r in rows)
        same += sum(r["verdict"] == "same" for r in rows)
    assert wrong <= 1  # 180 verdicts (with all cases), 1% allowed in all: about 1.8
    assert same >= 30  # many settle as "same" (50 of 180 here, with 3-6% pair noise)


def test_the_budget_stops_adding_pairs(tmp_path):
    clock = [0.0]
    make_pair, ran = _fake_pairs(tmp_path, {"noisy": (1.0, 0.5)}, 2, clock, seconds=60.0)
    rows, made, why, horizon = ab.settle(make_pair, 0.05, min_pairs=3, max_pairs=50,
                                         budget=300.0, clock=lambda: clock[0],
                                         say=lambda _: 0)
    assert why == "budget" and len(made) == 5 and clock[0] <= 300.0
    # The looks were planned for the 5 pairs the budget fits, not for 50.
    assert horizon == 5
    row = rows[0]
    half = (np.log(row["high"]) - np.log(row["low"])) / 2
    logs = [np.log(ab.pair_ratio(*(ab.run_medians(f)[0][("train", "noisy")] for f in p)))
            for p in made]
    assert half == pytest.approx(ab.look_multipliers(3, 5)[5] * np.std(logs, ddof=1)
                                 / np.sqrt(5))


def test_the_looks_are_planned_for_the_pairs_a_budget_fits():
    assert ab.planned_pairs(None, 180.0, 3, 3, 10) == 10
    assert ab.planned_pairs(300.0, 180.0, 3, 3, 10) == 5  # 60 s a pair
    assert ab.planned_pairs(3600.0, 180.0, 3, 3, 10) == 10  # never past --max-pairs
    assert ab.planned_pairs(30.0, 180.0, 3, 3, 10) == 3  # never before the first look
    assert ab.planned_pairs(30.0, 60.0, 1, 1, 10) == 2
    # Fewer looks, a narrower last one: at 5 pairs, planned for 5 rather than for 10.
    assert ab.look_multipliers(3, 5)[5] < ab.look_multipliers(3, 10)[5]


def test_a_against_a_holds_its_level_when_a_budget_cuts_the_looks_short(tmp_path):
    wrong = 0
    for seed in range(40):
        clock = [0.0]
        make_pair, _ = _fake_pairs(tmp_path, {"a": (1.0, 0.06), "b": (1.0, 0.03)}, 100 + seed,
                                   clock, seconds=60.0)
        rows, made, _, horizon = ab.settle(make_pair, 0.05, min_pairs=3, max_pairs=10,
                                           budget=300.0, clock=lambda c=clock: c[0],
                                           say=lambda _: 0)
        assert horizon == 5 and len(made) <= 5
        wrong += sum(r["verdict"] in ("slower", "faster") for r in rows)
    assert wrong <= 1  # 120 verdicts, 1% allowed over all the looks


def _result(folder, medians: dict, contended=()):
    folder.mkdir(parents=True, exist_ok=True)
    number = len(list(folder.glob("*.json"))) + 1
    path = folder / f"{number:04d}_x.json"
    rows = [{"name": f"test_train_epoch[{case}]", "stats": {"median": m},
             "extra_info": {"suite": "train", "case": case, "contended": case in contended}}
            for case, m in medians.items()]
    path.write_text(json.dumps({"benchmarks": rows}))
    return path


def test_pairs_alternate_redo_contended_runs_and_judge_each_case(tmp_path, capsys):
    order = []
    rng = np.random.default_rng(1)
    drift = {"now": 1.0}  # the machine drifts between pairs; both runs of a pair see it

    class FakeRunner:
        def __init__(self, name, slow):
            self.name, self.slow, self.calls = name, slow, 0

        def run(self):
            order.append(self.name)
            self.calls += 1
            if self.name == "BASE":
                drift["now"] = 1 + 0.3 * rng.random()
            busy = ("b",) if self.name == "HEAD" and self.calls == 2 else ()
            noise = np.exp(rng.normal(0, 0.01, 2))
            return _result(tmp_path / self.name, {"a": drift["now"] * self.slow * noise[0],
                                                  "b": 2.0 * drift["now"] * noise[1]}, busy)

    base, head = FakeRunner("BASE", 1.0), FakeRunner("HEAD", 1.2)
    made = ab.run_pairs(base, head, 3)
    assert order == ["BASE", "HEAD", "BASE", "HEAD", "HEAD", "BASE", "HEAD"]  # one redo
    rows = {r["case"]: r for r in ab.verdicts(made, 0.05)}
    assert rows["a"]["verdict"] == "slower" and rows["a"]["ratio"] > 1.1
    assert rows["b"]["verdict"] != "slower" and rows["b"]["pairs"] == 3
    text = ab.render(list(rows.values()), 0.05, "a" * 40, "b" * 40)
    assert "**SLOWER**: 1 slower" in text


def test_help_explains_the_verdict_and_exit_status():
    out = subprocess.run([sys.executable, "-m", "bench.ab", "--help"], capture_output=True,
                         text=True, cwd=ROOT).stdout
    assert "exit status:" in out and "undecided" in out and "--max-pairs" in out
    assert "--require-decided" in out and "--budget" in out and "look" in out


@pytest.mark.parametrize("pairs", ["0", "-1"])
def test_bad_pairs_are_refused(pairs):
    with pytest.raises(SystemExit) as exit_info:
        ab.main(["HEAD", "HEAD", "--pairs", pairs])
    assert exit_info.value.code == 2


def test_negative_rounds_are_refused_before_any_worktree(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        ab.main(["HEAD", "HEAD", "--rounds", "-1", "--repo", str(ROOT), "--out",
                 str(tmp_path / "out")])
    assert exit_info.value.code == 2 and "--rounds must be 0 or more" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_pytest_options_after_double_dash_reach_the_runs(tmp_path, monkeypatch, capsys):
    seen = {}

    def fake_pair(base, head, index, *folder):
        seen.update(base=base.pytest_args, head=head.pytest_args, pairs=index,
                    rounds=base.rounds_args)
        raise RuntimeError("stop here")

    monkeypatch.setattr(ab_cli, "pair_of_runs", fake_pair)  # where main looks them up
    monkeypatch.setattr(ab_cli, "interleaved_pair", fake_pair)
    code = ab.main(["HEAD", "HEAD", "--pairs", "3", "--repo", str(ROOT), "--out",
                    str(tmp_path / "out"), "--", "-k", "mlp and b128", "--bench-matrix",
                    "ci"])
    assert code == 2 and "stop here" in capsys.readouterr().err
    assert seen == {"base": ["-k", "mlp and b128", "--bench-matrix", "ci"],
                    "head": ["-k", "mlp and b128", "--bench-matrix", "ci"], "pairs": 1,
                    # 20 paired rounds a side by default, before the user's options,
                    # with a case time cap that does not cut them short.
                    "rounds": ["--bench-min-rounds", "20", "--bench-max-rounds", "20",
                               "--bench-case-time", "600"]}
    ab.main(["HEAD", "HEAD", "--rounds", "0", "--repo", str(ROOT), "--out",
             str(tmp_path / "out")])
    assert seen["rounds"] == []


def test_pytest_options_without_double_dash_are_refused_with_the_fix():
    with pytest.raises(SystemExit) as exit_info:
        ab.main(["HEAD", "HEAD", "-k", "mlp"])
    assert exit_info.value.code == 2


@pytest.mark.slow  # two real sessions taking turns; tests/test_turns.py checks the turns
def test_a_real_pair_takes_turns_and_writes_both_result_files(tmp_path, capsys):
    """Both sessions of HEAD run the tiny matrix on synthetic data, taking turns."""
    if not (ROOT / "bench" / "harness" / "turns.py").is_file() or subprocess.run(
            ["git", "cat-file", "-e", "HEAD:bench/harness/turns.py"], cwd=ROOT).returncode:
        pytest.skip("HEAD predates bench/harness/turns.py")
    out = tmp_path / "ab"
    code = ab.main(["HEAD", "HEAD", "--pairs", "1", "--repo", str(ROOT), "--out", str(out),
                    "--", "--bench-matrix", "tiny", "--bench-data", "synthetic",
                    "--bench-device", "cpu", "--bench-quiet-wait", "0",
                    "--bench-max-contention", "100%"])  # the mechanics, on a busy machine too
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "BASE and HEAD taking turns round by round" in printed
    assert "| undecided |" in printed  # one pair: no interval
    for side in ("base", "head"):
        results = sorted((out / side).rglob("[0-9]*.json"))  # more where a pair was redone
        rows = json.loads(results[-1].read_text())["benchmarks"]
        assert {r["extra_info"]["suite"] for r in rows} == {"train", "inference"}


def test_all_cases_together_see_a_small_change_every_case_shares(tmp_path):
    """Each case alone is too noisy to call +15% slower at 99%; their mean over five
    cases is not."""
    rng = np.random.default_rng(3)
    made = []
    for pair in range(10):
        sides = []
        for name, factor in (("base", 1.0), ("head", 1.15)):
            medians = {f"c{i}": factor * np.exp(rng.normal(0, 0.085)) for i in range(5)}
            sides.append(_result(tmp_path / f"{name}{pair}", medians))
        made.append(tuple(sides))
    rows = {r["case"]: r for r in ab.verdicts(made, 0.05)}
    assert rows["(all cases)"]["verdict"] == "slower"
    assert sum(rows[f"c{i}"]["verdict"] == "slower" for i in range(5)) < 5
    text = ab.render(list(rows.values()), 0.05, "a" * 40, "b" * 40)
    assert "all cases together: slower" in text and text.count("| slower |") >= 1


class _Taker(ab.Runner):
    """A side that only takes turns: it writes its revision's name into a log each turn."""

    SCRIPT = ("import os, sys\nfrom bench.harness.turns import Turns\n"
              "turns = Turns.from_environment()\nturns.start()\nfor _ in range(2):\n"
              "    with open(sys.argv[1], 'a') as log:\n"
              "        log.write(sys.argv[2] + ' ')\n    turns.hand_over()\n")

    def __init__(self, name: str, log) -> None:
        super().__init__(ROOT, log.parent, [])
        self.name, self.log = name, log

    def start(self, turns=None, side=""):
        env = dict(os.environ, PYTHONPATH=str(ROOT), **{ab.ENV_FOLDER: str(turns),
                                                        ab.ENV_SIDE: side})
        return subprocess.Popen([sys.executable, "-c", self.SCRIPT, str(self.log), self.name],
                                env=env)

    def result(self, code):
        return self.log


@pytest.mark.parametrize("first", ["base", "head"])
def test_the_side_that_moves_first_alternates_with_the_pair(tmp_path, first):
    log = tmp_path / "log"
    ab.run_together(_Taker("base", log), _Taker("head", log), tmp_path / "turns", first=first)
    other = "head" if first == "base" else "base"
    assert log.read_text().split() == [first, other, first, other]
