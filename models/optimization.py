"""Optimizers and the learning-rate schedule of the original recipe.

* Schedule: linear warmup from 0 to the peak rate over ``warmup_steps``, and
  underneath it the original's polynomial (power 1) decay from the peak to 0
  over ``train_steps``: ``lr(step) = peak * (1 - step / train_steps)`` after
  warmup, ``peak * step / warmup_steps`` during it (exactly as
  google-research/bert's ``optimization.py`` composes them).
* AdamW: weight decay 0.01, beta 0.9 / 0.999, epsilon 1e-6, no decay on
  LayerNorm parameters (``gamma``/``beta``) and biases, gradients clipped to a
  global norm of 1.0. Keras' AdamW applies Adam's bias correction, which the
  original's ``AdamWeightDecayOptimizer`` leaves out (its step is 3.2x larger
  at update 1, 2.1x at 250, 1.26x at 1,000); tf-models and keras-hub keep it.
  ``bias_correction=False`` gives the original's update (:class:`OriginalAdamW`).
* LAMB (``optimizer="lamb"``): the layer-wise adaptive optimizer for large
  batches (You et al. 2019), with the same decay exclusions.
"""

from __future__ import annotations

import keras
from keras import ops

from models.errors import ModelError

# Substrings of Keras variable names that are never decayed: LayerNorm scale
# and offset, and every bias (the MLM head's ``output_bias`` included).
NO_DECAY_NAMES = ("gamma", "beta", "bias")


@keras.saving.register_keras_serializable(package="bert")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup to ``peak`` over ``warmup_steps``, linear decay to 0 at ``train_steps``.

    Args:
        peak: The learning rate reached at the end of warmup (before decay).
        train_steps: Step at which the rate reaches 0.
        warmup_steps: Steps of linear warmup (0 for none).

    Example:
        >>> schedule = WarmupLinearDecay(1e-4, train_steps=1000, warmup_steps=100)
        >>> float(schedule(50))  # halfway through warmup
        5e-05
    """

    def __init__(self, peak: float, train_steps: int, warmup_steps: int = 0):
        if train_steps <= 0:
            raise ModelError(f"--train-steps must be positive, got {train_steps}")
        if not 0 <= warmup_steps <= train_steps:
            raise ModelError(f"--warmup-steps must be between 0 and --train-steps ({train_steps}), got {warmup_steps}")
        if peak <= 0:
            raise ModelError(f"--learning-rate must be positive, got {peak}")
        self.peak = float(peak)
        self.train_steps = int(train_steps)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        decayed = self.peak * ops.maximum(0.0, 1.0 - step / float(self.train_steps))
        if self.warmup_steps == 0:
            return decayed
        warmup = self.peak * step / float(self.warmup_steps)
        return ops.where(step < float(self.warmup_steps), warmup, decayed)

    def get_config(self):
        return {"peak": self.peak, "train_steps": self.train_steps, "warmup_steps": self.warmup_steps}


@keras.saving.register_keras_serializable(package="bert")
class OriginalAdamW(keras.optimizers.AdamW):
    """AdamW without Adam's bias correction: google-research/bert's ``AdamWeightDecayOptimizer``.

    ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2`` and the step
    ``lr * m / (sqrt(v) + eps)``, where Keras' Adam scales ``lr`` by
    ``sqrt(1 - b2^t) / (1 - b1^t)``. Decoupled weight decay ``lr * wd * w`` is
    Keras' (the same as the original's ``update += wd * w``).
    """

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        self.assign_sub(variable, ops.divide(ops.multiply(m, lr), ops.add(ops.sqrt(v), self.epsilon)))


def build_optimizer(
    name: str,
    learning_rate: float,
    train_steps: int,
    warmup_steps: int,
    weight_decay: float = 0.01,
    clip_norm: float | None = 1.0,
    bias_correction: bool = True,
) -> keras.optimizers.Optimizer:
    """AdamW or LAMB with the original settings and the warmup + linear-decay schedule.

    Args:
        name: ``"adamw"`` or ``"lamb"``.
        learning_rate: Peak learning rate.
        train_steps: Optimizer updates in the whole run (the schedule reaches 0 there).
        warmup_steps: Updates of linear warmup.
        weight_decay: Decoupled weight decay (not applied to LayerNorm and biases).
        clip_norm: Global gradient-norm clip, None to disable.
        bias_correction: Adam's bias correction (Keras'); False for the original's AdamW.
    """
    schedule = WarmupLinearDecay(learning_rate, train_steps, warmup_steps)
    classes = {"adamw": keras.optimizers.AdamW if bias_correction else OriginalAdamW, "lamb": keras.optimizers.Lamb}
    if name not in classes:
        raise ModelError(f"--optimizer {name!r} is not known; use adamw or lamb")
    if name == "lamb" and not bias_correction:
        raise ModelError("--no-adam-bias-correction is for --optimizer adamw (LAMB keeps its own correction)")
    optimizer = classes[name](
        learning_rate=schedule,
        weight_decay=weight_decay,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-6,
        global_clipnorm=clip_norm,
    )
    optimizer.exclude_from_weight_decay(var_names=list(NO_DECAY_NAMES))
    return optimizer


def decays(optimizer: keras.optimizers.Optimizer, variable) -> bool:
    """Whether ``optimizer`` applies weight decay to ``variable`` (for tests and reports)."""
    return optimizer._use_weight_decay(variable)  # noqa: SLF001 (Keras has no public accessor)
