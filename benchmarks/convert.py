"""How long ``bert convert`` takes on a BERT-Base-sized checkpoint (L=12, H=768, A=12, V=30,522).

    .venv/bin/python benchmarks/convert.py [--layers 12] [--hidden 768] [--repeats 3] [--workdir DIR]

Writes a random original-layout checkpoint (every variable of the released
``uncased_L-12_H-768_A-12``, MLM and NSP heads included, 110 M parameters,
float32) with the BERT-Base uncased vocabulary, then times, median of
``--repeats`` runs each:

* original -> model directory (``bert convert``: read, check, build the Keras
  model, assign, write ``encoder.weights.h5`` + ``model.weights.h5``);
* model directory -> original layout (``bert convert`` back);
* reading the original directory as ``--init`` (the on-the-fly conversion);
* model directory -> Hugging Face directory (``--format huggingface``,
  ``BertForPreTraining`` in ``model.safetensors``) and that directory back to a
  model directory, and the safetensors part alone (read, check, upcast, assign);

and, to show where the time goes, the checkpoint part alone (read, check,
reshape, assign into a built model), building the Keras model alone (keras
initialises every variable randomly before we overwrite it), and the baseline
of loading our own model directory (build + ``load_weights``).

Writing the random checkpoint is not timed. The whole of each run is timed,
including building the Keras model; TensorFlow's import is not (it happens once).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
VOCAB = REPO.parent / "shared" / "data" / "vocab" / "bert-base-uncased-vocab.txt"


def random_checkpoint(directory: Path, layers: int, hidden: int) -> int:
    import numpy as np

    from models.checkpoints import CHECKPOINT_NAME, variable_mappings, write_checkpoint
    from models.config import BertConfig

    directory.mkdir(parents=True)
    if VOCAB.is_file():
        shutil.copyfile(VOCAB, directory / "vocab.txt")
        vocab_size = sum(1 for _ in VOCAB.open(encoding="utf-8"))
    else:  # a user's clone without ../shared: a synthetic uncased vocabulary of the same size
        vocab_size = 30522
        tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(vocab_size - 5)]
        (directory / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    config = BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=hidden // 64, intermediate_size=4 * hidden)
    config.to_json_file(directory / "bert_config.json")
    rng = np.random.default_rng(0)
    weights = {m.original: rng.standard_normal(m.shape, dtype=np.float32) * 0.02 for m in variable_mappings(config)}
    write_checkpoint(weights, directory / CHECKPOINT_NAME)
    return sum(w.size for w in weights.values())


def median(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def huggingface_rows(work: Path, ours: Path, model, repeats: int) -> list[tuple[str, float]]:
    """Timings of the Hugging Face directions on the same weights."""
    from bert_cli.conversion import convert
    from bert_cli.huggingface import resolve_huggingface
    from models.huggingface import assign_from_hf
    from models.pretraining import keras_variables

    hf, back = work / "hf", work / "from_hf"
    rows = [("bert convert model dir -> Hugging Face",
             median(lambda: convert(ours, hf, overwrite=True, to_format="huggingface"), repeats))]
    variables = keras_variables(model.backbone, model)
    rows.append(("read + check + assign the safetensors",
                 median(lambda: assign_from_hf(resolve_huggingface(hf, "FROM").checkpoint, variables), repeats)))
    rows.append(("bert convert Hugging Face -> model dir",
                 median(lambda: convert(hf, back, overwrite=True), repeats)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None, help="scratch space (default: a temporary directory)")
    args = parser.parse_args()

    import tensorflow as tf  # noqa: F401  (imported once, outside the timings)

    from bert_cli.conversion import convert
    from bert_cli.model_dir import read_model_dir

    work = Path(tempfile.mkdtemp(dir=args.workdir))
    try:
        original = work / f"uncased_L-{args.layers}_H-{args.hidden}_A-{args.hidden // 64}"
        parameters = random_checkpoint(original, args.layers, args.hidden)
        size = sum(p.stat().st_size for p in original.iterdir()) / 1e6
        print(f"checkpoint: L={args.layers} H={args.hidden}, {parameters / 1e6:.1f} M parameters, {size:,.0f} MB")

        from bert_cli.conversion import resolve_original
        from models.checkpoints import assign_from_checkpoint
        from models.pretraining import build_pretrainer

        ours = work / "model"
        exported = work / "exported_uncased"
        source = resolve_original(original, "FROM")
        model = build_pretrainer(source.config)
        rows = [
            ("read + check + assign the checkpoint",
             median(lambda: assign_from_checkpoint(resolve_original(original, "FROM").checkpoint,
                                                   model.backbone, model),
                    args.repeats)),
            ("build the Keras model (random init)", median(lambda: build_pretrainer(source.config), args.repeats)),
        ]
        rows.append(("bert convert original -> model dir",
                     median(lambda: convert(original, ours, overwrite=True), args.repeats)))
        rows.append(("  baseline: load that model dir (build + h5)",
                     median(lambda: build_pretrainer(source.config).load_weights(str(ours / "model.weights.h5")),
                            args.repeats)))
        rows.append(("bert convert model dir -> original",
                     median(lambda: convert(ours, exported, overwrite=True), args.repeats)))
        rows.append(("--init ORIGINAL_DIR (on the fly)",
                     median(lambda: read_model_dir(original, "--init"), args.repeats)))
        rows += huggingface_rows(work, ours, model, args.repeats)
        for label, seconds in rows:
            print(f"{label:<46} {seconds:6.2f} s")
        print(f"(median of {args.repeats}; {os.cpu_count()} CPUs visible)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
