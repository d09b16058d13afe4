"""The benchmark matrix as data: one frozen Case per measurement, with a stable id.

The id (``mlp-cpu-b128-fp32-xla``, ``-jax`` appended for another backend) names the
configuration; the suite (train, inference, ...) is the test function. Together they key
results: pytest ids, result rows and report tables all use them.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Sequence

from bench.store import schema
from fashion_core.config import PRECISIONS

SUITES = ("train", "inference", "latency", "tta", "compile", "baseline", "scaling")
STRATEGIES = ("mirrored", "multiworker")
# Reference training loops the compiled step is compared with (suite "baseline").
VARIANTS = ("keras-fit", "tutorial-eager")
SHORT_PRECISIONS = tuple(PRECISIONS.values())  # fp32, fp16, bf16
POLICY = {short: full for full, short in PRECISIONS.items()}
MATRICES = ("quick", "full", "tiny", "ci")

# Time-to-accuracy targets (MLPerf-style quality bars) and epoch caps.
TTA_TARGETS = {"mlp": (0.88, 20), "cnn": (0.91, 15)}
# Inference and latency time a trained model, and its timed predictions must be at least
# this accurate on the test set (the MLP passes 0.80 after one epoch, the CNN 0.85).
MIN_ACCURACY = {"mlp": 0.80, "cnn": 0.85}
# The dtype a precision computes its matmuls in: the calibration a row is divided by.
COMPUTE_DTYPE = schema.COMPUTE_DTYPE


@dataclasses.dataclass(frozen=True)
class Case:
    """One benchmark configuration.

    Attributes:
        suite: train, inference, latency, tta or compile.
        model: mlp or cnn.
        device: cpu or gpu:N.
        batch_size: samples a step (train) or a predict call (inference).
        precision: fp32, fp16 (mixed_float16) or bf16 (mixed_bfloat16).
        xla: compile with XLA.
        backend: the Keras backend.
        steps: train only: steps a timed round; None: sized by time (a whole epoch
            where an epoch is short, else steps lasting the round target).
        rounds: timed rounds, where a round is a whole run (tta, compile, baseline,
            scaling); None: rounds until the figure is known (bench.harness.stopping).
        note: said beside the figure in the result row (why a path is measured once).
        variant: baseline only: keras-fit (``model.fit`` with a whole epoch per
            execution) or tutorial-eager (the tutorial's eager GradientTape loop).
    """

    suite: str
    model: str
    device: str
    batch_size: int
    precision: str = "fp32"
    #: Compiled or not: XLA under TensorFlow (``jit_compile``) and JAX (``jax.jit``, else
    #: op by op), ``torch.compile`` under PyTorch (else eager); ``-xla``/``-noxla`` in ids.
    xla: bool = True
    backend: str = "tensorflow"
    steps: int | None = None
    rounds: int | None = None
    variant: str | None = None
    replicas: int | None = None
    strategy: str | None = None
    note: str | None = dataclasses.field(default=None, compare=False)

    def __post_init__(self) -> None:
        if (self.suite == "scaling") != (self.strategy in STRATEGIES and bool(self.replicas)):
            raise ValueError(f"suite 'scaling' takes a strategy from {STRATEGIES} and replicas, "
                             f"others neither; got suite {self.suite!r}, strategy "
                             f"{self.strategy!r}, replicas {self.replicas!r}")
        if (self.suite == "baseline") != (self.variant in VARIANTS):
            raise ValueError(f"suite 'baseline' takes a variant from {VARIANTS}, others none; "
                             f"got suite {self.suite!r}, variant {self.variant!r}")
        if self.suite not in SUITES:
            raise ValueError(f"unknown suite {self.suite!r}; choose from {SUITES}")
        if self.precision not in SHORT_PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; use {SHORT_PRECISIONS}")

    @property
    def id(self) -> str:
        text = (f"{self.model}-{self.device.replace(':', '')}-b{self.batch_size}-"
                f"{self.precision}-{'xla' if self.xla else 'noxla'}")
        if self.variant:
            text = f"{text}-{self.variant}"
        if self.replicas:
            text += f"-{'w' if self.strategy == 'multiworker' else 'r'}{self.replicas}"
        return text if self.backend == "tensorflow" else f"{text}-{self.backend}"

    @property
    def policy(self) -> str:
        """The Keras dtype policy name of the precision."""
        return POLICY[self.precision]

    @property
    def compute_dtype(self) -> str:
        """float32, bfloat16 or float16: the dtype the case's matmuls run in."""
        return COMPUTE_DTYPE[self.precision]

    @property
    def compiles(self) -> bool:
        """Whether the train step is compiled at all: TensorFlow always traces a graph
        (``tf.function``, XLA on or off); JAX and torch compile only with ``xla``
        (``jax.jit``, ``torch.compile``), and otherwise run op by op."""
        return self.backend == "tensorflow" or self.xla

    @property
    def target(self) -> tuple[float, int]:
        """tta only: (test accuracy to reach, cap on epochs)."""
        return TTA_TARGETS[self.model]

    def fields(self) -> dict:
        """The fields of the result row (bench.store.schema.Row) that the case itself fills."""
        return {name: self.id if name == "case" else getattr(self, name)
                for name in schema.CASE_FIELDS}


#: Per matrix: the round target, the most rounds, the most time a case gets, the run's
#: budget (None: none) and whether each group of cases runs in a process of its own
#: (--bench-isolate), unless the options say otherwise. The quick matrix is a first look
#: within 3 minutes: its noisiest cases stop at 10 rounds or 12 s (the full matrix: 20 or
#: 60 s), and the run fits 2.5 minutes (its 22 cases took 2.4-3.2 minutes on the 2-core
#: machines without one, as those machines' speed drifted over a day). The full matrix
#: isolates its groups: in one process, memory that TensorFlow keeps in its own pools after
#: the large batches (1.2 GiB after one CNN prediction at batch 8192) piled up to 4.07
#: GiB by the train sweep; a process per group starts each group afresh.
MATRIX_DEFAULTS = {
    "tiny": {"round_time": 0.05, "max_rounds": 20, "case_time": 60.0, "budget": None,
             "isolate": False},
    "quick": {"round_time": 0.5, "max_rounds": 10, "case_time": 12.0, "budget": 150.0,
              "isolate": False},
    "full": {"round_time": 0.5, "max_rounds": 20, "case_time": 60.0, "budget": None,
             "isolate": True}}
OTHER_DEFAULTS = {"round_time": 0.5, "max_rounds": 20, "case_time": 60.0, "budget": None,
                  "isolate": False}


def matrix_defaults(matrix: str | None) -> dict:
    """The round target, most rounds, case time, budget and isolation of ``matrix`` (see
    MATRIX_DEFAULTS)."""
    return MATRIX_DEFAULTS.get(matrix or "", OTHER_DEFAULTS)


def _default_xla(model: str, device: str) -> bool:
    # XLA:CPU convolutions run tens of times slower than TensorFlow's own kernels.
    return not (model == "cnn" and device == "cpu")


def _quick(device: str, backend: str) -> list[Case]:
    cnn_xla = _default_xla("cnn", device)
    cases = [Case("train", "mlp", device, 128), Case("train", "mlp", device, 1024),
             Case("train", "mlp", device, 128, xla=False),
             Case("train", "mlp", device, 128, "bf16"), Case("train", "mlp", device, 128, "fp16"),
             Case("train", "cnn", device, 128, xla=cnn_xla)]
    cases += [Case("inference", "mlp", device, b) for b in (1, 128, 1024, 4096)]
    cases += [Case("inference", "mlp", device, 1024, "bf16"),
              Case("inference", "cnn", device, 1024, xla=cnn_xla)]
    cases += [Case("latency", "mlp", device, 1), Case("latency", "cnn", device, 1, xla=cnn_xla)]
    # Time to accuracy of the MLP only: the CNN's (up to 15 epochs, a minute on 2 cores,
    # a quarter of the quick matrix) is in the full matrix.
    cases += [Case("tta", "mlp", device, 128, rounds=1)]
    cases += [Case("compile", "mlp", device, 128, rounds=3),
              Case("compile", "mlp", device, 128, xla=False, rounds=3),
              Case("compile", "cnn", device, 128, xla=cnn_xla, rounds=3)]
    cases += [Case("baseline", "mlp", device, 128, rounds=3, variant="keras-fit"),
              Case("baseline", "mlp", device, 128, xla=False, steps=40, rounds=3,
                   variant="tutorial-eager")]
    cases += _scaling(device, (1, 2), rounds=2)
    return [dataclasses.replace(c, backend=backend) for c in cases]


def _scaling(device: str, replicas: Sequence[int], rounds: int) -> list[Case]:
    """MLP epochs under MirroredStrategy; on a CPU the replicas are logical devices."""
    return [Case("scaling", "mlp", device, 128, xla=False, rounds=rounds, replicas=r,
                 strategy="mirrored") for r in replicas]


def multiworker_cases(device: str, workers: int) -> list[Case]:
    """The scaling case run under MultiWorkerMirroredStrategy (TF_CONFIG names workers)."""
    return [Case("scaling", "mlp", device, 128, xla=False, rounds=3, replicas=workers,
                 strategy="multiworker")]


#: Configurations whose slowness on a CPU is the finding: measured once (train, b128),
#: not swept. Measured on the 2-core machines: XLA:CPU convolutions run tens of times
#: slower than TensorFlow's own kernels; float16 convolutions have no fast CPU kernel
#: (3.7 s a b128 step on the AVX-512 machine against 0.02 s in float32: an epoch of
#: half an hour).
XLA_CPU_CNN_NOTE = ("XLA:CPU convolutions run tens of times slower than TensorFlow's own "
                    "kernels: measured once (b128), not swept")
FP16_CPU_CNN_NOTE = ("float16 convolutions have no fast CPU kernel (about 200x slower than "
                     "float32): measured once (b128), not swept")
#: Measured on the AVX-512 2-core machine: TensorFlow's float16 MLP without XLA, a b128 step
#: 567 ms against 6.7 ms in float32 (bfloat16: 4.2 ms), a pass over the test set 22 s
#: against 0.03 s, whatever the batch size; with XLA float16 runs at float32's speed.
FP16_CPU_NOXLA_NOTE = ("TensorFlow's float16 matmuls without XLA have no fast CPU kernel "
                       "(about 85x slower than float32 a train step, 600x a prediction): "
                       "measured once (b128), not swept")


def known_slow(model: str, device: str, xla: bool, precision: str,
               backend: str = "tensorflow") -> str | None:
    """The note of a configuration measured once rather than swept (None: swept)."""
    if device != "cpu":
        return None
    if model == "cnn" and xla and backend == "tensorflow":
        return XLA_CPU_CNN_NOTE
    if model == "cnn" and precision == "fp16":
        return FP16_CPU_CNN_NOTE
    if precision == "fp16" and not xla and backend == "tensorflow":
        return FP16_CPU_NOXLA_NOTE
    return None


def _full(device: str, backend: str) -> list[Case]:
    cases = _scaling(device, (1, 2, 4, 8), rounds=3)
    for model, precision, xla in itertools.product(("mlp", "cnn"), SHORT_PRECISIONS,
                                                   (True, False)):
        note = known_slow(model, device, xla, precision, backend)
        if note:
            if precision == "fp32" or note != XLA_CPU_CNN_NOTE:
                cases.append(Case("train", model, device, 128, precision, xla, note=note))
            continue
        cases += [Case("train", model, device, b, precision, xla)
                  for b in (32, 128, 512, 1024, 4096)]
        cases += [Case("inference", model, device, b, precision, xla)
                  for b in (1, 8, 32, 128, 512, 1024, 4096, 8192)]
        cases.append(Case("latency", model, device, 1, precision, xla))
        cases.append(Case("compile", model, device, 128, precision, xla, rounds=3))
    for model in ("mlp", "cnn"):
        xla = _default_xla(model, device)
        cases += [Case("tta", model, device, b, precision, xla, rounds=1)
                  for b in (128, 1024) for precision in SHORT_PRECISIONS
                  if not known_slow(model, device, xla, precision, backend)]
        cases += [Case("baseline", model, device, b, rounds=3, variant="keras-fit",
                       xla=_default_xla(model, device), steps=None if model == "mlp" else 40)
                  for b in (128, 1024)]
    cases.append(Case("baseline", "mlp", device, 128, xla=False, steps=40, rounds=3,
                      variant="tutorial-eager"))
    return [dataclasses.replace(c, backend=backend) for c in cases]


def _tiny(device: str, backend: str) -> list[Case]:
    """Two fast cases for the harness's own end-to-end test (use with synthetic data)."""
    return [Case("train", "mlp", device, 64, backend=backend),
            Case("inference", "mlp", device, 64, backend=backend)]


def _ci(device: str, backend: str) -> list[Case]:
    """A small real matrix for comparing two hardware configurations in CI (a minute)."""
    cases = [Case("train", "mlp", device, 128), Case("train", "mlp", device, 1024),
             Case("inference", "mlp", device, 1024), Case("latency", "mlp", device, 1)]
    return [dataclasses.replace(c, backend=backend) for c in cases]


def build_matrix(name: str, devices: Sequence[str], backend: str = "tensorflow") -> list[Case]:
    """Every case of matrix ``name`` (quick, full, tiny or ci) for each device, in order."""
    builders = {"quick": _quick, "full": _full, "tiny": _tiny, "ci": _ci}
    if name not in builders:
        raise ValueError(f"unknown matrix {name!r}; choose one of: {', '.join(MATRICES)}")
    return [case for device in devices for case in builders[name](device, backend)]


def filter_cases(cases: Iterable[Case], *, models: Sequence[str] | None = None,
                 devices: Sequence[str] | None = None, batches: Sequence[int] | None = None,
                 precisions: Sequence[str] | None = None) -> list[Case]:
    """Keep the cases that match every filter given (None = no filter on that axis)."""
    return [c for c in cases
            if (not models or c.model in models) and (not devices or c.device in devices)
            and (not batches or c.batch_size in batches)
            and (not precisions or c.precision in precisions)]


def parse_list(text: str | None, kind=str) -> list | None:
    """'128, 1024' -> [128, 1024]; None or '' -> None (no filter)."""
    if not text:
        return None
    return [kind(item.strip()) for item in text.split(",") if item.strip()]
