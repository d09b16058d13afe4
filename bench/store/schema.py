"""The result row: what every timing row of a result file holds, in one place.

A result file is pytest-benchmark's JSON. Its ``machine_info.fashion_bench`` block
describes the machine and carries :data:`SCHEMA`; each ``benchmarks[].extra_info`` is
one :class:`Row`. The suites write rows through :func:`bench.measure.rounds.record`, which
checks them with :func:`check_row`; the report's loader reads them back with the
column types declared here (:data:`COLUMN_TYPES`). Standard library only: the harness
imports this on machines without pandas.

Schema history (the loader reads every version in :data:`READABLE_SCHEMAS`):

1. the case, the figures, ``calibration_gflops`` (float32) per device.
2. per row ``contention``/``contended``/``concurrent``, ``compute_dtype``,
   ``peak_gflops`` and energy; per run ``calibration_gflops_by_dtype``, ``data``,
   ``run_group``/``repeat``, ``max_contention`` and the file's ``fashion_bench_status``.
   A schema-1 row computes in its precision's dtype and measured no contention.
3. per row how its rounds were spent: ``rounds``, ``ci_halfwidth``, ``stop_reason``,
   ``round_seconds_target``, ``calls_per_round``, ``case_seconds``, the canary
   (``canary_seconds``, ``canary_spread``) and a ``note``; per file the run's ``plan``
   (``machine_info.fashion_bench.plan``) and the cases it left out
   (``fashion_bench_not_run``). Older rows ran a fixed count of rounds: no interval.
"""

from __future__ import annotations

import dataclasses
import math
import typing

#: The version the suites write (``machine_info.fashion_bench.schema``).
SCHEMA = 3
#: The versions the report reads.
READABLE_SCHEMAS = (1, 2, 3)

#: ``data`` of runs on real Fashion-MNIST (also what schema-1 files mean) and of the
#: harness's random stand-in, which the report leaves out unless asked.
REAL_DATA = "fashion-mnist"
SYNTHETIC_DATA = "synthetic"
#: Top-level ``fashion_bench_status`` of a result file (absent in old files: complete):
#: complete; interrupted (Ctrl-C: ended early, but cleanly); incomplete (the process died,
#: its finished cases recovered from its journal).
RUN_STATUSES = STATUS_COMPLETE, STATUS_INTERRUPTED, STATUS_INCOMPLETE = (
    "complete", "interrupted", "incomplete")
#: Why a case stopped adding timed rounds (``Row.stop_reason``; bench.harness.stopping).
STOP_REASONS = CONVERGED, BUDGET, MAX_ROUNDS = ("converged", "budget", "max-rounds")

#: The dtype a precision computes its matmuls in: the calibration a share of peak divides by.
COMPUTE_DTYPE = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


@dataclasses.dataclass(frozen=True)
class Row:
    """One timing row (``extra_info``). Times in seconds unless the name says otherwise.

    The fields without a default are the case, required in every file; the rest are
    None where a suite does not measure them (or, for schema-1 rows, did not yet).
    """

    # The case (bench.harness.cases.Case.fields): the key of tables, plots and the gate.
    case: str  # the stable id, e.g. mlp-cpu-b128-fp32-xla
    suite: str  # train, inference, latency, tta, compile, scaling, baseline (reference loops)
    model: str
    backend: str  # tensorflow, jax, torch
    device: str  # cpu, gpu:0
    batch_size: int
    precision: str  # fp32, fp16, bf16
    xla: bool  # compiled: XLA for TensorFlow and JAX, torch.compile for PyTorch
    variant: str | None = None  # reference loops: keras-fit, tutorial-eager
    strategy: str | None = None  # scaling: mirrored, multiworker
    replicas: int | None = None
    compute_dtype: str | None = None  # float32, float16, bfloat16 (schema 1: from precision)
    status: str = "ok"
    # Where it ran.
    device_kind: str | None = None  # CPU, GPU (absent: from the device)
    device_name: str | None = None
    device_peak_bytes: int | None = None
    device_baseline_bytes: int | None = None  # held on the device when the case began
    device_peak_scope: str | None = None  # window (this case's own peak) or process
    peak_rss_bytes: int | None = None
    rss_baseline_bytes: int | None = None  # host RSS when the case began
    rss_peak_scope: str | None = None  # window (peak reset at case start) or process
    # What else ran meanwhile (schema 2).
    contention: float | None = None  # worst share of the usable cores others took, 0..1
    contended: bool | None = None  # contention above the threshold, or others on the GPU
    gpu_foreign_processes: int | None = None
    concurrent: bool | None = None  # timed while another bench session held the machine
    # Throughput and time.
    samples_per_second: float | None = None
    seconds_per_epoch: float | None = None
    seconds_per_batch: float | None = None
    samples_per_round: int | None = None
    steps_per_round: int | None = None
    compile_seconds: float | None = None
    latency_p50_ms: float | None = None
    latency_p90_ms: float | None = None
    latency_p99_ms: float | None = None
    # Share of peak: gflops over the session's calibration of (device, compute_dtype).
    gflops: float | None = None
    peak_gflops: float | None = None
    peak_fraction: float | None = None
    # Energy (schema 2): per epoch (train) or per pass over the test set (inference).
    energy_source: str | None = None  # nvml, rapl, unavailable
    energy_joules: float | None = None
    samples_per_joule: float | None = None
    watts: float | None = None
    # The work was real.
    loss_first: float | None = None
    loss_last: float | None = None
    test_accuracy: float | None = None
    epochs_trained: int | None = None  # inference, latency: epochs the timed model trained
    # Time to accuracy and scaling.
    target_accuracy: float | None = None
    reached: bool | None = None
    epochs: int | None = None
    seconds_to_accuracy: float | None = None
    final_accuracy: float | None = None
    per_replica_batch: int | None = None
    global_batch: int | None = None
    # How the rounds were spent (schema 3; bench.harness.stopping). A round is one unit of work
    # sized to last at least round_seconds_target: steps_per_round (train) or
    # calls_per_round (inference passes, latency calls) of it.
    rounds: int | None = None  # timed rounds run (after the warm-up)
    calls_per_round: int | None = None
    round_seconds_target: float | None = None
    ci_halfwidth: float | None = None  # 99% interval of the figure, as a share of it
    stop_reason: str | None = None  # converged, budget or max-rounds (STOP_REASONS)
    case_seconds: float | None = None  # wall time of the whole case, setup included
    # The canary (bench.measure.canary): a fixed small kernel timed before every timed round.
    canary_seconds: list | None = None  # its time before each timed round
    canary_spread: float | None = None  # slowest canary over the fastest, minus 1
    note: str | None = None  # said beside the figure (e.g. a known-slow path, measured once)


def _base_type(hint: object) -> type:
    """``int | None`` -> int."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


_HINTS = typing.get_type_hints(Row)
#: Field -> (type, required). The loader gives each column this type.
COLUMN_TYPES = {f.name: (_base_type(_HINTS[f.name]), f.default is dataclasses.MISSING)
                for f in dataclasses.fields(Row)}
#: The fields :meth:`bench.harness.cases.Case.fields` fills from the case.
CASE_FIELDS = ("case", "suite", "model", "backend", "device", "batch_size", "precision",
               "xla", "variant", "strategy", "replicas", "compute_dtype")


def _fits(value: object, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind)


def _row_problems(benchmark: object) -> list[str]:
    """What a ``benchmarks[]`` entry lacks: the case fields (a required name is not empty,
    the batch size is positive) and pytest-benchmark's statistics."""
    if not isinstance(benchmark, dict):
        return ["benchmark entry"]
    extra, stats = benchmark.get("extra_info"), benchmark.get("stats")
    if not isinstance(extra, dict):
        problems = ["extra_info"]
    else:
        problems = [f"extra_info.{name}" for name, (kind, required) in COLUMN_TYPES.items()
                    if required and not (_fits(extra.get(name), kind) and (
                        kind is bool or (extra[name] > 0 if kind is int else extra[name])))]
    if not isinstance(stats, dict):
        return problems + ["stats"]
    if not (_number(stats.get("median")) and stats["median"] > 0):
        problems.append("stats.median")
    data = stats.get("data")
    if data is not None and not (isinstance(data, list)
                                 and all(_number(x) and x >= 0 for x in data)):
        problems.append("stats.data")
    return problems


def _number(value: object) -> bool:
    return _fits(value, float) and math.isfinite(value)


def file_problem(document: object) -> str | None:
    """Why a JSON document is not a result file this checkout reads (None: it is one).

    The phrase ends in "skipped": the loader warns with it and goes on.
    """
    if not (isinstance(document, dict) and isinstance(document.get("machine_info"), dict)
            and isinstance(document.get("benchmarks"), list)):
        return ("is JSON but not a pytest-benchmark result file (no machine_info and "
                "benchmarks); skipped")
    machine = document["machine_info"].get("fashion_bench")
    if machine is None:
        return ("is a pytest-benchmark file from some other project (machine_info has no "
                "fashion_bench block); skipped")
    if not isinstance(machine, dict):
        return "older/unknown schema (machine_info.fashion_bench is not an object); skipped"
    version, readable = machine.get("schema"), \
        f"this report reads schemas {READABLE_SCHEMAS[0]}-{READABLE_SCHEMAS[-1]}"
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA:
        return (f"newer schema {version} ({readable}): written by a newer fashion-bench; "
                f"update this checkout (git pull, or pip install -U) to read it; skipped")
    if isinstance(version, bool) or version not in READABLE_SCHEMAS:
        return (f"older/unknown schema (fashion_bench.schema is {version!r}; {readable}); "
                f"skipped")
    machine_id = machine.get("machine_id")
    missing = [] if "machine_id" in machine else ["fashion_bench.machine_id"]
    if "machine_id" in machine and not (isinstance(machine_id, str) and machine_id.strip()
                                        and "/" not in machine_id):
        missing.append("fashion_bench.machine_id (a name without '/')")
    for benchmark in document["benchmarks"]:
        missing += [f for f in _row_problems(benchmark) if f not in missing]
    failures = document.get("fashion_bench_failures", [])
    if not isinstance(failures, list) or not all(isinstance(f, dict) for f in failures):
        missing.append("fashion_bench_failures (a list of objects)")
    not_run = document.get("fashion_bench_not_run", [])
    if not isinstance(not_run, list) or not all(isinstance(n, dict) for n in not_run):
        missing.append("fashion_bench_not_run (a list of objects)")
    if document.get("fashion_bench_status", "complete") not in RUN_STATUSES:
        missing.append(f"fashion_bench_status (one of {', '.join(RUN_STATUSES)})")
    if not isinstance(machine.get("data") or REAL_DATA, str):
        missing.append("fashion_bench.data (a string)")
    return f"older/unknown schema (missing or invalid {', '.join(missing)}); skipped" \
        if missing else None


def check_row(extra: dict) -> None:
    """Raise ValueError when a field of :class:`Row` holds a value of another type.

    numpy scalars pass as the Python numbers they hold. A name the schema does not declare
    passes (a test may tag its rows); the report keeps it as an untyped column, and
    tests/test_report.py checks that every figure the bench suites record is declared.
    """
    for name, value in extra.items():
        kind, required = COLUMN_TYPES.get(name, (object, False))
        value = value.item() if hasattr(value, "item") else value
        if not (value is None and not required) and not _fits(value, kind):
            raise ValueError(f"row field {name!r} = {value!r} is not of type {kind.__name__} "
                             f"(bench/store/schema.py, Row)")
