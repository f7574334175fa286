"""``bert pretrain --objective electra``: replaced-token detection as a :class:`bert_cli.training.Task`.

The records are those of masked-LM pre-training (ours or the original
script's): their stored masks are undone and every batch is masked afresh
with ELECTRA's rule (15 % of the tokens; [MASK] 85 %, kept 15 %), so the
same files serve both objectives. The model is
:class:`models.electra.ElectraPretrainer`; the discriminator is the encoder
the model directory's ``encoder.weights.h5`` holds, so every other command
uses an ELECTRA model unchanged, and ``model.weights.h5`` keeps the
generator for continued pre-training.

Metrics, pooled over every token or prediction of the logged steps:
``mlm_loss`` / ``mlm_accuracy`` (the generator's argmax), ``sampled_accuracy``
(masked tokens whose sample equals the original: how easy the generator
still makes the task), ``disc_loss``, ``disc_accuracy``, ``disc_precision`` and
``disc_recall`` on replaced tokens, and ``replaced_share`` (real tokens replaced).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

ELECTRA_SUMS = ("loss", "mlm_loss_sum", "mlm_correct", "mlm_weight", "sampled_correct", "disc_loss_sum",
                "disc_correct", "disc_tokens", "replaced", "predicted_replaced", "true_replaced", "examples",
                "tokens")
#: ELECTRA's masking: what a chosen position becomes ([MASK] 85 %, else kept; never a random token).
MASK_SHARE, RANDOM_SHARE = 0.85, 0.0


@dataclasses.dataclass
class ElectraTask:
    """Generator + discriminator pre-training (see :mod:`models.electra`).

    Args:
        config: The discriminator's :class:`models.config.BertConfig`.
        generator_fraction: The generator's width as a share of the discriminator's.
        generator_layers_fraction: Its layers as a share of the discriminator's (the original's
            ``generator_layers``).
        tied_generator: The generator is the discriminator's encoder with its own MLM head
            (:class:`models.electra.TiedGenerator`); the fractions are then unused.
        discriminator_weight: The weight of the discriminator's loss (the original's 50).
        seed: Seed of the generator's sampling noise.
        Others: as :class:`bert_cli.pretraining.PretrainTask`.
    """

    config: object
    optimizer: str
    learning_rate: float
    train_steps: int
    warmup_steps: int
    train_input: Callable
    evaluator: Callable | None = None
    weight_decay: float = 0.01
    precision: str = "fp32"
    bias_correction: bool = True
    generator_fraction: float = 0.25
    generator_layers_fraction: float = 1.0
    tied_generator: bool = False
    discriminator_weight: float = 50.0
    seed: int = 0
    sums: tuple[str, ...] = ELECTRA_SUMS

    def build(self):
        from bert_cli.pretraining import task_optimizer
        from bert_cli.runs import model_dtype
        from models.electra import build_electra

        model = build_electra(self.config, self.generator_fraction, dtype=model_dtype(self.precision),
                              seed=self.seed, generator_layers_fraction=self.generator_layers_fraction,
                              tied=self.tied_generator)
        return model, task_optimizer(self)

    def train_dataset(self, input_context, start_step: int):
        return self.train_input(input_context, start_step)

    def evaluate(self, model) -> dict | None:
        return self.evaluator(model) if self.evaluator else None

    def compute(self, model, batch, training: bool) -> dict:
        import tensorflow as tf

        from bert_cli.pretraining import record_inputs
        from models.electra import electra_losses

        outputs = model(record_inputs(batch, labels=True), training=training)
        values = electra_losses(outputs, {**batch, "padding_mask": batch["input_mask"]}, self.discriminator_weight)
        result = {key: values[key] for key in self.sums if key != "tokens"}
        result["tokens"] = tf.reduce_sum(tf.cast(batch["input_mask"], tf.float32))
        return result

    def summarize(self, totals: dict[str, float]) -> dict[str, float]:
        """Metrics pooled over every prediction and token summed (not means of per-batch means)."""
        weight = max(totals.get("mlm_weight", 0.0), 1.0)
        tokens = max(totals.get("disc_tokens", 0.0), 1.0)
        mlm_loss = totals.get("mlm_loss_sum", 0.0) / weight
        disc_loss = totals.get("disc_loss_sum", 0.0) / tokens
        flagged, replaced = totals.get("predicted_replaced", 0.0), totals.get("replaced", 0.0)
        hits = totals.get("true_replaced", 0.0)
        return {
            "loss": mlm_loss + self.discriminator_weight * disc_loss,
            "mlm_loss": mlm_loss,
            "mlm_accuracy": totals.get("mlm_correct", 0.0) / weight,
            "sampled_accuracy": totals.get("sampled_correct", 0.0) / weight,
            "disc_loss": disc_loss,
            "disc_accuracy": totals.get("disc_correct", 0.0) / tokens,
            "disc_precision": hits / flagged if flagged else 0.0,
            "disc_recall": hits / replaced if replaced else 0.0,
            "replaced_share": replaced / tokens,
        }


def masking(vocab, masked_lm_prob: float, whole_word: bool):
    """The input pipeline's ELECTRA masking for ``vocab`` (a :class:`data.tokenization.Vocabulary`)."""
    from data.pretraining_input import DynamicMasking

    return DynamicMasking(
        vocab_size=len(vocab), cls_id=vocab.cls_id, sep_id=vocab.sep_id, mask_id=vocab.mask_id,
        masked_lm_prob=masked_lm_prob, whole_word=whole_word, mask_share=MASK_SHARE, random_share=RANDOM_SHARE,
        continuation_ids=tuple(i for i, t in enumerate(vocab.tokens) if t.startswith("##")),
    )


#: Below this recall on replaced tokens, after warm-up, the discriminator is calling every token original.
STALLED_RECALL = 0.02


def stalled_note(step: int, metrics: dict, warmup_steps: int, learning_rate: float) -> str | None:
    """A one-line hint when a logged window shows the discriminator stuck at "all original", else None.

    Measured (L-2_H-128, batch 32, seq 128, the shared corpora, warm-up 10 %): at masked LM's 1e-3 the
    discriminator falls back to the trivial answer within 50 updates and stays there (recall 0.1 %
    after 1,498); at 5e-4, 2e-4 and 1e-4 it learns for 100-300 updates (recall up to 25 %), then slides
    back as the generator's samples get plausible (1e-4: recall 2.1 % after 1,470). The discriminator
    alone, on the batch's own masked tokens shuffled, learns 0.004 nats a token in 1,000 updates
    (``benchmarks/electra_discriminator_alone.py``), so the stall is not the generator's. The displayed
    recall says so too, but is easy to miss. Checked only once warm-up is over and 200 updates are
    done, since every run starts at the trivial answer.
    """
    recall = metrics.get("disc_recall")
    if recall is None or step < max(200, 2 * warmup_steps) or recall >= STALLED_RECALL:
        return None
    return (f"step {step:,}: the discriminator calls almost every token original (recall {recall:.1%} on "
            f"replaced tokens): it is not learning from them. Measured at batch 32: at 1e-3 it never starts; "
            f"at 1e-4 it learns for a few hundred updates, then the generator's samples outgrow it "
            f"(this run: --learning-rate {learning_rate:g}). Trained alone on replacements with the text's word "
            f"frequencies it learns nothing in 1,000 updates either: on a budget this small, --objective mlm "
            f"learns more")
