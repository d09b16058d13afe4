"""The training loop: epochs, per-epoch evaluation, time to accuracy, progress.

Backend-neutral: it talks to a backend's Trainer (see :mod:`fashion_core.backends`) and
sees only numpy and floats. Samples are reshuffled every epoch from a generator seeded by
the config (the tutorial shuffled whole batches of 128 instead: ``.batch().shuffle()``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable

import numpy as np

from fashion_core.config import TrainConfig
from fashion_core.data import Dataset


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names epoch and step."""


@dataclasses.dataclass(frozen=True)
class EpochResult:
    epoch: int  # 1-based
    seconds: float  # training time of the epoch, evaluation excluded
    samples_per_second: float
    loss: float  # mean cross-entropy over the epoch's samples
    mse: float  # mean of the tutorial's MSE(one-hot, logits)
    test_accuracy: float | None  # None where evaluation was skipped


@dataclasses.dataclass
class TrainResult:
    config: TrainConfig
    backend: str
    device: str  # "cpu", "gpu:0"
    device_model: str
    jit: bool  # XLA as resolved for the device (the config may say "auto")
    data_source: str
    compile_seconds: float
    epochs: list[EpochResult]
    wall_seconds: float  # from the start of compile to the end, evaluation included
    time_to_accuracy: float | None = None  # wall seconds until target_accuracy was reached
    strategy: str | None = None  # tf.distribute strategy, where one was used
    replicas: int = 1
    samples_per_epoch: int = 0

    @property
    def test_accuracy(self) -> float | None:
        measured = [e.test_accuracy for e in self.epochs if e.test_accuracy is not None]
        return measured[-1] if measured else None

    def as_record(self) -> dict:
        """The JSON record ``--json`` writes."""
        return {
            "model": self.config.model, "batch_size": self.config.batch_size,
            "precision": self.config.precision, "device": self.device,
            "device_model": self.device_model, "backend": self.backend,
            "jit": self.jit, "seed": self.config.seed,
            "learning_rate": self.config.learning_rate, "data_source": self.data_source,
            "compile_seconds": self.compile_seconds, "wall_seconds": self.wall_seconds,
            "time_to_accuracy": self.time_to_accuracy,
            "strategy": self.strategy, "replicas": self.replicas,
            "global_batch": self.config.batch_size * self.replicas,
            "samples_per_epoch": self.samples_per_epoch,
            "test_accuracy": self.test_accuracy,
            "epochs": [dataclasses.asdict(e) for e in self.epochs],
        }


ProgressFn = Callable[[int, int, int], None]  # (epoch, steps done, steps in the epoch)


def make_trainer(config: TrainConfig, dataset: Dataset):
    """A Trainer of the backend Keras is configured with."""
    from fashion_core import backends

    return backends.current().Trainer(config, dataset)


def run_epoch(trainer, epoch: int, order: np.ndarray, chunks: int = 1,
              progress: ProgressFn | None = None) -> tuple[float, float, float]:
    """Train one epoch in ``chunks`` compiled calls; return (seconds, mean loss, mean MSE).

    One chunk is the fastest (a single host round-trip); more chunks let a progress bar
    move within the epoch. Raises NonFiniteLossError at the first NaN/inf loss.
    """
    steps = trainer.steps_per_epoch
    chunks = max(1, min(chunks, steps))
    bounds = [round(i * steps / chunks) for i in range(chunks + 1)]
    loss_sum = mse_sum = samples = 0.0
    trainer.set_order(order)
    if progress:
        progress(epoch, 0, steps)
    begin = time.perf_counter()
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        stats = trainer.run_steps(start, stop - start)
        if stats.bad_step >= 0:
            raise NonFiniteLossError(
                f"loss became non-finite at epoch {epoch}, step {stats.bad_step + 1} of "
                f"{steps}; lower the learning rate, or use float32 / loss scaling")
        loss_sum, mse_sum, samples = (loss_sum + stats.loss_sum, mse_sum + stats.mse_sum,
                                      samples + stats.samples)
        if progress:
            progress(epoch, stop, steps)
    seconds = time.perf_counter() - begin
    return seconds, loss_sum / samples, mse_sum / samples


def train(config: TrainConfig, dataset: Dataset, *, trainer=None, chunks: int = 1,
          progress: ProgressFn | None = None,
          on_epoch: Callable[[EpochResult], None] | None = None,
          target_accuracy: float | None = None, stop_at_target: bool = False,
          evaluate: bool = True,
          stop_when: Callable[[EpochResult], bool] | None = None) -> TrainResult:
    """Train ``config.epochs`` epochs, evaluating on the test set after each.

    ``target_accuracy`` records the wall time (compile included) until the test accuracy
    first reaches it; ``stop_at_target`` ends training there (time-to-accuracy runs).
    ``stop_when``, called after each epoch, ends training early when it returns True
    (a time budget).
    """
    start = time.perf_counter()
    if trainer is not None:
        return _train(config, dataset, trainer, start, chunks, progress, on_epoch,
                      target_accuracy, stop_at_target, evaluate, stop_when)
    # A trainer made here is released here: nothing else can reach it afterwards.
    with make_trainer(config, dataset) as own:
        return _train(config, dataset, own, start, chunks, progress, on_epoch,
                      target_accuracy, stop_at_target, evaluate, stop_when)


def _train(config, dataset, trainer, start, chunks, progress, on_epoch, target_accuracy,
           stop_at_target, evaluate, stop_when=None) -> TrainResult:
    compile_seconds = trainer.compile()
    rng = np.random.default_rng(config.seed)
    epochs: list[EpochResult] = []
    reached_at = None
    for epoch in range(1, config.epochs + 1):
        order = rng.permutation(trainer.n_train)
        seconds, loss, mse = run_epoch(trainer, epoch, order, chunks, progress)
        accuracy = trainer.evaluate() if evaluate else None
        result = EpochResult(epoch, seconds, trainer.samples_per_epoch / seconds, loss, mse,
                             accuracy)
        epochs.append(result)
        if on_epoch:
            on_epoch(result)
        if (target_accuracy is not None and reached_at is None and accuracy is not None
                and accuracy >= target_accuracy):
            reached_at = time.perf_counter() - start
            if stop_at_target:
                break
        if stop_when is not None and stop_when(result):
            break
    return TrainResult(config, trainer.backend, trainer.device.name, trainer.device.model,
                       trainer.jit, dataset.source, compile_seconds, epochs,
                       time.perf_counter() - start, reached_at,
                       strategy=getattr(trainer, "strategy_name", None),
                       replicas=getattr(trainer, "replicas", 1),
                       samples_per_epoch=trainer.samples_per_epoch)


def median_epoch_seconds(result: TrainResult, skip: int = 1) -> float:
    """Median epoch time after the first ``skip`` epochs (steady state)."""
    times = [e.seconds for e in result.epochs[skip:]] or [e.seconds for e in result.epochs]
    return float(np.median(times)) if times else math.nan
