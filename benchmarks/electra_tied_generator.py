"""ELECTRA with the generator *tied* to the discriminator: one encoder, two heads (run by hand).

``bert pretrain --objective electra`` trains a small generator of its own (a quarter of the
discriminator's width) that shares only the embeddings, as the released ELECTRA models do. The
paper's Figure 3 and google-research/electra's ``untied_generator=False`` offer the other end:
the generator *is* the discriminator's encoder with its own masked-LM head
(``generator_predictions``), so the encoder gets masked LM's signal as well as the replaced-token
signal, at about twice the cost of an MLM update. On a CPU budget our discriminator learns next
to nothing from plausible replacements (``electra_discriminator_alone.py``); this script measures
whether the tied variant's extra masked-LM signal makes ELECTRA pay.

It runs ``benchmarks/pretraining_helps.py`` with one more objective, ``electra-tied``: the same
``bert pretrain --objective electra`` run (same records, masking, losses, weights 1 and 50,
sampling), with ``models.electra.ElectraGenerator`` replaced by :class:`TiedGenerator` in the
pre-training process. Its budget is a step count like the other arms' (``UPDATES_PER_MINUTE``),
and its cells are fine-tuned from its ``encoder.weights.h5`` exactly as the others are.

    .venv/bin/python benchmarks/electra_tied_generator.py --workdir /tmp/helps-v2 --budgets 15 --tasks sst2 rte
    .venv/bin/python benchmarks/electra_tied_generator.py --speed --sizes L-2_H-128 --vocab-size 8000 --steps 20 \\
        --repeats 3 --arms "ours --jit" "ours electra --jit"    # benchmarks/pretrain.py, ELECTRA tied

Any other ``pretraining_helps.py`` option passes through (``--objectives`` defaults to
``electra-tied``; add ``mlm electra`` to run those arms in the same workdir).
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

#: An update of the tied model costs about 1.6x an MLM update of the same encoder (its encoder runs twice,
#: forward and backward). Measured with ``--speed`` as the docstring says (L-2_H-128, vocabulary 8,000):
#: MLM 241.3 ex/s, tied ELECTRA 151.9 ex/s (medians of 3; single pairs 1.44-1.88x) on a 2-vCPU AVX-512 AMD
#: EPYC; 66.8 and 37.9 (1.76x) on a busy AMX Xeon. At pretraining_helps.py's MLM rate of 365 a minute, 1.59x
#: gives 230 (the generous end: a slower tied arm would get fewer updates).
UPDATES_PER_MINUTE = 230.0
#: Its peak learning rate: the encoder also learns masked LM, so MLM's rate, not untied ELECTRA's 1e-4.
LEARNING_RATE = 1e-3


def tied_generator_class():
    """:class:`TiedGenerator`, built on import of Keras (kept out of module import so ``--help`` is quick)."""
    import keras
    import keras_hub
    from keras import ops

    from models.encoder import activation

    class TiedGenerator(keras.layers.Layer):
        """The discriminator's own encoder and a masked-LM head of its own: logits ``[B, P, V]``.

        Same signature as ``models.electra.ElectraGenerator``. The head (dense H -> H, activation,
        LayerNorm, logits against the word embeddings plus a bias) is the original's
        ``generator_predictions``; everything below it is the discriminator's, so the generator's
        MLM loss trains the encoder the discriminator's loss trains.
        """

        def __init__(self, backbone, shape, config, **kwargs):
            super().__init__(**kwargs)
            self.generator_shape = shape
            self.backbone = backbone
            self.masked_lm_head = keras_hub.layers.MaskedLMHead(
                token_embedding=backbone.token_embedding, intermediate_activation=activation(config.hidden_act),
                layer_norm_epsilon=1e-12,
                kernel_initializer=keras.initializers.TruncatedNormal(stddev=config.initializer_range),
                dtype=backbone.dtype_policy, name="masked_lm_head")

        def call(self, token_ids, segment_ids, padding_mask, positions, training=False):
            encoded = self.backbone({"token_ids": token_ids, "segment_ids": segment_ids,
                                     "padding_mask": padding_mask}, training=training)
            return ops.cast(self.masked_lm_head(encoded["sequence_output"], mask_positions=positions), "float32")

    return TiedGenerator


def install() -> None:
    """Makes every ELECTRA model this process builds use :class:`TiedGenerator`."""
    import models.electra

    models.electra.ElectraGenerator = tied_generator_class()


def bert_arguments(argv: list[str]) -> tuple[list[str], bool]:
    """``bert`` arguments with ``electra-tied`` read as ``electra``, and whether it was there."""
    return ["electra" if a == "electra-tied" else a for a in argv], "electra-tied" in argv


def as_bert(argv: list[str]) -> None:
    """``bert ARGS``; ``--objective electra-tied`` runs ``--objective electra`` with the tied generator."""
    argv, tie = bert_arguments(argv)
    if tie:
        install()
    from bert_cli.main import main

    sys.argv = ["bert", *argv]
    main()


def helps(argv: list[str]) -> None:
    """``pretraining_helps.py ARGS`` with the ``electra-tied`` objective added."""
    import pretraining_helps

    pretraining_helps.BERT = [sys.executable, str(Path(__file__).resolve()), "--as-bert"]
    pretraining_helps.LEARNING_RATES["electra-tied"] = LEARNING_RATE
    for rates in pretraining_helps.UPDATES_PER_MINUTE.values():
        rates["electra-tied"] = UPDATES_PER_MINUTE
    if "--objectives" not in argv:
        argv = [*argv, "--objectives", "electra-tied"]
    sys.argv = ["pretraining_helps.py", *argv]
    pretraining_helps.main()


def main() -> None:
    argv = sys.argv[1:]
    if argv[:1] == ["--as-bert"]:
        as_bert(argv[1:])
    elif argv[:1] == ["--speed"]:
        install()
        sys.argv = ["pretrain.py", *argv[1:]]
        runpy.run_path(str(HERE / "pretrain.py"), run_name="__main__")
    else:
        helps(argv)


if __name__ == "__main__":
    main()
