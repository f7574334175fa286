"""BERT-Base pre-training speed on one GPU under Keras 3's JAX backend (no TensorFlow needed).

    KERAS_BACKEND=jax PYTHONPATH=. python3 benchmarks/gpu_pretrain_jax.py [--batch-sizes 64 128 256 512]
    KERAS_BACKEND=jax PYTHONPATH=. python3 benchmarks/gpu_pretrain_jax.py --cpu     # 3-step smoke test

The same model and optimizer as ``bert pretrain``: ``models.pretraining``'s
BertPretrainer (MLM head tied to the word embeddings + NSP head) at the "base"
preset (L12/H768/A12, vocabulary 30,522), seq 128, 20 predictions per sequence,
``mixed_bfloat16``, trained with ``models.optimization``'s AdamW (warmup +
linear decay, no decay on LayerNorm and biases, global clip 1.0).

The training step is Keras 3's stateless recipe for JAX: ``model.stateless_call``
inside ``jax.value_and_grad``, then ``optimizer.stateless_apply``, all under one
``jax.jit`` with the state donated so XLA updates it in place. Batches are
synthetic, built once and already on the device, so the figure is the model
step, not an input pipeline.

For each batch size: one call compiles (timed separately), a few warm-up
steps follow, then ``--windows`` windows of ``--steps`` steps are each timed to
``block_until_ready``; the median window is reported. A batch size that runs
out of memory is reported and the larger ones are skipped; ``--budget-s`` stops
before starting a size that would not finish in time (compilation dominates).

Model FLOPs per example are counted as ``benchmarks/pretrain.py --gpu-base``
counts them: 6 x (encoder-block parameters x tokens) + the attention term
6 x 2 x L x T^2 x H + the tied MLM output 6 x P x H x V. Utilisation is given
against the dense bf16 peak of an H100/H200 SXM (989 TFLOP/s) and against
~790 TFLOP/s, what a large bf16 matmul measures on those cards (the practical
ceiling). Results are also written to ``$OUT/gpu_pretrain.json`` when ``OUT``
is set (rewritten after every batch size, so a time-out keeps what finished).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path

# The backend must be chosen before keras is first imported.
os.environ["KERAS_BACKEND"] = "jax"
# JAX pre-allocates 75 % of GPU memory by default; the largest batch sizes want more.
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.92")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SEQ, PREDICTIONS, VOCAB = 128, 20, 30522
PEAK_BF16 = 989e12  # H100/H200 SXM dense bf16 (no sparsity)
MATMUL_CEILING = 790e12  # measured large bf16 matmul on the same cards


def flops_per_example(layers: int, hidden: int, seq: int, predictions: int, vocab: int) -> float:
    """Training FLOPs per sequence (forward + backward = 3 x forward = 6 x params x tokens).

    Same count as ``benchmarks/pretrain.py``'s ``gpu_base``: the encoder blocks'
    weights touch every token, attention scores and their use add 2 x T^2 x H per
    layer (forward, x6 for training with the factor 2 of multiply-add), and the
    tied MLM output matrix touches only the P predicted positions. Embedding
    look-ups, the MLM transform, the pooler and NSP are left out (< 1 %).
    """
    block = 12 * hidden * hidden + 13 * hidden  # Q, K, V, O (4H^2) + FFN (8H^2) + biases/LayerNorms
    return (6 * layers * block * seq
            + 6 * 2 * layers * seq * seq * hidden
            + 6 * predictions * hidden * vocab)


def synthetic_batches(count: int, batch: int, seq: int, predictions: int, vocab: int, seed: int = 0) -> list:
    """``count`` random batches in the model's input names, as device arrays.

    Shapes: token_ids/segment_ids/padding_mask [B, T], masked_lm_positions/
    masked_lm_ids/masked_lm_weights [B, P], next_sentence_labels [B].
    """
    import jax
    import numpy as np

    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(count):
        host = {
            "token_ids": rng.integers(1000, vocab, (batch, seq)).astype("int32"),
            "segment_ids": np.concatenate(
                [np.zeros((batch, seq // 2), "int32"), np.ones((batch, seq - seq // 2), "int32")], axis=1),
            "padding_mask": np.ones((batch, seq), "int32"),
            "masked_lm_positions": np.sort(rng.integers(1, seq - 1, (batch, predictions)), axis=1).astype("int32"),
            "masked_lm_ids": rng.integers(1000, vocab, (batch, predictions)).astype("int32"),
            "masked_lm_weights": np.ones((batch, predictions), "float32"),
            "next_sentence_labels": rng.integers(0, 2, (batch,)).astype("int32"),
        }
        batches.append(jax.device_put(host))
    return batches


FEATURES = ("token_ids", "segment_ids", "padding_mask", "masked_lm_positions")
LABELS = ("masked_lm_ids", "masked_lm_weights", "next_sentence_labels")


def make_train_step(model, optimizer):
    """A jitted ``(state, batch) -> (state, losses)`` with the state donated.

    ``state`` is (trainable, non_trainable, optimizer) variable values, in the
    order of ``model.trainable_variables``, ``model.non_trainable_variables``
    (which hold the dropout seed states) and ``optimizer.variables``.
    """
    import jax

    from models.pretraining import pretraining_losses

    def loss_fn(trainable, non_trainable, batch):
        outputs, non_trainable = model.stateless_call(
            trainable, non_trainable, {name: batch[name] for name in FEATURES}, training=True)
        losses = pretraining_losses(outputs, {name: batch[name] for name in LABELS})
        return losses["loss"], (non_trainable, losses)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def train_step(state, batch):
        trainable, non_trainable, optimizer_state = state
        (_, (non_trainable, losses)), grads = grad_fn(trainable, non_trainable, batch)
        trainable, optimizer_state = optimizer.stateless_apply(optimizer_state, grads, trainable)
        report = {name: losses[name] for name in ("loss", "mlm_loss", "nsp_loss") if name in losses}
        return (trainable, non_trainable, optimizer_state), report

    return jax.jit(train_step, donate_argnums=0)


def fresh_state(model, optimizer):
    """Copies of the initial variable values (the step donates, i.e. consumes, its input state)."""
    import jax.numpy as jnp

    def copy(variables):
        return [jnp.array(v.value, copy=True) for v in variables]

    return copy(model.trainable_variables), copy(model.non_trainable_variables), copy(optimizer.variables)


def measure(step, state, batches, warmup: int, steps: int, windows: int) -> dict:
    """Compile, warm up, then time ``windows`` x ``steps`` steps; returns timings and losses."""
    import jax

    started = time.perf_counter()
    state, report = step(state, batches[0])
    jax.block_until_ready((state, report))
    compile_s = time.perf_counter() - started
    first_loss = float(report["loss"])
    index = 1
    for _ in range(warmup):
        state, report = step(state, batches[index % len(batches)])
        index += 1
    jax.block_until_ready((state, report))
    window_s = []
    for _ in range(windows):
        started = time.perf_counter()
        for _ in range(steps):
            state, report = step(state, batches[index % len(batches)])
            index += 1
        jax.block_until_ready((state, report))
        window_s.append(time.perf_counter() - started)
    losses = {name: float(value) for name, value in report.items()}
    return {"compile_s": compile_s, "window_s": window_s, "first_loss": first_loss, "last_losses": losses,
            "steps_run": index, "state": state}


def check_state(model, state, result) -> None:
    """Smoke-test checks: finite losses, every weight trained, dropout seeds advanced."""
    import numpy as np

    trainable, non_trainable, _ = state
    losses = [result["first_loss"], *result["last_losses"].values()]
    assert all(np.isfinite(losses)), f"non-finite loss {losses}"
    unchanged = [v.path for v, new in zip(model.trainable_variables, trainable)
                 if np.array_equal(np.asarray(v.value), np.asarray(new))]
    assert not unchanged, f"weights not updated: {unchanged}"
    seeds = [v.path for v, new in zip(model.non_trainable_variables, non_trainable)
             if np.array_equal(np.asarray(v.value), np.asarray(new))]
    assert not seeds, f"non-trainable state (dropout seeds) not advanced: {seeds}"
    print(f"  checks: losses finite, all {len(trainable)} weights updated, "
          f"{len(non_trainable)} dropout seed states advanced", flush=True)


def is_out_of_memory(error: BaseException) -> bool:
    text = f"{type(error).__name__}: {error}"
    return "RESOURCE_EXHAUSTED" in text or "Out of memory" in text or "out of memory" in text


def write_json(path: Path | None, record: dict) -> None:
    if path is None:
        return
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    temporary.replace(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--steps", type=int, default=10, help="steps per timed window")
    parser.add_argument("--windows", type=int, default=4, help="timed windows per batch size (median reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps after the compiling one")
    parser.add_argument("--preset", default="base")
    parser.add_argument("--precision", default="mixed_bfloat16", help="Keras dtype policy")
    parser.add_argument("--budget-s", type=float, default=330.0,
                        help="do not start another batch size after this many seconds of run time")
    parser.add_argument("--cpu", "--tiny", dest="cpu", action="store_true",
                        help="smoke test: the tiny preset on CPU, batch sizes 4 and 8, 3 steps each")
    args = parser.parse_args()
    if args.cpu:
        os.environ["JAX_PLATFORMS"] = "cpu"
        args.preset, args.batch_sizes, args.steps, args.windows, args.warmup = "tiny", [4, 8], 1, 2, 0
    run_started = time.perf_counter()

    import jax
    import keras
    import keras_hub

    from models.config import BertConfig
    from models.optimization import build_optimizer, decays
    from models.pretraining import build_pretrainer

    device = jax.devices()[0]
    card = getattr(device, "device_kind", str(device))
    if not args.cpu and device.platform != "gpu":
        # JAX falls back to the CPU silently when its CUDA plugin cannot load; BERT-Base
        # there would only burn the time budget.
        print(f"error: JAX sees no GPU (devices: {jax.devices()}); is the jax CUDA plugin installed and "
              "working? Use --cpu for the CPU smoke test.", file=sys.stderr)
        return 3
    config = BertConfig.from_preset(args.preset, vocab_size=VOCAB)
    model = build_pretrainer(config, dtype=args.precision)
    # The schedule only sets the rate; a long run keeps it near its peak (1e-4) after 10 warmup steps.
    optimizer = build_optimizer("adamw", 1e-4, train_steps=1_000_000, warmup_steps=10)
    optimizer.build(model.trainable_variables)
    parameters = sum(math.prod(v.shape) for v in model.trainable_variables)
    decayed = sum(decays(optimizer, v) for v in model.trainable_variables)
    flops = flops_per_example(config.num_hidden_layers, config.hidden_size, SEQ, PREDICTIONS, VOCAB)

    print(f"device: {card} ({device.platform}, {len(jax.devices())} visible); python {platform.python_version()}, "
          f"jax {jax.__version__}, keras {keras.__version__} ({keras.backend.backend()}), "
          f"keras_hub {keras_hub.__version__}")
    print(f"model: BERT {args.preset} L{config.num_hidden_layers}/H{config.hidden_size}/A{config.num_attention_heads}, "
          f"vocab {VOCAB:,}, seq {SEQ}, {PREDICTIONS} predictions, MLM + NSP (tied), {args.precision}; "
          f"{parameters:,} trainable parameters in {len(model.trainable_variables)} variables "
          f"({decayed} weight-decayed), {len(model.non_trainable_variables)} non-trainable (dropout seeds); "
          f"compute {model.backbone.dtype_policy.compute_dtype}, "
          f"variables {model.backbone.dtype_policy.variable_dtype}")
    print("optimizer: AdamW wd 0.01 (no decay on LayerNorm/bias), warmup + linear decay, global clip 1.0")
    print(f"model FLOPs/example {flops / 1e9:.1f} GFLOP; MFU against {PEAK_BF16 / 1e12:.0f} TFLOP/s dense bf16 "
          f"peak, and against the ~{MATMUL_CEILING / 1e12:.0f} TFLOP/s measured bf16 matmul ceiling", flush=True)

    out_dir = os.environ.get("OUT")
    json_path = Path(out_dir) / "gpu_pretrain.json" if out_dir else None
    record = {
        "device_kind": card, "platform": device.platform, "python": platform.python_version(),
        "jax": jax.__version__, "keras": keras.__version__, "keras_hub": keras_hub.__version__,
        "model": {"preset": args.preset, **config.to_dict(), "seq": SEQ, "predictions": PREDICTIONS,
                  "heads": "MLM (tied) + NSP", "precision": args.precision, "trainable_parameters": parameters},
        "optimizer": "AdamW lr 1e-4 warmup 10, wd 0.01 (no LayerNorm/bias), global clip 1.0",
        "flops_per_example": flops, "peak_flops": PEAK_BF16, "matmul_ceiling_flops": MATMUL_CEILING,
        "steps_per_window": args.steps, "windows": args.windows, "warmup_steps": args.warmup,
        "results": [], "skipped": [],
    }
    write_json(json_path, record)

    step = make_train_step(model, optimizer)
    slowest_compile = 0.0
    for position, batch in enumerate(args.batch_sizes):
        elapsed = time.perf_counter() - run_started
        # A larger batch compiles about as long as the last one and runs longer; leave room for it.
        if position and elapsed + 1.2 * slowest_compile > args.budget_s:
            print(f"batch {batch}: skipped, {elapsed:.0f} s used of the {args.budget_s:.0f} s budget", flush=True)
            record["skipped"].append({"batch": batch, "reason": "time budget"})
            continue
        state = batches = None
        try:
            batches = synthetic_batches(4, batch, SEQ, PREDICTIONS, VOCAB, seed=batch)
            state = fresh_state(model, optimizer)
            result = measure(step, state, batches, args.warmup, args.steps, args.windows)
        except Exception as error:  # noqa: BLE001 (report and go on: this is a one-shot measurement)
            state = batches = None
            if is_out_of_memory(error):
                print(f"batch {batch}: out of device memory; larger sizes skipped", flush=True)
                record["skipped"].append({"batch": batch, "reason": "out of memory"})
                break
            traceback.print_exc()
            print(f"batch {batch}: failed ({type(error).__name__}); trying the next size", flush=True)
            record["skipped"].append({"batch": batch, "reason": f"{type(error).__name__}: {str(error)[:500]}"})
            continue
        state = result.pop("state")
        if args.cpu:
            check_state(model, state, result)
        del state, batches
        slowest_compile = max(slowest_compile, result["compile_s"])
        median_s = statistics.median(result["window_s"])
        examples = batch * args.steps / median_s
        row = {
            "batch": batch, "examples_per_s": examples, "tokens_per_s": examples * SEQ,
            "step_ms": 1000 * median_s / args.steps,
            "examples_per_s_windows": [batch * args.steps / s for s in result["window_s"]],
            "model_tflops_per_s": examples * flops / 1e12,
            "mfu_vs_peak": examples * flops / PEAK_BF16, "mfu_vs_matmul_ceiling": examples * flops / MATMUL_CEILING,
            "compile_s": result["compile_s"], "first_loss": result["first_loss"], **result["last_losses"],
        }
        record["results"].append(row)
        write_json(json_path, record)
        print(f"{card}: BERT-{args.preset} seq {SEQ} {args.precision} batch {batch}: "
              f"{examples:,.0f} examples/s, {examples * SEQ:,.0f} tokens/s, {row['step_ms']:.1f} ms/step, "
              f"{row['model_tflops_per_s']:.0f} TFLOP/s = MFU {row['mfu_vs_peak']:.1%} of {PEAK_BF16 / 1e12:.0f} "
              f"({row['mfu_vs_matmul_ceiling']:.1%} of {MATMUL_CEILING / 1e12:.0f}); "
              f"compile {result['compile_s']:.0f} s; loss {result['first_loss']:.3f} -> "
              f"{result['last_losses']['loss']:.3f}", flush=True)

    if record["results"]:
        print(f"\n{'batch':>6} {'examples/s':>11} {'tokens/s':>11} {'ms/step':>8} {'MFU@989':>8} {'MFU@790':>8}")
        for row in record["results"]:
            print(f"{row['batch']:>6} {row['examples_per_s']:>11,.0f} {row['tokens_per_s']:>11,.0f} "
                  f"{row['step_ms']:>8.1f} {row['mfu_vs_peak']:>8.1%} {row['mfu_vs_matmul_ceiling']:>8.1%}")
        print(f"median of {args.windows} windows x {args.steps} steps; {card}; "
              f"total {time.perf_counter() - run_started:.0f} s")
    record["total_s"] = time.perf_counter() - run_started
    write_json(json_path, record)
    if json_path:
        print(f"wrote {json_path}")
    return 0 if record["results"] else 1


if __name__ == "__main__":
    sys.exit(main())
