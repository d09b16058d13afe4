"""bench.tools.memory_check: the trainer loop of issue #14, its baseline, bound and exit status."""

from __future__ import annotations

import pytest

from bench.tools import memory_check


def test_the_plan_covers_every_setting_once_and_neighbours_differ():
    plan = memory_check.plan(32)
    assert len(set(plan)) == 32
    assert {b for b, _, _ in plan} == set(memory_check.BATCH_SIZES)
    assert {p for _, p, _ in plan} == set(memory_check.PRECISIONS)
    assert {j for _, _, j in plan} == {True, False}
    assert all(a != b for a, b in zip(plan, plan[1:], strict=False))
    assert memory_check.plan(40)[32:] == plan[:8]
    assert len({(p, j) for _, p, j in plan[:4]}) == 4  # every kind before the baseline


def test_growth_is_measured_from_the_fourth_trainer():
    rows = [{"rss_bytes": mib * 2**20} for mib in (100, 400, 450, 500, 520, 560)]
    assert memory_check.growth_mib(rows) == 60


def test_a_real_loop_reports_every_trainer(capsys):
    from fashion_core import data

    dataset = data.synthetic(train_size=2048, test_size=64, seed=0)  # batches up to 2048
    rows = memory_check.run(dataset, trainers=5, steps=1, device="cpu")
    assert [r["trainer"] for r in rows] == [1, 2, 3, 4, 5]
    assert all(r["rss_bytes"] > 0 for r in rows)
    assert capsys.readouterr().out.count("memory_check: trainer") == 5


@pytest.mark.parametrize("grew, code", [(100, 0), (400, 1)])
def test_exit_status_follows_the_bound(monkeypatch, grew, code, capsys):
    def fake_run(dataset, trainers, steps, device):
        return [{"rss_bytes": (1000 + (grew if i == trainers - 1 else 0)) * 2**20}
                for i in range(trainers)]

    monkeypatch.setattr(memory_check, "run", fake_run)
    assert memory_check.main(["--synthetic", "--trainers", "6"]) == code
    assert ("EXCEEDED" in capsys.readouterr().out) == bool(code)


def test_bad_input_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        memory_check.main(["--trainers", "4"])
    assert exit_info.value.code == 2
    assert memory_check.main(["--data-dir", str(tmp_path / "nothing")]) == 2
    assert str(tmp_path / "nothing") in capsys.readouterr().err
