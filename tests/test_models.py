"""Parameter counts, shapes and work counts of the two models."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from fashion_core import models


def test_mlp_is_the_tutorials():
    model = models.mlp()
    assert model.count_params() == 244_522  # as the tutorial's model.summary() shows
    assert [layer.units for layer in model.layers] == [256, 128, 64, 32, 10]
    assert model.output_shape == (None, 10)


def test_cnn_shape_and_size():
    model = models.cnn()
    assert model.input_shape == (None, 28, 28, 1) and model.output_shape == (None, 10)
    # conv 3*3*1*32+32, conv 3*3*32*64+64, dense 3136*128+128, dense 128*10+10
    assert model.count_params() == 320 + 18_496 + 401_536 + 1_290


def test_unknown_model_lists_choices():
    with pytest.raises(ValueError, match="unknown model 'resnet'; choose one of: mlp, cnn"):
        models.build("resnet")


def test_preprocess_scales_once_and_reshapes():
    images = np.full((2, 28, 28), 255, np.uint8)
    flat = keras.ops.convert_to_numpy(models.preprocess(images, "mlp"))
    assert flat.shape == (2, 784) and np.allclose(flat, 1.0)
    assert keras.ops.convert_to_numpy(models.preprocess(images, "cnn")).shape == (2, 28, 28, 1)


def test_flop_counts():
    mlp = models.mlp()
    forward = 2 * (784 * 256 + 256 * 128 + 128 * 64 + 64 * 32 + 32 * 10)
    assert models.flops_per_sample(mlp) == forward
    # Training: three times forward, less the first layer's unneeded input gradient.
    assert models.train_flops_per_sample(mlp) == 3 * forward - 2 * 784 * 256
    assert models.train_flops_per_sample(mlp) * 60_000 == pytest.approx(63.8e9, rel=1e-3)
    cnn = models.cnn()
    conv1 = 2 * 9 * 1 * 32 * 28 * 28
    assert models.flops_per_sample(cnn) > conv1
