"""The compiled train step on tiny synthetic data: learning, masking, precision, errors."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from fashion_core import train
from fashion_core.backends import DeviceError, parse_device
from fashion_core.config import ConfigError, TrainConfig


def tiny_config(**changes) -> TrainConfig:
    defaults = dict(model="mlp", epochs=3, batch_size=64, eval_batch_size=50)
    defaults.update(changes)
    return TrainConfig(**defaults)


@pytest.mark.parametrize("model, jit", [
    ("mlp", True), ("mlp", False), ("cnn", False),
    # XLA:CPU convolutions compile and run slowly (17 s here); the MLP covers XLA.
    pytest.param("cnn", True, marks=pytest.mark.slow)])
def test_a_few_epochs_lower_the_loss(tiny, model, jit):
    result = train.train(tiny_config(model=model, jit=jit, epochs=4), tiny)
    losses = [e.loss for e in result.epochs]
    assert all(np.isfinite(losses)) and losses == sorted(losses, reverse=True), losses
    assert losses[-1] < losses[0] - 0.2, losses
    assert result.test_accuracy > 0.3, result.test_accuracy  # chance is 0.1
    assert result.compile_seconds > 0 and len(result.epochs) == 4


def test_every_sample_is_trained_once_per_epoch(tiny):
    """300 samples at batch 64: 5 steps, the last padded and masked to 44 real samples."""
    trainer = train.make_trainer(tiny_config(), tiny)
    assert trainer.steps_per_epoch == 5 and trainer.padded_size == 320
    trainer.compile()
    trainer.set_order(np.arange(300))
    assert trainer.run_steps(0, 4).samples == 256
    assert trainer.run_steps(4, 1).samples == 44


def test_chunked_epoch_equals_one_call(tiny):
    """Splitting an epoch for the progress bar changes nothing but the number of calls."""
    calls = []
    a = train.train(tiny_config(epochs=2), tiny, chunks=1)
    b = train.train(tiny_config(epochs=2), tiny, chunks=3,
                    progress=lambda e, done, total: calls.append((e, done, total)))
    assert [e.loss for e in a.epochs] == pytest.approx([e.loss for e in b.epochs], rel=1e-5)
    assert calls[:4] == [(1, 0, 5), (1, 2, 5), (1, 3, 5), (1, 5, 5)]


def test_same_seed_same_run_other_seed_other_run(tiny):
    a = train.train(tiny_config(epochs=1, seed=7), tiny)
    b = train.train(tiny_config(epochs=1, seed=7), tiny)
    c = train.train(tiny_config(epochs=1, seed=8), tiny)
    assert a.epochs[0].loss == pytest.approx(b.epochs[0].loss, rel=1e-6)
    assert a.epochs[0].loss != pytest.approx(c.epochs[0].loss, rel=1e-6)


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains_and_restores_the_policy(tiny, precision):
    assert keras.config.dtype_policy().name == "float32"
    trainer = train.make_trainer(tiny_config(precision=precision), tiny)
    assert keras.config.dtype_policy().name == "float32"  # restored right after building
    assert trainer.model.layers[0].dtype_policy.name == precision
    assert trainer.model.layers[-1].compute_dtype == "float32"  # logits stay float32
    result = train.train(trainer.config, tiny, trainer=trainer)
    assert result.epochs[-1].loss < result.epochs[0].loss
    if precision == "mixed_float16":
        assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)


def test_policy_restored_when_building_fails(tiny, monkeypatch):
    from fashion_core import models

    def broken(name):
        raise RuntimeError("boom")

    monkeypatch.setattr(models, "build", broken)
    with pytest.raises(RuntimeError, match="boom"):
        train.make_trainer(tiny_config(precision="mixed_bfloat16"), tiny)
    assert keras.config.dtype_policy().name == "float32"


def test_diverging_loss_stops_naming_epoch_and_step(tiny):
    with pytest.raises(train.NonFiniteLossError, match=r"epoch 1, step \d+ of 5"):
        train.train(tiny_config(learning_rate=1e30), tiny)


def test_missing_device_lists_those_there(tiny):
    with pytest.raises(DeviceError, match=r"device 'gpu:7' is not there; devices found: cpu \("):
        train.make_trainer(tiny_config(device="gpu:7"), tiny)


@pytest.mark.parametrize("spec, name", [("cpu", "cpu"), ("gpu", "gpu:0"), ("GPU:1", "gpu:1"),
                                        ("/device:GPU:2", "gpu:2")])
def test_device_names(spec, name):
    assert parse_device(spec) == name


def test_unknown_device_name():
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        parse_device("tpu")


@pytest.mark.parametrize("changes, message", [
    (dict(batch_size=0), "batch_size must be a positive whole number, not 0"),
    (dict(batch_size=-5), "batch_size must be a positive whole number, not -5"),
    (dict(epochs=0), "epochs must be a positive whole number"),
    (dict(model="vgg"), "unknown model 'vgg'"),
    (dict(precision="float8"), "unknown precision 'float8'"),
    (dict(learning_rate=0.0), "learning_rate must be positive"),
])
def test_bad_config_values(changes, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config(**changes)


def test_batch_larger_than_dataset(tiny):
    with pytest.raises(ConfigError, match="batch_size 301 is larger than the 300 training"):
        train.make_trainer(tiny_config(batch_size=301), tiny)


def test_precision_aliases():
    assert TrainConfig(precision="bf16").precision == "mixed_bfloat16"
    assert TrainConfig(precision="fp16").precision_short == "fp16"


def test_predictions_have_the_right_shape(tiny):
    trainer = train.make_trainer(tiny_config(), tiny)
    for batch in (1, 7, 64, 100, 128):
        assert trainer.predict_all("test", batch).shape == (100,)
    assert trainer.predict_batch(tiny.x_test[:3]).shape == (3, 10)


# -- the padded last batch ------------------------------------------------------------------
def _last_step_and_alone(dataset, monkeypatch=None, kernel_row0=None):
    """One step on the padded last batch of ``dataset`` (300 samples at batch 64: 44 real,
    20 padding), and the same step on a trainer holding those 44 samples alone (batch 44,
    nothing padded). Both start from the same seeded weights."""
    from fashion_core import data, models

    if kernel_row0 is not None:
        real_build = models.build

        def build(name):
            model = real_build(name)
            kernel = keras.ops.convert_to_numpy(model.layers[0].kernel).copy()
            kernel[0, :] = kernel_row0
            model.layers[0].kernel.assign(kernel)
            return model

        monkeypatch.setattr(models, "build", build)
    padded = train.make_trainer(tiny_config(), dataset)
    padded.set_order(np.arange(300))
    stats = padded.run_steps(4, 1)
    alone_data = data.Dataset(dataset.x_train[256:], dataset.y_train[256:], dataset.x_test,
                              dataset.y_test, source="synthetic")
    alone = train.make_trainer(tiny_config(batch_size=44), alone_data)
    assert alone.steps_per_epoch == 1 and alone.padded_size == 44  # nothing padded
    alone.set_order(np.arange(44))
    alone_stats = alone.run_steps(0, 1)
    return ((stats, padded.model.get_weights()),
            (alone_stats, alone.model.get_weights()))


def _assert_same_step(padded, alone):
    (stats, weights), (alone_stats, alone_weights) = padded, alone
    assert stats.samples == alone_stats.samples == 44 and stats.bad_step == -1
    assert np.isfinite(stats.loss_sum)
    assert stats.loss_sum / stats.samples == pytest.approx(
        alone_stats.loss_sum / alone_stats.samples, rel=1e-5)
    for mine, theirs in zip(weights, alone_weights, strict=True):
        assert np.all(np.isfinite(mine))
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)


def test_padded_last_step_equals_the_step_on_its_real_samples_alone(tiny):
    """The padding claim: loss and weights after the padded step are those of the real
    samples alone (float32 tolerance: the batches differ in shape, not in arithmetic)."""
    _assert_same_step(*_last_step_and_alone(tiny))


def test_padding_whose_loss_is_infinite_changes_nothing(tiny, monkeypatch):
    """Padding repeats sample 0. Here sample 0 alone overflows the network (a huge
    weight on a pixel only it has): a mask that multiplies by 0 would turn its inf into
    NaN in the loss and the gradient; the select-and-zero mask leaves the step exactly
    that of the real samples."""
    from fashion_core import data

    images = tiny.x_train.copy()
    images[:, 0, 0] = 0
    images[0, 0, 0] = 255  # only sample 0, the padding's source, lights pixel (0, 0)
    dataset = data.Dataset(images, tiny.y_train, tiny.x_test, tiny.y_test, "synthetic")
    padded, alone = _last_step_and_alone(dataset, monkeypatch, kernel_row0=3e38)
    _assert_same_step(padded, alone)


def test_train_releases_the_trainer_it_made(tiny, monkeypatch):
    """A run that built its own trainer closes it; one handed a trainer leaves it open."""
    made = []
    real = train.make_trainer

    def recording(config, dataset):
        made.append(real(config, dataset))
        return made[-1]

    monkeypatch.setattr(train, "make_trainer", recording)
    result = train.train(tiny_config(epochs=1), tiny)
    assert result.epochs and result.device == made[0].device.name  # kept when closed
    assert result.data_source == "synthetic"
    with pytest.raises(AttributeError, match="was closed"):
        made[0].run_steps(0, 1)
    mine = real(tiny_config(epochs=1), tiny)
    train.train(mine.config, tiny, trainer=mine)
    mine.set_order(np.arange(mine.n_train))
    assert mine.run_steps(0, 1).samples == 64  # still usable
