"""Every precision trains: float32, bfloat16 and float16 (with loss scaling)."""

from __future__ import annotations

import numpy as np
import pytest

from fashion_core import data
from fashion_core.config import TrainConfig
from fashion_core.train import make_trainer, run_epoch


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16", "mixed_float16"])
def test_each_precision_trains_and_its_loss_falls(precision):
    dataset = data.synthetic(train_size=512, test_size=64, seed=3)
    trainer = make_trainer(TrainConfig(model="mlp", batch_size=64, precision=precision,
                                       device="cpu"), dataset)
    rng = np.random.default_rng(0)
    losses = [run_epoch(trainer, epoch, rng.permutation(trainer.n_train))[1]
              for epoch in (1, 2)]
    assert all(np.isfinite(losses)) and losses[1] < losses[0], losses
