"""Pre-training speed: our loop (MLM + NSP) vs keras-hub's BertMaskedLM.fit (MLM only), one run.

    .venv/bin/python benchmarks/pretrain.py [--sizes L-2_H-128 L-4_H-256] [--steps 60] [--repeats 3]

Both train on the same synthetic batches (seq 128, 20 predictions, batch 32,
vocabulary 30,522) held in memory, so the figure is the model step, not the
input pipeline. Each measurement times ``--steps`` steps after a warm-up call
(tracing and XLA compilation excluded); the median of ``--repeats`` is
reported with the ratio ours / keras-hub (goal >= 1.2 while also training NSP).

    .venv/bin/python benchmarks/pretrain.py --gpu-base

measures BERT-Base at seq 128 in mixed_bfloat16 on a GPU and prints examples/s
and the model FLOPs utilisation (6 x parameters x tokens per step, plus the
attention term, against the card's dense bf16 peak).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SEQ, PREDICTIONS, BATCH, VOCAB = 128, 20, 32, 30522


def synthetic(batches: int, batch: int, seq: int = SEQ, seed: int = 0) -> dict:
    import numpy as np

    rng = np.random.default_rng(seed)
    n = batches * batch
    return {
        "input_ids": rng.integers(1000, VOCAB, (n, seq)),
        "input_mask": np.ones((n, seq), "int64"),
        "segment_ids": np.concatenate([np.zeros((n, seq // 2)), np.ones((n, seq // 2))], 1).astype("int64"),
        "masked_lm_positions": np.sort(rng.integers(1, seq - 1, (n, PREDICTIONS)), 1),
        "masked_lm_ids": rng.integers(1000, VOCAB, (n, PREDICTIONS)),
        "masked_lm_weights": np.ones((n, PREDICTIONS), "float32"),
        "next_sentence_labels": rng.integers(0, 2, (n, 1)),
    }


def time_ours(size: str, steps: int, jit: bool, precision: str = "fp32", batch: int = BATCH,
              steps_per_execution: int = 1) -> float:
    import tensorflow as tf

    from bert_cli import strategy as strategies
    from bert_cli.pretraining import PretrainTask
    from bert_cli.training import LoopOptions, run_loop
    from models.config import BertConfig

    data = synthetic(8, batch)
    distribution = strategies.resolve("default")

    def train_input(context, start_step):
        return tf.data.Dataset.from_tensor_slices(data).repeat().batch(batch, drop_remainder=True).prefetch(4)

    config = BertConfig.from_preset(size, vocab_size=VOCAB)
    total = steps + steps_per_execution  # the first call traces and compiles
    task = PretrainTask(config, "adamw", 1e-4, total, 0, train_input=train_input, precision=precision)
    marks: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        run_loop(task, distribution,
                 LoopOptions(train_steps=total, log_every=steps_per_execution, save_every=10**9,
                             jit=jit, steps_per_execution=steps_per_execution),
                 Path(tmp), on_log=lambda step, metrics: marks.append(time.perf_counter()))
    return steps * batch / (marks[-1] - marks[0])


def time_keras_hub(size: str, steps: int, batch: int = BATCH, jit: bool = False) -> float:
    """keras-hub's BertMaskedLM trained by ``fit``; ``jit`` compiles the step with XLA
    (``compile``'s default, ``"auto"``, turns XLA off when TensorFlow sees only a CPU)."""
    import keras
    import keras_hub
    import tensorflow as tf

    from models.config import BertConfig

    config = BertConfig.from_preset(size, vocab_size=VOCAB)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=VOCAB, num_layers=config.num_hidden_layers, num_heads=config.num_attention_heads,
        hidden_dim=config.hidden_size, intermediate_dim=config.intermediate_size, max_sequence_length=512,
    )
    model = keras_hub.models.BertMaskedLM(backbone, preprocessor=None)
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-4, weight_decay=0.01, epsilon=1e-6, global_clipnorm=1.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=[keras.metrics.SparseCategoricalAccuracy()],
        jit_compile=jit,
    )
    data = synthetic(8, batch)
    features = {
        "token_ids": data["input_ids"].astype("int32"), "segment_ids": data["segment_ids"].astype("int32"),
        "padding_mask": data["input_mask"].astype("int32"),
        "mask_positions": data["masked_lm_positions"].astype("int32"),
    }
    dataset = tf.data.Dataset.from_tensor_slices(
        (features, data["masked_lm_ids"].astype("int32"), data["masked_lm_weights"])
    ).repeat().batch(batch, drop_remainder=True).prefetch(4)

    class Clock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.marks = []

        def on_train_batch_end(self, batch_index, logs=None):
            self.marks.append(time.perf_counter())

    clock = Clock()
    model.fit(dataset, steps_per_epoch=steps + 1, epochs=1, verbose=0, callbacks=[clock])
    return steps * batch / (clock.marks[-1] - clock.marks[0])


def gpu_base(steps: int) -> None:
    """BERT-Base, seq 128, mixed_bfloat16, XLA: examples/s and model FLOPs utilisation."""
    import tensorflow as tf

    from models.config import BertConfig

    gpus = tf.config.list_physical_devices("GPU")
    name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") if gpus else "no GPU"
    config = BertConfig.from_preset("base", vocab_size=VOCAB)
    layers, hidden = config.num_hidden_layers, config.hidden_size
    # Parameters touched per token: encoder blocks + embeddings used as the MLM output at P of T positions.
    block = 12 * hidden * hidden + 13 * hidden
    flops_per_example = 6 * (layers * block * SEQ) + 6 * 2 * layers * SEQ * SEQ * hidden \
        + 6 * PREDICTIONS * hidden * VOCAB
    peaks = {"H100": 989e12, "H200": 989e12, "A100": 312e12}
    peak = next((value for key, value in peaks.items() if key in name), None)
    for batch in (64, 128, 256):
        rate = time_ours("base", steps, jit=True, precision="mixed_bfloat16", batch=batch, steps_per_execution=10)
        line = f"{name}: BERT-Base seq {SEQ} bf16 batch {batch}: {rate:,.0f} examples/s"
        if peak:
            line += f", MFU {rate * flops_per_example / peak:.1%} of {peak / 1e12:.0f} TFLOP/s"
        print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["L-2_H-128", "L-4_H-256"])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gpu-base", action="store_true", help="measure BERT-Base bf16 on a GPU instead")
    args = parser.parse_args()
    if args.gpu_base:
        gpu_base(args.steps)
        return
    rows = []
    for size in args.sizes:
        runs = {"ours": [], "ours --jit": [], "keras-hub fit": [], "keras-hub fit XLA": []}
        for _ in range(args.repeats):
            runs["ours"].append(time_ours(size, args.steps, jit=False))
            runs["ours --jit"].append(time_ours(size, args.steps, jit=True))
            runs["keras-hub fit"].append(time_keras_hub(size, args.steps))
            runs["keras-hub fit XLA"].append(time_keras_hub(size, args.steps, jit=True))
            print(f"  {size}: " + ", ".join(f"{k} {v[-1]:,.1f}" for k, v in runs.items()), flush=True)
        medians = {k: statistics.median(v) for k, v in runs.items()}
        rows.append((size, medians))
    print(f"\nexamples/s on CPU, seq {SEQ}, batch {BATCH}, vocab {VOCAB:,}, median of {args.repeats}")
    print(f"{'size':<12} {'ours':>10} {'ours --jit':>11} {'keras-hub':>10} {'k-h XLA':>8} {'ratio':>7} {'vs XLA':>7}")
    for size, m in rows:
        best = max(m["ours"], m["ours --jit"])
        print(f"{size:<12} {m['ours']:>10,.1f} {m['ours --jit']:>11,.1f} {m['keras-hub fit']:>10,.1f} "
              f"{m['keras-hub fit XLA']:>8,.1f} {best / m['keras-hub fit']:>6.2f}x "
              f"{best / m['keras-hub fit XLA']:>6.2f}x")
    print("ratio = best of ours (MLM + NSP) / keras-hub BertMaskedLM.fit "
          "(MLM only, compile's default: no XLA on a CPU);")
    print("vs XLA = the same against keras-hub with jit_compile=True; goal >= 1.2x")


if __name__ == "__main__":
    main()
