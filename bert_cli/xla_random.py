"""Dropout masks and uniform noise that XLA's CPU backend draws fast.

Keras 3's TensorFlow backend draws dropout masks with
``tf.nn.experimental.stateless_dropout`` and its default generator
(``auto_select``). Inside an XLA program on a CPU that generator is slow:
measured at 760-850 ns per element on a ``[32, 4, 128, 128]`` attention mask,
against 5.8 ns for ``threefry`` (and 2 ns for a plain multiply). In a whole
pre-training step with XLA (``benchmarks/pretrain.py``, vocabulary 30,522,
medians of 3) that made L-2_H-128 1.19x faster (76.8 vs 64.7 ex/s) and
L-4_H-256 1.08x (21.5 vs 20.0). ``keras.random.uniform`` (ELECTRA's Gumbel
sampling over ``[B, P, V]`` logits) goes through the same generator and is
given ``threefry`` the same way.

``threefry`` is only accepted inside XLA, so the faster generator is used only
while the training loop traces its XLA-compiled step (:func:`threefry`); every
other caller gets Keras' own dropout. The mask is a different random draw, of
the same distribution (keep probability ``1 - rate``, kept values scaled by
``1 / (1 - rate)``; uniform on ``[minval, maxval)``), and as deterministic:
same seed, same draw.
"""

from __future__ import annotations

import contextlib
import threading

_state = threading.local()
_installed = False


@contextlib.contextmanager
def threefry():
    """Within this block, Keras dropout and uniform noise traced on this thread use the ``threefry`` generator."""
    _install()
    previous = getattr(_state, "active", False)
    _state.active = True
    try:
        yield
    finally:
        _state.active = previous


def _install() -> None:
    """Wrap Keras' TensorFlow-backend dropout and uniform once (a no-op under other backends)."""
    global _installed
    import keras

    if _installed or keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf
    from keras.src.backend.tensorflow import random as backend_random

    original_dropout, original_uniform = backend_random.dropout, backend_random.uniform

    def dropout(inputs, rate, noise_shape=None, seed=None):
        if not getattr(_state, "active", False) or rate in (0.0, 1.0):
            return original_dropout(inputs, rate, noise_shape=noise_shape, seed=seed)
        seed = backend_random._cast_seed(backend_random.draw_seed(seed))
        noise_shape = backend_random._get_concrete_noise_shape(inputs, noise_shape)
        return tf.nn.experimental.stateless_dropout(inputs, rate=rate, noise_shape=noise_shape, seed=seed,
                                                   rng_alg="threefry")

    def uniform(shape, minval=0.0, maxval=1.0, dtype=None, seed=None):
        if not getattr(_state, "active", False):
            return original_uniform(shape, minval=minval, maxval=maxval, dtype=dtype, seed=seed)
        dtype = dtype or keras.config.floatx()
        seed = backend_random._cast_seed(backend_random.draw_seed(seed))
        return tf.random.stateless_uniform(shape=shape, minval=tf.cast(minval, dtype), maxval=tf.cast(maxval, dtype),
                                           dtype=dtype, seed=seed, alg="threefry")

    backend_random.dropout = dropout
    backend_random.uniform = uniform
    _installed = True
