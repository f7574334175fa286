"""`bert finetune squad` and `bert score squad` end to end, on a generated, learnable extractive task, and bad input.

The task: contexts of filler words that mention one person (a first name,
sometimes with a surname) and one organisation (an all-capital word);
"who ...?" asks for the person, "which ...?" for the organisation and, in
the v2 set, "where ...?" has no answer. The pattern is learnable from the
words alone, and the question decides which span is wanted.
"""

import json
import random

import pytest

from bert_cli.main import app
from cli_helpers import assert_one_line_error

tf = pytest.importorskip("tensorflow")

import pretrain_helpers  # noqa: E402
from finetune_helpers import write_pretrained_dir  # noqa: E402

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
FILLERS = [f"w{i}" for i in range(150)]
NAMES = ["Ann", "Bob", "Cid", "Dee", "Eve", "Fay", "Gus", "Hal"]
SURNAMES = ["Smith", "Jones", "Brown", "Lee"]
ORGS = ["ACME", "IBM", "NASA", "BBC", "UN"]
VOCAB = SPECIALS + FILLERS + NAMES + SURNAMES + ORGS + ["who", "which", "where", "?", ".", ","]
CONFIG = {**pretrain_helpers.TINY_CONFIG, "vocab_size": len(VOCAB)}


def generated_squad(paragraphs: int, seed: int, unanswerable: bool = False, longest: int = 40) -> dict:
    rng = random.Random(seed)
    result = []
    for number in range(paragraphs):
        person = " ".join([rng.choice(NAMES)] + ([rng.choice(SURNAMES)] if rng.random() < 0.5 else []))
        mentions = [("P", person), ("O", rng.choice(ORGS))]
        rng.shuffle(mentions)
        words = rng.choices(FILLERS, k=rng.randint(8, longest))
        first, second = sorted(rng.sample(range(len(words) + 1), 2))
        parts = words[:first] + [mentions[0]] + words[first:second] + [mentions[1]] + words[second:]
        text, spans = "", {}
        for part in parts:
            if text:
                text += rng.choice([" ", " ", "  ", ", "])
            if isinstance(part, tuple):
                spans[part[0]] = (len(text), part[1])
                part = part[1]
            text += part
        text += "."
        qas = []
        for kind, cue in (("P", "who"), ("O", "which")):
            start, answer = spans[kind]
            qas.append({"id": f"{seed}-{number}-{kind}", "answers": [{"text": answer, "answer_start": start}],
                        "question": " ".join([cue] + rng.choices(FILLERS, k=rng.randint(1, 4))) + " ?"})
        if unanswerable:
            for qa in qas:
                qa["is_impossible"] = False
            qas.append({"id": f"{seed}-{number}-N", "answers": [], "is_impossible": True,
                        "question": " ".join(["where"] + rng.choices(FILLERS, k=rng.randint(1, 4))) + " ?"})
        result.append({"context": text, "qas": qas})
    return {"version": "2.0" if unanswerable else "1.1", "data": [{"title": "generated", "paragraphs": result}]}


def _write_json(path, value):
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("squad")
    pretrain_helpers.write_vocab(d, VOCAB)
    pretrain_helpers.write_config(d, CONFIG)
    _write_json(d / "train.json", generated_squad(800, 1))
    _write_json(d / "dev.json", generated_squad(40, 2))
    _write_json(d / "train2.json", generated_squad(40, 3, unanswerable=True, longest=70))
    _write_json(d / "dev2.json", generated_squad(15, 4, unanswerable=True, longest=70))
    return d


@pytest.fixture(scope="module")
def pretrained(work):
    return write_pretrained_dir(work)


def _tiny(work):
    return ["--model", str(work / "bert_config.json"), "--vocab", str(work / "vocab.txt"), "--max-seq-length", "64",
            "--doc-stride", "24", "--max-query-length", "16"]


def test_tiny_model_learns_generated_squad_and_bert_score_agrees(runner, work, tmp_path):
    output = tmp_path / "squad"
    result = runner.invoke(app, ["finetune", "squad", str(work / "train.json"), "-o", str(output),
                                 "--dev", str(work / "dev.json"), *_tiny(work), "--epochs", "4",
                                 "--batch-size", "32", "--learning-rate", "3e-3"])
    assert result.exit_code == 0, result.output
    summary = json.loads((output / "finetune.json").read_text())
    assert summary["dev"]["exact_match"] >= 0.9 and summary["dev"]["f1"] >= 0.9
    assert summary["train_steps"] <= 300
    assert "cached in" in result.stderr and "dev scores" in result.stdout
    task = json.loads((output / "task.json").read_text())
    assert {key: task[key] for key in ("task", "max_seq_length", "doc_stride", "max_query_length", "max_answer_length",
                                       "n_best_size", "version_2_with_negative", "null_score_diff_threshold",
                                       "lowercase")} == {
        "task": "squad", "max_seq_length": 64, "doc_stride": 24, "max_query_length": 16, "max_answer_length": 30,
        "n_best_size": 20, "version_2_with_negative": False, "null_score_diff_threshold": 0.0, "lowercase": False}
    predictions = json.loads((output / "predictions.json").read_text())
    dev = json.loads((work / "dev.json").read_text())
    gold = {qa["id"]: qa["answers"][0]["text"] for p in dev["data"][0]["paragraphs"] for qa in p["qas"]}
    assert set(predictions) == set(gold)
    # Answers come out of the context with its case ("Ann Smith", "NASA").
    assert sum(predictions[q] == gold[q] for q in gold) >= 0.9 * len(gold)
    nbest = json.loads((output / "nbest_predictions.json").read_text())
    assert nbest[next(iter(gold))][0]["text"] == predictions[next(iter(gold))]
    assert not (output / "null_odds.json").exists()
    assert (output / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    for name in ("bert_config.json", "vocab.txt", "encoder.weights.h5", "model.weights.h5"):
        assert (output / name).is_file(), name
    # The same predictions scored by `bert score squad`: the numbers of the run (0-100).
    scored = runner.invoke(app, ["score", "squad", str(work / "dev.json"), str(output / "predictions.json"), "--json"])
    assert scored.exit_code == 0, scored.output
    official = json.loads(scored.stdout)
    assert set(official) == {"exact_match", "f1"}
    assert official["exact_match"] == pytest.approx(100 * summary["dev"]["exact_match"])
    assert official["f1"] == pytest.approx(100 * summary["dev"]["f1"])
    table = runner.invoke(app, ["score", "squad", str(work / "dev.json"), str(output / "predictions.json")])
    assert table.exit_code == 0 and f"{official['f1']:.2f}" in table.stdout


def test_v2_from_a_model_directory_writes_null_odds_and_suggests_a_threshold(runner, work, pretrained, tmp_path):
    output = tmp_path / "squad2"
    result = runner.invoke(app, ["finetune", "squad", str(work / "train2.json"), "-o", str(output),
                                 "--dev", str(work / "dev2.json"), "--init", str(pretrained), "--max-seq-length", "48",
                                 "--doc-stride", "12", "--max-query-length", "8", "--epochs", "1",
                                 "--batch-size", "16", "--n-best-size", "5", "--null-score-diff-threshold", "0.5"])
    assert result.exit_code == 0, result.output
    assert "SQuAD 2.0" in result.stdout and "unanswerable" in result.stdout
    assert "--null-score-diff-threshold" in result.stdout  # the best threshold on dev, suggested
    task = json.loads((output / "task.json").read_text())
    assert task["version_2_with_negative"] is True and task["null_score_diff_threshold"] == 0.5
    assert task["n_best_size"] == 5 and task["max_seq_length"] == 48
    null_odds = json.loads((output / "null_odds.json").read_text())
    predictions = json.loads((output / "predictions.json").read_text())
    assert set(null_odds) == set(predictions)
    assert all((predictions[q] == "") == (odds > 0.5) for q, odds in null_odds.items())
    nbest = json.loads((output / "nbest_predictions.json").read_text())
    assert all(len(entries) <= 6 and any(e["text"] == "" for e in entries) for entries in nbest.values())
    summary = json.loads((output / "finetune.json").read_text())
    assert "NoAns_total" in summary["details"]["scores"] and "best_f1_threshold" in summary["details"]["threshold"]
    scored = runner.invoke(app, ["score", "squad", str(work / "dev2.json"), str(output / "predictions.json"),
                                 "--null-odds", str(output / "null_odds.json"), "--json"])
    assert scored.exit_code == 0, scored.output
    official = json.loads(scored.stdout)
    assert list(official)[:3] == ["exact", "f1", "total"] and "best_f1_thresh" in official
    assert official["NoAns_total"] == 15


def _bad(work, tmp_path, name, value):
    path = tmp_path / name
    path.write_text(value if isinstance(value, str) else json.dumps(value), encoding="utf-8")
    return str(path)


def _document(qas, context="Ann went home."):
    return {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": context, "qas": qas}]}]}


BAD_CASES = {
    "malformed json": (lambda w, t: [_bad(w, t, "m.json", '{"data": [}')], "m.json:1:11: not valid JSON"),
    "missing key": (lambda w, t: [_bad(w, t, "k.json", {"data": [{"title": "x"}]})],
                    'data[0] has no "paragraphs" list'),
    "empty data": (lambda w, t: [_bad(w, t, "e.json", {"version": "1.1", "data": []})], "e.json: holds no questions"),
    "answer outside": (lambda w, t: [_bad(w, t, "o.json", _document(
        [{"id": "q", "question": "who?", "answers": [{"text": "Ann", "answer_start": 40}]}]))],
        "answer 0 ('Ann' at 40) lies outside its context of 14 characters"),
    "doc stride": (lambda w, t: [str(w / "train.json"), "--doc-stride", "45"],
                   "--doc-stride 45 must be less than a window's context room"),
    "too long": (lambda w, t: [str(w / "train.json"), "--max-seq-length", "128"],
                 "--max-seq-length 128 is more than the model's max_position_embeddings 64"),
    "version 1 on v2 data": (lambda w, t: [str(w / "train2.json"), "--version-1"],
                             "unanswerable questions (is_impossible) but --version-1 was given"),
    "bad metric": (lambda w, t: [str(w / "train.json"), "--metric", "accuracy"],
                   "use one of f1, exact_match, loss"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_is_one_line_and_exit_2(runner, work, tmp_path, case):
    make_args, expected = BAD_CASES[case]
    output = tmp_path / "out"
    args = ["finetune", "squad", *make_args(work, tmp_path), "-o", str(output), *_tiny(work)]
    if args.count("--max-seq-length") > 1:  # the case's own value wins
        index = len(args) - 1 - args[::-1].index("--max-seq-length")
        del args[index:index + 2]
    if args.count("--doc-stride") > 1:
        index = len(args) - 1 - args[::-1].index("--doc-stride")
        del args[index:index + 2]
    result = runner.invoke(app, args)
    assert_one_line_error(result, expected)
    assert not (output / "task.json").exists()


def test_model_directory_without_weights_is_refused(runner, work, pretrained, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(pretrained, broken)
    (broken / "encoder.weights.h5").unlink()
    result = runner.invoke(app, ["finetune", "squad", str(work / "train.json"), "-o", str(tmp_path / "o"),
                                 "--init", str(broken)])
    assert result.exit_code == 2 and "not a model directory (missing encoder.weights.h5)" in result.stderr


def test_score_command_bad_input(runner, work, tmp_path):
    predictions = _write_json(tmp_path / "p.json", {"nobody": "x"})
    result = runner.invoke(app, ["score", "squad", str(work / "dev.json"), str(predictions)])
    assert result.exit_code == 2 and "none of its 1 question ids is in" in result.stderr
    odds = _write_json(tmp_path / "odds.json", {"nobody": 1.0})
    result = runner.invoke(app, ["score", "squad", str(work / "dev.json"), str(predictions), "--null-odds", str(odds)])
    assert result.exit_code == 2 and "null odds only apply to v2.0 data" in result.stderr
    broken = tmp_path / "broken.json"
    broken.write_text('{"a": ', encoding="utf-8")
    result = runner.invoke(app, ["score", "squad", str(work / "dev.json"), str(broken)])
    assert result.exit_code == 2 and "broken.json:1:7: not valid JSON" in result.stderr
