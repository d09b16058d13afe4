"""What a session runs: each suite's test parametrized with its cases, and the run's plan
made from the cases collected (:mod:`bench.harness.plan`), printed before the first.
"""

from __future__ import annotations

import os
import sys
import time

import pytest

from bench.harness import cases as matrix
from bench.harness.options import timing
from bench.harness.session import (
    BACKEND,
    GROUP_ENV,
    RUN_GROUP_ENV,
    WORKER_JOURNAL_ENV,
    group_of,
    results_root,
    state_of,
    tf_config,
)

#: How long the plan waits for the results index another process is writing, then reads
#: this machine's files instead (a few hundred at most: quick either way).
INDEX_WAIT_SECONDS = 3.0


def parametrize(metafunc) -> None:
    """Parametrize each suite's test with its cases; absent devices are skipped."""
    if "case" not in metafunc.fixturenames:
        return
    suite = metafunc.module.SUITE
    option = metafunc.config.getoption
    state = state_of(metafunc.config)
    present = state.device_names()
    if state.wanted_devices:
        devices = state.wanted_devices
    else:
        devices = list(dict.fromkeys(present + ["gpu:0"]))
    cases = matrix.filter_cases(
        matrix.build_matrix(option("--bench-matrix"), devices, BACKEND),
        models=matrix.parse_list(option("--bench-model")),
        batches=matrix.parse_list(option("--bench-batch"), int),
        precisions=matrix.parse_list(option("--bench-precision")))
    state.plan_cases = state.plan_cases or list(cases)
    if state.shard:  # this shard's part of the whole matrix, every suite's cases counted
        cases = take_shard(metafunc.config, state, cases)
    cases = [c for c in cases if c.suite == suite]
    if os.environ.get(GROUP_ENV):  # a --bench-isolate worker runs one group only
        cases = [c for c in cases if group_of(c) == os.environ[GROUP_ENV]]
    cluster = tf_config()
    if suite == "scaling" and cluster:  # this process is one worker of several
        workers = len(cluster.get("cluster", {}).get("worker", [])) or 1
        cases = [c for d in dict.fromkeys(c.device for c in cases)
                 for c in matrix.multiworker_cases(d, workers)]
    gpus = sum(1 for name in present if name.startswith("gpu"))
    params = []
    for case in cases:
        marks = []
        if case.device not in present:
            marks.append(pytest.mark.skip(
                reason=f"device {case.device} is not there (found: {', '.join(present)})"))
        elif (case.strategy == "mirrored" and case.device.startswith("gpu")
              and case.replicas > gpus):
            marks.append(pytest.mark.skip(
                reason=f"{case.replicas} replicas need {case.replicas} GPUs; found {gpus}"))
        elif suite == "compile" and not case.compiles:
            marks.append(pytest.mark.skip(
                reason=f"nothing to compile: {BACKEND} without XLA/torch.compile runs the "
                       f"step op by op"))
        params.append(pytest.param(case, id=case.id, marks=marks))
    metafunc.parametrize("case", params)


def take_shard(config, state, cases: list) -> list:
    """The cases of ``--bench-shard I/N`` (:mod:`bench.harness.shards`), computed once
    over the whole matrix (every suite, before a device that is not there is skipped or
    an isolated worker keeps its group), so every process and machine cuts alike. Sets
    the run group the shards share."""
    from bench.harness import shards

    if state.shard_cases is None:
        index, count = state.shard
        estimates = shards.shard_estimates(cases, **shard_options(state))
        state.shard_cases = set(shards.split(estimates, count)[index - 1])
        state.run_group = state.run_group or os.environ.get(RUN_GROUP_ENV) or \
            shards.default_run_group(cases, count, config.getoption("--bench-matrix"))
    return [case for case in cases if case in state.shard_cases]


def shard_options(state) -> dict:
    """The estimate's settings that come from the command line, not the machine."""
    return dict(round_seconds=state.round_seconds, min_rounds=state.stopping.min_rounds,
                max_rounds=state.stopping.max_rounds, case_time=state.case_time)


def plan_history(config, folder) -> dict:
    """This machine's case times for the plan, through the results index where it can be
    opened within a few seconds (another run, a shard beside this one, may be writing
    it), else from the files; a note says which when it is not the index."""
    from bench.harness import plan as planner
    from bench.report.index import IndexUnavailable, ResultsIndex

    reporter = config.pluginmanager.get_plugin("terminalreporter")

    def say(text: str) -> None:
        if reporter is not None and not getattr(config.option, "bench_json", False):
            reporter.write_line(f"fashion-bench: {text}")
        else:
            print(f"fashion-bench: {text}", file=sys.stderr, flush=True)

    try:
        index = ResultsIndex(wait=INDEX_WAIT_SECONDS, say=say)
    except IndexUnavailable as error:
        say(f"note: the plan's history read from the files: {error}")
        return planner.history_seconds(folder)
    with index:  # closed before any timing: DuckDB's threads end with it
        return planner.history_seconds(folder, index)


def make_plan(config, items) -> None:
    """Make the run's plan: estimate every case, fit the budget, leave out what does not
    fit (skipped, with the reason, and listed in the result file)."""
    state = state_of(config)
    if not hasattr(config.option, "bench_matrix") or not (
            timing(config) or config.getoption("--bench-plan")):
        return
    from bench.harness import plan as planner
    from bench.store.machine import machine_id

    by_case: dict[matrix.Case, list] = {}
    for item in items:
        case = getattr(item, "callspec", None) and item.callspec.params.get("case")
        if case is not None and not item.get_closest_marker("skip"):
            by_case.setdefault(case, []).append(item)
    if not by_case:
        return
    peaks = {device: state.gflops(device) or 100.0
             for device in dict.fromkeys(c.device for c in by_case)}
    folder = results_root(config, state) / machine_id(state.backend.list_devices())
    history = plan_history(config, folder)
    options = dict(round_seconds=state.round_seconds, min_rounds=state.stopping.min_rounds,
                   max_rounds=state.stopping.max_rounds, case_time=state.case_time)
    estimates = [planner.estimate_case(c, peaks[c.device], history=history, **options)
                 for c in by_case]
    scale = planner.model_scale(estimates, history, peaks, options)
    # The session's own time: what it took to get here (framework start, calibration),
    # about as much again at the end (the second calibration, the result file).
    overhead = 2 * (time.monotonic() - state.started)
    if getattr(config.option, "bench_isolate", False):  # each worker starts and ends alike
        overhead *= 1 + len({group_of(case) for case in by_case})
    plan = planner.make_plan(estimates, config.getoption("--bench-budget"), scale, overhead)
    for case, reason in plan.left_out:
        for item in by_case[case]:
            item.add_marker(pytest.mark.skip(reason=f"left out: {reason}"))
        state.leave_out(case, reason)
    state.plan = plan
    state.budget = planner.Budget(plan, started=state.started)


def quiet_for_json(session) -> None:
    """``--bench-plan --json``: pytest's own lines go nowhere, so stdout is the JSON alone;
    the terminal's writer is kept to print it (:func:`show_plan`)."""
    state = state_of(session.config)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if not getattr(session.config.option, "bench_json", False) or reporter is None:
        return
    from _pytest.terminal import TerminalWriter

    state.json_writer = reporter._tw
    reporter._tw = TerminalWriter(open(os.devnull, "w"))  # noqa: SIM115 (lives with pytest)


def plan_json(config, state) -> str:
    """The plan of ``--bench-plan --json``: every case of the matrix with its machine-free
    estimate and shard (``--bench-shards N``, else the N of ``--bench-shard``, else 1),
    each shard's cases and estimate, and this machine's own estimate of what it runs."""
    import json

    from bench.harness import shards

    count = config.getoption("--bench-shards") or (state.shard[1] if state.shard else 1)
    estimates = shards.shard_estimates(state.plan_cases, **shard_options(state))
    document = shards.plan_document(estimates, count, config.getoption("--bench-matrix"))
    if state.plan is not None:
        document["this_machine"] = {
            "cases": len(state.plan.estimates), "estimate_seconds": round(state.plan.total, 1),
            "left_out": len(state.plan.left_out), "budget_seconds": state.plan.budget,
            "shard": f"{state.shard[0]}/{state.shard[1]}" if state.shard else None}
    return json.dumps(document, indent=1)


def show_plan(session) -> None:
    """Print the plan before the first case (``--json``: the plan as JSON, alone)."""
    state = state_of(session.config)
    if getattr(session.config.option, "bench_json", False):
        writer = getattr(state, "json_writer", None)
        text = plan_json(session.config, state)
        if writer is not None:
            writer.write(text + "\n", flush=True)
        else:
            print(text, flush=True)
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if state.plan is None or reporter is None:
        return
    reporter.write_line("fashion-bench: the plan")
    for line in state.plan.render():
        reporter.write_line(line)
    if getattr(session.config.option, "bench_isolate", False) and not os.environ.get(
            WORKER_JOURNAL_ENV):
        groups = len({group_of(e.case) for e in state.plan.estimates})
        reporter.write_line(f"  isolated: {groups} group(s) (model/device/precision), each "
                            f"in a process of its own (--bench-no-isolate: all in this one)")
