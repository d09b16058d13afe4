"""What every backend builds the same way through Keras.

The dtype-policy scope (:func:`precision_policy`), the optimizer (:func:`make_optimizer`),
the seeding (:func:`set_random_seed`, which keeps TensorFlow out of JAX and PyTorch
processes) and the per-sample losses every compiled step traces
(:func:`per_sample_losses`).
"""

from __future__ import annotations

import contextlib
import sys

import keras

from fashion_core.config import TrainConfig
from fashion_core.data import NUM_CLASSES


@contextlib.contextmanager
def precision_policy(name: str):
    """Set Keras's global dtype policy for the block, and always restore the old one."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def make_optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    """Adam; wrapped in dynamic loss scaling for float16, whose gradients underflow."""
    optimizer = keras.optimizers.Adam(config.learning_rate)
    if config.precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def set_random_seed(seed: int) -> None:
    """``keras.utils.set_random_seed`` without importing TensorFlow for other backends.

    Keras seeds TensorFlow too whenever it is installed (for ``tf.data``), which imports
    all of it (seconds, and hundreds of MB) into a JAX or PyTorch process that never uses
    it. Where TensorFlow is not loaded yet and not the backend, Keras is told it is not
    there for this one call; Python's, numpy's and the backend's seeds are set as usual.
    """
    from keras.src.utils import module_utils

    lazy_tf = module_utils.tensorflow
    if keras.config.backend() == "tensorflow" or "tensorflow" in sys.modules:
        keras.utils.set_random_seed(seed)
        return
    saved = lazy_tf._available
    lazy_tf._available = False
    try:
        keras.utils.set_random_seed(seed)
    finally:
        lazy_tf._available = saved


def per_sample_losses(logits, labels):
    """Cross-entropy on logits (what is optimised) and the tutorial's MSE(one-hot, logits).

    Written once in ``keras.ops``, so every backend's compiled step traces the same loss;
    both are computed in float32 whatever the compute precision.
    """
    ops = keras.ops
    logits = ops.cast(logits, "float32")
    ce = ops.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    mse = ops.mean(ops.square(ops.one_hot(labels, NUM_CLASSES) - logits), axis=-1)
    return ce, mse
