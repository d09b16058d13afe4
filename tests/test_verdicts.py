"""Verdicts across machines (bench.report.verdicts) and the shared statistics (bench.stats)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from bench import stats
from bench.report.cli import main
from bench.report.loader import WarningLog, load_results
from bench.report.verdicts import machine_verdicts, summarize

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
import make_fixtures  # noqa: E402

pytestmark = pytest.mark.backend_free  # tox -e py runs these; jax and torch need not

# --------------------------------------------------------------------------- bench.stats

def test_t_helpers_match_scipy():
    for df in (1, 2, 4, 30, 200):
        assert stats.t_quantile(0.99, df) == pytest.approx(scipy_stats.t.ppf(0.995, df))
        for t in (-3.0, 0.0, 2.5, 22.3):
            assert stats.t_sf(t, df) == pytest.approx(scipy_stats.t.sf(t, df))
    assert stats.t_quantile(0.99, math.inf) == pytest.approx(scipy_stats.norm.ppf(0.995))


def test_verdict_words_follow_the_interval():
    assert stats.verdict(1.10, 1.30, 0.05) == stats.SLOWER  # a time ratio
    assert stats.verdict(1.10, 1.30, 0.05, larger_is=stats.FASTER) == stats.FASTER
    assert stats.verdict(0.70, 0.90, 0.05) == stats.FASTER
    assert stats.verdict(0.97, 1.04, 0.05) == stats.SAME
    assert stats.verdict(0.97, 1.20, 0.05) == stats.UNDECIDED
    assert stats.verdict(1.02, 1.04, 0.05) == stats.SAME  # inside the margin, though above 1
    assert stats.verdict(1.02, 1.10, 0.05, margin=False) == stats.SLOWER
    assert stats.verdict(math.nan, math.nan, 0.05) == stats.UNDECIDED


def test_pooled_sd_and_welch_df():
    sd, df = stats.pooled_sd([[0.0, 0.2], [1.0, 1.2, 1.4], [5.0]])
    assert df == 3 and sd == pytest.approx(math.sqrt((0.02 + 0.08) / 3))
    assert stats.welch_df([(1.0, math.inf), (1.0, math.inf)]) == math.inf
    assert stats.welch_df([(1.0, 4), (1.0, 4)]) == pytest.approx(8)


# --------------------------------------------------------------------------- verdicts

def _frame(figures: dict[str, list[float]], suite: str = "train", cases: int = 1):
    """A benchmark frame: label -> one samples/s figure per run, for ``cases`` cases."""
    import pandas as pd

    rows = []
    for label, speeds in figures.items():
        device = label.split("/")[1].replace(":", "")
        for run, speed in enumerate(speeds):
            for number in range(cases):
                rows.append({"label": label, "suite": suite,
                             "case": f"mlp-{device}-b{128 * 2 ** number}-fp32-xla",
                             "run_file": f"{label}/{run}.json", "samples_per_second": speed,
                             "median": 1.0 / speed, "model": "mlp",
                             "batch_size": 128 * 2 ** number, "precision": "fp32",
                             "xla": True, "backend": "tensorflow", "contended": False,
                             "concurrent": False})
    return pd.DataFrame(rows)


def test_one_run_a_side_decides_30x_but_not_10_percent():
    fast = machine_verdicts(_frame({"a/cpu": [1000.0], "b/gpu:0": [30000.0]}), "a/cpu")
    row = fast.iloc[0]
    assert row["verdict"] == "faster" and row["ratio"] == pytest.approx(30)
    assert row["low"] < 30 < row["high"] and "assumed" in row["basis"]
    slow = machine_verdicts(_frame({"a/cpu": [30000.0], "b/gpu:0": [1000.0]}), "a/cpu")
    assert slow.iloc[0]["verdict"] == "slower"
    for factor in (0.9, 1 / 0.9, 1.0):
        near = machine_verdicts(_frame({"a/cpu": [1000.0], "b/cpu": [1000.0 * factor]}),
                                "a/cpu")
        assert near.iloc[0]["verdict"] == "undecided"  # never faster/slower, nor same


def test_several_runs_use_their_own_spread():
    rng = np.random.default_rng(5)
    quiet = {"a/cpu": list(1000 * np.exp(rng.normal(0, 0.005, 5))),
             "b/cpu": list(1000 * np.exp(rng.normal(0, 0.005, 5)))}
    row = machine_verdicts(_frame(quiet), "a/cpu").iloc[0]
    assert row["basis"] == "5 runs" and row["verdict"] == "same"
    apart = {"a/cpu": quiet["a/cpu"], "b/cpu": [x * 1.2 for x in quiet["b/cpu"]]}
    assert machine_verdicts(_frame(apart), "a/cpu").iloc[0]["verdict"] == "faster"


def test_summary_is_the_geometric_mean_with_a_wider_interval():
    frame = _frame({"a/cpu": [1000.0], "b/gpu:0": [30000.0]}, cases=3)
    verdicts = machine_verdicts(frame, "a/cpu")
    summary = summarize(verdicts)
    overall = summary[summary["suite"] == "(all)"].iloc[0]
    assert overall["cases"] == 3 and overall["ratio"] == pytest.approx(30)
    assert overall["verdict"] == "faster"
    assert overall["low"] <= verdicts["low"].max() and overall["high"] >= verdicts["high"].min()


def test_contended_rows_are_left_out():
    frame = _frame({"a/cpu": [1000.0, 1000.0], "b/cpu": [30000.0, 1000.0]})
    frame.loc[(frame["label"] == "b/cpu") & (frame["samples_per_second"] > 5000),
              "contended"] = True
    row = machine_verdicts(frame, "a/cpu").iloc[0]
    assert row["runs"] == 1 and row["ratio"] == pytest.approx(1.0)


def test_no_reference_or_nothing_shared_gives_no_rows():
    frame = _frame({"a/cpu": [1000.0], "b/cpu": [2000.0]})
    assert machine_verdicts(frame, None).empty
    assert machine_verdicts(frame, "c/cpu").empty
    assert summarize(machine_verdicts(frame.iloc[:1], "a/cpu")).empty


# --------------------------------------------------------------------------- end to end

def _write(folder: Path, machine_id: str, documents: list[dict]) -> None:
    for number, document in enumerate(documents, 1):
        document = json.loads(json.dumps(document))
        document["machine_info"]["fashion_bench"]["machine_id"] = machine_id
        path = folder / machine_id / f"{number:04d}_2026120{number}-070000.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document), encoding="utf-8")


def _summary_rows(report: str) -> list[str]:
    section = report.split("## Summary", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| `")]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_six_runs_of_one_code_as_two_machines_never_differ(tmp_path, seed, capsys):
    """Six runs of unchanged code on a noisy machine (16-47% between runs), three given
    one machine id and three another: no case and no summary row is faster or slower;
    with every time of one side halved, the summary says faster and its interval holds 2."""
    documents = make_fixtures.noisy_runs(case_seed=seed, run_seed=100 + seed, runs=6,
                                         cases=12)
    _write(tmp_path / "same", "amd-a", documents[:3])
    _write(tmp_path / "same", "amd-b", documents[3:])
    results = load_results([tmp_path / "same"], WarningLog())
    verdicts = machine_verdicts(results.benchmarks, "amd-a/cpu")
    assert len(verdicts) == 12
    assert not verdicts["verdict"].isin(["faster", "slower"]).any(), verdicts
    summary = summarize(verdicts, results.benchmarks)
    assert not summary["verdict"].isin(["faster", "slower"]).any()

    _write(tmp_path / "halved", "amd-a", documents[:3])
    _write(tmp_path / "halved", "amd-b", [make_fixtures.scaled(d, 0.5) for d in documents[3:]])
    code = main([str(tmp_path / "halved"), "--out", str(tmp_path / "out"), "--no-plots",
                 "--relative-to", "amd-a/cpu"])
    capsys.readouterr()
    assert code == 0
    report = (tmp_path / "out" / "REPORT.md").read_text(encoding="utf-8")
    rows = _summary_rows(report)
    assert "**faster**" in rows[0] and "amd-b/cpu" in rows[0]
    results = load_results([tmp_path / "halved"], WarningLog())
    overall = summarize(machine_verdicts(results.benchmarks, "amd-a/cpu"),
                        results.benchmarks).iloc[0]
    assert overall["verdict"] == "faster" and overall["low"] <= 2.0 <= overall["high"]


def test_report_opens_with_a_short_summary(tmp_path, capsys):
    code = main([str(Path(__file__).parent / "fixtures" / "results"), "--out", str(tmp_path),
                 "--no-plots"])
    capsys.readouterr()
    assert code == 0
    report = (tmp_path / "REPORT.md").read_text(encoding="utf-8")
    sections = [line for line in report.splitlines() if line.startswith("## ")]
    assert sections[0] == "## Summary" and sections[1] == "## Verdicts across machines"
    summary = report.split("## Summary", 1)[1].split("\n## ", 1)[0]
    assert len(summary.strip().splitlines()) <= 40
    assert "intel-xeon-8c-nvidia-h100/gpu:0" in summary and "Left out:" in summary
