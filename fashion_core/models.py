"""The tutorial's MLP and a small CNN, as plain Keras 3 layers.

Pixel scaling happens in exactly one place: :func:`preprocess`, which the training and
inference code of every backend applies to the uint8 images kept on the device. The models
themselves take float images already scaled to [0, 1]: the MLP a flat (batch, 784) vector
(the tutorial reshapes before calling it), the CNN a (batch, 28, 28, 1) image.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from fashion_core.config import MODELS  # noqa: F401  (re-exported)

PIXEL_SCALE = 255.0  # uint8 -> [0, 1], as the tutorial's `tf.cast(x, tf.float32) / 255.0`


def mlp() -> keras.Sequential:
    """784-256-128-64-32-10, ReLU, logits out: the tutorial's network (244,522 parameters)."""
    model = keras.Sequential([
        keras.Input(shape=(28 * 28,)),
        layers.Dense(256, activation="relu"),
        layers.Dense(128, activation="relu"),
        layers.Dense(64, activation="relu"),
        layers.Dense(32, activation="relu"),
        # Logits, kept in float32 under mixed precision so the softmax and the loss are exact.
        layers.Dense(10, dtype="float32"),
    ], name="mlp")
    return model


def cnn() -> keras.Sequential:
    """Two 3x3 conv blocks (32, 64 filters) with max-pooling, a 128-unit dense layer, dropout."""
    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(),
        layers.Conv2D(64, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        # Without it the CNN overfits after about 10 epochs (test accuracy 0.924 at epoch
        # 14, 0.917 at 15); training-only, so inference costs nothing more.
        layers.Dropout(0.4),
        layers.Dense(10, dtype="float32"),
    ], name="cnn")
    return model


def build(name: str) -> keras.Model:
    """Build a model by name; an unknown name is a ValueError listing the known ones."""
    if name == "mlp":
        return mlp()
    if name == "cnn":
        return cnn()
    raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")


def input_shape(name: str) -> tuple[int, ...]:
    """The per-sample input shape a model takes (after :func:`preprocess`)."""
    return (28 * 28,) if name == "mlp" else (28, 28, 1)


def preprocess(images, name: str, ops=None):
    """uint8 (batch, 28, 28) -> float32 in [0, 1], shaped for model ``name``.

    ``ops`` is the array namespace to use: ``keras.ops`` (the default) inside a
    tf.function, a jax.jit or a torch module, or ``numpy`` for arrays kept on the host.
    """
    if ops is np:
        x = np.asarray(images, dtype=np.float32) / PIXEL_SCALE
        return x.reshape((-1, *input_shape(name)))
    ops = ops or keras.ops
    x = ops.cast(images, "float32") / PIXEL_SCALE
    return ops.reshape(x, (-1, *input_shape(name)))


def _layer_flops(model: keras.Model) -> list[int]:
    """Forward FLOPs per sample of each Dense/Conv2D layer, in order (multiply-add = 2)."""
    counts = []
    for layer in model.layers:
        if isinstance(layer, layers.Dense):
            fan_in, units = layer.kernel.shape
            counts.append(2 * fan_in * units)
        elif isinstance(layer, layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            out_h, out_w = layer.output.shape[1:3]
            counts.append(2 * kh * kw * cin * cout * out_h * out_w)
    return counts


def flops_per_sample(model: keras.Model) -> int:
    """Forward-pass floating-point operations per sample (inference).

    Counts Dense and Conv2D layers, which hold all but a sliver of the work.
    """
    return int(sum(_layer_flops(model)))


def train_flops_per_sample(model: keras.Model) -> int:
    """Training FLOPs per sample: forward, weight gradients and input gradients.

    Each layer costs its forward FLOPs three times (forward, dW, dX), except that the
    first layer needs no gradient with respect to the images. For the MLP this gives
    1.06 MFLOP a sample, 63.8 GFLOP an epoch of 60,000.
    """
    counts = _layer_flops(model)
    return int(3 * sum(counts) - (counts[0] if counts else 0))
