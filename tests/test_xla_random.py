"""The fast dropout generator used inside the XLA-compiled training step."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from bert_cli import xla_random  # noqa: E402


def _compiled_dropout(rate: float, seed: int, fast: bool):
    layer = keras.layers.Dropout(rate, seed=seed)

    def call(x):
        if fast:
            with xla_random.threefry():
                return layer(x, training=True)
        return layer(x, training=True)

    return tf.function(call, jit_compile=True)


def test_threefry_masks_keep_the_right_share_scaled_and_repeat_for_a_seed():
    x = tf.ones([64, 1000])
    out = _compiled_dropout(0.1, 7, fast=True)(x).numpy()
    kept = out != 0
    assert abs(kept.mean() - 0.9) < 0.01  # 64,000 draws: std of the share ~0.0012
    np.testing.assert_allclose(out[kept], 1 / 0.9, rtol=1e-6)
    again = _compiled_dropout(0.1, 7, fast=True)(x).numpy()
    np.testing.assert_array_equal(out, again)  # same seed, same mask
    other = _compiled_dropout(0.1, 8, fast=True)(x).numpy()
    assert (other != out).any()


def test_the_fast_generator_is_used_only_inside_the_block():
    x = tf.ones([64, 1000])
    fast = _compiled_dropout(0.1, 7, fast=True)(x).numpy()
    plain = _compiled_dropout(0.1, 7, fast=False)(x).numpy()
    assert (fast != plain).any()  # a different generator really drew the fast mask
    from keras.src.backend.tensorflow import random as backend_random

    eager = keras.layers.Dropout(0.1, seed=7)(x, training=True).numpy()
    seed = backend_random._cast_seed(backend_random.draw_seed(keras.random.SeedGenerator(7)))
    reference = tf.nn.experimental.stateless_dropout(x, rate=0.1, seed=seed).numpy()  # Keras' own recipe
    np.testing.assert_array_equal(eager, reference)  # outside the block: Keras' own dropout, unchanged
    with xla_random.threefry():  # rate 0 is the identity either way
        np.testing.assert_array_equal(keras.layers.Dropout(0.0)(x, training=True).numpy(), x.numpy())


def _compiled_uniform(seed: int, fast: bool, shape=(64, 1000)):
    generator = keras.random.SeedGenerator(seed)

    def call():
        if fast:
            with xla_random.threefry():
                return keras.random.uniform(shape, minval=-1.0, maxval=3.0, seed=generator)
        return keras.random.uniform(shape, minval=-1.0, maxval=3.0, seed=generator)

    return tf.function(call, jit_compile=True)


def test_threefry_uniform_is_uniform_on_its_range_and_repeats_for_a_seed():
    draw = _compiled_uniform(7, fast=True)().numpy()
    assert draw.min() >= -1.0 and draw.max() < 3.0
    # 64,000 draws of U(-1, 3): mean 1, variance 16/12; each decile of the range holds a tenth
    assert abs(draw.mean() - 1.0) < 0.03 and abs(draw.var() - 16 / 12) < 0.03
    shares = np.histogram(draw, bins=10, range=(-1.0, 3.0))[0] / draw.size
    np.testing.assert_allclose(shares, 0.1, atol=0.006)
    np.testing.assert_array_equal(draw, _compiled_uniform(7, fast=True)().numpy())
    assert (draw != _compiled_uniform(8, fast=True)().numpy()).any()
    assert (draw != _compiled_uniform(7, fast=False)().numpy()).any()  # the fast generator really drew it


def test_uniform_outside_the_block_is_keras_own():
    from keras.src.backend.tensorflow import random as backend_random

    xla_random._install()
    drawn = keras.random.uniform((4, 5), seed=keras.random.SeedGenerator(3)).numpy()
    seed = backend_random._cast_seed(backend_random.draw_seed(keras.random.SeedGenerator(3)))
    np.testing.assert_array_equal(drawn, tf.random.stateless_uniform((4, 5), seed=seed).numpy())
