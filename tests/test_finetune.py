"""`bert finetune classify` and `bert finetune tag` end to end on generated, learnable tasks, and bad input."""

import json
import shutil

import pytest

from bert_cli.main import app
from cli_helpers import assert_one_line_error
from finetune_helpers import (
    NUMBERS,
    pair_rows,
    sentiment_rows,
    tagged_sentences,
    write_config,
    write_conll,
    write_pretrained_dir,
    write_tsv,
    write_vocab,
)

tf = pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("finetune")
    write_vocab(d)
    write_config(d)
    write_tsv(d / "sent_train.tsv", ["sentence", "label"], sentiment_rows(640, 1))
    write_tsv(d / "sent_dev.tsv", ["sentence", "label"], sentiment_rows(128, 2))
    write_tsv(d / "sent_test.tsv", ["sentence"], [(text,) for text, _ in sentiment_rows(20, 3)])
    write_tsv(d / "pair_train.tsv", ["sentence1", "sentence2", "label"], pair_rows(640, 4))
    write_tsv(d / "pair_dev.tsv", ["sentence1", "sentence2", "label"], pair_rows(160, 5))
    write_conll(d / "tag_train.conll", tagged_sentences(360, 6, longest=24))
    write_conll(d / "tag_dev.conll", tagged_sentences(80, 7, longest=24))
    untagged = [[(word, "O") for word, _ in sentence] for sentence in tagged_sentences(10, 8)]
    (d / "tag_test.conll").write_text(
        "\n\n".join("\n".join(word for word, _ in s) for s in untagged) + "\n", encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def pretrained(work):
    return write_pretrained_dir(work)


def _tiny(work, learning_rate="2e-3"):
    return ["--model", str(work / "bert_config.json"), "--vocab", str(work / "vocab.txt"), "--max-seq-length", "32",
            "--batch-size", "32", "--learning-rate", learning_rate]


def _summary(output):
    return json.loads((output / "finetune.json").read_text())


def _no_temporaries(output):
    leftovers = [p.name for p in output.rglob(".*")]
    assert not leftovers, leftovers


def test_single_sentence_classifier_learns_and_stops_early(runner, work, tmp_path):
    output = tmp_path / "sst"
    result = runner.invoke(app, ["finetune", "classify", str(work / "sent_train.tsv"), "-o", str(output),
                                 "--dev", str(work / "sent_dev.tsv"), "--test", str(work / "sent_test.tsv"),
                                 "--epochs", "12", "--early-stopping", "2", *_tiny(work, "3e-3")])
    assert result.exit_code == 0, result.output
    summary = _summary(output)
    assert summary["dev"]["accuracy"] >= 0.95 and summary["dev"]["mcc"] >= 0.9
    assert summary["stopped_early"] and summary["stopped_early"] < summary["train_steps"]
    evaluations = summary["evaluations"]
    assert evaluations[-1]["step"] == summary["stopped_early"]
    assert sum(e["step"] > summary["best"]["step"] for e in evaluations) == 2  # patience 2
    task = json.loads((output / "task.json").read_text())
    assert task["task"] == "classify" and task["labels"] == ["neg", "pos"] and task["regression"] is False
    assert task["pair"] is False and task["max_seq_length"] == 32 and task["lowercase"] is False
    assert task["metric"]["name"] == "accuracy" and task["metric"]["value"] == summary["dev"]["accuracy"]
    rows = (output / "predictions.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["line", "prediction", "label", "neg", "pos"] and len(rows) == 129
    line, predicted, gold, p_neg, p_pos = rows[1].split("\t")
    assert line == "2" and abs(float(p_neg) + float(p_pos) - 1) < 1e-5
    test_rows = (output / "test_predictions.tsv").read_text().splitlines()
    assert test_rows[0].split("\t") == ["line", "prediction", "neg", "pos"] and len(test_rows) == 21
    for name in ("bert_config.json", "vocab.txt", "encoder.weights.h5", "model.weights.h5", "run.json"):
        assert (output / name).is_file(), name
    assert (output / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "dev by label" in result.stdout and "stopped early" in result.stdout
    _no_temporaries(output)


def test_pair_classifier_learns_from_a_model_directory(runner, work, pretrained, tmp_path):
    output = tmp_path / "pairs"
    result = runner.invoke(app, ["finetune", "classify", str(work / "pair_train.tsv"), "-o", str(output),
                                 "--dev", str(work / "pair_dev.tsv"), "--init", str(pretrained), "--epochs", "6",
                                 "--max-seq-length", "32", "--batch-size", "32", "--learning-rate", "2e-3"])
    assert result.exit_code == 0, result.output
    assert _summary(output)["dev"]["accuracy"] >= 0.9
    task = json.loads((output / "task.json").read_text())
    assert task["pair"] is True and (task["text_column"], task["text_pair_column"]) == ("sentence1", "sentence2")
    assert task["labels"] == ["0", "1"] and "f1" in _summary(output)["dev"]


def test_tags_option_admits_a_dev_tag_the_training_file_lacks(runner, work, tmp_path):
    # The training file has O, B-ORG, B-PER, I-PER; the dev file adds B-LOC, which --tags names.
    dev = tmp_path / "dev.conll"
    dev.write_text((work / "tag_dev.conll").read_text() + "\nParis\tB-LOC\nlies\tO\n", encoding="utf-8")
    output = tmp_path / "ner-tags"
    result = runner.invoke(app, ["finetune", "tag", str(work / "tag_train.conll"), "-o", str(output),
                                 "--dev", str(dev), "--tags", "O,B-PER,I-PER,B-ORG,B-LOC", "--epochs", "1",
                                 *_tiny(work, "3e-3"), "--max-seq-length", "16"])
    assert result.exit_code == 0, result.output
    assert json.loads((output / "task.json").read_text())["labels"] == ["O", "B-PER", "I-PER", "B-ORG", "B-LOC"]
    assert _summary(output)["details"]["entities"]["LOC"]["support"] == 1


def test_tagger_learns_across_windows_and_writes_conll(runner, work, tmp_path):
    output = tmp_path / "ner"
    result = runner.invoke(app, ["finetune", "tag", str(work / "tag_train.conll"), "-o", str(output),
                                 "--dev", str(work / "tag_dev.conll"), "--test", str(work / "tag_test.conll"),
                                 "--epochs", "5", *_tiny(work, "3e-3"), "--max-seq-length", "16"])
    assert result.exit_code == 0, result.output
    summary = _summary(output)
    assert summary["dev"]["f1"] >= 0.95 and summary["dev"]["accuracy"] >= 0.97
    assert set(summary["details"]["entities"]) == {"overall", "PER", "ORG"}
    assert "split into" in result.stdout  # some sentences needed several windows
    task = json.loads((output / "task.json").read_text())
    assert task["task"] == "tag" and task["scheme"] == "IOB2"
    assert task["labels"] == ["O", "B-ORG", "B-PER", "I-PER"]
    # Predictions line up with the input words, sentence by sentence.
    from data.tagging import read_conll

    dev = read_conll(work / "tag_dev.conll")
    predicted = read_conll(output / "predictions.conll", tag_column=2)
    assert [s.words for s in predicted.sentences] == [s.words for s in dev.sentences]
    gold_column = read_conll(output / "predictions.conll", tag_column=1)
    assert [s.tags for s in gold_column.sentences] == [s.tags for s in dev.sentences]
    test_lines = (output / "test_predictions.conll").read_text().split("\n\n")[0].splitlines()
    assert all(len(line.split("\t")) == 2 for line in test_lines)
    _no_temporaries(output)


def test_regression_from_jsonl_resumes_when_rerun(runner, work, tmp_path):
    import random

    rng = random.Random(9)

    def rows(count):
        lines = []
        for _ in range(count):
            value = rng.randrange(4)
            words = rng.choices(["w1", "w2", "w3"], k=3) + [NUMBERS[value]]
            rng.shuffle(words)
            lines.append(json.dumps({"text": " ".join(words), "score": value + 0.5}))
        return "\n".join(lines) + "\n"

    (tmp_path / "train.jsonl").write_text(rows(320), encoding="utf-8")
    (tmp_path / "dev.jsonl").write_text(rows(64), encoding="utf-8")
    output = tmp_path / "sts"
    args = ["finetune", "classify", str(tmp_path / "train.jsonl"), "-o", str(output), "--dev",
            str(tmp_path / "dev.jsonl"), "--regression", "--label-column", "score", *_tiny(work, "5e-3")]
    first = runner.invoke(app, args + ["--epochs", "2"])
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, args + ["--epochs", "7"])
    assert second.exit_code == 0, second.output
    assert "resuming from" in second.stderr and "at step 20" in second.stderr
    summary = _summary(output)
    assert [e["step"] for e in summary["evaluations"]] == [10, 20, 30, 40, 50, 60, 70]
    assert summary["dev"]["pearson"] >= 0.9 and summary["best"]["metric"] == "pearson"
    rows = (output / "predictions.tsv").read_text().splitlines()
    assert rows[0] == "line\tprediction\tlabel" and len(rows) == 65
    assert json.loads((output / "task.json").read_text())["regression"] is True


def _bad(work, tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


BAD_CASES = {
    "wrong column": (lambda w, t: ["classify", str(w / "sent_train.tsv"), "--text-column", "review"],
                     "no column 'review' for --text-column; the columns are: sentence, label"),
    "empty file": (lambda w, t: ["classify", str(_bad(w, t, "empty.tsv", ""))], "empty.tsv: the file is empty"),
    "one class": (lambda w, t: ["classify", str(_bad(w, t, "one.tsv", "sentence\tlabel\na\tpos\nb\tpos\n"))],
                  "holds one class ('pos')"),
    "wrong field count": (lambda w, t: ["classify", str(_bad(w, t, "f.tsv", "sentence\tlabel\na\t1\nb\t0\tx\n"))],
                          "f.tsv:3: 3 fields, expected 2"),
    "missing label": (lambda w, t: ["classify", str(_bad(w, t, "m.tsv", "sentence\tlabel\na\t1\nb\t\nc\t0\n"))],
                      "m.tsv:3: no label in column 'label'"),
    "unseen dev label": (lambda w, t: ["classify", str(w / "sent_train.tsv"), "--dev",
                                       str(_bad(w, t, "d.tsv", "sentence\tlabel\na\tpos\nb\tmeh\n"))],
                         "d.tsv:3: label 'meh' does not occur in the training file"),
    "mixed schemes": (lambda w, t: ["tag", str(_bad(w, t, "x.conll", "a\tB-PER\nb\tI-PER\n\nc\tPER\n"))],
                      "mixes tagging schemes"),
    "unseen dev tag": (lambda w, t: ["tag", str(w / "tag_train.conll"), "--dev",
                                     str(_bad(w, t, "y.conll", "a\tO\nb\tB-LOC\n"))],
                       "y.conll:2: tag 'B-LOC' does not occur in the training file"),
    "train tag not in --tags": (lambda w, t: ["tag", str(_bad(w, t, "z.conll", "a\tO\nb\tB-PER\n")),
                                              "--tags", "O,B-LOC"],
                                "z.conll: tag 'B-PER' is not in --tags"),
    "repeated --tags": (lambda w, t: ["tag", str(w / "tag_train.conll"), "--tags", "O,O"],
                        "--tags 'O,O': give two or more different"),
    "too long": (lambda w, t: ["classify", str(w / "sent_train.tsv"), "--max-seq-length", "128"],
                 "--max-seq-length 128 is more than the model's max_position_embeddings 64"),
    "bad metric": (lambda w, t: ["classify", str(w / "sent_train.tsv"), "--metric", "bleu"],
                   "--metric 'bleu' is not a metric of this task; use one of accuracy, macro_f1, mcc, f1, loss"),
    "early stopping without dev": (lambda w, t: ["classify", str(w / "sent_train.tsv"), "--early-stopping", "2"],
                                   "--early-stopping needs --dev"),
    "zero batch": (lambda w, t: ["classify", str(w / "sent_train.tsv"), "--batch-size", "0"],
                   "--batch-size must be at least 1"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_is_one_line_and_exit_2(runner, work, tmp_path, case):
    make_args, expected = BAD_CASES[case]
    output = tmp_path / "out"
    args = ["finetune", *make_args(work, tmp_path), "-o", str(output)]
    if "--max-seq-length" not in args:
        args += ["--max-seq-length", "32"]
    result = runner.invoke(app, args + ["--model", str(work / "bert_config.json"), "--vocab", str(work / "vocab.txt")])
    assert_one_line_error(result, expected)
    assert not (output / "task.json").exists()


def test_starting_point_is_checked(runner, work, pretrained, tmp_path):
    train = str(work / "sent_train.tsv")
    tagger = tmp_path / "tagger"
    shutil.copytree(pretrained, tagger)
    (tagger / "task.json").write_text(json.dumps({"task": "tag", "labels": ["O", "B-X"]}), encoding="utf-8")
    cases = [
        (["--init", str(tagger)], "is a fine-tuned 'tag' model; bert finetune classify starts from a pre-trained"),
        (["--init", str(pretrained), "--model", "tiny"], "not both"),
        ([], "give --init MODEL_DIR"),
        (["--model", "tiny"], "--model tiny needs --vocab"),
        (["--init", str(tmp_path)], "not a model directory"),
        (["--init", str(pretrained), "--vocab", str(work / "vocab.txt")], "brings its own vocab.txt"),
    ]
    for extra, expected in cases:
        result = runner.invoke(app, ["finetune", "classify", train, "-o", str(tmp_path / "o"), *extra])
        assert result.exit_code == 2, (extra, result.output)
        assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1, (extra, result.stderr)


def test_output_holding_other_files_is_refused(runner, work, tmp_path):
    output = tmp_path / "busy"
    output.mkdir()
    (output / "notes.txt").write_text("mine", encoding="utf-8")
    result = runner.invoke(app, ["finetune", "classify", str(work / "sent_train.tsv"), "-o", str(output),
                                 *_tiny(work)])
    assert result.exit_code == 2 and "is not empty and holds no fine-tuning run" in result.stderr
    assert (output / "notes.txt").read_text() == "mine"


def test_heads_shapes_and_what_they_train(work):
    from keras import ops

    from models.config import BertConfig
    from models.heads import build_classifier, build_tagger

    config = BertConfig.from_json_file(work / "bert_config.json")
    inputs = {"token_ids": ops.ones((3, 8), "int32"), "segment_ids": ops.zeros((3, 8), "int32"),
              "padding_mask": ops.ones((3, 8), "int32")}
    classifier = build_classifier(config, 4)
    assert tuple(classifier(inputs).shape) == (3, 4)
    regressor = build_classifier(config, 1, regression=True)
    assert tuple(regressor(inputs).shape) == (3,)
    tagger = build_tagger(config, 5, dtype="mixed_bfloat16")
    logits = tagger(inputs)
    assert tuple(logits.shape) == (3, 8, 5) and logits.dtype == "float32"
    # Only dropout + one dense layer is added; the tagger leaves the unused pooler alone.
    added = len(classifier.trainable_weights) - len(classifier.backbone.trainable_weights)
    assert added == 2
    assert not any("pooled_dense" in w.path for w in tagger.trainable_weights)
