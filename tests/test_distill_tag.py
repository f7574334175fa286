"""`bert distill` of a tagger: a tiny teacher fine-tuned here, a smaller student with its own vocabulary and
windows distilled on untagged sentences; the word-level alignment and the loss against hand computations."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from bert_cli.main import app
from cli_helpers import assert_one_line_error
from finetune_helpers import VOCAB, tagged_sentences, write_config, write_conll, write_vocab

tf = pytest.importorskip("tensorflow")

TASK = {"task": "tag", "labels": ["O", "B-ORG", "B-PER", "I-PER"], "scheme": "IOB2", "token_column": 0,
        "tag_column": -1, "max_seq_length": 16, "lowercase": False}
# The student's vocabulary: other ids, and "Ann" / "Bob" split in two ("Anns" in three) where the teacher's
# vocabulary has them whole, so teacher and student put a word's first piece at different positions.
STUDENT_VOCAB = VOCAB[:5] + [t for t in reversed(VOCAB[5:]) if t not in ("Ann", "Bob")] + ["An", "##n", "Bo", "##b"]


def _untagged(path, sentences):
    """A CoNLL file of tokens alone."""
    path.write_text("\n\n".join("\n".join(word for word, _ in s) for s in sentences) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("distill_tag")
    write_vocab(d)
    write_config(d)
    student = d / "student"
    student.mkdir()
    (student / "vocab.txt").write_text("\n".join(STUDENT_VOCAB) + "\n", encoding="utf-8")
    write_config(student, vocab_size=len(STUDENT_VOCAB), hidden_size=16, num_hidden_layers=1,
                 num_attention_heads=1, intermediate_size=32)
    write_conll(d / "train.conll", tagged_sentences(360, 6, longest=24))
    write_conll(d / "dev.conll", tagged_sentences(80, 7, longest=24))
    _untagged(d / "unlabeled.conll", tagged_sentences(300, 9, longest=24))
    return d


@pytest.fixture(scope="module")
def teacher(work):
    from typer.testing import CliRunner

    output = work / "teacher"
    result = CliRunner().invoke(app, [
        "finetune", "tag", str(work / "train.conll"), "-o", str(output), "--dev", str(work / "dev.conll"),
        "--model", str(work / "bert_config.json"), "--vocab", str(work / "vocab.txt"), "--max-seq-length", "16",
        "--batch-size", "32", "--learning-rate", "3e-3", "--epochs", "3"])
    assert result.exit_code == 0, result.output
    return output


def test_student_with_its_own_vocabulary_and_windows_learns_the_teacher(runner, work, teacher, tmp_path):
    # --train's sentences are distilled too, their gold tags left out (weight 0): the student learns from the
    # teacher alone, with windows of 12 pieces where the teacher's are 16.
    output = tmp_path / "student"
    result = runner.invoke(app, [
        "distill", str(teacher), str(work / "unlabeled.conll"), "--student", str(work / "student/bert_config.json"),
        "--student-vocab", str(work / "student/vocab.txt"), "--train", str(work / "train.conll"),
        "--hard-label-weight", "0", "--dev", str(work / "dev.conll"), "-o", str(output), "--max-seq-length", "12",
        "--batch-size", "32", "--epochs", "2", "--learning-rate", "3e-3", "--temperature", "2",
        "--no-measure-speed"])
    assert result.exit_code == 0, result.output
    summary = json.loads((output / "distill.json").read_text())
    assert summary["task"] == "tag" and summary["agreement"] >= 0.9
    assert summary["teacher_dev"]["f1"] >= 0.9
    assert summary["student_dev"]["f1"] >= summary["teacher_dev"]["f1"] - 0.05
    assert set(summary["examples"]) == {"unlabeled", "labeled"}
    assert summary["student_parameters"] < summary["teacher_parameters"]
    # An ordinary tag model directory, with the teacher's tags.
    task = json.loads((output / "task.json").read_text())
    assert task["task"] == "tag" and task["labels"] == TASK["labels"] and task["scheme"] == "IOB2"
    assert task["max_seq_length"] == 12 and task["distilled_from"] == str(teacher.resolve())
    assert (output / "model.weights.h5").is_file() and (output / "vocab.txt").read_text().split() == STUDENT_VOCAB
    from data.tagging import read_conll

    dev = read_conll(work / "dev.conll")
    predicted = read_conll(output / "predictions.conll", tag_column=2)
    assert [s.words for s in predicted.sentences] == [s.words for s in dev.sentences]


def test_unlabeled_files_are_concatenated_with_their_tags_ignored(tmp_path):
    from bert_cli.tasks.tag import Distillation

    tokens = _write(tmp_path / "a.conll", "Ann\nw1\n\nIBM\n")
    tagged = write_conll(tmp_path / "b.conll", [[("Bob", "B-PER"), ("w2", "O")]])
    recipe = Distillation(TASK).recipe(None)
    Distillation(TASK).read(recipe, [tokens, tagged], None, None)
    unlabeled = recipe.tagged["unlabeled"]
    assert [s.words for s in unlabeled.sentences] == [("Ann", "w1"), ("IBM",), ("Bob", "w2")]
    assert not unlabeled.has_tags and recipe.tags == TASK["labels"] and recipe.scheme == "IOB2"


def _tokenizers():
    """The teacher's tokeniser: a piece a word; the student's: capitalised words in two pieces."""
    def teacher(words):
        return [[10] for _ in words]

    def student(words):
        return [[10, 11] if word[0].isupper() else [10] for word in words]

    return teacher, student


def test_targets_are_aligned_word_by_word_across_windows_and_pieces(tmp_path):
    from bert_cli.tasks.tag import Distillation

    # Sentence 0 has 7 words (9 pieces for the student), too long for either side's single window.
    words = [["Ann", "w1", "Bob", "w2", "w3", "Eve", "w4"], ["ACME", "w5"]]
    path = tmp_path / "u.conll"
    path.write_text("\n\n".join("\n".join(s) for s in words) + "\n", encoding="utf-8")
    distillation = Distillation(TASK)
    teacher_view, student = distillation.recipe(None), distillation.recipe(None)
    for recipe in (teacher_view, student):
        distillation.read(recipe, [path], None, None)
    vocab = SimpleNamespace(cls_id=2, sep_id=3, pad_id=0, unk_id=1)
    teacher_tokenize, student_tokenize = _tokenizers()
    teacher_view.featurize(teacher_tokenize, vocab, 6)  # 4 pieces a window, 1 of context
    student.featurize(student_tokenize, vocab, 8)  # 6 pieces a window, 1 of context
    # By hand: (sentence, start, core start, core end, end) of each window.
    assert [tuple(vars(w).values()) for w in teacher_view.features["unlabeled"].windows] == [
        (0, 0, 0, 3, 4), (0, 2, 3, 5, 6), (0, 4, 5, 7, 7), (1, 0, 0, 2, 2)]
    assert [tuple(vars(w).values()) for w in student.features["unlabeled"].windows] == [
        (0, 0, 0, 3, 4), (0, 3, 3, 7, 7), (1, 0, 0, 2, 2)]

    temperature = 2.0

    def wanted(word):  # the distribution the teacher gives word number `word` (of 9)
        return np.array([word + 1, 1, 2, 3], np.float64) / (word + 7)

    # The teacher's logits: wanted(w) at T, at w's first piece in the window whose core holds it (positions
    # after [CLS], worked out by hand); elsewhere, context included, a distribution no word has.
    logits = np.tile(temperature * np.log([0.97, 0.01, 0.01, 0.01]), (4, 6, 1))  # [N, T, L]
    for window, position, word in [(0, 1, 0), (0, 2, 1), (0, 3, 2), (1, 2, 3), (1, 3, 4), (2, 2, 5), (2, 3, 6),
                                   (3, 1, 7), (3, 2, 8)]:
        logits[window, position] = temperature * np.log(wanted(word)) + 5.0  # a shift changes nothing
    targets = distillation.targets(teacher_view, {"logits": logits}, student, "unlabeled", temperature)

    expected = np.zeros((3, 8, 4))
    weights = np.zeros((3, 8))
    # Student pieces: [CLS] An ##n w1 Bo ##b w2 [SEP] | [CLS] w2 w3 Ev ##e w4 [SEP] | [CLS] AC ##ME w5 [SEP]
    for window, position, word in [(0, 1, 0), (0, 3, 1), (0, 4, 2), (1, 1, 3), (1, 2, 4), (1, 3, 5), (1, 5, 6),
                                   (2, 1, 7), (2, 3, 8)]:
        expected[window, position] = wanted(word)
        weights[window, position] = 1.0
    np.testing.assert_allclose(targets["teacher_probabilities"], expected, atol=1e-6)
    np.testing.assert_array_equal(targets["teacher_weights"], weights)
    assert targets["teacher_probabilities"].dtype == np.float32
    np.testing.assert_array_equal(student.arrays("unlabeled")["label_weights"], weights)


def test_loss_agreement_and_counts_by_hand():
    from bert_cli.tasks.tag import Distillation

    temperature = 2.0
    logits = np.array([[[2.0, 0.0], [0.0, 1.0], [5.0, 5.0]],
                       [[1.0, 3.0], [0.5, 0.0], [0.0, 0.0]]], np.float32)  # [B=2, T=3, L=2]
    batch = {
        "input_ids": np.ones((2, 3), np.int32), "input_mask": np.ones((2, 3), np.int32),
        "segment_ids": np.zeros((2, 3), np.int32),
        "teacher_probabilities": np.array([[[0.5, 0.5], [0.2, 0.8], [0, 0]], [[0.9, 0.1], [0.6, 0.4], [0, 0]]],
                                          np.float32),
        "teacher_weights": np.array([[1, 1, 0], [1, 1, 0]], np.float32),
        "label": np.array([[0, 1, 0], [1, 0, 0]], np.int32),
        "label_weights": np.array([[1, 1, 0], [1, 1, 0]], np.float32),
        "hard_weight": np.array([0.0, 0.5], np.float32),  # the second window is from --train, at weight 0.5
    }
    values = Distillation(TASK).compute(lambda inputs, training: tf.constant(logits), batch, temperature, False)

    def log_softmax(row, scale):
        z = [v / scale for v in row]
        top = math.log(sum(math.exp(v) for v in z))
        return [v - top for v in z]

    soft = 0.0
    for b, t in [(0, 0), (0, 1), (1, 0), (1, 1)]:
        p, q = batch["teacher_probabilities"][b, t], log_softmax(logits[b, t], temperature)
        soft += sum(p[c] * (math.log(p[c]) - q[c]) for c in range(2)) * temperature ** 2
    soft /= 4  # 4 weighted words
    hard = 0.5 * (-log_softmax(logits[1, 0], 1)[1] - log_softmax(logits[1, 1], 1)[0]) / 4
    assert float(values["loss"]) == pytest.approx(soft + hard, rel=1e-5)
    # Student argmax 0, 1 | 1, 0 against the teacher's 0 (tie: first), 1 | 0, 0.
    assert float(values["agree"]) == 3 and float(values["judged"]) == 4 and float(values["examples"]) == 2


BAD_INPUTS = {
    "squad json": (lambda d: _write(d / "u.json", json.dumps({"version": "v2.0", "data": []})), "is JSON, not CoNLL"),
    "empty file": (lambda d: _write(d / "empty.conll", ""), "empty.conll: no sentences"),
    "ragged rows": (lambda d: _write(d / "r.conll", "a\tO\nb\n"), "r.conll:2: 1 fields, expected 2"),
}


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_unlabeled_input_is_one_line_and_exit_2(runner, work, teacher, tmp_path, case):
    make, expected = BAD_INPUTS[case]
    output = tmp_path / "out"
    result = runner.invoke(app, ["distill", str(teacher), str(make(tmp_path)), "--student",
                                 str(work / "student/bert_config.json"), "--student-vocab",
                                 str(work / "student/vocab.txt"), "-o", str(output)])
    assert_one_line_error(result, expected)
    assert not (output / "task.json").exists()


def test_labelled_file_with_tags_the_teacher_lacks_is_refused(runner, work, teacher, tmp_path):
    train = _write(tmp_path / "t.conll", "Ann\tB-PER\nw1\tB-LOC\n")
    result = runner.invoke(app, ["distill", str(teacher), str(work / "unlabeled.conll"), "--train", str(train),
                                 "--student", str(work / "student/bert_config.json"), "--student-vocab",
                                 str(work / "student/vocab.txt"), "-o", str(tmp_path / "out")])
    assert_one_line_error(result, "t.conll:2: tag 'B-LOC' does not occur in the teacher's labels")
