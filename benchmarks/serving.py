"""Serving latency and throughput: the exported ``serving_default`` vs the in-process Keras model.

    .venv/bin/python benchmarks/serving.py [--model tiny] [--max-seq-length 128] [--requests 200]
                                           [--batches 20] [--repeats 3] [--threads 0]

A small sentence classifier (``--model`` preset, random weights: speed does
not depend on them) over the BERT-Base uncased vocabulary is written as a
model directory and exported with ``bert export``. Both sides get the same
SST-2 dev sentences:

* export: ``serving_default(text=[...])`` of the SavedModel loaded with
  ``tf.saved_model.load``: raw strings in, tokenization in the graph, so the
  time *includes tokenization*;
* in process: the Keras classifier called on pre-tokenised input (ids made
  beforehand by ``data.classification.featurize``, as fine-tuning makes them),
  both eagerly (``model(inputs)``) and compiled once with ``tf.function``.

Batch-1 latency: ``--requests`` single-sentence calls, p50 and p99. Batch-32
throughput: ``--batches`` calls of 32 sentences, examples/s. Each figure is
the median over ``--repeats`` runs, after warm-up calls (tracing and graph
optimisation are one-off costs, reported apart). The goal: the export's p50
at most 1.1x the in-process model's, tokenization included.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data"
DEFAULT_VOCAB = SHARED / "vocab" / "bert-base-uncased-vocab.txt"
DEFAULT_SENTENCES = SHARED / "classification" / "sst2" / "dev.tsv"
GOAL = 1.1


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def latencies(call, inputs: list) -> list[float]:
    """Seconds per call, one call per input."""
    times = []
    for item in inputs:
        started = time.perf_counter()
        call(item)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="preset of the classifier (tiny = L-2_H-128)")
    parser.add_argument("--vocab", type=Path, default=DEFAULT_VOCAB)
    parser.add_argument("--sentences", type=Path, default=DEFAULT_SENTENCES, help="TSV with a 'sentence' column")
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--requests", type=int, default=200, help="batch-1 calls per run")
    parser.add_argument("--batches", type=int, default=20, help="batch-32 calls per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--eager-requests", type=int, default=30,
                        help="batch-1 calls (and a tenth as many batch-32 calls, at least 2) for the eager Keras "
                             "model, which is ~30x slower per call; 0 leaves it out")
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow intra-op threads (0: TensorFlow's choice)")
    args = parser.parse_args()
    for path in (args.vocab, args.sentences):
        if not path.is_file():
            sys.exit(f"{path}: not found (the default data lives in ../shared/data)")

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    import tensorflow_text  # noqa: F401

    from bert_cli.exporting import export_model
    from bert_cli.model_dir import write_model_dir
    from bert_cli.pretraining import resolve_config
    from data.classification import featurize, read_dataset
    from data.tokenization import Tokenizer, Vocabulary
    from models.heads import build_classifier

    vocab = Vocabulary.load(args.vocab)
    config = resolve_config(args.model, len(vocab))
    dataset = read_dataset(args.sentences, require_labels=False)
    sentences = [example.text for example in dataset.examples]
    needed = max(args.requests, 32 * args.batches)
    sentences = (sentences * (needed // len(sentences) + 1))[:needed]

    work = Path(tempfile.mkdtemp(prefix="bert-serving-bench-"))
    model = build_classifier(config, 2)
    write_model_dir(work / "model", config, args.vocab, model.backbone, model,
                    {"task": "classify", "labels": ["0", "1"], "regression": False, "pair": False,
                     "lowercase": True, "max_seq_length": args.max_seq_length})
    started = time.perf_counter()
    export_model(work / "model", work / "export")
    export_seconds = time.perf_counter() - started
    started = time.perf_counter()
    serving = tf.saved_model.load(str(work / "export")).signatures["serving_default"]
    load_seconds = time.perf_counter() - started

    # Pre-tokenised input for the in-process model, made as fine-tuning makes it.
    tokenizer = Tokenizer(vocab, lowercase=True)
    vocab_ids = (vocab.cls_id, vocab.sep_id, vocab.pad_id)

    def features(texts: list[str]) -> dict:
        from data.classification import Columns, Dataset, Example

        batch = Dataset(args.sentences, [Example(t, None, None, i) for i, t in enumerate(texts)],
                        Columns("sentence", None, None))
        arrays = featurize(batch, tokenizer.encode, args.max_seq_length, *vocab_ids).arrays
        return {"token_ids": tf.constant(arrays["input_ids"]), "segment_ids": tf.constant(arrays["segment_ids"]),
                "padding_mask": tf.constant(arrays["input_mask"])}

    singles_text = [tf.constant([s]) for s in sentences[: args.requests]]
    singles_ids = [features([s]) for s in sentences[: args.requests]]
    batches_text = [tf.constant(sentences[i * 32:(i + 1) * 32]) for i in range(args.batches)]
    batches_ids = [features(sentences[i * 32:(i + 1) * 32]) for i in range(args.batches)]
    compiled = tf.function(lambda inputs: model(inputs, training=False), reduce_retracing=True)

    sides = {
        "export (strings, tokenization in graph)": (lambda text: serving(text=text), singles_text, batches_text),
        "in-process Keras, tf.function (ids)": (compiled, singles_ids, batches_ids),
    }
    if args.eager_requests:
        sides["in-process Keras, eager (ids)"] = (lambda inputs: model(inputs, training=False),
                                                  singles_ids[: args.eager_requests],
                                                  batches_ids[: max(2, args.eager_requests // 10)])
    # Same answers, or the comparison means nothing.
    exported = serving(text=batches_text[0])["probabilities"].numpy()
    in_process = tf.nn.softmax(compiled(batches_ids[0])).numpy()
    difference = float(np.abs(exported - in_process).max())

    results = {}
    for name, (call, singles, batches) in sides.items():
        for item in singles[:20] + batches[:2]:  # warm-up: tracing, graph optimisation, shape variants
            call(item)
        p50s, p99s, rates = [], [], []
        for _ in range(args.repeats):
            times = latencies(call, singles)
            p50s.append(percentile(times, 50))
            p99s.append(percentile(times, 99))
            started = time.perf_counter()
            for batch in batches:
                call(batch)
            rates.append(sum(len(next(iter(b.values()))) if isinstance(b, dict) else len(b) for b in batches)
                         / (time.perf_counter() - started))
        results[name] = (statistics.median(p50s), statistics.median(p99s), statistics.median(rates))

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    print(f"classifier {args.model} (L={config.num_hidden_layers} H={config.hidden_size}), vocab {len(vocab):,}, "
          f"max_seq_length {args.max_seq_length}, SST-2 dev sentences; {cores} CPU cores; "
          f"median of {args.repeats} runs ({args.requests} batch-1 calls, {args.batches} batch-32 calls each)")
    print(f"  export {export_seconds:.1f} s, load {load_seconds:.1f} s; max |export - in-process| "
          f"probability {difference:.2e}")
    for name, (p50, p99, rate) in results.items():
        print(f"  {name:42s} batch-1 p50 {p50 * 1e3:7.2f} ms  p99 {p99 * 1e3:7.2f} ms   batch-32 {rate:8,.0f} ex/s")
    export_p50 = results["export (strings, tokenization in graph)"][0]
    for name in [name for name in results if name.startswith("in-process")]:
        ratio = export_p50 / results[name][0]
        verdict = "met" if ratio <= GOAL else "NOT met"
        print(f"  export p50 / {name} p50: {ratio:.2f}x (goal <= {GOAL}x: {verdict})")
    throughput = results["export (strings, tokenization in graph)"][2] / results[
        "in-process Keras, tf.function (ids)"][2]
    print(f"  export batch-32 throughput / in-process tf.function: {throughput:.2f}x")


if __name__ == "__main__":
    main()
