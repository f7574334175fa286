"""`bert pretrain --objective electra`: ELECTRA's generator + discriminator, end to end and piece by piece.

The model-level checks (which tokens count as replaced, where gradients flow, the loss, the shared
embeddings) compare :mod:`models.electra` with computations written here in numpy; the pipeline check
reads the ELECTRA masking out of ``pretraining_dataset``; the command-line checks train tiny models on
synthetic records and use the model directory with the other commands.

The learning check needs records in which a replaced token can be *told apart*: in
``pretrain_helpers.make_examples`` text half the words follow their neighbour and the rest are drawn
from the prior, so a generator's sample is about as plausible as an original word and almost no token is
more likely replaced than not (measured: disc_accuracy stays within 0.001 of the all-"original" baseline after 1,000
steps). Here each text keeps to one of eight topics of five words; a sample from another topic can only
be a replacement. Weights start wider (initializer_range 0.3): at 0.02 the discriminator sits on a
plateau for about 1,000 steps before it uses the context at all. That run (300 steps) goes on in a
process of its own from the start, on the second core, and its tests come last.
"""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from bert_cli.main import app
from cli_helpers import assert_one_line_error
from pretrain_helpers import (
    CLS,
    MASK,
    SEP,
    SPECIALS,
    TINY_CONFIG,
    VOCAB,
    WORDS,
    make_examples,
    write_config,
    write_records,
    write_vocab,
)

tf = pytest.importorskip("tensorflow")
pytestmark = pytest.mark.slow

TOPICS, TOPIC_WORDS = 8, 5
LEARN_STEPS = 300
WIDE_INIT = 0.3
# The runs that check plumbing (resume, --init-checkpoint, the other commands) use one layer: each run's
# cost is mostly tracing the training step, which grows with the layers.
ONE_LAYER = {"num_hidden_layers": 1}
# The original's ELECTRA-Small rule at our width: G = 32 / 4, heads max(1, G / 64), FFN 4 G.
GENERATOR = {"hidden_size": 8, "num_layers": 2, "num_heads": 1, "intermediate_size": 32}
ELECTRA_METRICS = ("loss", "mlm_loss", "mlm_accuracy", "sampled_accuracy", "disc_loss", "disc_accuracy",
                   "disc_precision", "disc_recall", "replaced_share")


def _topic_examples(count: int, seed: int, seq_length: int = 32, predictions: int = 5) -> list[dict]:
    """Records in the original schema (stored masks and all) whose text keeps to one topic's words."""
    rng = np.random.default_rng(seed)
    first = len(SPECIALS)
    examples = []
    for _ in range(count):
        length = int(rng.integers(seq_length // 2, seq_length - 2))
        topic = int(rng.integers(TOPICS))
        tokens = [CLS] + (first + topic * TOPIC_WORDS + rng.integers(TOPIC_WORDS, size=length)).tolist() + [SEP]
        real = min(predictions, max(1, round(len(tokens) * 0.15)))
        positions = sorted(rng.choice(np.arange(1, len(tokens) - 1), size=real, replace=False).tolist())
        masked = [MASK if i in positions else t for i, t in enumerate(tokens)]
        pad, spare = seq_length - len(tokens), predictions - real
        examples.append({
            "input_ids": masked + [0] * pad, "input_mask": [1] * len(tokens) + [0] * pad,
            "segment_ids": [0] * seq_length, "masked_lm_positions": positions + [0] * spare,
            "masked_lm_ids": [tokens[p] for p in positions] + [0] * spare,
            "masked_lm_weights": [1.0] * real + [0.0] * spare, "next_sentence_labels": [0],
        })
    return examples


@pytest.fixture(scope="module")
def cli():
    from typer.testing import CliRunner

    return CliRunner()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    directory = tmp_path_factory.mktemp("electra-records")
    write_vocab(directory)
    write_config(directory)
    for name, changes in (("wide", {"initializer_range": WIDE_INIT}), ("one-layer", ONE_LAYER)):
        (directory / name).mkdir()
        write_config(directory / name, **changes)
    write_records(directory / "part-00000.tfrecord", make_examples(256, seq_length=24, predictions=4, seed=1))
    write_records(directory / "topics.tfrecord", _topic_examples(384, seed=1))
    write_records(directory / "topics-heldout.tfrecord", _topic_examples(64, seed=2))
    return directory


def _pretrain_args(corpus, output, *extra, objective="electra") -> list[str]:
    """``bert pretrain`` of the one-layer model on the make_examples records."""
    return ["pretrain", str(corpus / "part-00000.tfrecord"), "--output", str(output), "--model",
            str(corpus / "one-layer" / "bert_config.json"), "--vocab", str(corpus / "vocab.txt"), "--batch-size",
            "16", "--objective", objective, *extra]


def _pretrain(cli, corpus, output, *extra, objective="electra"):
    return cli.invoke(app, _pretrain_args(corpus, output, *extra, objective=objective))


def _learning_args(corpus, output) -> list[str]:
    return ["pretrain", str(corpus / "topics.tfrecord"), "--output", str(output), "--model",
            str(corpus / "wide" / "bert_config.json"), "--vocab", str(corpus / "vocab.txt"), "--batch-size", "16",
            "--warmup-steps", "10", "--learning-rate", "2e-3", "--objective", "electra",
            "--train-steps", str(LEARN_STEPS), "--log-every", "20", "--save-every", str(LEARN_STEPS),
            "--eval-input", str(corpus / "topics-heldout.tfrecord")]


# One run (4 updates of 2 accumulated micro-batches of 16), done whole and interrupted (see ``resumed``).
RUN = ("--train-steps", "4", "--save-every", "2", "--log-every", "1", "--accumulation-steps", "2", "--seed", "7",
       "--warmup-steps", "1", "--learning-rate", "2e-3")


class _Background:
    """A ``bert`` command in a process of its own, so that it uses the second core while tests run here."""

    def __init__(self, args: list[str]):
        import os
        import subprocess
        import sys

        from conftest import REPO

        self.output = Path(args[args.index("--output") + 1])
        self.log = open(self.output.parent / f"{self.output.name}.stderr.txt", "w+b")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bert_cli", *args], cwd=REPO, stdout=subprocess.DEVNULL, stderr=self.log,
            # One thread each: the process shares two cores with this one (TF's idle pool threads spin).
            env={**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2", "TF_NUM_INTRAOP_THREADS": "1",
                 "TF_NUM_INTEROP_THREADS": "1"})

    def result(self):
        """The run's output directory, once it has finished well."""
        self.process.wait(timeout=600)
        self.log.seek(0)
        assert self.process.returncode == 0, self.log.read().decode(errors="replace")[-3000:]
        return self.output

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log.close()


@pytest.fixture(scope="module", autouse=True)
def _learning(corpus, tmp_path_factory):
    """The learning run, the file's longest, started with the module (its tests come last)."""
    run = _Background(_learning_args(corpus, tmp_path_factory.mktemp("electra-learned") / "model"))
    yield run
    run.stop()


@pytest.fixture(scope="module")
def learned(_learning):
    """An ELECTRA model directory after LEARN_STEPS steps on the topic records (held-out evaluation at the end)."""
    return _learning.result()


def _config(**changes):
    from models.config import BertConfig

    return BertConfig(**{**TINY_CONFIG, **changes})


@pytest.fixture(scope="module")
def model():
    from models.electra import build_electra

    return build_electra(_config(), generator_fraction=0.25, seed=0)


def _load(path, **changes):
    """An ELECTRA model of TINY_CONFIG (with ``changes``) holding ``path``'s weights (None: freshly made)."""
    from models.electra import build_electra

    electra = build_electra(_config(**changes))
    if path is not None:
        electra.load_weights(str(path))
    return electra


def _variables(electra) -> dict[str, np.ndarray]:
    """Every variable of the model (the sampling seed's state included) by path, less the model's own
    name (``electra_pretrainer_3/...``), which differs between models built in one process."""
    arrays = {re.sub(r"^electra_pretrainer(_\d+)?/", "", v.path): np.array(v.numpy()) for v in electra.variables}
    assert len(arrays) == len(electra.variables)
    return arrays


def _batch(examples) -> dict[str, np.ndarray]:
    """Model inputs from records (their stored masks: what the model is fed is up to the test)."""
    arrays = {k: np.array([e[k] for e in examples]) for k in examples[0]}
    return {"token_ids": arrays["input_ids"].astype("int32"), "segment_ids": arrays["segment_ids"].astype("int32"),
            "padding_mask": arrays["input_mask"].astype("int32"),
            "masked_lm_positions": arrays["masked_lm_positions"].astype("int32"),
            "masked_lm_ids": arrays["masked_lm_ids"].astype("int32"),
            "masked_lm_weights": arrays["masked_lm_weights"].astype("float32")}


def _written(token_ids, positions, values, weights):
    """``token_ids`` with ``values`` written at the positions of the real predictions (numpy)."""
    out = np.array(token_ids, copy=True)
    for row in range(out.shape[0]):
        for slot in range(positions.shape[1]):
            if weights[row, slot] > 0:
                out[row, positions[row, slot]] = values[row, slot]
    return out


def _numpy(outputs) -> dict[str, np.ndarray]:
    return {k: np.asarray(tf.convert_to_tensor(v)) for k, v in outputs.items()}


# ----------------------------------------------------------------------------
# The model: replaced labels, gradients, loss, shared embeddings
# ----------------------------------------------------------------------------


def test_replaced_marks_exactly_the_real_tokens_the_discriminator_sees_changed(model, monkeypatch):
    w = [len(SPECIALS) + i for i in range(10)]
    T = 10
    originals = np.array([
        [CLS, w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7], SEP],
        [CLS, w[1], w[2], w[3], w[4], w[5], SEP, 0, 0, 0],
        [CLS, w[6], w[7], w[8], w[9], SEP, 0, 0, 0, 0],
    ], dtype=np.int32)
    padding = (np.arange(T)[None, :] < np.array([[10], [7], [6]])).astype(np.int32)
    positions = np.array([[2, 5, 7], [1, 4, 0], [3, 8, 0]], dtype=np.int32)
    weights = np.array([[1, 1, 1], [1, 1, 0], [1, 1, 0]], dtype=np.float32)
    labels = np.take_along_axis(originals, positions, 1) * (weights > 0)
    token_ids = originals.copy()  # masked as the pipeline masks: [MASK], or the token kept
    for row, position in ((0, 2), (0, 5), (1, 1), (2, 3)):
        token_ids[row, position] = MASK
    # Kept: row 0 position 7 and row 1 position 4. Row 2's second real slot points into the padding.
    forced = np.array([
        [w[1], w[9], w[9]],   # the original (so not replaced), another word, another word at a kept position
        [w[8], w[4], w[0]],   # another word; the original at a kept position; a weight-0 slot ([CLS] stays)
        [w[2], w[3], w[5]],   # another word; a sample landing on padding; a weight-0 slot
    ], dtype=np.int32)
    monkeypatch.setattr(model, "_sample", lambda logits: tf.constant(forced))
    inputs = {"token_ids": token_ids, "segment_ids": np.zeros_like(token_ids), "padding_mask": padding,
              "masked_lm_positions": positions, "masked_lm_ids": labels, "masked_lm_weights": weights}
    out = _numpy(model(inputs, training=False))

    seen = _written(token_ids, positions, forced, weights)  # what the discriminator must be given
    expected = ((seen != originals) & (padding > 0)).astype(np.float32)
    np.testing.assert_array_equal(out["sampled_ids"], forced)
    np.testing.assert_array_equal(out["replaced"], expected)
    # Spelled out, so the numpy above cannot be wrong the same way as the model.
    assert [tuple(map(int, x)) for x in np.argwhere(expected)] == [(0, 5), (0, 7), (1, 1), (2, 3)]
    assert out["replaced"][0, 2] == 0 and out["replaced"][1, 4] == 0  # samples equal to the original
    assert out["replaced"][1, 0] == 0 and out["replaced"][2, 0] == 0  # weight-0 slots write nothing
    assert out["replaced"][1, 7:].sum() == 0 and out["replaced"][2, 6:].sum() == 0  # padding
    # The discriminator reads the text with the samples written in (never [MASK]).
    assert MASK not in seen[padding > 0]
    encoded = model.backbone({"token_ids": seen, "segment_ids": np.zeros_like(seen), "padding_mask": padding},
                             training=False)["sequence_output"]
    logits = np.asarray(model.discriminator_output(model.discriminator_dense(encoded)))[..., 0]
    np.testing.assert_allclose(out["discriminator_logits"], logits, atol=1e-5)


def test_first_max_index_is_numpys_argmax_ties_included():
    from models.electra import first_max_index

    rng = np.random.default_rng(0)
    scores = rng.normal(size=(3, 4, 50)).astype(np.float32)
    scores[0, 0, [7, 30]] = 9.0  # a tie: the first index wins, as with argmax
    scores[1, 2, :] = -1.0  # all equal
    got = np.asarray(first_max_index(tf.constant(scores)))
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, np.argmax(scores, -1))
    assert got[0, 0] == 7 and got[1, 2] == 0


def test_samples_compiled_with_the_fast_generator_follow_the_generators_softmax(model):
    """Inside the XLA step (threefry noise) the Gumbel-max sample is still a draw from softmax(logits)."""
    from bert_cli import xla_random

    probabilities = np.array([0.5, 0.25, 0.15, 0.1], np.float32)
    logits = tf.constant(np.broadcast_to(np.log(probabilities), (50, 40, 4)).copy())  # 2,000 draws a call

    @tf.function(jit_compile=True)
    def sample(x):
        with xla_random.threefry():
            return model._sample(x)

    draws = np.concatenate([np.asarray(sample(logits)).ravel() for _ in range(3)])  # 6,000, a fresh seed each
    shares = np.bincount(draws, minlength=4) / draws.size
    np.testing.assert_allclose(shares, probabilities, atol=0.02)  # std of a share <= 0.0065
    assert len({tuple(np.asarray(sample(logits))[0, :10]) for _ in range(2)}) == 2  # the seed moves on


def _dense(gradient):
    return None if gradient is None else np.asarray(tf.convert_to_tensor(gradient))


def _nonzero(gradient) -> bool:
    return gradient is not None and bool(np.any(_dense(gradient) != 0))


def test_discriminator_loss_sends_no_gradient_into_the_generator(model):
    from models.electra import electra_losses

    inputs = _batch(make_examples(8, seq_length=24, predictions=4, seed=5))
    shared = {id(v) for v in model.backbone.variables}
    generator_only = [v for v in model.generator.trainable_variables if id(v) not in shared]
    names = " ".join(v.path for v in generator_only)
    for part in ("embeddings_project", "transformer_layer_0", "transformer_layer_1", "masked_lm_head/output_bias",
                 "masked_lm_head/intermediate_dense", "masked_lm_head/intermediate_layer_norm"):
        assert part in names, part
    # 2 projection + 2 layers x 16 + 5 head variables; the embeddings are not among them.
    assert len(generator_only) == 2 + 2 * 16 + 5
    discriminator_only = [v for layer in (*model.backbone.transformer_layers, model.discriminator_dense,
                                          model.discriminator_output) for v in layer.trainable_variables]
    embedding = model.backbone.token_embedding.embeddings
    with tf.GradientTape(persistent=True) as tape:
        losses = electra_losses(model(inputs, training=True), inputs, discriminator_weight=50.0)
    assert float(losses["replaced"]) > 0, "no token was replaced: the discriminator loss would teach nothing"
    from_discriminator = tape.gradient(losses["discriminator_loss"], generator_only + [embedding])
    from_generator = tape.gradient(losses["mlm_loss"], generator_only + [embedding] + discriminator_only)
    leaked = [v.path for v, g in zip(generator_only, from_discriminator) if _nonzero(g)]
    assert leaked == []
    # The key bias shifts every score of a query alike (softmax ignores it): its gradient is 0 up to rounding.
    silent = [v.path for v, g in zip(generator_only, from_generator) if not _nonzero(g) and "key/bias" not in v.path]
    assert silent == []
    assert _nonzero(from_discriminator[-1]) and _nonzero(from_generator[len(generator_only)])  # shared embeddings
    assert len(discriminator_only) == 2 * 16 + 4
    trained_by_mlm = [v.path for v, g in zip(discriminator_only, from_generator[len(generator_only) + 1:])
                      if _nonzero(g)]
    assert trained_by_mlm == [], "the generator's loss must not reach the discriminator's own layers"
    del tape


def test_generator_calls_the_discriminators_embedding_layers(model):
    backbone = model.backbone
    generator = model.generator
    assert generator.token_embedding is backbone.token_embedding
    assert generator.position_embedding is backbone.get_layer("position_embedding")
    assert generator.segment_embedding is backbone.get_layer("segment_embedding")
    assert generator.embeddings_layer_norm is backbone.get_layer("embeddings_layer_norm")
    assert generator.masked_lm_head.token_embedding is backbone.token_embedding  # tied output layer
    ids = [id(v) for v in model.trainable_variables]
    assert len(ids) == len(set(ids)), "a variable is listed twice: the optimizer would update it twice"
    embedding = backbone.token_embedding.embeddings
    assert sum(v is embedding for v in model.trainable_variables) == 1
    assert sum(tuple(v.shape) == (len(VOCAB), 32) for v in model.variables) == 1
    assert model.generator_shape.to_dict() == GENERATOR


def test_loss_matches_numpy_and_padding_never_counts(model):
    from models.electra import electra_losses

    examples = make_examples(12, seq_length=24, predictions=4, seed=6)
    inputs = _batch(examples)
    padding = inputs["padding_mask"]
    assert padding.sum() < padding.size, "the test needs padded rows"
    out = _numpy(model(inputs, training=False))
    labels = {"masked_lm_ids": inputs["masked_lm_ids"], "masked_lm_weights": inputs["masked_lm_weights"],
              "padding_mask": padding}
    got = {k: float(v) for k, v in electra_losses(out, labels, discriminator_weight=50.0).items()}

    # Independent figures: replaced from the samples written into the original text, then the two losses.
    weights = inputs["masked_lm_weights"]
    positions = inputs["masked_lm_positions"]
    originals = _written(inputs["token_ids"], positions, inputs["masked_lm_ids"], weights)
    seen = _written(inputs["token_ids"], positions, out["sampled_ids"], weights)
    replaced = ((seen != originals) & (padding > 0)).astype(np.float64)
    np.testing.assert_array_equal(out["replaced"], replaced)
    x = out["discriminator_logits"].astype(np.float64)
    per_token = np.where(replaced > 0, np.logaddexp(0.0, -x), np.logaddexp(0.0, x))
    tokens = padding.astype(np.float64)
    disc_loss = (per_token * tokens).sum() / tokens.sum()
    logits = out["mlm_logits"].astype(np.float64)
    log_p = logits - logits.max(-1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
    picked = -np.take_along_axis(log_p, inputs["masked_lm_ids"][..., None], -1)[..., 0]
    mlm_loss = (picked * weights).sum() / weights.sum()
    assert got["disc_tokens"] == padding.sum()
    assert got["mlm_weight"] == weights.sum()
    assert got["discriminator_loss"] == pytest.approx(disc_loss, rel=1e-5)
    assert got["mlm_loss"] == pytest.approx(mlm_loss, rel=1e-5)
    assert got["loss"] == pytest.approx(mlm_loss + 50.0 * disc_loss, rel=1e-5)
    flagged = (x > 0) & (tokens > 0)
    assert got["predicted_replaced"] == flagged.sum() and got["replaced"] == replaced.sum()
    assert got["true_replaced"] == (flagged & (replaced > 0)).sum()
    assert got["disc_correct"] == ((flagged == (replaced > 0)) & (tokens > 0)).sum()

    # Whatever the discriminator says at padding changes nothing.
    noise = np.random.default_rng(0).normal(0.0, 30.0, x.shape).astype(np.float32)
    padded = {**out, "discriminator_logits": np.where(padding > 0, out["discriminator_logits"], noise)}
    assert np.any(padded["discriminator_logits"] != out["discriminator_logits"])
    again = {k: float(v) for k, v in electra_losses(padded, labels, discriminator_weight=50.0).items()}
    for key in ("loss", "discriminator_loss", "disc_loss_sum", "disc_correct", "predicted_replaced",
                "true_replaced", "disc_tokens"):
        assert again[key] == got[key], key
    lighter = {k: float(v) for k, v in electra_losses(out, labels, discriminator_weight=1.0).items()}
    assert lighter["loss"] == pytest.approx(mlm_loss + disc_loss, rel=1e-5)


# ----------------------------------------------------------------------------
# The input pipeline: ELECTRA's masking
# ----------------------------------------------------------------------------


def test_masking_re_masks_every_record_with_electras_split(tmp_path):
    from bert_cli.electra import masking
    from data.pretraining_input import pretraining_dataset
    from data.tokenization import Vocabulary

    T, P, count = 64, 12, 800
    examples = make_examples(count, seq_length=T, predictions=P, seed=11)
    path = write_records(tmp_path / "stored.tfrecord", examples)
    dataset = pretraining_dataset([str(path)], T, P, 100, training=False,
                                  dynamic_masking=masking(Vocabulary.from_tokens(VOCAB), 0.15, False))
    chosen = masked = kept = other = moved = 0
    stored_positions_left = 0
    row = 0
    for batch in dataset:
        batch = {k: v.numpy() for k, v in batch.items()}
        for i in range(batch["input_ids"].shape[0]):
            example = examples[row]
            row += 1
            original = _written(np.array([example["input_ids"]]), np.array([example["masked_lm_positions"]]),
                                np.array([example["masked_lm_ids"]]), np.array([example["masked_lm_weights"]]))[0]
            length = int(sum(example["input_mask"]))
            weights = batch["masked_lm_weights"][i]
            real = int(weights.sum())
            assert real == min(P, max(1, round(length * 0.15)))
            assert list(weights) == [1.0] * real + [0.0] * (P - real)
            positions = batch["masked_lm_positions"][i][:real]
            assert len(set(positions)) == real
            assert all(0 < p < length and original[p] not in (CLS, SEP) for p in positions)
            np.testing.assert_array_equal(batch["masked_lm_ids"][i][:real], original[positions])
            assert not batch["masked_lm_ids"][i][real:].any()
            for p in positions:
                token = batch["input_ids"][i][p]
                chosen += 1
                masked += token == MASK
                kept += token == original[p]
                other += token not in (MASK, original[p])
            rest = np.setdiff1d(np.arange(T), positions)
            # Everything not chosen anew is the original text: the records' own masks are undone.
            moved += int(np.sum(batch["input_ids"][i][rest] != original[rest]))
            stored = [p for p, w in zip(example["masked_lm_positions"], example["masked_lm_weights"]) if w]
            stored_positions_left += len(set(stored) - set(positions))
            np.testing.assert_array_equal(batch["input_mask"][i], example["input_mask"])
    assert row == count
    assert moved == 0 and stored_positions_left > count  # many stored [MASK]s were restored
    assert other == 0, "ELECTRA never puts a random token in"
    # The binomial sd of the shares over these ~5,200 choices is 0.005.
    assert masked / chosen == pytest.approx(0.85, abs=0.02)
    assert kept / chosen == pytest.approx(0.15, abs=0.02)


# ----------------------------------------------------------------------------
# bert pretrain --objective electra: resume, accumulation, --init-checkpoint, the other commands
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resumed(cli, corpus, tmp_path_factory):
    """RUN done whole, and the same run interrupted after the update of step 3 (its last checkpoint: step 2)
    and rerun: ``(whole, interrupted, stopped, rerun)``. All in this process: the same threads do the same sums."""
    import bert_cli.display as display

    root = tmp_path_factory.mktemp("electra-resume")
    whole, interrupted = root / "whole", root / "interrupted"
    result = _pretrain(cli, corpus, whole, *RUN)
    assert result.exit_code == 0, result.output
    original = display.TrainingDisplay.log

    def stop_after_step_3(self, step, metrics):
        original(self, step, metrics)
        if step == 3:
            raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(display.TrainingDisplay, "log", stop_after_step_3)
        stopped = _pretrain(cli, corpus, interrupted, *RUN)
    stopped.left_final_weights = (interrupted / "model.weights.h5").exists()
    rerun = _pretrain(cli, corpus, interrupted, *RUN)
    return whole, interrupted, stopped, rerun


def test_interrupted_run_resumes_to_exactly_the_uninterrupted_weights(resumed):
    whole, interrupted, stopped, rerun = resumed
    assert stopped.exit_code == 130, stopped.output
    assert not stopped.left_final_weights, "an interrupted run writes no final weights"
    assert rerun.exit_code == 0, rerun.output
    assert "at step 2 of" in rerun.stderr
    a = _variables(_load(whole / "model.weights.h5", **ONE_LAYER))
    b = _variables(_load(interrupted / "model.weights.h5", **ONE_LAYER))
    assert a.keys() == b.keys()
    different = {path: float(np.abs(a[path].astype(np.float64) - b[path]).max()) for path in a
                 if not np.array_equal(a[path], b[path])}
    assert different == {}, different
    first = json.loads((whole / "pretrain.json").read_text())["history"]
    second = json.loads((interrupted / "pretrain.json").read_text())["history"]
    assert [h["step"] for h in second] == [3, 4]  # the rerun's own steps (the interrupted session wrote none)
    for key in ELECTRA_METRICS:  # the resumed steps saw the same masks and drew the same samples
        assert [h[key] for h in second] == [h[key] for h in first[2:]], key


def _mean_length(examples) -> float:
    return float(np.mean([sum(e["input_mask"]) for e in examples]))


def test_gradient_accumulation_gives_finite_pooled_metrics(resumed):
    whole = resumed[0]
    summary = json.loads((whole / "pretrain.json").read_text())
    assert summary["options"]["accumulation_steps"] == 2 and summary["options"]["batch_size"] == 16
    assert [h["step"] for h in summary["history"]] == [1, 2, 3, 4]
    for entry in summary["history"]:
        assert all(np.isfinite(entry[key]) for key in ELECTRA_METRICS)
        assert entry["loss"] == pytest.approx(entry["mlm_loss"] + 50.0 * entry["disc_loss"], rel=1e-5)
        assert 0.0 < entry["replaced_share"] < 0.2 and 0.0 <= entry["disc_accuracy"] <= 1.0
    # 2 micro-batches of 16 records each update: 32 examples a step.
    entry = summary["history"][-1]
    assert entry["tokens_per_second"] / entry["examples_per_second"] == pytest.approx(
        _mean_length(make_examples(256, seq_length=24, predictions=4, seed=1)), rel=0.35)


def test_init_checkpoint_brings_the_whole_electra_model_or_only_its_encoder(cli, corpus, resumed, tmp_path):
    from models.encoder import build_encoder

    source = resumed[0]
    frozen = ("--train-steps", "1", "--warmup-steps", "0", "--learning-rate", "1e-20", "--log-every", "1",
              "--init-checkpoint", str(source))
    again = tmp_path / "again"
    result = _pretrain(cli, corpus, again, *frozen)
    assert result.exit_code == 0, result.output
    before = _variables(_load(source / "model.weights.h5", **ONE_LAYER))
    after = _variables(_load(again / "model.weights.h5", **ONE_LAYER))
    fresh = _variables(_load(None, **ONE_LAYER))
    assert before.keys() == after.keys()
    for path in before:
        if "seed_generator_state" in path:  # the sampling stream's position, not a weight
            continue
        np.testing.assert_allclose(after[path], before[path], rtol=0, atol=1e-12, err_msg=path)
    # Not what a fresh model would have (the run's seed differs from the source's): the heads came along.
    heads = [path for path in before if path.startswith(("generator/", "discriminator_"))]
    assert len(heads) > 20
    assert all(not np.allclose(before[path], fresh[path]) for path in heads if path.endswith("kernel"))

    mlm = tmp_path / "mlm"
    result = _pretrain(cli, corpus, mlm, *frozen, objective="mlm")
    assert result.exit_code == 0, result.output
    task = json.loads((mlm / "task.json").read_text())
    assert task.get("objective", "mlm") == "mlm" and task.get("masked_lm", True) is True
    encoders = []
    for directory in (source, mlm):
        encoder = build_encoder(_config(**ONE_LAYER))
        encoder.load_weights(str(directory / "encoder.weights.h5"))
        encoders.append({v.path: np.asarray(v) for v in encoder.variables})
    for path, value in encoders[0].items():
        np.testing.assert_allclose(encoders[1][path], value, rtol=0, atol=1e-12, err_msg=path)


def test_electra_model_directory_serves_the_other_commands(cli, corpus, resumed, tmp_path):
    from models.encoder import build_encoder

    electra = resumed[0]
    rng = np.random.default_rng(4)
    rows = []
    for _ in range(32):
        words = rng.choice(WORDS[2:], size=int(rng.integers(3, 8))).tolist()
        positive = bool(rng.random() < 0.5)
        words.insert(int(rng.integers(len(words) + 1)), WORDS[0] if positive else WORDS[1])
        rows.append(f"{' '.join(words)}\t{'pos' if positive else 'neg'}")
    (tmp_path / "train.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n", encoding="utf-8")
    classifier = tmp_path / "classifier"
    result = cli.invoke(app, ["finetune", "classify", str(tmp_path / "train.tsv"), "-o", str(classifier),
                              "--init", str(electra), "--epochs", "1", "--batch-size", "16", "--max-seq-length", "16"])
    assert result.exit_code == 0, result.output
    task = json.loads((classifier / "task.json").read_text())
    assert task["task"] == "classify" and task["labels"] == ["neg", "pos"]
    assert json.loads((classifier / "finetune.json").read_text())["train_steps"] == 2

    exported = tmp_path / "exported"
    result = cli.invoke(app, ["export", str(classifier), str(exported)])
    assert result.exit_code == 0, result.output
    assert (exported / "saved_model.pb").is_file()
    assert json.loads((exported / "bert_export.json").read_text())["task"] == "classify"

    result = cli.invoke(app, ["evaluate", str(electra), str(corpus / "part-00000.tfrecord")])
    assert_one_line_error(result, "ELECTRA")

    converted = tmp_path / "converted"
    result = cli.invoke(app, ["convert", str(electra), str(converted)])
    assert result.exit_code == 0, result.output
    encoder = build_encoder(_config(**ONE_LAYER))
    encoder.load_weights(str(electra / "encoder.weights.h5"))
    checkpoint = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(converted)))
    names = set(checkpoint.get_variable_to_shape_map())
    words = [n for n in names if n.endswith("embeddings/word_embeddings") and not n.startswith("generator")]
    assert len(words) == 1, sorted(names)
    # The discriminator is what is written as the encoder, whichever layout (BERT's bert/, ELECTRA's electra/).
    np.testing.assert_array_equal(checkpoint.get_tensor(words[0]), np.asarray(encoder.token_embedding.embeddings))
    if words[0].startswith("bert/"):  # BERT's layout has no place for the generator: said so
        assert "generator" in result.stderr
        assert not [n for n in names if n.startswith("cls/")]
    else:  # ELECTRA's own layout keeps the generator and the replaced-token head
        assert words[0] == "electra/embeddings/word_embeddings"
        assert [n for n in names if n.startswith("generator/")] and "discriminator_predictions/dense_1/kernel" in names


@pytest.mark.parametrize("option, value, fragment", [
    ("--objective", "gpt", "--objective"),
    ("--generator-hidden-fraction", "0", "--generator-hidden-fraction"),
    ("--discriminator-weight", "0", "--discriminator-weight"),
    ("--generator-layers-fraction", "1.5", "--generator-layers-fraction"),
])
def test_bad_electra_options_are_one_line_errors(cli, corpus, tmp_path, option, value, fragment):
    args = ["pretrain", str(corpus / "part-00000.tfrecord"), "-o", str(tmp_path / "m"), "--model",
            str(corpus / "bert_config.json"), "--vocab", str(corpus / "vocab.txt"), option, value]
    if option != "--objective":
        args += ["--objective", "electra"]
    result = cli.invoke(app, args)
    assert_one_line_error(result, fragment, value)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("layers, fraction, expected", [(12, 0.5, 6), (12, 1.0, 12), (4, 0.25, 1), (2, 0.25, 1),
                                                      (3, 0.5, 2), (12, 1 / 3, 4)])
def test_generator_layers_follow_the_originals_rule(layers, fraction, expected):
    from models.electra import GeneratorShape

    # get_generator_config: int(round(L x generator_layers)); a generator needs one layer at least.
    shape = GeneratorShape.of(_config(num_hidden_layers=layers, hidden_size=256, num_attention_heads=4,
                                      intermediate_size=1024), 0.25, fraction)
    assert (shape.num_layers, shape.hidden_size, shape.num_heads, shape.intermediate_size) == (expected, 64, 1, 256)


def test_a_shallower_generator_is_built_recorded_and_resumed(cli, corpus, tmp_path):
    output = tmp_path / "shallow"
    args = ["pretrain", str(corpus / "part-00000.tfrecord"), "-o", str(output), "--model",
            str(corpus / "bert_config.json"), "--vocab", str(corpus / "vocab.txt"), "--objective", "electra",
            "--batch-size", "16", "--train-steps", "1", "--warmup-steps", "0", "--log-every", "1",
            "--generator-layers-fraction", "0.5"]
    result = cli.invoke(app, args)
    assert result.exit_code == 0, result.output
    generator = json.loads((output / "task.json").read_text())["generator"]
    assert generator["num_layers"] == TINY_CONFIG["num_hidden_layers"] // 2 == 1
    assert json.loads((output / "run.json").read_text())["generator_layers_fraction"] == 0.5
    from models.electra import GeneratorShape, build_electra

    model = build_electra(_config(), generator_shape=GeneratorShape(**generator))
    model.load_weights(str(output / "model.weights.h5"))
    assert len(model.generator.transformer_layers) == 1
    # The run is one of another shape than the default's: continuing it with the default is refused.
    assert_one_line_error(cli.invoke(app, args[:-2]), "generator_layers_fraction")


def test_a_tied_generator_is_the_discriminators_encoder_with_a_head_of_its_own():
    """--tied-generator: every encoder weight shared, only the MLM head added, its logits the head of the
    discriminator's own sequence output, and the generator's loss reaching every encoder layer."""
    import keras

    from models.electra import TiedGenerator, build_electra

    model = build_electra(_config(), tied=True)
    assert isinstance(model.generator, TiedGenerator) and model.generator_shape.tied
    backbone = {id(v) for v in model.backbone.weights}
    head = {id(v) for v in model.generator.masked_lm_head.weights}
    everything = [id(v) for v in model.weights]
    assert len(everything) == len(set(everything))
    disc = {id(v) for layer in (model.discriminator_dense, model.discriminator_output) for v in layer.weights}
    assert set(everything) - backbone - head - disc <= {id(model.sampling_seed.state)}  # no second encoder
    assert len(head - backbone) == 5  # dense kernel and bias, LayerNorm gamma and beta, output bias

    batch = _batch(make_examples(3, seq_length=24, predictions=4, seed=4))
    token_ids, segment_ids, padding = batch["token_ids"], batch["segment_ids"], batch["padding_mask"]
    positions = batch["masked_lm_positions"]
    logits = model.generator(token_ids, segment_ids, padding, positions)
    sequence = model.backbone({"token_ids": token_ids, "segment_ids": segment_ids,
                               "padding_mask": padding})["sequence_output"]
    picked = np.take_along_axis(keras.ops.convert_to_numpy(sequence), positions[..., None], 1)  # [B, P, H]
    h = model.generator.masked_lm_head
    x = keras.ops.convert_to_numpy(h._intermediate_layer_norm(h._intermediate_dense(picked)))
    expected = x @ keras.ops.convert_to_numpy(model.backbone.token_embedding.embeddings).T + np.asarray(h._bias)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(logits), expected, atol=1e-5)

    with tf.GradientTape() as tape:
        logits = model.generator(token_ids, segment_ids, padding, positions, training=True)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(batch["masked_lm_ids"], logits))
    layers = [v for v in model.backbone.trainable_variables if "transformer_layer" in v.path]
    assert layers and all(_nonzero(g) for g in tape.gradient(loss, layers))


def test_generator_shape_names_tied_only_when_set():
    from models.electra import GeneratorShape

    shape = GeneratorShape.of(_config())
    assert "tied" not in shape.to_dict() and GeneratorShape(**shape.to_dict()) == shape  # old task.json files
    tied = GeneratorShape.tied_to(_config())
    assert tied.to_dict()["tied"] is True and GeneratorShape(**tied.to_dict()) == tied
    assert tied.hidden_size == TINY_CONFIG["hidden_size"] and tied.num_layers == TINY_CONFIG["num_hidden_layers"]


def test_a_tied_generator_run_is_built_recorded_and_resumed(cli, corpus, tmp_path):
    output = tmp_path / "tied"
    args = ["pretrain", str(corpus / "part-00000.tfrecord"), "-o", str(output), "--model",
            str(corpus / "bert_config.json"), "--vocab", str(corpus / "vocab.txt"), "--objective", "electra",
            "--batch-size", "16", "--train-steps", "2", "--warmup-steps", "0", "--log-every", "1", "--tied-generator"]
    result = cli.invoke(app, args)
    assert result.exit_code == 0, result.output
    task = json.loads((output / "task.json").read_text())
    assert task["generator"]["tied"] is True and task["generator_hidden_fraction"] == 1.0
    assert json.loads((output / "run.json").read_text())["tied_generator"] is True
    from models.electra import GeneratorShape, TiedGenerator, build_electra

    model = build_electra(_config(), generator_shape=GeneratorShape(**task["generator"]))
    model.load_weights(str(output / "model.weights.h5"))
    assert isinstance(model.generator, TiedGenerator)
    # Continuing it with the default (untied) generator is a run of another shape: refused.
    assert_one_line_error(cli.invoke(app, args[:-1]), "tied_generator")


@pytest.mark.parametrize("extra, fragment", [
    (["--objective", "electra", "--generator-hidden-fraction", "0.5"], "--generator-hidden-fraction"),
    (["--objective", "electra", "--generator-layers-fraction", "0.5"], "--generator-layers-fraction"),
    (["--objective", "mlm"], "--objective electra"),
])
def test_tied_generator_refuses_what_it_cannot_take(cli, corpus, tmp_path, extra, fragment):
    args = ["pretrain", str(corpus / "part-00000.tfrecord"), "-o", str(tmp_path / "m"), "--model",
            str(corpus / "bert_config.json"), "--vocab", str(corpus / "vocab.txt"), "--tied-generator", *extra]
    assert_one_line_error(cli.invoke(app, args), "--tied-generator", fragment)
    assert not (tmp_path / "m").exists()


# ----------------------------------------------------------------------------
# bert pretrain --objective electra learns (last: the run has had the other tests' time to finish)
# ----------------------------------------------------------------------------


def test_electra_learns_to_spot_replaced_tokens(learned):
    summary = json.loads((learned / "pretrain.json").read_text())
    history = summary["history"]
    assert [h["step"] for h in history] == list(range(20, LEARN_STEPS + 1, 20))
    for entry in history:
        assert set(ELECTRA_METRICS) <= set(entry) and "nsp_accuracy" not in entry
        assert entry["loss"] == pytest.approx(entry["mlm_loss"] + 50.0 * entry["disc_loss"], rel=1e-5)
    late = history[-3:]
    # The all-"original" answer scores 1 - replaced_share; the discriminator must do clearly better.
    margin = np.mean([h["disc_accuracy"] - (1.0 - h["replaced_share"]) for h in late])
    assert margin > 0.015, [(h["disc_accuracy"], 1.0 - h["replaced_share"]) for h in late]
    assert min(h["disc_recall"] for h in late) > 0.15 and min(h["disc_precision"] for h in late) > 0.5
    assert 0.05 < late[-1]["replaced_share"] < 0.15  # ~15 % masked, few samples equal to the original
    assert history[-1]["mlm_loss"] < history[0]["mlm_loss"] - 0.8
    assert history[-1]["mlm_accuracy"] > history[0]["mlm_accuracy"]
    evaluation = summary["evaluation"]
    assert set(ELECTRA_METRICS) <= set(evaluation) and evaluation["eval_examples"] == 64
    assert evaluation["disc_accuracy"] > 1.0 - evaluation["replaced_share"] + 0.015

    for name in ("bert_config.json", "vocab.txt", "model.weights.h5", "encoder.weights.h5", "task.json",
                 "training_curves.png", "run.json", "pretrain.json"):
        assert (learned / name).is_file(), name
    task = json.loads((learned / "task.json").read_text())
    assert task["task"] == "pretraining" and task["objective"] == "electra"
    assert task["generator"] == GENERATOR
    assert task["masked_lm"] is False and task["next_sentence"] is False and task["max_seq_length"] == 32

    # Independently of the metrics: a word from another topic, put in by hand, is what the model flags.
    electra = _load(learned / "model.weights.h5", initializer_range=WIDE_INIT)
    rng = np.random.default_rng(3)
    rows, T = 64, 24
    ids = np.zeros((rows, T), np.int32)
    where = rng.integers(1, T - 1, size=rows)
    first = len(SPECIALS)
    for row in range(rows):
        topic = row % TOPICS
        ids[row] = first + topic * TOPIC_WORDS + rng.integers(TOPIC_WORDS, size=T)
        ids[row, 0], ids[row, -1] = CLS, SEP
        stranger = (topic + 1 + rng.integers(TOPICS - 1)) % TOPICS
        ids[row, where[row]] = first + stranger * TOPIC_WORDS + rng.integers(TOPIC_WORDS)
    empty = np.zeros((rows, 1), np.int32)
    logits = _numpy(electra({"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": np.ones_like(ids),
                             "masked_lm_positions": empty, "masked_lm_ids": empty,
                             "masked_lm_weights": empty.astype(np.float32)}, training=False))["discriminator_logits"]
    strangers = logits[np.arange(rows), where]
    others = np.ones_like(logits, bool)
    others[np.arange(rows), where] = False
    assert np.mean(np.argmax(logits, 1) == where) > 0.4  # chance: 1 in 24
    assert strangers.mean() > logits[others].mean() + 1.5


def test_trained_embeddings_are_one_set_in_both_weight_files(learned):
    from models.encoder import build_encoder

    electra = _load(learned / "model.weights.h5", initializer_range=WIDE_INIT)
    encoder = build_encoder(_config(initializer_range=WIDE_INIT))
    encoder.load_weights(str(learned / "encoder.weights.h5"))
    fresh = build_encoder(_config(initializer_range=WIDE_INIT))
    trained = np.asarray(encoder.token_embedding.embeddings)
    assert not np.allclose(trained, np.asarray(fresh.token_embedding.embeddings), atol=1e-3)
    np.testing.assert_array_equal(np.asarray(electra.backbone.token_embedding.embeddings), trained)
    np.testing.assert_array_equal(np.asarray(electra.generator.token_embedding.embeddings), trained)
    for name in ("position_embedding", "segment_embedding", "embeddings_layer_norm"):
        for ours, saved in zip(electra.backbone.get_layer(name).weights, encoder.get_layer(name).weights):
            np.testing.assert_array_equal(np.asarray(ours), np.asarray(saved))
    # encoder.weights.h5 is the discriminator: every one of its variables, as model.weights.h5 holds it.
    discriminator = {v.path: np.asarray(v) for v in electra.backbone.variables}
    saved = {v.path: np.asarray(v) for v in encoder.variables}
    assert saved.keys() == discriminator.keys()
    for path, value in saved.items():
        np.testing.assert_array_equal(value, discriminator[path], err_msg=path)


def test_stalled_discriminator_note_only_after_warmup_and_below_the_recall_floor():
    from bert_cli.electra import STALLED_RECALL, stalled_note

    stuck = {"disc_recall": 0.001, "disc_accuracy": 0.85}
    assert stalled_note(150, stuck, warmup_steps=30, learning_rate=1e-3) is None  # under 200 updates
    assert stalled_note(300, stuck, warmup_steps=200, learning_rate=1e-3) is None  # within 2x warm-up
    assert stalled_note(300, {"disc_recall": STALLED_RECALL}, warmup_steps=30, learning_rate=1e-3) is None
    assert stalled_note(300, {"mlm_accuracy": 0.1}, warmup_steps=30, learning_rate=1e-3) is None  # masked LM
    note = stalled_note(400, stuck, warmup_steps=30, learning_rate=1e-3)
    assert note.startswith("step 400:") and "recall 0.1%" in note and "--learning-rate 0.001" in note
    assert "\n" not in note and "--objective mlm" in note
