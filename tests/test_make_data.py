"""`bert make-data`: the original's algorithm, its statistics, determinism, the format, bad input.

The library tests work on token ids made up here (no TensorFlow); the command
tests run on a tiny generated corpus and vocabulary.
"""

from __future__ import annotations

import errno
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bert_cli.main import app
from cli_helpers import assert_one_line_error
from conftest import REPO
from data import pretraining_data as pd
from data import records
from data.vocab import layout

# ---------------------------------------------------------------------------
# Library level: made-up token ids
# ---------------------------------------------------------------------------

PAD, CLS, SEP, MASK, VOCAB_SIZE = 0, 1, 2, 3, 300
CONTINUATION = np.zeros(VOCAB_SIZE, dtype=bool)
CONTINUATION[250:] = True  # ids 250.. play the "##" pieces
IDS = pd.VocabularyIds(VOCAB_SIZE, PAD, CLS, SEP, MASK, CONTINUATION)


def _documents(seed: int, count: int, sentences=(4, 30), words=(3, 20)) -> list[list[list[int]]]:
    """Documents of sentences of ids 5..299; after a word start (< 250), 0-2 "##" pieces."""
    rng = random.Random(seed)
    documents = []
    for _ in range(count):
        document = []
        for _ in range(rng.randint(*sentences)):
            sentence = []
            for _ in range(rng.randint(*words)):
                sentence.append(rng.randrange(5, 250))
                sentence.extend(rng.randrange(250, 300) for _ in range(rng.choice((0, 0, 0, 1, 2))))
            document.append(sentence)
        documents.append(document)
    return documents


def _chunk(documents, index: int = 0) -> pd.TokenizedChunk:
    sentences = [sentence for document in documents for sentence in document]
    return pd.TokenizedChunk(
        index=index,
        tokens=np.array([t for s in sentences for t in s], dtype=np.int32),
        sentence_offsets=np.concatenate([[0], np.cumsum([len(s) for s in sentences])]).astype(np.int64),
        document_offsets=np.concatenate([[0], np.cumsum([len(d) for d in documents])]).astype(np.int64),
    )


def _reference_instances(documents, max_seq_length, short_seq_prob, dupe_factor, rng):
    """google-research/bert's create_training_instances, transcribed from its description, on ids.

    Without the masking (drawn from another generator here) and the final
    shuffle. One deliberate change, the same as in data/pretraining_data.py:
    the truncation coins for an instance are the bits of one
    ``getrandbits(excess)`` instead of one ``random() < 0.5`` per token.
    """
    documents = list(documents)
    rng.shuffle(documents)
    max_num_tokens = max_seq_length - 3
    instances = []
    for _ in range(dupe_factor):
        for index, document in enumerate(documents):
            target = max_num_tokens
            if rng.random() < short_seq_prob:
                target = rng.randint(2, max_num_tokens)
            chunk, length, i = [], 0, 0
            while i < len(document):
                chunk.append(document[i])
                length += len(document[i])
                if i == len(document) - 1 or length >= target:
                    a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
                    tokens_a = [t for s in chunk[:a_end] for t in s]
                    tokens_b = []
                    if len(chunk) == 1 or rng.random() < 0.5:
                        label = 1
                        target_b = target - len(tokens_a)
                        for _ in range(10):
                            other = rng.randint(0, len(documents) - 1)
                            if other != index:
                                break
                        other_document = documents[other]
                        for j in range(rng.randint(0, len(other_document) - 1), len(other_document)):
                            tokens_b.extend(other_document[j])
                            if len(tokens_b) >= target_b:
                                break
                        i -= len(chunk) - a_end
                    else:
                        label = 0
                        tokens_b = [t for s in chunk[a_end:] for t in s]
                    excess = len(tokens_a) + len(tokens_b) - max_num_tokens
                    if excess > 0:
                        coins = rng.getrandbits(excess)
                        for k in range(excess):
                            longer = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
                            if coins >> k & 1:
                                del longer[0]
                            else:
                                longer.pop()
                    instances.append((tokens_a, tokens_b, label))
                    chunk, length = [], 0
                i += 1
    return instances


@pytest.mark.parametrize("max_seq_length, short_seq_prob", [(128, 0.1), (24, 0.5), (7, 0.0)])
def test_instances_are_the_originals(max_seq_length, short_seq_prob):
    documents = _documents(seed=max_seq_length, count=25, sentences=(1, 12)) + [[[7, 8]]]  # and a one-liner
    options = pd.PretrainingDataOptions(max_seq_length=max_seq_length, short_seq_prob=short_seq_prob, dupe_factor=3)
    chunk = _chunk(documents)
    ours = pd.create_instances(chunk, options, random.Random(42))
    tokens = chunk.tokens.tolist()
    ours = [(tokens[a_lo:a_hi], tokens[b_lo:b_hi], label) for a_lo, a_hi, b_lo, b_hi, label in ours]
    assert ours == _reference_instances(documents, max_seq_length, short_seq_prob, 3, random.Random(42))


def test_compiled_draws_are_pythons_draw_for_draw():
    """The kernels' MT19937 gives what random.Random gives, and leaves the same state behind."""
    from data import pretraining_kernels

    plan = random.Random(5)
    kinds = np.array([plan.randrange(3) for _ in range(3000)])  # past 624 words: the state regenerates
    arguments = np.array(
        [0 if k == 0 else plan.randint(0, 32) if k == 1 else plan.choice([1, 2, 3, 5, 100, 125, 2**20 + 1, 2**31 - 1])
         for k in kinds]
    )
    ours, theirs = random.Random(7), random.Random(7)
    theirs.random()  # a state mid-way through its words
    ours.random()
    drawn = pretraining_kernels.python_draws(ours, kinds, arguments)
    expected = [
        theirs.random() if k == 0 else theirs.getrandbits(int(a)) if k == 1 else theirs.randint(0, int(a) - 1)
        for k, a in zip(kinds, arguments)
    ]
    assert drawn.tolist() == expected
    assert ours.getstate() == theirs.getstate()


def test_truncation_of_long_segments_uses_every_coin():
    """Cuts of more than 32 tokens take their coins from several 32-bit words (getrandbits(k > 32))."""
    documents = [[list(range(5, 105))], [list(range(105, 205))]] * 4  # one 100-token sentence each
    options = pd.PretrainingDataOptions(max_seq_length=24, short_seq_prob=0.0, dupe_factor=4)
    chunk = _chunk(documents)
    ours = pd.create_instances(chunk, options, random.Random(11))
    tokens = chunk.tokens.tolist()
    ours = [(tokens[a_lo:a_hi], tokens[b_lo:b_hi], label) for a_lo, a_hi, b_lo, b_hi, label in ours]
    assert ours == _reference_instances(documents, 24, 0.0, 4, random.Random(11))
    single = pd.PretrainingDataOptions(
        max_seq_length=24, short_seq_prob=0.0, dupe_factor=4, next_sentence_prediction=False
    )
    rng, fronts = random.Random(12), []
    order = list(range(len(documents)))
    rng.shuffle(order)
    for _ in range(4):
        for _ in order:
            rng.random()
            fronts.append(rng.getrandbits(100 - 22).bit_count())
    made = pd.create_instances(chunk, single, random.Random(12))
    starts = made[:, 0] - np.tile(chunk.sentence_offsets[:-1][order], 4)
    assert starts.tolist() == fronts and (made[:, 1] - made[:, 0] == 22).all()


def _made(options: pd.PretrainingDataOptions, documents, chunks: int = 1) -> dict:
    """Instances of several chunks, masked; features of all of them stacked."""
    parts = []
    size = len(documents) // chunks
    for index in range(chunks):
        chunk = _chunk(documents[index * size : (index + 1) * size], index)
        creation, masking = pd.chunk_generators(options.seed, index)
        instances = np.asarray(pd.create_instances(chunk, options, creation), dtype=np.int64)
        instances = instances[masking.permutation(len(instances))]
        for start in range(0, len(instances), 500):
            features, _ = pd.mask_instances(chunk.tokens, instances[start : start + 500], options, IDS, masking)
            parts.append(features)
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


@pytest.fixture(scope="module")
def made():
    """Several thousand instances of the default recipe."""
    options = pd.PretrainingDataOptions(dupe_factor=6)
    # Long documents: the original's rule that a lone gathered sentence always
    # gets a random next one tilts NSP above 50 % when documents are short.
    return options, _made(options, _documents(seed=1, count=100, sentences=(30, 80)), chunks=4)


def test_masked_share_and_replacement_split(made):
    options, features = made
    weights = features["masked_lm_weights"] > 0
    assert len(weights) > 5000
    share = weights.sum() / features["input_mask"].sum()
    assert abs(share - 0.15) < 0.005
    shown = np.take_along_axis(features["input_ids"], features["masked_lm_positions"], axis=1)[weights]
    original = features["masked_lm_ids"][weights]
    as_mask = np.mean(shown == MASK)
    kept = np.mean(shown == original)
    assert abs(as_mask - 0.8) < 0.015
    assert abs(kept - 0.1) < 0.015
    assert abs(1 - as_mask - kept - 0.1) < 0.015
    random_ids = shown[(shown != MASK) & (shown != original)]
    assert len(np.unique(random_ids)) > 0.5 * VOCAB_SIZE  # drawn from the whole vocabulary


def test_next_sentence_labels_are_balanced(made):
    """50 % random next, except that (as in the original) a lone gathered sentence always gets
    a random next one: documents with a short target length (10 % of them) make many such
    instances, which tilts the default recipe to about 53 %."""
    _, features = made
    assert 0.5 < features["next_sentence_labels"].mean() < 0.55
    options = pd.PretrainingDataOptions(dupe_factor=6, short_seq_prob=0.0)
    labels = _made(options, _documents(seed=1, count=100, sentences=(30, 80)), chunks=4)["next_sentence_labels"]
    assert len(labels) > 5000 and abs(labels.mean() - 0.5) < 0.02


def test_layout_and_what_is_never_masked(made):
    options, features = made
    T, P = options.max_seq_length, options.max_predictions_per_seq
    ids, mask, segments = features["input_ids"], features["input_mask"], features["segment_ids"]
    length = mask.sum(axis=1)
    assert ids.shape[1] == T and (length <= T).all()
    assert (ids[:, 0] == CLS).all()
    assert (ids[np.arange(len(ids)), length - 1] == SEP).all()
    assert (ids[~mask.astype(bool)] == PAD).all() and (segments[~mask.astype(bool)] == 0).all()
    weights = features["masked_lm_weights"] > 0
    positions = features["masked_lm_positions"]
    for row in range(len(ids)):
        real = positions[row][weights[row]]
        assert (np.diff(real) > 0).all()  # sorted, distinct
        assert (positions[row][~weights[row]] == 0).all()
        original = ids[row].copy()
        original[real] = features["masked_lm_ids"][row][weights[row]]
        assert CLS not in original[real] and SEP not in original[real] and (real < length[row]).all()
        # Both segments non-empty after truncation: [CLS] A.. [SEP] B.. [SEP]
        separators = np.flatnonzero(original[: length[row]] == SEP)
        assert len(separators) == 2 and separators[0] >= 2 and separators[1] - separators[0] >= 2
        assert (
            (segments[row, : separators[0] + 1] == 0).all()
            and (segments[row, separators[0] + 1 : length[row]] == 1).all()
        )
        wanted = min(P, max(1, round(length[row] * options.masked_lm_prob)))
        assert len(real) == wanted


def test_whole_word_masking_never_splits_a_word():
    options = pd.PretrainingDataOptions(
        max_seq_length=48, max_predictions_per_seq=8, dupe_factor=2, whole_word_mask=True
    )
    features = _made(options, _documents(seed=2, count=120))
    weights = features["masked_lm_weights"] > 0
    assert weights.sum() / features["input_mask"].sum() > 0.13  # close to 15 %: skipped words are replaced
    for row in range(len(weights)):
        original = features["input_ids"][row].copy()
        real = features["masked_lm_positions"][row][weights[row]]
        original[real] = features["masked_lm_ids"][row][weights[row]]
        masked = np.zeros(len(original), dtype=bool)
        masked[real] = True
        for position in range(2, int(features["input_mask"][row].sum()) - 1):
            if CONTINUATION[original[position]] and original[position - 1] not in (CLS, SEP):
                assert masked[position] == masked[position - 1], (row, position)
        assert len(real) <= min(8, max(1, round(features["input_mask"][row].sum() * 0.15)))


def test_without_nsp_one_segment_and_no_labels():
    options = pd.PretrainingDataOptions(max_seq_length=32, dupe_factor=1, next_sentence_prediction=False)
    features = _made(options, _documents(seed=3, count=30))
    assert "next_sentence_labels" not in features
    assert (features["segment_ids"] == 0).all()
    length = features["input_mask"].sum(axis=1)
    assert ((features["input_ids"] == SEP).sum(axis=1) == 1).all()
    assert (features["input_ids"][np.arange(len(length)), length - 1] == SEP).all()
    assert length.max() == 32


def test_chunks_depend_only_on_the_text():
    documents = [[("x" * size)] for size in [10, 500, 30, 700, 20, 5, 900, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40]]
    chunks = list(pd.chunk_documents(iter(documents), chunk_chars=600))
    assert [len(c) for c in chunks] == [8, 10]  # the first closes at >= 600 chars and 8 documents; the tail of
    assert sum(chunks, []) == documents  # fewer than 8 documents joins it
    assert [len(c) for c in pd.chunk_documents(iter(documents[:5]), 10)] == [5]


def test_worker_modules_do_not_import_tensorflow():
    code = "import sys, data.pretraining_data, data.records; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.strip() == "False"


# ---------------------------------------------------------------------------
# The command, on a generated corpus
# ---------------------------------------------------------------------------

WORDS = (
    "the a cat dog sat on mat ran to house big small red blue green bird flew over tree and then it was very "
    "happy sad day night sun moon we they saw good old new water fish swim play jump walk talk read book"
).split()
PIECES = ["##ing", "##ed", "##s", "##er"]
# The corpus uses words made of pieces too ("playing"), so whole-word masking has something to do.
CORPUS_WORDS = WORDS + ["playing", "jumped", "cats", "reader", "walking", "talked"]


def write_vocab(directory, extra_manifest: dict | None = None, drop: str | None = None):
    tokens = layout(WORDS + PIECES + [".", ","], unused=5, vocab_size=len(WORDS) + len(PIECES) + 2 + 10)
    tokens = [t for t in tokens if t != drop]
    path = directory / "vocab.txt"
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    if extra_manifest is not None:
        path.with_suffix(".json").write_text(json.dumps(extra_manifest), encoding="utf-8")
    return path


def write_corpus(path, documents: int = 40, seed: int = 0, sentences=(2, 10)):
    rng = random.Random(seed)
    lines = []
    for _ in range(documents):
        for _ in range(rng.randint(*sentences)):
            lines.append(" ".join(rng.choice(CORPUS_WORDS) for _ in range(rng.randint(3, 12))).capitalize() + ".")
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    directory = tmp_path_factory.mktemp("make_data")
    return directory, write_vocab(directory), write_corpus(directory / "corpus.txt")


SMALL = ["--max-seq-length", "32", "--max-predictions-per-seq", "5", "--dupe-factor", "3", "--chunk-size-mb", "0.002"]


def _make(runner, workspace, output, *extra, corpus=None):
    directory, vocab, default_corpus = workspace
    args = ["make-data", str(corpus or default_corpus), "--vocab", str(vocab), "--output", str(output), *SMALL, *extra]
    return runner.invoke(app, args)


def _shards(directory):
    return sorted(p for p in directory.iterdir() if p.name.startswith("part-"))


def test_same_output_for_any_number_of_workers(runner, workspace, tmp_path):
    outputs = {}
    for workers in (1, 2, 0):
        output = tmp_path / f"w{workers}"
        result = _make(runner, workspace, output, "--workers", str(workers), "--num-shards", "2")
        assert result.exit_code == 0, result.output
        outputs[workers] = [p.read_bytes() for p in _shards(output)]
        manifest = json.loads((output / "manifest.json").read_text())
        assert manifest["counts"]["chunks"] >= 3  # the pool really had several chunks to share out
    assert outputs[1] == outputs[2] == outputs[0]
    assert len(outputs[1]) == 2 and all(outputs[1])
    result = _make(runner, workspace, tmp_path / "other", "--workers", "0", "--num-shards", "2", "--seed", "1")
    assert [p.read_bytes() for p in _shards(tmp_path / "other")] != outputs[1]


def test_gzip_shards_hold_the_plain_records_in_members_tensorflow_reads(runner, workspace, tmp_path):
    """Each chunk's share of a shard is one gzip member, compressed where the chunk was made:
    decompressed, the shards are byte for byte the plain ones, for any --workers, and
    TensorFlow reads every record of the multi-member files."""
    import gzip

    import tensorflow as tf

    plain = tmp_path / "plain"
    assert _make(runner, workspace, plain, "--workers", "0", "--num-shards", "2").exit_code == 0
    expected = [p.read_bytes() for p in _shards(plain)]
    counts = json.loads((plain / "manifest.json").read_text())["shards"]
    for workers in ("0", "2"):
        output = tmp_path / f"gz{workers}"
        result = _make(runner, workspace, output, "--workers", workers, "--num-shards", "2", "--compression", "gzip")
        assert result.exit_code == 0, result.output
        shards = _shards(output)
        assert [p.name for p in shards] == [p.name + ".gz" for p in _shards(plain)]
        assert [gzip.decompress(p.read_bytes()) for p in shards] == expected
        assert all(p.read_bytes().count(b"\x1f\x8b\x08") >= 3 for p in shards)  # several members each
        read = [sum(1 for _ in tf.data.TFRecordDataset(str(p), compression_type="GZIP")) for p in shards]
        assert read == [shard["instances"] for shard in counts]


def test_records_parse_with_the_original_spec_and_match_the_manifest(runner, workspace, tmp_path):
    import tensorflow as tf

    output = tmp_path / "out"
    result = _make(runner, workspace, output, "--workers", "0", "--num-shards", "3", "--compression", "gzip")
    assert result.exit_code == 0, result.output
    assert "masked share" in result.stdout and "padding share" in result.stdout
    manifest = json.loads((output / "manifest.json").read_text())
    spec = {  # the original run_pretraining.py's spec, written out here
        "input_ids": tf.io.FixedLenFeature([32], tf.int64),
        "input_mask": tf.io.FixedLenFeature([32], tf.int64),
        "segment_ids": tf.io.FixedLenFeature([32], tf.int64),
        "masked_lm_positions": tf.io.FixedLenFeature([5], tf.int64),
        "masked_lm_ids": tf.io.FixedLenFeature([5], tf.int64),
        "masked_lm_weights": tf.io.FixedLenFeature([5], tf.float32),
        "next_sentence_labels": tf.io.FixedLenFeature([1], tf.int64),
    }
    vocab = workspace[1].read_text().split("\n")
    counts = []
    masked = 0
    for shard in _shards(output):
        assert shard.name.endswith("-of-00003.tfrecord.gz")
        dataset = tf.data.TFRecordDataset(str(shard), compression_type="GZIP")
        count = 0
        for record in dataset:
            example = {k: v.numpy() for k, v in tf.io.parse_single_example(record, spec).items()}
            real = example["masked_lm_weights"] > 0
            original = example["input_ids"].copy()  # a random replacement may be any token, [SEP] too
            original[example["masked_lm_positions"][real]] = example["masked_lm_ids"][real]
            tokens = [vocab[i] for i in original[: example["input_mask"].sum()]]
            assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and tokens.count("[SEP]") == 2
            masked += int(example["masked_lm_weights"].sum())
            count += 1
        counts.append(count)
    assert manifest["shards"] == [{"file": p.name, "instances": c, "bytes": p.stat().st_size}
                                  for p, c in zip(_shards(output), counts)]
    assert manifest["counts"]["instances"] == sum(counts) and manifest["counts"]["masked_tokens"] == masked
    assert manifest["counts"]["documents"] == 40
    assert manifest["max_seq_length"] == 32 and manifest["max_predictions_per_seq"] == 5
    assert manifest["lowercase"] is True and manifest["vocab_sha256"]
    assert manifest["next_sentence_prediction"] is True and manifest["format_version"] == records.FORMAT_VERSION


def test_no_nsp_paragraphs_whole_words_and_casing_from_the_manifest(runner, workspace, tmp_path):
    directory = tmp_path / "cased"
    directory.mkdir()
    vocab = write_vocab(directory, {"lowercase": False})
    text = "\n\n".join(
        f"The cat sat. A dog ran to the house.\nThen it was {i} days. Good night.\n" for i in range(12)
    ) + "\n\nA heading alone\n"
    corpus = tmp_path / "free.txt"
    corpus.write_text(text, encoding="utf-8")
    output = tmp_path / "out"
    result = runner.invoke(app, [
        "make-data", str(corpus), "--vocab", str(vocab), "-o", str(output), "--no-nsp", "--whole-word-mask",
        "--input-format", "paragraphs", "--max-seq-length", "16", "--max-predictions-per-seq", "3",
        "--dupe-factor", "1", "--workers", "0",
    ])
    assert result.exit_code == 0, result.output
    manifest = json.loads((output / "manifest.json").read_text())
    assert manifest["lowercase"] is False and manifest["counts"]["documents"] == 12
    assert manifest["next_sentence_prediction"] is False
    examples = records.read_examples(_shards(output), 1000)
    assert "next_sentence_labels" not in examples and (examples["segment_ids"] == 0).all()


@pytest.mark.parametrize(
    "case, fragments",
    [
        ("missing", ["missing.txt: no such file"]),
        ("empty", ["no text to make examples from"]),
        ("blank", ["no text to make examples from"]),
        ("single", ["only one document", "--no-nsp"]),
        ("latin1", ["latin1.txt:3: not valid UTF-8"]),
        ("no-mask", ["missing required special token [MASK]"]),
        ("too-many-predictions", ["--max-predictions-per-seq 30: larger than possible"]),
    ],
)
def test_bad_input_is_one_line_and_leaves_nothing(runner, workspace, tmp_path, case, fragments):
    directory, vocab, corpus = workspace
    extra = []
    if case == "missing":
        corpus = tmp_path / "missing.txt"
    elif case == "empty":
        corpus = tmp_path / "empty.txt"
        corpus.write_text("")
    elif case == "blank":
        corpus = tmp_path / "blank.txt"
        corpus.write_text("\n  \n\t\n\n")
    elif case == "single":
        corpus = tmp_path / "single.txt"
        corpus.write_text("One sentence here.\nAnd another one.\n")
    elif case == "latin1":
        corpus = tmp_path / "latin1.txt"
        corpus.write_bytes(b"The cat sat.\nA dog ran.\nCaf\xe9 au lait.\n")
    elif case == "no-mask":
        vocab = write_vocab(tmp_path, drop="[MASK]")
    elif case == "too-many-predictions":
        extra = ["--max-predictions-per-seq", "30"]
    output = tmp_path / "out"
    result = runner.invoke(app, [
        "make-data", str(corpus), "--vocab", str(vocab), "-o", str(output), "--workers", "0",
        "--max-seq-length", "32", "--dupe-factor", "1", *extra,
    ])
    assert_one_line_error(result, *fragments)
    assert not output.exists() or not any(output.iterdir())


def test_globs_and_gzip_inputs(runner, workspace, tmp_path):
    import gzip

    corpus = workspace[2]
    (tmp_path / "in").mkdir()
    with gzip.open(tmp_path / "in" / "a.txt.gz", "wt", encoding="utf-8") as handle:
        handle.write(corpus.read_text(encoding="utf-8"))
    write_corpus(tmp_path / "in" / "b.txt", documents=5, seed=9)
    output = tmp_path / "out"
    result = _make(runner, workspace, output, "--workers", "0", corpus=tmp_path / "in" / "*")
    assert result.exit_code == 0, result.output
    manifest = json.loads((output / "manifest.json").read_text())
    assert [Path(i["file"]).name for i in manifest["inputs"]] == ["a.txt.gz", "b.txt"]
    assert manifest["counts"]["documents"] == 45


def test_single_document_is_fine_without_nsp(runner, workspace, tmp_path):
    corpus = tmp_path / "single.txt"
    corpus.write_text("One sentence here.\nAnd another one.\n")
    result = _make(runner, workspace, tmp_path / "out", "--workers", "0", "--no-nsp", corpus=corpus)
    assert result.exit_code == 0, result.output


def test_output_holding_another_dataset_is_refused_unless_overwrite(runner, workspace, tmp_path):
    output = tmp_path / "out"
    assert _make(runner, workspace, output, "--workers", "0", "--num-shards", "3").exit_code == 0
    first = [p.read_bytes() for p in _shards(output)]
    assert _make(runner, workspace, output, "--workers", "0", "--num-shards", "3").exit_code == 0  # same dataset: fine
    assert [p.read_bytes() for p in _shards(output)] == first

    result = _make(runner, workspace, output, "--workers", "0", "--num-shards", "2", "--seed", "7")
    assert_one_line_error(result, "already holds a different dataset", "--overwrite")
    assert [p.read_bytes() for p in _shards(output)] == first  # untouched

    result = _make(runner, workspace, output, "--workers", "0", "--num-shards", "2", "--seed", "7", "--overwrite")
    assert result.exit_code == 0, result.output
    assert [p.name for p in _shards(output)] == [records.shard_name(i, 2) for i in range(2)]  # old shards gone
    assert json.loads((output / "manifest.json").read_text())["options"]["seed"] == 7

    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "part-00000-of-00001.tfrecord").write_bytes(b"")
    assert_one_line_error(_make(runner, workspace, stray, "--workers", "0"), "no manifest.json", "--overwrite")


def test_disk_full_leaves_no_shard_that_looks_complete(runner, workspace, tmp_path, monkeypatch):
    calls = []

    def full(self, source, group_bytes, group_counts):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.temporary[0]))

    monkeypatch.setattr(records.ShardWriter, "write_groups", full)
    output = tmp_path / "out"
    result = _make(runner, workspace, output, "--workers", "0", "--num-shards", "2")
    assert_one_line_error(result, "No space left on device", "free some space")
    assert not output.exists()  # the directory it created is gone: no shards, no temporaries, no manifest


def test_leftovers_of_a_killed_run_are_removed(runner, workspace, tmp_path):
    """Temporary shards and worker record files of a run whose process is gone are deleted;
    those of a live process are not touched."""
    output = tmp_path / "out"
    output.mkdir()
    dead = subprocess.Popen(["true"])  # a pid whose process has ended
    dead.wait()
    stale_shard = output / f".part-00000-of-00001.tfrecord.tmp-{dead.pid}"
    stale_chunks = output / f".chunks-{dead.pid}"
    live_shard = output / ".part-00000-of-00001.tfrecord.tmp-1"  # pid 1 always runs
    stale_chunks.mkdir()
    (stale_chunks / "chunk-00000003").write_bytes(b"x" * 100)
    for path in (stale_shard, live_shard):
        path.write_bytes(b"partial")
    result = _make(runner, workspace, output, "--workers", "1")
    assert result.exit_code == 0, result.output
    assert not stale_shard.exists() and not stale_chunks.exists()
    assert live_shard.exists()
    assert sorted(p.name for p in output.iterdir() if not p.name.startswith(".")) == [
        "manifest.json", "part-00000-of-00001.tfrecord"
    ]
