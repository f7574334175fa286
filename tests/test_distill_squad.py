"""`bert distill` of a SQuAD model: the character-level alignment by hand, a student that learns, bad input.

The teacher is fine-tuned on test_squad's generated task (find the person or
the organisation a "who" / "which" question asks for); the student has its
own vocabulary (names split into other pieces), fewer and narrower layers and
shorter windows, and learns from generated contexts and questions without
answers.
"""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from bert_cli.main import app
from cli_helpers import assert_one_line_error

tf = pytest.importorskip("tensorflow")

import pretrain_helpers  # noqa: E402
from test_squad import CONFIG, SPECIALS, VOCAB, generated_squad  # noqa: E402

# Half the teacher's width (CONFIG: 2 layers of 32).
STUDENT = {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32}
#: Student pieces for words the teacher has whole, so both tokenise the contexts differently.
SPLIT_WORDS = {"Smith": ["Sm", "##ith"], "Jones": ["Jo", "##nes"], "ACME": ["AC", "##ME"], "NASA": ["NA", "##SA"]}


def _write_json(path, value):
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


def _without_answers(document: dict) -> dict:
    for paragraph in document["data"][0]["paragraphs"]:
        for qa in paragraph["qas"]:
            del qa["answers"]
    return document


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("distill_squad")
    pretrain_helpers.write_vocab(d, VOCAB)
    pretrain_helpers.write_config(d, CONFIG)
    _write_json(d / "train.json", generated_squad(800, 1, longest=24))
    _write_json(d / "dev.json", generated_squad(40, 2, longest=24))
    # Unlabeled: generated contexts and questions without answers, in two files (one gzip'd).
    with gzip.open(d / "unlabeled.json.gz", "wt", encoding="utf-8") as handle:
        json.dump(_without_answers(generated_squad(400, 5, longest=24)), handle)
    _write_json(d / "more.json", _without_answers(generated_squad(200, 6, longest=24)))
    # A few labelled questions with short contexts (shorter windows: padded when the splits are joined).
    _write_json(d / "labeled.json", generated_squad(60, 7, longest=8))
    student = d / "student"
    student.mkdir()
    tokens = [t for t in VOCAB if t not in SPLIT_WORDS] + [p for pieces in SPLIT_WORDS.values() for p in pieces]
    pretrain_helpers.write_vocab(student, tokens)
    pretrain_helpers.write_config(student, {**CONFIG, "vocab_size": len(tokens), **STUDENT})
    return d


@pytest.fixture(scope="module")
def teacher(work, tmp_path_factory):
    from typer.testing import CliRunner

    output = tmp_path_factory.mktemp("squad_teacher") / "teacher"
    result = CliRunner().invoke(app, [
        "finetune", "squad", str(work / "train.json"), "-o", str(output), "--dev", str(work / "dev.json"),
        "--model", str(work / "bert_config.json"), "--vocab", str(work / "vocab.txt"), "--max-seq-length", "48",
        "--doc-stride", "16", "--max-query-length", "8", "--epochs", "4", "--batch-size", "32",
        "--learning-rate", "3e-3"])
    assert result.exit_code == 0, result.output
    return output


def _task(max_query_length: int) -> dict:
    return {"task": "squad", "doc_stride": 2, "max_query_length": max_query_length, "max_answer_length": 30,
            "n_best_size": 20, "version_2_with_negative": False, "null_score_diff_threshold": 0.0}


def test_teacher_logits_reach_the_student_windows_through_the_context_characters(tmp_path):
    from bert_cli.tasks.squad import Distillation
    from data.tokenization import Tokenizer, Vocabulary

    context = "Ann Smithson saw ACME."  # words at characters 0-3, 4-12, 13-16, 17-21, 21-22
    unlabeled = _write_json(tmp_path / "unlabeled.json", {"data": [{"paragraphs": [
        {"context": context, "qas": [{"id": "q", "question": "who ?"}]}]}]})
    labeled = _write_json(tmp_path / "labeled.json", {"data": [{"paragraphs": [{"context": context, "qas": [
        {"id": "good", "question": "which ?", "answers": [{"text": "ACME", "answer_start": 17}]},
        {"id": "bad", "question": "which ?", "answers": [{"text": "ACME", "answer_start": 0}]}]}]}]})
    # Teacher: "A ##nn Smithson saw ACME ." in windows of 3 pieces, 2 apart (question "who ?": 2 pieces).
    teacher_vocab = Vocabulary.from_tokens(SPECIALS + ["A", "##nn", "Smithson", "saw", "ACME", ".", "who", "which",
                                                       "?"])
    # Student: "Ann Smith ##son saw AC ##ME ." in windows of 4 pieces, 2 apart (question "w ##ho ?": 3 pieces).
    student_vocab = Vocabulary.from_tokens(SPECIALS + ["Ann", "Smith", "##son", "saw", "AC", "##ME", ".", "w", "##ho",
                                                       "which", "?"])
    teacher, student = Distillation(_task(2)), Distillation(_task(3))
    views = [teacher.recipe(None), student.recipe(None)]
    for distillation, view, vocab, length in ((teacher, views[0], teacher_vocab, 8),
                                              (student, views[1], student_vocab, 10)):
        distillation.read(view, [unlabeled], labeled, None)
        view.featurize(Tokenizer(vocab, False).encode, vocab, length)
    teacher_view, student_view = views
    t, s = teacher_view.features["unlabeled"], student_view.features["unlabeled"]
    assert t.doc_start.tolist() == [0, 2, 4] and t.doc_length.tolist() == [3, 3, 2] and t.doc_offset.tolist() == [4] * 3
    assert s.doc_start.tolist() == [0, 2, 4] and s.doc_length.tolist() == [4, 4, 3] and s.doc_offset.tolist() == [5] * 3
    # Pieces scored (max context): A ##nn Smithson in window 0, saw ACME in 1, "." in 2.
    assert [np.flatnonzero(row).tolist() for row in t.is_max_context] == [[4, 5, 6], [5, 6], [5]]
    window, position = np.meshgrid(np.arange(3), np.arange(8), indexing="ij")
    start_logits = (10.0 * window + position).astype(np.float32)  # [3, 8]: start 10 w + j, end 100 - 10 w - j
    outputs = {"start_logits": start_logits, "end_logits": 100.0 - start_logits}
    targets = student.targets(teacher_view, outputs, student_view, "unlabeled", 2.0)
    n = -np.inf
    ann_start, ann_end = np.logaddexp(4, 5), np.logaddexp(96, 95)  # "Ann" is two teacher pieces: their odds add up
    #  position:            [CLS] w ##ho ?  [SEP] | context pieces of the window        | [SEP]/pad
    # window 0 (Ann Smith ##son saw; [CLS] of teacher window 0: 12 characters shared, as many as window 1's)
    expected_start = [[0, n, n, n, n, ann_start, 6, n, 15, n],
                      # window 1 (##son saw AC ##ME; teacher window 1 shares most, 17 characters)
                      [10, n, n, n, n, n, 15, 16, n, n],
                      # window 2 (AC ##ME .; teacher window 2 holds all 5 characters)
                      [20, n, n, n, n, 16, n, 25, n, n]]
    expected_end = [[100, n, n, n, n, ann_end, n, 94, 85, n],
                    [90, n, n, n, n, 94, 85, n, 84, n],
                    [80, n, n, n, n, n, 84, 75, n, n]]
    for name, logits in (("teacher_start", expected_start), ("teacher_end", expected_end)):
        expected = np.exp((np.array(logits) - np.max(logits, axis=1, keepdims=True)) / 2.0)  # softmax at T = 2
        expected /= expected.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(targets[name], expected, rtol=1e-5, atol=1e-7)
        assert targets[name].dtype == np.float32
    assert "hard_mask" not in targets
    # --train's questions: gold labels only where the answer matches the context ("bad" points elsewhere).
    # ("which ?" is 2 pieces for both: 3 teacher windows, 2 student windows per question.)
    labeled_targets = student.targets(teacher_view, {key: np.tile(value, (2, 1)) for key, value in outputs.items()},
                                      student_view, "labeled", 1.0)
    assert labeled_targets["hard_mask"].tolist() == [1.0, 1.0, 0.0, 0.0]
    np.testing.assert_allclose(labeled_targets["teacher_start"].sum(axis=1), 1.0, rtol=1e-5)


def test_student_with_its_own_vocabulary_and_windows_learns_the_teacher(runner, work, teacher, tmp_path):
    output = tmp_path / "student"
    student = work / "student"
    result = runner.invoke(app, [
        "distill", str(teacher), str(work / "unlabeled.json.gz"), str(work / "more.json"),
        "--student", str(student / "bert_config.json"), "--student-vocab", str(student / "vocab.txt"),
        "--train", str(work / "labeled.json"), "--dev", str(work / "dev.json"), "-o", str(output),
        "--max-seq-length", "32", "--epochs", "3", "--batch-size", "16", "--temperature", "3",
        "--learning-rate", "2e-2", "--no-measure-speed"])
    assert result.exit_code == 0, result.output
    summary = json.loads((output / "distill.json").read_text())
    teacher_f1 = summary["teacher_dev"]["f1"]
    assert teacher_f1 >= 0.9, summary["teacher_dev"]
    # Chance is picking one of the two names and organisations of a context: about half. Measured over
    # --seed 1-10: agreement and F1 0.975-1.0 (a student that misses the question's cue stays near 0.45).
    assert summary["agreement"] >= 0.85, summary["student_dev"]
    assert summary["student_dev"]["f1"] >= teacher_f1 - 0.08, summary
    assert set(summary["examples"]) == {"unlabeled", "labeled"} and summary["examples"]["unlabeled"] >= 1200
    # An ordinary fine-tuned SQuAD model directory, windowed as the teacher was.
    task = json.loads((output / "task.json").read_text())
    assert task["task"] == "squad" and task["max_seq_length"] == 32 and task["doc_stride"] == 16
    assert task["max_query_length"] == 8 and task["distilled_from"] == str(teacher.resolve())
    assert json.loads((output / "bert_config.json").read_text())["hidden_size"] == 16
    assert (output / "vocab.txt").read_text() == (student / "vocab.txt").read_text()
    assert (output / "model.weights.h5").is_file()
    dev = json.loads((work / "dev.json").read_text())
    ids = {qa["id"] for paragraph in dev["data"][0]["paragraphs"] for qa in paragraph["qas"]}
    assert set(json.loads((output / "predictions.json").read_text())) == ids


def test_bad_input_is_one_line_exit_2_and_writes_nothing(runner, work, teacher, tmp_path):
    student = ["--student", str(work / "student" / "bert_config.json"), "--student-vocab",
               str(work / "student" / "vocab.txt")]
    # Classification data given to a SQuAD teacher.
    tsv = tmp_path / "sentences.tsv"
    tsv.write_text("sentence\tlabel\nAnn went home\t1\n", encoding="utf-8")
    output = tmp_path / "student"
    result = runner.invoke(app, ["distill", str(teacher), str(tsv), *student, "-o", str(output)])
    assert_one_line_error(result, str(tsv))
    # Student windows too short for the teacher's doc_stride (16) and max_query_length (8).
    result = runner.invoke(app, ["distill", str(teacher), str(work / "more.json"), *student, "-o", str(output),
                                 "--max-seq-length", "20"])
    assert_one_line_error(result, "--max-seq-length 20", "at least 28")
    assert not output.exists()
