"""`bert distill` of a classifier end to end, the soft loss by hand, the teacher cache, resume and bad input."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from bert_cli.main import app
from cli_helpers import assert_one_line_error
from finetune_helpers import VOCAB, sentiment_rows, write_config, write_tsv, write_vocab

tf = pytest.importorskip("tensorflow")

STUDENT = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 1, "intermediate_size": 32}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("distill")
    write_vocab(d)
    write_config(d)
    write_tsv(d / "train.tsv", ["sentence", "label"], sentiment_rows(400, 1))
    write_tsv(d / "dev.tsv", ["sentence", "label"], sentiment_rows(128, 2))
    # Unlabeled text: other sentences of the same kind, one per line (a .txt file), and a TSV without labels.
    (d / "unlabeled.txt").write_text("\n".join(text for text, _ in sentiment_rows(700, 3)) + "\n", encoding="utf-8")
    write_tsv(d / "more.tsv", ["sentence"], [(text,) for text, _ in sentiment_rows(500, 4)])
    # The student's own vocabulary: the same words in another order plus some unused ones, so its ids differ.
    student = d / "student"
    student.mkdir()
    tokens = VOCAB[:5] + random.Random(0).sample(VOCAB[5:], len(VOCAB) - 5) + [f"unused{i}" for i in range(7)]
    (student / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    write_config(student, vocab_size=len(tokens), **STUDENT)
    return d


@pytest.fixture(scope="module")
def teacher(work, tmp_path_factory):
    from typer.testing import CliRunner

    output = tmp_path_factory.mktemp("teacher") / "teacher"
    result = CliRunner().invoke(app, [
        "finetune", "classify", str(work / "train.tsv"), "-o", str(output), "--dev", str(work / "dev.tsv"),
        "--model", str(work / "bert_config.json"), "--vocab", str(work / "vocab.txt"), "--max-seq-length", "32",
        "--epochs", "4", "--learning-rate", "3e-3"])
    assert result.exit_code == 0, result.output
    return output


def _distill(work, teacher, output, *extra):
    student = work / "student"
    return ["distill", str(teacher), str(work / "unlabeled.txt"), str(work / "more.tsv"),
            "--student", str(student / "bert_config.json"), "--student-vocab", str(student / "vocab.txt"),
            "--dev", str(work / "dev.tsv"), "-o", str(output), "--learning-rate", "3e-3", *extra]


def test_soft_loss_is_kl_at_the_temperature_times_its_square():
    from models.heads import distillation_divergence

    student = np.array([[1.0, -0.5, 2.0], [0.3, 0.3, -1.0]], np.float32)
    teacher = np.array([[2.0, 0.0, 1.0], [-1.0, 1.5, 0.5]], np.float32)
    for temperature in (1.0, 2.0, 4.0):
        p = np.exp(teacher / temperature) / np.exp(teacher / temperature).sum(-1, keepdims=True)
        q = np.exp(student / temperature) / np.exp(student / temperature).sum(-1, keepdims=True)
        expected = (p * (np.log(p) - np.log(q))).sum(-1) * temperature ** 2
        got = np.asarray(distillation_divergence(student, p, temperature))
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # A student equal to the teacher has no loss; a class the teacher gives probability 0 adds nothing.
    np.testing.assert_allclose(np.asarray(distillation_divergence(teacher, np.exp(teacher) / np.exp(teacher).sum(
        -1, keepdims=True), 1.0)), 0.0, atol=1e-6)
    masked = np.array([[0.5, 0.5, 0.0]], np.float32)
    expected = 0.5 * (np.log(0.5) - np.log(q[:1, 0])) + 0.5 * (np.log(0.5) - np.log(q[:1, 1]))
    np.testing.assert_allclose(np.asarray(distillation_divergence(student[:1], masked, 4.0)) / 16,
                               expected, rtol=1e-5)


def test_student_learns_the_teacher_resumes_and_reuses_the_teacher_outputs(runner, work, teacher, tmp_path,
                                                                          monkeypatch):
    output = tmp_path / "student"
    first = runner.invoke(app, _distill(work, teacher, output, "--epochs", "1", "--train", str(work / "train.tsv"),
                                        "--no-measure-speed"))
    assert first.exit_code == 0, first.output
    caches = list((output / "cache").glob("teacher-*.npz"))
    assert len(caches) == 1
    with np.load(caches[0], allow_pickle=False) as stored:
        assert stored["unlabeled/scores"].dtype == np.float16 and len(stored["unlabeled/scores"]) == 1200
        assert "labeled/scores" in stored.files and "dev/scores" in stored.files

    import bert_cli.distill

    def no_teacher(*args, **kwargs):
        raise AssertionError("the teacher ran again: its outputs are cached")

    monkeypatch.setattr(bert_cli.distill, "teacher_outputs", no_teacher)
    second = runner.invoke(app, _distill(work, teacher, output, "--epochs", "3", "--train", str(work / "train.tsv")))
    assert second.exit_code == 0, second.output
    assert "resuming from" in second.output and "read from" in second.output
    summary = json.loads((output / "distill.json").read_text())
    assert summary["examples"] == {"unlabeled": 1200, "labeled": 400}
    assert summary["agreement"] >= 0.9, summary
    assert summary["student_dev"]["accuracy"] >= summary["teacher_dev"]["accuracy"] - 0.1
    assert summary["student_parameters"] < summary["teacher_parameters"] / 2
    speed = summary["speed"]
    assert speed["student"]["batch32_examples_per_second"] > 0 and speed["teacher"]["batch1_p50_ms"] > 0
    assert "teacher vs student" in second.stdout and "agreement with the teacher" in second.stdout
    # An ordinary fine-tuned model directory: the task, labels and columns of the teacher, the student's vocabulary.
    task = json.loads((output / "task.json").read_text())
    teacher_task = json.loads((teacher / "task.json").read_text())
    assert task["task"] == "classify" and task["labels"] == teacher_task["labels"] == ["neg", "pos"]
    assert task["text_column"] == teacher_task["text_column"] and task["max_seq_length"] == 32
    assert (output / "vocab.txt").read_text() == (work / "student" / "vocab.txt").read_text()
    # bert predict on the directory answers as the run's own dev predictions did.
    texts = [line.split("\t")[0] for line in (work / "dev.tsv").read_text().splitlines()[1:6]]
    predicted = runner.invoke(app, ["predict", str(output), *texts, "--jsonl"])
    assert predicted.exit_code == 0, predicted.output
    labels = [json.loads(line)["label"] for line in predicted.stdout.strip().splitlines()]
    assert labels == [row.split("\t")[1] for row in (output / "predictions.tsv").read_text().splitlines()[1:6]]


def _args(work, teacher, output, teacher_dir=None, unlabeled=None, student=None):
    student_files = ["--student", str(work / "student" / "bert_config.json"), "--student-vocab",
                     str(work / "student" / "vocab.txt")]
    return ["distill", str(teacher_dir or teacher), str(unlabeled or work / "unlabeled.txt"),
            *(student_files if student is None else student), "-o", str(output)]


def _file(tmp, name, text):
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return path


def _copy_without_weights(teacher, tmp):
    import shutil

    copy = tmp / "weightless"
    shutil.copytree(teacher, copy)
    (copy / "model.weights.h5").unlink()
    return copy


def _short_student(work, tmp):
    folder = tmp / "short"
    folder.mkdir()
    write_config(folder, max_position_embeddings=16, **STUDENT)
    return ["--student", str(folder / "bert_config.json")]


BAD = {
    "pre-trained teacher": (lambda w, tmp: {"teacher_dir": _pretrained_copy(w, tmp)}, "is a pre-trained model"),
    "teacher without weights": (lambda w, tmp: {"teacher_dir": "WEIGHTLESS"}, "has no model.weights.h5"),
    "no text column": (lambda w, tmp: {"unlabeled": _file(tmp, "x.tsv", "review\tscore\ngood\t1\n")}, "x.tsv"),
    "student too short": (lambda w, tmp: {"student": _short_student(w, tmp)}, "max_position_embeddings 16"),
    "no student": (lambda w, tmp: {"student": []}, "give --student PRESET"),
    "bad temperature": (lambda w, tmp: {"student": ["--student", "mini", "--temperature", "0"]},
                        "--temperature must be positive"),
}


def _pretrained_copy(work, tmp):
    from finetune_helpers import write_pretrained_dir

    for name in ("bert_config.json", "vocab.txt"):
        (tmp / name).write_bytes((work / name).read_bytes())
    return write_pretrained_dir(tmp)


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_and_writes_nothing(runner, work, teacher, tmp_path, case):
    make, expected = BAD[case]
    changes = make(work, tmp_path)
    if changes.get("teacher_dir") == "WEIGHTLESS":
        changes["teacher_dir"] = _copy_without_weights(teacher, tmp_path)
    output = tmp_path / "out"
    result = runner.invoke(app, _args(work, teacher, output, **changes))
    assert_one_line_error(result, expected)
    assert not output.exists() or not any(output.iterdir())


class _Fixed:
    """A stand-in model that returns fixed outputs whatever the batch."""

    def __init__(self, outputs):
        self.outputs = outputs

    def __call__(self, inputs, training=False):
        return self.outputs


def test_regression_and_pair_distillation_by_hand(tmp_path):
    from bert_cli.tasks.classify import Distillation

    task = {"task": "classify", "labels": [], "regression": True, "pair": True, "text_column": "sentence1",
            "text_pair_column": "sentence2", "label_column": "score"}
    distillation = Distillation(task)
    student = np.array([0.5, 2.0, -1.0], np.float32)
    batch = {"input_ids": np.zeros((3, 4), np.int32), "segment_ids": np.zeros((3, 4), np.int32),
             "input_mask": np.ones((3, 4), np.int32), "teacher_scores": np.array([1.0, 2.0, 0.0], np.float32),
             "label": np.array([0.0, 3.0, 0.0], np.float32), "hard_weight": np.array([0.0, 0.5, 0.0], np.float32)}
    values = distillation.compute(_Fixed(student), batch, 1.0, False)
    soft = np.mean((student - batch["teacher_scores"]) ** 2)
    hard = 0.5 * (2.0 - 3.0) ** 2 / 3
    assert abs(float(values["loss"]) - (soft + hard)) < 1e-6 and float(values["judged"]) == 0
    # A pair teacher needs both text columns in the unlabeled file; a .txt file of single texts is refused.
    recipe = distillation.recipe(None)
    write_tsv(tmp_path / "pairs.tsv", ["sentence1", "sentence2"], [("a b", "c d"), ("e", "f")])
    distillation.read(recipe, [tmp_path / "pairs.tsv"], None, None)
    examples = recipe.datasets["unlabeled"].examples
    assert [(e.text, e.text_pair, e.label) for e in examples] == [("a b", "c d", None), ("e", "f", None)]
    (tmp_path / "single.txt").write_text("a b\n", encoding="utf-8")
    with pytest.raises(Exception, match="teacher classifies pairs"):
        distillation.read(distillation.recipe(None), [tmp_path / "single.txt"], None, None)
    teacher_scores = {"scores": np.array([0.1, 0.2, 0.3, 0.4])}
    assert abs(distillation.agreement(None, {"scores": np.array([1.0, 2.0, 3.0, 4.0])}, None, teacher_scores)
               - 1.0) < 1e-9
