"""The plugin's command-line options (``pytest bench --help``, "fashion-bench"), the
parsers of their values, and :func:`timing`: whether a session times anything.

A parser's name is part of pytest's usage error for a bad value (``invalid _fraction
value: '150%'``).
"""

from __future__ import annotations

from bench.harness import cases as matrix
from bench.harness import progress
from bench.stats import share_of


def add_options(parser) -> None:
    """The "fashion-bench" group of options (``pytest bench --help``)."""
    group = parser.getgroup("fashion-bench", "fashion-bench benchmark matrix")
    group.addoption("--bench-matrix", default="quick", choices=matrix.MATRICES,
                    help="quick (default: every axis, under 10 minutes on 2 CPU cores), "
                         "full (every combination; hours on a CPU), tiny (2 cases, for "
                         "testing the harness) or ci (4 MLP cases on real data, about a "
                         "minute: CI's hardware comparison)")
    group.addoption("--bench-device", default=None, metavar="LIST",
                    help="devices to run on, comma-separated (cpu,gpu:0); default: the CPU, "
                         "every GPU found, and gpu:0 (skipped, with the reason, if absent)")
    group.addoption("--bench-batch", default=None, metavar="LIST",
                    help="keep only these batch sizes, e.g. 128,1024")
    group.addoption("--bench-precision", default=None, metavar="LIST",
                    help="keep only these precisions: fp32,fp16,bf16")
    group.addoption("--bench-model", default=None, metavar="LIST",
                    help="keep only these models: mlp,cnn")
    group.addoption("--bench-results", default="results", metavar="DIR",
                    help="folder for result files, one subfolder a machine "
                         "(default: results)")
    group.addoption("--bench-no-save", action="store_true",
                    help="do not write a result file")
    group.addoption("--bench-data", default=None, metavar="DIR|synthetic",
                    help="Fashion-MNIST folder (default: the usual look-up), or 'synthetic' "
                         "for random data of the same shape (harness tests only; its "
                         "results go to DIR/synthetic/, which the report leaves out)")
    group.addoption("--bench-repeat", type=_positive_int, default=1, metavar="N",
                    help="make N runs, one after another, each its own pytest process and "
                         "result file, grouped by a shared run_group id: the gate compares "
                         "runs, and needs several a side to tell a change from noise "
                         "(default: 1)")
    group.addoption("--bench-isolate", action="store_true", default=None,
                    help="run each group of cases (one model, device and precision) in a "
                         "worker process of its own, so no case inherits another's memory "
                         "or crashes the rest; results still land in one result file. Costs "
                         "a framework start and a calibration per group (README, \"Bounded "
                         "memory\"). The default for --bench-matrix full")
    group.addoption("--bench-no-isolate", action="store_false", dest="bench_isolate",
                    help="run every case in this one process, also on the full matrix")
    group.addoption("--bench-max-contention", type=_fraction, default=0.10, metavar="SHARE",
                    help="mark a row 'contended' when other processes took more than this "
                         "share of the usable cores during a timed round, e.g. 10%% or 0.1 "
                         "(default: 10%%); the report marks such rows and the gate leaves "
                         "them out")
    group.addoption("--bench-quiet-wait", type=_seconds, default=60.0, metavar="SECONDS",
                    help="before timing, wait up to this long for other processes to go "
                         "quiet (default: 60; 0 = do not wait)")
    group.addoption("--bench-lock-timeout", type=_seconds, default=600.0, metavar="SECONDS",
                    help="wait up to this long for another bench session on this machine "
                         "to finish, then refuse (default: 600)")
    group.addoption("--bench-round-time", type=_positive_seconds, default=None,
                    metavar="SECONDS",
                    help="a timed round lasts at least this long: train cases choose steps a "
                         "round (an epoch stays an epoch while it takes at most 4 of these), "
                         "inference cases passes a round (default: 0.5; 0.05 for the tiny "
                         "matrix, which tests the harness)")
    group.addoption("--bench-precision-target", type=_share, default=0.02, metavar="SHARE",
                    help="a case adds timed rounds until the 99%% confidence interval of "
                         "its figure (the geometric mean of its round times, t-interval on "
                         "their logs) is within this share of it, e.g. 2%% or 0.02 "
                         "(default: 2%%); or until its share of --bench-budget is spent, or "
                         "--bench-max-rounds. The row says which (stop_reason)")
    group.addoption("--bench-min-rounds", type=_positive_int, default=3, metavar="N",
                    help="timed rounds every case runs at the least (default: 3)")
    group.addoption("--bench-max-rounds", type=_positive_int, default=None, metavar="N",
                    help="timed rounds a case runs at the most (default: 20; 10 for the "
                         "quick matrix; latency cases count single calls: 300 at the least, "
                         "100x this at the most)")
    group.addoption("--bench-budget", type=_duration, default=None, metavar="DURATION",
                    help="fit the run into this much wall time, e.g. 45m, 1.5h, 600s: the "
                         "plan leaves out up front what does not fit even at the minimum "
                         "rounds (known-slow paths, time-to-accuracy, the far ends of batch "
                         "sweeps first, the most expensive first), each case gets a share "
                         "of what is left, and a case that would start past the budget is "
                         "left out; the report lists them under 'Not run'. Default: 2.5m "
                         "for the quick matrix, else none")
    group.addoption("--bench-case-time", type=_positive_seconds, default=None,
                    metavar="SECONDS",
                    help="a case adds no timed round past this much of its own time, once "
                         "its minimum rounds are done (stop_reason 'budget'), as asv's "
                         "timeout bounds a benchmark (default: 60; 12 for the quick matrix, "
                         "a first look in about 3 minutes on 2 cores)")
    group.addoption("--bench-plan", action="store_true",
                    help="print the plan (the cases by suite, the estimated time, what a "
                         "--bench-budget leaves out) and run nothing")
    group.addoption("--bench-shard", type=_shard, default=None, metavar="I/N",
                    help="run the I-th of N parts of the plan, e.g. 2/4: parts balanced by "
                         "each case's estimated time (a machine-free estimate, so every "
                         "machine cuts the matrix alike); the report merges the N result "
                         "files of one run group into one run (README, \"Shards\")")
    group.addoption("--bench-shards", type=_positive_int, default=None, metavar="N",
                    help="with --bench-plan: show the plan cut into N shards (the cases "
                         "and estimate of each)")
    group.addoption("--bench-run-group", default=None, metavar="NAME",
                    help="the run group the result file joins: the shards of one run share "
                         "it (default for --bench-shard: the CI's or Slurm's job id, "
                         "GITHUB_RUN_ID-GITHUB_RUN_ATTEMPT, SLURM_ARRAY_JOB_ID or "
                         "CI_PIPELINE_ID, else the commit and a hash of the plan)")
    group.addoption("--json", "--bench-json", action="store_true", dest="bench_json",
                    help="with --bench-plan: print the plan as JSON on stdout and nothing "
                         "else (the cases, their estimates, the shards: what a CI matrix "
                         "reads)")
    group.addoption("--bench-allow-concurrent", action="store_true",
                    help="run even while another bench session holds this machine's lock; "
                         "the rows are marked 'concurrent' (their times are not the "
                         "machine's own)")
    progress.add_options(group)


def _shard(text: str) -> tuple[int, int]:
    from bench.harness.shards import parse_shard

    return parse_shard(text)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise ValueError(text)
    return value


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(text)
    return value


def _duration(text: str) -> float:
    from bench.harness.plan import parse_duration

    return parse_duration(text)


def _share(text: str) -> float:
    value = _fraction(text)
    if value <= 0:
        raise ValueError(text)
    return value


def _fraction(text: str) -> float:
    value = share_of(text)
    if not 0 <= value <= 1:
        raise ValueError(text)
    return value


def timing(config) -> bool:
    """Whether this session times anything (not collect-only, not benchmarks disabled)."""
    option = config.option
    return not (option.collectonly or getattr(option, "benchmark_disable", False)
                or getattr(option, "benchmark_skip", False)
                or getattr(option, "bench_plan", False))
