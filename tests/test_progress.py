"""Where a bench run is (bench.harness.progress) and the closing table
(bench.harness.figures): the texts, the time-left arithmetic, the live line's drawing, and
when each shows."""

from __future__ import annotations

import json
import os
import types

import pytest

from bench.harness import figures, progress

pytestmark = pytest.mark.backend_free  # tox -e py runs these; jax and torch need not


def test_clock_spans_read_at_a_glance():
    assert [progress.format_clock(s) for s in (0, 0.4, 12.4, 59.6, 108, 3599, 3720, -3)] == [
        "0s", "0s", "12s", "1m00s", "1m48s", "59m59s", "1h02m", "0s"]


def test_the_correction_is_actual_over_estimated_time_of_the_finished_cases():
    assert progress.correction(0, 0) == 1.0  # nothing finished: the plan as it is
    assert progress.correction(10.0, 15.0) == pytest.approx(1.5)
    assert progress.correction(10.0, 5.0) == pytest.approx(0.5)
    # A first case that compiled for long, or failed at once, says little: bounded.
    assert progress.correction(1.0, 100.0) == progress.CORRECTION_BOUNDS[1]
    assert progress.correction(100.0, 1.0) == progress.CORRECTION_BOUNDS[0]


def test_time_left_scales_what_is_still_to_run_and_respects_the_budget():
    # 40 s of cases not started, a running case estimated 10 s with 4 s spent, plan 1.5x
    # too optimistic so far, 3 s of session end: 1.5 * 40 + (1.5 * 10 - 4) + 3.
    assert progress.time_left(40, 10, 4, ratio=1.5, fixed=3) == pytest.approx(74)
    # A case past its (corrected) estimate is counted as about to end.
    assert progress.time_left(40, 10, 30, ratio=1.0) == pytest.approx(40)
    # Under a budget the run ends about when the budget does; never below zero.
    assert progress.time_left(40, 10, 4, budget_left=20) == pytest.approx(20)
    assert progress.time_left(40, budget_left=-5) == 0


def _progress(now: list[float], **kwargs) -> progress.Progress:
    expected = {"bench/suites/test_train.py::test_train_epoch[a]": 10.0,
                "bench/suites/test_train.py::test_train_epoch[b]": 20.0,
                "bench/suites/test_train.py::test_train_epoch[c]": 30.0}
    return progress.Progress(expected, started=0.0, clock=lambda: now[0],
                             labels={n: f"train {n[-2]}" for n in expected}, **kwargs)


def test_progress_counts_cases_and_corrects_the_estimate_as_they_finish():
    now = [5.0]
    run = _progress(now, fixed_end=2.0, budget=100.0)
    first, second, third = run.expected
    run.start(first)
    now[0] = 9.0
    assert run.index == 1 and run.case_seconds() == 4.0 and run.run_seconds() == 9.0
    assert run.left() == pytest.approx((10 - 4) + 20 + 30 + 2)
    now[0] = 25.0
    assert run.finish(first, timed=True) == 20.0  # twice its estimate
    assert run.index == 1 and run.budget_left() == 75.0
    assert run.left() == pytest.approx(75)  # 2 x (20 + 30) + 2 = 102, but the budget: 75
    run.budget = None
    assert run.left() == pytest.approx(102)
    run.start(second)
    now[0] = 26.0
    run.finish(second, timed=False)  # failed or left out: does not correct the estimate
    assert run.done_estimate == 10.0 and run.done_actual == 20.0
    assert run.index == 2 and run.left() == pytest.approx(2.0 * 30 + 2)
    run.start(third)
    assert run.index == 3
    line = run.status(120)
    assert line.startswith("[3/3] test_train_epoch[c] | case 0s | run 26s | ~1m02s left")


def test_a_worker_counts_over_the_whole_run_from_its_parents_context():
    context = progress.RunContext(offset=7, total=20, budget=300.0, later=50.0,
                                  later_fixed=4.0, done_estimate=30.0, done_actual=45.0)
    environ = {progress.PROGRESS_ENV: context.to_env()}
    assert progress.RunContext.from_env(environ) == context
    assert progress.RunContext.from_env({progress.PROGRESS_ENV: "{not json"}) is None
    assert progress.RunContext.from_env({}) is None
    now = [0.0]
    run = _progress(now, context=context, fixed_end=1.0, budget=60.0)
    run.start(next(iter(run.expected)))
    assert run.index == 8 and run.total == 20 and run.budget == 300.0  # the run's, not its share
    # 1.5 x (own cases 10 + 20 + 30, later groups 50) + own end 1 + later start-ups 4
    assert run.left() == pytest.approx(1.5 * 110 + 5)


@pytest.mark.parametrize("width, expected", [
    (140, "[3/20] test_train_epoch[mlp-cpu-b128-fp32-xla] | case 12s | run 1m48s | "
          "~2m10s left | budget 42s left"),
    (100, "[3/20] train mlp-cpu-b128-fp32-xla | case 12s | run 1m48s | ~2m10s left | "
          "budget 42s left"),
    (80, "[3/20] train mlp-cpu-b128-fp32-xla | case 12s | ~2m10s left | budget 42s left"),
    (60, "[3/20] train mlp-cpu-b128-fp32-xla | case 12s | ~2m10s left"),
    (52, "[3/20] train ml...fp32-xla | case 12s | ~2m10s left"),
])
def test_the_status_line_fits_the_terminal(width, expected):
    line = progress.status_text(3, 20, "test_train_epoch[mlp-cpu-b128-fp32-xla]", 12.3, 108,
                                130, 42, width, short="train mlp-cpu-b128-fp32-xla")
    assert line == expected and len(line) < width


def test_the_status_line_says_when_the_budget_is_spent():
    line = progress.status_text(20, 20, "test_x[case]", 5, 200, 0, -12.0, 120)
    assert line == "[20/20] test_x[case] | case 5s | run 3m20s | ~0s left | budget spent (12s over)"


ROW = {"name": "test_train_epoch[mlp-cpu-b64-fp32-xla]",
       "stats": {"median": 0.0482, "rounds": 5},
       "extra_info": {"suite": "train", "case": "mlp-cpu-b64-fp32-xla",
                      "samples_per_second": 42500.0, "ci_halfwidth": 0.0123, "rounds": 5,
                      "stop_reason": "converged"}}
COMPILE = {"name": "test_compile_time[mlp-cpu-b64-fp32-xla]",
           "stats": {"median": 1.3, "rounds": 3},
           "extra_info": {"suite": "compile", "case": "mlp-cpu-b64-fp32-xla",
                          "ci_halfwidth": None, "rounds": 3, "stop_reason": "max-rounds"}}
PLAIN = {"name": "test_other", "stats": {"median": 0.0002, "rounds": 100}, "extra_info": {}}


def test_figures_in_units_people_read():
    assert [figures.format_time(s) for s in (2.314, 0.0482, 23.5e-6, 812e-9, 0.00099996,
                                             1234.5, None, float("inf"))] == [
        "2.31 s", "48.2 ms", "23.5 µs", "812 ns", "1.00 ms", "1234 s", "-", "-"]
    assert [figures.format_rate(r) for r in (645, 42_500, 1.2e6, 999.7, None, 0)] == [
        "645/s", "42.5k/s", "1.20M/s", "1.00k/s", "-", "-"]
    assert [figures.format_share(s) for s in (0.0123, 0.5, 2.0, None)] == [
        "±1.2%", "±50.0%", "±200%", "-"]


def test_a_finished_case_gets_one_line_with_its_figure_interval_rounds_and_stop():
    outcome = figures.outcome_text(ROW)
    assert outcome == "48.2 ms/epoch, 42.5k samples/s, ±1.2% (99%), 5 rounds, converged"
    assert figures.outcome_text(COMPILE) == "1.30 s/compile, 3 rounds, max-rounds"
    line = progress.case_line(3, 20, figures.row_label(ROW), outcome, 14, 108, 130, 42)
    assert line == ("fashion-bench [3/20] train mlp-cpu-b64-fp32-xla: 48.2 ms/epoch, 42.5k "
                    "samples/s, ±1.2% (99%), 5 rounds, converged; case 14s, run 1m48s, "
                    "~2m10s left, budget 42s left")


def test_the_closing_table_groups_rows_by_suite_and_says_what_the_median_is_per():
    assert figures.summary_table([]) == []
    lines = figures.summary_table([ROW, COMPILE, PLAIN])
    assert lines == [
        "case                   median  per sample  samples/s   ±99%  rounds  stop",
        "train: median per epoch",
        "mlp-cpu-b64-fp32-xla  48.2 ms     23.5 µs      42.5k  ±1.2%       5  converged",
        "compile: median time to compile the train step",
        "mlp-cpu-b64-fp32-xla   1.30 s           -          -      -       3  max-rounds",
        "other: median per round",
        "test_other             200 µs           -          -      -     100  -"]
    assert max(len(line) for line in lines) <= 80


def _config(args=(), **options):
    option = types.SimpleNamespace(**options)
    return types.SimpleNamespace(option=option,
                                 invocation_params=types.SimpleNamespace(args=tuple(args)))


def test_pytest_benchmarks_table_on_request_only():
    assert not figures.wants_benchmark_table(_config(
        ["bench", "--benchmark-only"], benchmark_sort="min", benchmark_columns=None,
        benchmark_histogram=[], benchmark_compare=[]))
    assert figures.wants_benchmark_table(_config(bench_benchmark_table=True))
    assert figures.wants_benchmark_table(_config(["--benchmark-sort", "min"]))
    assert figures.wants_benchmark_table(_config(["--benchmark-columns=min,max"]))
    assert figures.wants_benchmark_table(_config(benchmark_group_by="param:case"))  # an ini
    assert figures.wants_benchmark_table(_config(benchmark_compare=True))


def test_hiding_pytest_benchmarks_table_keeps_its_regression_check():
    calls = []

    class Session:  # the shape of pytest-benchmark's BenchmarkSession
        groups, quiet = [("group", [])], False

        def display(self, tr):
            calls.append("table")

        def check_regressions(self):
            calls.append("regressions")

        def display_cprofile(self, tr):
            calls.append("cprofile")

    session = Session()
    assert figures.hide_benchmark_table(session)
    session.display(None)
    assert calls == ["regressions", "cprofile"]
    assert not figures.hide_benchmark_table(object())  # another shape: left alone


@pytest.mark.parametrize("settings, mode", [
    ({}, "live"),
    ({"isatty": False}, "lines"),  # CI, a pipe
    ({"term": "dumb"}, "lines"),
    ({"capture": "no"}, "lines"),  # -s: the tests' output would run into the line
    ({"capture": "tee-sys"}, "lines"),
    ({"capture": "sys"}, "live"),
    ({"log_cli": True}, "lines"),
    ({"benchmark_verbose": True}, "lines"),
    ({"verbosity": -1}, "live"),  # -q keeps it
    ({"verbosity": -2}, None),  # -qq: nothing
    ({"isatty": False, "verbosity": -2}, None),
    ({"xdist": True}, None),
])
def test_when_the_live_line_and_the_lines_show(settings, mode):
    chosen = dict(isatty=True, term="xterm", verbosity=0, capture="fd", xdist=False,
                  log_cli=False, benchmark_verbose=False)
    chosen.update(settings)
    assert progress.choose_mode(**chosen) == mode


def _drawn(column: int, width: int = 60) -> tuple[bytes, progress.LiveLine]:
    read_end, write_end = os.pipe()
    texts = iter(["first", "second"])
    line = progress.LiveLine(write_end, lambda w: next(texts), lambda: width, lambda: column,
                             interval=3600)  # the thread never redraws in this test
    line.show()
    line.hide()
    line.hide()  # nothing drawn: nothing to erase
    line.show()
    line.close()
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        return pipe.read(), line


def test_the_live_line_goes_below_pytests_line_and_puts_the_cursor_back():
    written, _ = _drawn(column=24)  # after "bench/suites/test_train.py ..."
    erase = b"\r\x1b[K\x1b[A\x1b[25G"  # clear our line, up one, back to column 25
    assert written == b"\nfirst\x1b[K" + erase + b"\nsecond\x1b[K" + erase


def test_the_live_line_uses_pytests_line_when_it_is_empty():
    written, _ = _drawn(column=0)
    assert written == b"\rfirst\x1b[K\r\x1b[K\rsecond\x1b[K\r\x1b[K"


def test_the_parent_of_isolated_groups_says_where_the_run_is_and_tells_the_worker(
        capsys, tmp_path):
    plan = types.SimpleNamespace(overhead=9.0)  # parent + 2 workers: 3 s a process
    state = types.SimpleNamespace(plan=plan, failures=[], not_run=[])
    plugin = progress.ProgressPlugin(config=None, state=state)
    now = [0.0]
    plugin.progress = _progress(now)
    first, second, third = plugin.progress.expected
    plugin._by_group = {"mlp/cpu/fp32": [first, second], "mlp/cpu/bf16": [third]}
    env = plugin.group_starting(1, ["mlp/cpu/fp32", "mlp/cpu/bf16"], journal=None)
    said = capsys.readouterr().out
    assert said == ("\nfashion-bench: group 1 of 2: mlp/cpu/fp32 (worker process); cases "
                    "1-2 of 3, run 0s, ~1m08s left\n")  # 60 s of cases, 2.5 x 3 s
    context = json.loads(env[progress.PROGRESS_ENV])
    assert context["offset"] == 0 and context["total"] == 3 and context["later"] == 30.0
    now[0] = 50.0
    env = plugin.group_starting(2, ["mlp/cpu/fp32", "mlp/cpu/bf16"], journal=None)
    assert "group 2 of 2: mlp/cpu/bf16 (worker process); case 3 of 3, run 50s" in (
        capsys.readouterr().out)
    assert json.loads(env[progress.PROGRESS_ENV])["offset"] == 2
