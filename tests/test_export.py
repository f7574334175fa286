"""`bert export`: SavedModels that serve raw text, their in-graph preprocessing, parity, and bad input.

Parity is checked at two levels: the graph preprocessing against the Python
featurisation fine-tuning trains on (ids, segments, pair truncation, tagging
windows), and the exported signatures' outputs against the in-process Keras
model on that featurisation (max abs diff <= 1e-5). The exports are loaded in
a fresh interpreter that cannot import this project.
"""

import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest

import serving_helpers as sh
from bert_cli.main import app
from cli_helpers import assert_one_line_error

tf = pytest.importorskip("tensorflow")

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("serving")
    return {
        "classify": sh.write_classifier(d / "classify"),
        "pair": sh.write_classifier(d / "pair", pair=True, max_seq_length=16),
        "regression": sh.write_classifier(d / "regression", regression=True),
        "tag": sh.write_tagger(d / "tag"),
        "pretrained": sh.write_pretrained(d / "pretrained"),
        "squad": sh.write_span_predictor(d / "squad"),
        "squad-v1": sh.write_span_predictor(d / "squad-v1", version_2=False),
    }


# name -> export options. The tagger is exported shorter than it was trained
# (--max-seq-length 8) so that ordinary texts need several windows.
EXPORTS = {"classify": [], "tag": ["--max-seq-length", "8"],
           "pretrained": ["--all-layers", "--fixed-batch-size", "3"], "squad": []}


@pytest.fixture(scope="module")
def exports(models, tmp_path_factory):
    from typer.testing import CliRunner

    runner = CliRunner()
    root = tmp_path_factory.mktemp("exports")
    paths, outputs = {}, {}
    for name, options in EXPORTS.items():
        result = runner.invoke(app, ["export", str(models[name]), str(root / name), *options])
        assert result.exit_code == 0, result.output
        paths[name], outputs[name] = root / name, result
    return paths, outputs


def _module(model_dir, **options):
    from bert_cli.model_dir import read_model_dir
    from bert_cli.serving import ServingOptions, build_serving

    return build_serving(read_model_dir(model_dir), ServingOptions(**options))


# ----------------------------------------------------------------------------
# The graph preprocessing equals the training featurisation
# ----------------------------------------------------------------------------


def test_pair_truncation_matches_training_exhaustively():
    from bert_cli.serving import truncated_pair_lengths
    from data.classification import truncate_pair

    cases = [(a, b, m) for a in range(14) for b in range(14) for m in range(1, 20)]
    a, b, m = (np.array(column) for column in zip(*cases))
    for max_length in range(1, 20):
        rows = m == max_length
        kept_a, kept_b = truncated_pair_lengths(a[rows], b[rows], max_length)
        expected = [tuple(map(len, truncate_pair([0] * x, [0] * y, max_length))) for x, y in zip(a[rows], b[rows])]
        assert list(zip(kept_a.numpy().tolist(), kept_b.numpy().tolist())) == expected


def test_window_plan_matches_training():
    from bert_cli.serving import plan_windows
    from data.tagging import plan_windows as reference

    rng = random.Random(0)
    for capacity in (1, 3, 6, 10):
        sentences = [[rng.randint(1, capacity) for _ in range(rng.randint(0, 30))] for _ in range(40)]
        plan = plan_windows(tf.ragged.constant(sentences, dtype=tf.int32), capacity, capacity // 4).numpy()
        expected = [(number, *window) for number, counts in enumerate(sentences)
                    for window in reference(counts, capacity, capacity // 4)]
        assert [tuple(row) for row in plan.tolist()] == expected


def _padded(array, length, value=0):
    return np.pad(array, ((0, 0), (0, length - array.shape[1])), constant_values=value)


@pytest.mark.parametrize("pair", [False, True])
def test_preprocess_matches_classification_featurize(models, pair):
    name = "pair" if pair else "classify"
    module = _module(models[name])
    first = sh.texts(40, 1, longest=14) + sh.AWKWARD
    second = sh.texts(45, 2, longest=20)
    length = module.max_seq_length
    if pair:
        got = module.preprocess_pair(tf.constant(first), tf.constant(second))
    else:
        got = module.preprocess(tf.constant(first))
    features = sh.classification_features(models[name], first, second if pair else None, length)
    assert features.truncated >= (10 if pair else 1)  # long texts and pairs were cut
    pad = sh.tokenizer_of(models[name]).vocab.pad_id
    np.testing.assert_array_equal(got["input_word_ids"].numpy(), _padded(features.arrays["input_ids"], length, pad))
    np.testing.assert_array_equal(got["input_mask"].numpy(), _padded(features.arrays["input_mask"], length))
    np.testing.assert_array_equal(got["input_type_ids"].numpy(), _padded(features.arrays["segment_ids"], length))


def test_tagging_words_and_windows_match_tagging_featurize(models):
    module = _module(models["tag"], max_seq_length=8)
    texts = sh.texts(30, 3, longest=16) + sh.AWKWARD + [
        "Ann" + "s" * 10, "Ann\u00a0Smith\u2003w1\tw2", "w1 " + "\u3000" * 3
    ]
    windows = module.graph.windows(tf.constant(texts))
    tagged, features = sh.tagging_features(models["tag"], texts, 8)
    assert features.split_sentences > 10 and features.long_words >= 1
    words = windows["words"].to_list()
    assert [[w.decode() for w in sentence] for sentence in words] == [list(s.words) for s in tagged.sentences]
    plan = [tuple(row) for row in windows["plan"].numpy().tolist()]
    assert plan == [(w.sentence, w.start, w.core_start, w.core_end, w.end) for w in features.windows]
    inputs = {name: value.numpy() for name, value in windows["inputs"].items()}
    ids = [row[mask == 1].tolist() for row, mask in zip(inputs["token_ids"], inputs["padding_mask"])]
    expected_ids = [row[mask == 1].tolist() for row, mask in zip(features.arrays["input_ids"],
                                                                   features.arrays["input_mask"])]
    assert ids == expected_ids
    assert not inputs["segment_ids"].any()
    first_pieces = [[] for _ in plan]
    for window, position in zip(windows["word_window"].numpy(), windows["first_pieces"].numpy()):
        first_pieces[window].append(int(position))
    assert first_pieces == features.first_pieces


def test_in_process_classifier_and_regressor_match_the_keras_model(models):
    texts = sh.texts(20, 4) + sh.AWKWARD
    pairs = list(reversed(texts))
    module = _module(models["pair"])
    got = module.serving_default(tf.constant(texts), tf.constant(pairs))
    expected = sh.reference_probabilities(models["pair"], texts, pairs, 16)
    assert np.abs(got["probabilities"].numpy() - expected).max() <= TOLERANCE
    assert got["label"].numpy().tolist() == [["neg", "pos", "neutral"][i].encode() for i in expected.argmax(-1)]
    module = _module(models["regression"])
    got = module.serving_default(tf.constant(texts))
    assert set(got) == {"score"}
    assert np.abs(got["score"].numpy() - sh.reference_probabilities(models["regression"], texts, None, 24)).max() \
        <= TOLERANCE


def _squad_inputs(examples):
    return tf.constant([e["question"] for e in examples]), tf.constant([e["context"] for e in examples])


def test_squad_windows_match_squad_featurize(models, tmp_path):
    from data import squad

    examples = sh.squad_examples(30, 1) + [{"id": "empty", "question": "", "context": ""}]
    data = squad.read_squad(sh.write_squad_file(tmp_path / "dev.json", examples), require_answers=False)
    features = squad.featurize(data, sh.tokenizer_of(models["squad"]), 32, 8, 8)
    assert (np.bincount(features.question) > 2).sum() >= 5  # long contexts need several windows
    windows = _module(models["squad"]).graph.windows(*_squad_inputs(examples))
    inputs = {name: value.numpy() for name, value in windows["inputs"].items()}
    mask = inputs["padding_mask"]
    expected_mask = features.arrays["input_mask"]
    assert mask.sum(axis=1).tolist() == expected_mask.sum(axis=1).tolist()
    for name, expected in (("token_ids", "input_ids"), ("segment_ids", "segment_ids")):
        got = [row[m == 1].tolist() for row, m in zip(inputs[name], mask)]
        assert got == [row[m == 1].tolist() for row, m in zip(features.arrays[expected], expected_mask)], name
    for key in ("question", "doc_start", "doc_offset", "doc_length"):
        assert windows[key].numpy().tolist() == getattr(features, key).tolist(), key
    width = min(mask.shape[1], features.is_max_context.shape[1])
    assert np.array_equal(windows["is_max_context"].numpy()[:, :width], features.is_max_context[:, :width])


def test_squad_v1_answers_match_predict_answers(models, tmp_path):
    examples = sh.squad_examples(20, 2)
    predictions, _ = sh.reference_answers(models["squad-v1"], examples,
                                          sh.write_squad_file(tmp_path / "dev.json", examples))
    got = {k: v.numpy() for k, v in _module(models["squad-v1"]).serving_default(*_squad_inputs(examples)).items()}
    assert set(got) == {"answer", "start_char", "end_char", "score"}
    assert [a.decode() for a in got["answer"]] == [predictions.answers[e["id"]] for e in examples]
    for example, start, end, answer in zip(examples, got["start_char"], got["end_char"], got["answer"]):
        assert example["context"][start:end] == answer.decode() or (start, end) == (-1, -1)


# ----------------------------------------------------------------------------
# The export
# ----------------------------------------------------------------------------


def test_export_writes_a_complete_savedmodel(models, exports):
    paths, outputs = exports
    classify = paths["classify"]
    assert {p.name for p in classify.iterdir()} >= {"saved_model.pb", "variables", "assets", "bert_export.json"}
    assert (classify / "assets" / "vocab.txt").read_bytes() == (models["classify"] / "vocab.txt").read_bytes()
    assert (classify / "assets" / "bert_config.json").is_file()
    description = json.loads((classify / "bert_export.json").read_text())
    assert description["task"] == "classify" and description["labels"] == ["neg", "pos", "neutral"]
    assert description["max_seq_length"] == 24 and description["batch_size"] is None
    assert set(description["signatures"]) == {"preprocess", "preprocess_pair", "encode", "serving_default"}
    serving = description["signatures"]["serving_default"]
    assert serving["inputs"] == {"text": {"dtype": "string", "shape": [None]}}
    assert serving["outputs"]["probabilities"] == {"dtype": "float32", "shape": [None, 3]}
    assert set(serving["outputs"]) == {"probabilities", "label", "label_id"}
    tag = json.loads((paths["tag"] / "bert_export.json").read_text())
    assert tag["max_seq_length"] == 8 and set(tag["signatures"]["serving_default"]["outputs"]) == {
        "words", "tags", "num_words"}
    encoder = json.loads((paths["pretrained"] / "bert_export.json").read_text())
    assert set(encoder["signatures"]) == {"preprocess", "preprocess_pair", "encode"}
    assert encoder["signatures"]["encode"]["outputs"]["encoder_outputs"]["shape"] == [3, 2, None, 32]
    assert encoder["signatures"]["preprocess"]["inputs"]["text"]["shape"] == [3]
    squad = json.loads((paths["squad"] / "bert_export.json").read_text())
    assert squad["version_2_with_negative"] is True and squad["doc_stride"] == 8
    assert set(squad["signatures"]["serving_default"]["inputs"]) == {"question", "context"}
    assert set(squad["signatures"]["serving_default"]["outputs"]) == {
        "answer", "start_char", "end_char", "score", "is_impossible"}
    assert "not fine-tuned" in outputs["pretrained"].stderr and "preprocess/encode" in outputs["pretrained"].stderr
    assert "serving_default" in outputs["classify"].stdout
    leftovers = [p.name for p in classify.parent.iterdir() if p.name.startswith(".")]
    assert not leftovers


# Runs in a fresh interpreter: blocks this project's packages, proves they are
# not importable, loads every export and calls every signature.
NO_PROJECT_SCRIPT = r'''
import importlib.abc, json, sys
BLOCKED = {"bert_cli", "models", "data"}

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked: the export must load without the project")
        return None

sys.meta_path.insert(0, Block())
sys.path = [p for p in sys.path if p not in ("", ".", sys.argv[2], sys.argv[2] + "/tests")]
for name in BLOCKED:
    try:
        __import__(name)
    except ImportError:
        pass
    else:
        raise SystemExit(f"{name} is importable")

import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the tokenizer's ops)

spec = json.load(open(sys.argv[1]))
results = {}
for export, calls in spec.items():
    loaded = tf.saved_model.load(export)
    results[export] = {"signatures": sorted(loaded.signatures)}
    for name, inputs in calls.items():
        function = loaded.signatures[name]
        outputs = function(**{k: tf.constant(v, tf.int32 if isinstance(v[0], list) else tf.string)
                              for k, v in inputs.items()})
        results[export][name] = {
            k: [[x.decode() for x in row] if isinstance(row, list) and row and isinstance(row[0], bytes)
                else row.decode() if isinstance(row, bytes) else row for row in v.numpy().tolist()]
            for k, v in outputs.items()}
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)))
json.dump(results, open(sys.argv[3], "w"))
'''


@pytest.fixture(scope="module")
def served(models, exports, tmp_path_factory):
    """Every export loaded and called in an interpreter without the project: {export: {signature: outputs}}."""
    paths, _ = exports
    texts = sh.texts(12, 5) + sh.AWKWARD
    tag_texts = sh.texts(12, 6, longest=16) + sh.AWKWARD
    encoder_texts = texts[:3]
    module = _module(models["pretrained"], batch_size=3)
    ids = {k: v.numpy().tolist() for k, v in module.preprocess(tf.constant(encoder_texts)).items()}
    spec = {
        str(paths["classify"]): {"serving_default": {"text": texts}, "preprocess": {"text": texts},
                                 "preprocess_pair": {"text": texts, "text_pair": list(reversed(texts))},
                                 "encode": {k: v for k, v in ids.items()}},
        str(paths["tag"]): {"serving_default": {"text": tag_texts}, "preprocess": {"text": tag_texts[:2]}},
        str(paths["pretrained"]): {"preprocess": {"text": encoder_texts}, "encode": ids,
                                   "preprocess_pair": {"text": encoder_texts, "text_pair": encoder_texts}},
    }
    squad = sh.squad_examples(24, 3) + [{"id": "empty", "question": "", "context": ""},
                                        {"id": "long", "question": "w1 " * 100, "context": "great w2 " * 1500}]
    spec[str(paths["squad"])] = {"serving_default": {"question": [e["question"] for e in squad],
                                                     "context": [e["context"] for e in squad]}}
    directory = tmp_path_factory.mktemp("no-project")
    (directory / "spec.json").write_text(json.dumps(spec))
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    completed = subprocess.run(
        [sys.executable, "-I", "-c", NO_PROJECT_SCRIPT, str(directory / "spec.json"), repo,
         str(directory / "out.json")],
        cwd=directory, capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ""},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert json.loads(completed.stdout.strip().splitlines()[-1]) == []  # nothing of the project was loaded
    results = json.loads((directory / "out.json").read_text())
    return {name: results[str(path)] for name, path in paths.items()}, texts, tag_texts, ids, squad


def test_exports_load_and_serve_without_the_project(served):
    results, texts, tag_texts, _, _ = served
    assert results["classify"]["signatures"] == ["encode", "preprocess", "preprocess_pair", "serving_default"]
    assert results["pretrained"]["signatures"] == ["encode", "preprocess", "preprocess_pair"]
    serving = results["classify"]["serving_default"]
    assert len(serving["label"]) == len(texts) and set(serving["label"]) <= {"neg", "pos", "neutral"}
    assert len(set(serving["label"])) > 1  # the wide random model does not answer one label for everything
    tags = results["tag"]["serving_default"]
    assert tags["num_words"] == [len(t.split()) for t in tag_texts]


def test_exported_classifier_matches_the_keras_model(models, served):
    results, texts, _, _, _ = served
    serving = results["classify"]["serving_default"]
    expected = sh.reference_probabilities(models["classify"], texts, None, 24)
    assert np.abs(np.array(serving["probabilities"]) - expected).max() <= TOLERANCE
    assert serving["label_id"] == expected.argmax(-1).tolist()
    features = sh.classification_features(models["classify"], texts, None, 24)
    assert np.array_equal(np.array(results["classify"]["preprocess"]["input_word_ids"]),
                          _padded(features.arrays["input_ids"], 24))


def test_exported_tagger_matches_the_keras_model(models, served):
    results, _, tag_texts, _, _ = served
    tags = results["tag"]["serving_default"]
    expected = sh.reference_tags(models["tag"], tag_texts, 8)
    got = [row[:count] for row, count in zip(tags["tags"], tags["num_words"])]
    assert got == expected
    assert [row[:count] for row, count in zip(tags["words"], tags["num_words"])] == [t.split() for t in tag_texts]
    assert all(not any(row[count:]) for row, count in zip(tags["tags"], tags["num_words"]))  # padding is ""


def test_exported_encoder_matches_the_backbone(models, served):
    from bert_cli.model_dir import load_encoder, read_model_dir

    results, _, _, ids, _ = served
    encoder = load_encoder(read_model_dir(models["pretrained"]))
    expected = encoder({"token_ids": np.array(ids["input_word_ids"]), "segment_ids": np.array(ids["input_type_ids"]),
                        "padding_mask": np.array(ids["input_mask"])})
    encoded = results["pretrained"]["encode"]
    assert np.abs(np.array(encoded["pooled_output"]) - np.asarray(expected["pooled_output"])).max() <= TOLERANCE
    sequence = np.array(encoded["sequence_output"])
    assert np.abs(sequence - np.asarray(expected["sequence_output"])).max() <= TOLERANCE
    layers = np.array(encoded["encoder_outputs"])  # [B, K, T, H]
    assert layers.shape == (3, 2, 32, 32)
    assert np.abs(layers[:, -1] - sequence).max() == 0.0
    assert results["pretrained"]["preprocess"]["input_word_ids"] == ids["input_word_ids"]
    # A fine-tuned model's export is a feature extractor too: its encoder is the classifier's.
    assert np.array(results["classify"]["encode"]["sequence_output"]).shape == (3, 32, 32)


def test_exported_squad_answers_are_substrings_of_the_context(models, served, tmp_path):
    results, _, _, _, examples = served
    answers = results["squad"]["serving_default"]
    predictions, _ = sh.reference_answers(models["squad"], examples,
                                          sh.write_squad_file(tmp_path / "dev.json", examples))
    assert answers["answer"] == [predictions.answers[e["id"]] for e in examples]
    assert 0 < sum(answers["is_impossible"]) < len(examples) - 2
    for example, answer, start, end, impossible in zip(examples, answers["answer"], answers["start_char"],
                                                       answers["end_char"], answers["is_impossible"]):
        if impossible:
            assert (answer, start, end) == ("", -1, -1)
        else:
            assert answer and example["context"][start:end] == answer
    assert all(np.isfinite(answers["score"]))


def test_predict_squad_file_with_the_export(runner, exports, models, tmp_path):
    paths, _ = exports
    examples = sh.squad_examples(8, 4)
    squad_file = sh.write_squad_file(tmp_path / "dev.json", examples)
    result = runner.invoke(app, ["predict", str(paths["squad"]), "--input", str(squad_file)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    predictions, _ = sh.reference_answers(models["squad"], examples, squad_file)
    assert [r["id"] for r in records] == [e["id"] for e in examples]
    assert [r["answer"] for r in records] == [predictions.answers[e["id"]] for e in examples]
    one = runner.invoke(app, ["predict", str(paths["squad"]), "--question", examples[0]["question"],
                              "--context", examples[0]["context"]])
    assert json.loads(one.stdout)["answer"] == records[0]["answer"]


def test_saved_model_cli_lists_the_signatures(exports):
    paths, _ = exports
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    completed = subprocess.run([cli, "show", "--dir", str(paths["classify"]), "--all"], capture_output=True,
                               text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert completed.returncode == 0, completed.stderr[-2000:]
    for name in ("preprocess", "preprocess_pair", "encode", "serving_default"):
        assert f"signature_def['{name}']" in completed.stdout
    assert "inputs['text'] tensor_info" in completed.stdout and "outputs['probabilities']" in completed.stdout


# ----------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------


def test_existing_output_is_refused_unless_overwrite(runner, models, exports, tmp_path):
    paths, _ = exports
    before = (paths["classify"] / "saved_model.pb").stat().st_mtime_ns
    result = runner.invoke(app, ["export", str(models["classify"]), str(paths["classify"])])
    assert_one_line_error(result, "already exists", "--overwrite")
    assert (paths["classify"] / "saved_model.pb").stat().st_mtime_ns == before
    result = runner.invoke(app, ["export", str(models["classify"]), str(models["classify"]), "--overwrite"])
    assert_one_line_error(result, "model directory")


def test_missing_vocabulary_and_bad_options_are_one_line_errors(runner, models, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(models["classify"], broken)
    (broken / "vocab.txt").unlink()
    assert_one_line_error(runner.invoke(app, ["export", str(broken), str(tmp_path / "out")]), "vocab.txt")
    assert_one_line_error(runner.invoke(app, ["export", str(tmp_path / "nowhere"), str(tmp_path / "out")]),
                    "no such model directory")
    assert_one_line_error(runner.invoke(app, ["export", str(models["classify"]), str(tmp_path / "out"),
                                        "--max-seq-length", "999"]), "max_position_embeddings")
    assert_one_line_error(runner.invoke(app, ["export", str(models["classify"]), str(tmp_path / "out"),
                                        "--batch-polymorphic", "--fixed-batch-size", "2"]), "not both")
    (broken / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n")
    assert_one_line_error(runner.invoke(app, ["export", str(broken), str(tmp_path / "out")]), "vocab_size")
    assert not (tmp_path / "out").exists()
