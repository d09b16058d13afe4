"""bench.harness.turns: two sessions take strict turns; a waiting side is off the clock."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from bench.harness import turns
from bench.measure import contention as measure
from tests.test_bench_harness import ROOT

pytestmark = pytest.mark.backend_free  # tox -e py runs these; jax and torch need not

SIDE = """
import sys, time
from bench.harness.turns import Turns
folder, side, rounds, log = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
t = Turns(folder, side)
t.start()
for i in range(rounds):
    if i:
        t.hand_over()
    with open(log, "a") as f:
        f.write(f"{side} {i} start\\n")
    time.sleep(0.02)
    with open(log, "a") as f:
        f.write(f"{side} {i} end\\n")
if side == "head" and len(sys.argv) > 5:
    raise SystemExit(0)
t.finish()
"""


def _side(folder, side, rounds, log, *extra):
    return subprocess.Popen([sys.executable, "-c", SIDE, str(folder), side, str(rounds),
                             str(log), *extra], cwd=ROOT)


def test_two_sides_alternate_and_never_overlap(tmp_path):
    folder, log = tmp_path / "turns", tmp_path / "log"
    turns.Turns.prepare(folder)
    head = _side(folder, "head", 4, log)  # started first: still BASE moves first
    time.sleep(0.2)
    base = _side(folder, "base", 6, log)
    assert base.wait(timeout=60) == 0 and head.wait(timeout=60) == 0
    lines = log.read_text().split("\n")[:-1]
    rounds = [line.rsplit(" ", 1)[0] for line in lines[0::2]]
    pairs = zip(lines[0::2], lines[1::2], strict=True)
    assert all(a.replace("start", "end") == b for a, b in pairs)
    assert rounds == ["base 0", "head 0", "base 1", "head 1", "base 2", "head 2", "base 3",
                      "head 3", "base 4", "base 5"]  # HEAD done: BASE runs on alone


def test_a_side_whose_process_is_gone_does_not_hold_the_other(tmp_path):
    folder, log = tmp_path / "turns", tmp_path / "log"
    turns.Turns.prepare(folder)
    head = _side(folder, "head", 2, log, "exit-without-finish")
    base = _side(folder, "base", 5, log)
    assert head.wait(timeout=60) == 0 and base.wait(timeout=60) == 0
    assert log.read_text().count("base") == 10


def test_a_bad_side_is_refused(tmp_path):
    with pytest.raises(ValueError, match="FASHION_BENCH_TURN_SIDE"):
        turns.Turns(tmp_path, "left")


class _Clock:
    """Stands in for the CPU counters: wall seconds, busy core-seconds, our own seconds."""

    def __init__(self):
        self.wall = self.busy = self.own = 0.0

    def advance(self, wall, busy, own):
        self.wall += wall
        self.busy += busy
        self.own += own


def test_the_wait_for_a_turn_is_off_the_clock(monkeypatch):
    clock = _Clock()

    def fake_init(sample, cpus, meter=None):
        sample.wall, sample.busy, sample.own, sample.joules = (clock.wall, clock.busy,
                                                               clock.own, None)

    monkeypatch.setattr(measure.CpuSample, "__init__", fake_init)

    class OtherSideRuns:  # the other session busy on both cores for 0.8 s, we sleep
        def hand_over(self):
            clock.advance(0.8, 1.6, 0.0)

    monitor = measure.RoundMonitor("cpu", 0)
    for _ in range(4):
        monitor.hand_over(OtherSideRuns())
        monitor.sample()
        clock.advance(0.6, 0.6, 0.6)  # our round: one core, all ours
    monitor.sample()
    assert monitor.samples[-1].wall - monitor.samples[0].wall == pytest.approx(2.4)
    assert measure.windowed_contention(monitor.samples, 2) == pytest.approx(0.0)
    # Without the hand-over the same work of the other side reads as contention:
    plain = measure.RoundMonitor("cpu", 0)
    for _ in range(4):
        OtherSideRuns().hand_over()
        plain.sample()
        clock.advance(0.6, 0.6, 0.6)
    plain.sample()
    assert measure.windowed_contention(plain.samples, 2) > 0.4


def test_only_a_revision_speaking_this_protocol_takes_turns(tmp_path):
    tree = tmp_path / "tree"
    (tree / "bench").mkdir(parents=True)
    assert not turns.speaks_protocol(tree)  # no package at all: it cannot answer
    (tree / "bench" / "__init__.py").write_text("")
    (tree / "bench" / "turns.py").write_text("PROTOCOL = 1\n")
    assert turns.protocol_of(tree) == 1 and not turns.speaks_protocol(tree)
    (tree / "bench" / "turns.py").write_text(f"PROTOCOL = {turns.PROTOCOL}\n")
    assert turns.speaks_protocol(tree)  # an older revision: its module's constant
    (tree / "bench" / "turns.py").unlink()  # the module moved: the package says it
    (tree / "bench" / "__init__.py").write_text(f"TURNS_PROTOCOL = {turns.PROTOCOL}\n")
    assert turns.speaks_protocol(tree)
    assert turns.speaks_protocol(ROOT)
    assert __import__("bench").TURNS_PROTOCOL == turns.PROTOCOL
