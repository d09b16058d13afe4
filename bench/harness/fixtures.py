"""The suites' fixtures: the session's state, the dataset, and trainers (a few kept for
reuse, closed at the end), trained to the case's accuracy bar for inference cases.

:mod:`bench.harness.plugin` imports them, and ``bench/conftest.py`` everything it exports.
"""

from __future__ import annotations

import collections

import pytest

from bench.harness import cases as matrix
from bench.harness.session import BenchState, state_of


@pytest.fixture(scope="session")
def bench_state(request) -> BenchState:
    return state_of(request.config)


@pytest.fixture(scope="session")
def dataset(request):
    from fashion_core import data

    source = request.config.getoption("--bench-data")
    if source == "synthetic":
        return data.synthetic(train_size=2048, test_size=512, seed=0)
    return data.load(source)


@pytest.fixture(scope="session")
def trainer_for(dataset):  # a generator fixture: closes the trainers it kept at the end
    """Build (and compile) a Trainer for a case; the last few are kept for reuse."""
    from fashion_core.config import TrainConfig
    from fashion_core.train import make_trainer

    cache: collections.OrderedDict = collections.OrderedDict()

    def get(case: matrix.Case, batch_size: int | None = None, fresh: bool = False):
        config = TrainConfig(model=case.model, batch_size=batch_size or case.batch_size,
                             precision=case.policy, device=case.device, jit=case.xla)
        if fresh:
            return make_trainer(config, dataset)
        if config not in cache:
            while len(cache) >= 3:  # bound the memory held by idle trainers
                cache.popitem(last=False)[1].close()  # released now, not when gc runs
            cache[config] = make_trainer(config, dataset)
        cache.move_to_end(config)
        return cache[config]

    yield get
    for trainer in cache.values():
        trainer.close()


#: Epochs a model for inference/latency may train to reach its accuracy bar.
MAX_TRAINING_EPOCHS = 5


@pytest.fixture(scope="session")
def trained_for(trainer_for, dataset):
    """A trainer (shared with ``trainer_for``) whose model has trained until its test
    accuracy reaches the case's bar (:data:`bench.harness.cases.MIN_ACCURACY`), at least one
    epoch and at most :data:`MAX_TRAINING_EPOCHS`: inference is timed on a real model."""
    import numpy as np

    from fashion_core.train import run_epoch

    def get(case: matrix.Case):
        trainer = trainer_for(case, batch_size=min(128, len(dataset.x_train)))
        epochs = getattr(trainer, "bench_epochs_trained", 0)
        rng = np.random.default_rng(epochs)
        while epochs < MAX_TRAINING_EPOCHS and (
                epochs == 0 or trainer.evaluate() < matrix.MIN_ACCURACY[case.model]):
            run_epoch(trainer, epochs + 1, rng.permutation(trainer.n_train))
            epochs += 1
            trainer.bench_epochs_trained = epochs
        return trainer

    return get
