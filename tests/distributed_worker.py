"""Runs a few pre-training steps under a given strategy; used by test_distributed.py in subprocesses.

    python distributed_worker.py STRATEGY RESULT_JSON [--logical-cpus N] [--steps N] [--accumulation K]

Writes the losses of each logged step and a fingerprint of the final weights,
so the test can compare replicas and workers.
"""

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("strategy")
    parser.add_argument("result")
    parser.add_argument("--logical-cpus", type=int, default=1)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--accumulation", type=int, default=1)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--predictions", type=int, default=4,
                        help="masked positions per example; 2 gives every example the same number")
    parser.add_argument("--epsilon", type=float, default=None,
                        help="Adam epsilon; a large one makes the update proportional to the gradient")
    args = parser.parse_args()

    import tensorflow as tf

    if args.logical_cpus > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * args.logical_cpus)

    import keras
    import numpy as np

    from bert_cli import strategy as strategies
    from bert_cli.pretraining import PretrainTask
    from bert_cli.training import LoopOptions, run_loop
    from models.config import BertConfig
    from pretrain_helpers import TINY_CONFIG, make_examples

    distribution = strategies.resolve(args.strategy)
    per_replica = distribution.per_replica_batch(args.batch_size)
    keras.utils.set_random_seed(7)
    examples = make_examples(256, predictions=args.predictions, seed=5)
    columns = {key: np.array([e[key] for e in examples]) for key in examples[0]}

    def train_input(context, start_step):
        dataset = tf.data.Dataset.from_tensor_slices(columns)
        if context is not None and context.num_input_pipelines > 1:
            dataset = dataset.shard(context.num_input_pipelines, context.input_pipeline_id)
        return dataset.repeat().batch(per_replica * args.accumulation, drop_remainder=True)

    task = PretrainTask(
        config=BertConfig(**TINY_CONFIG), optimizer="adamw", learning_rate=args.learning_rate,
        train_steps=args.steps, warmup_steps=0, train_input=train_input,
    )
    if args.epsilon is not None:
        build = task.build

        def build_with_epsilon():
            model, optimizer = build()
            optimizer.epsilon = args.epsilon
            return model, optimizer

        task.build = build_with_epsilon
    losses = []
    initial = {}

    def remember_initial(model):
        initial["weights"] = [np.array(v.numpy()) for v in model.weights]

    result = run_loop(
        task, distribution, LoopOptions(train_steps=args.steps, log_every=1, save_every=args.steps,
                                        accumulation_steps=args.accumulation),
        Path(args.result).parent / f"checkpoints-{Path(args.result).stem}",
        on_log=lambda step, metrics: losses.append(metrics["loss"]),
        init=remember_initial,
    )
    weights = [np.asarray(v.value if hasattr(v, "value") else v) for v in result.model.weights]
    np.savez(Path(args.result).with_suffix(".npz"), *weights)
    np.savez(Path(args.result).with_suffix(".initial.npz"), *initial["weights"])
    Path(args.result).write_text(json.dumps({
        "replicas": distribution.replicas,
        "losses": losses,
        # One number per variable, sensitive to every element: a fixed pseudo-random projection.
        "fingerprint": [float(np.sum(w.astype("float64") * np.cos(np.arange(w.size)).reshape(w.shape)))
                        for w in weights],
        "iterations": int(result.optimizer.iterations.numpy()),
    }))


if __name__ == "__main__":
    main()
