"""`bert predict`: a model directory and its export give the same answers; inputs from arguments, files, stdin."""

import json

import pytest

import serving_helpers as sh
from bert_cli import predicting
from bert_cli.main import app
from cli_helpers import assert_one_line_error
from data.errors import DataError

CLASSIFY = ("text",)
PAIR = ("text", "text_pair")
SQUAD = ("question", "context")


# ----------------------------------------------------------------------------
# Reading inputs (no TensorFlow)
# ----------------------------------------------------------------------------


def test_tsv_with_and_without_header(tmp_path):
    with_header = tmp_path / "a.tsv"
    with_header.write_text('label\tsentence2\tsentence1\nx\tsecond "b"\tfirst a\ny\tfour\tthree\n')
    assert predicting.read_file(with_header, PAIR, {}, False) == [
        {"text": "first a", "text_pair": 'second "b"'}, {"text": "three", "text_pair": "four"}]
    headerless = tmp_path / "b.tsv"
    headerless.write_text("one\ttwo\tignored\nthree\tfour\tignored\n")
    assert predicting.read_file(headerless, PAIR, {}, False)[1] == {"text": "three", "text_pair": "four"}
    assert predicting.read_file(headerless, CLASSIFY, {}, False)[0] == {"text": "one"}
    named = tmp_path / "c.csv"
    named.write_text("premise,hypothesis\n\"a, b\",c\n")
    columns = {"text": "premise", "text_pair": "hypothesis"}  # the training file's columns, from task.json
    assert predicting.read_file(named, PAIR, columns, False) == [{"text": "a, b", "text_pair": "c"}]
    short = tmp_path / "d.tsv"
    short.write_text("only one field\n")
    with pytest.raises(DataError, match=r"d.tsv:1: 1 field"):
        predicting.read_file(short, PAIR, {}, False)


def test_jsonl_text_lines_and_squad_json(tmp_path):
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text('{"sentence": "a", "id": 7}\n\n{"text": "b"}\n{"words": ["Ann", "Smith"]}\n')
    assert predicting.read_file(jsonl, CLASSIFY, {}, True) == [{"text": "a", "id": 7}, {"text": "b"},
                                                                {"text": "Ann Smith"}]
    with pytest.raises(DataError, match=r"a.jsonl:4: no 'text' key"):
        predicting.read_file(jsonl, CLASSIFY, {}, False)
    lines = tmp_path / "a.txt"
    lines.write_text("first line\n\nthird\tline\n")
    assert predicting.read_file(lines, CLASSIFY, {}, False) == [{"text": "first line"}, {"text": ""},
                                                                 {"text": "third\tline"}]
    squad = tmp_path / "dev.json"
    squad.write_text(json.dumps({"version": "v2.0", "data": [{"title": "t", "paragraphs": [
        {"context": "Ann lives in Paris.", "qas": [{"id": "q1", "question": "Where?", "answers": []},
                                                   {"id": "q2", "question": "Who?", "answers": []}]}]}]}))
    assert predicting.read_file(squad, SQUAD, {}, False) == [
        {"id": "q1", "question": "Where?", "context": "Ann lives in Paris."},
        {"id": "q2", "question": "Who?", "context": "Ann lives in Paris."}]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a"}\n{oops\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: not valid JSON"):
        predicting.read_file(bad, CLASSIFY, {}, False)


def test_stdin_and_arguments():
    assert predicting.read_stream(['{"question": "q", "context": "c"}'], SQUAD, {}, False) == [
        {"question": "q", "context": "c"}]
    assert predicting.read_stream(["a\tb", "c\td"], PAIR, {}, False)[1] == {"text": "c", "text_pair": "d"}
    assert predicting.from_arguments(PAIR, ["a"], ["b"], [], []) == [{"text": "a", "text_pair": "b"}]
    assert predicting.from_arguments(SQUAD, [], [], ["q"], ["c"]) == [{"question": "q", "context": "c"}]
    from bert_cli.errors import UserError

    with pytest.raises(UserError, match="one --pair TEXT per TEXT"):
        predicting.from_arguments(PAIR, ["a", "b"], ["c"], [], [])
    with pytest.raises(UserError, match="single texts"):
        predicting.from_arguments(CLASSIFY, ["a"], ["b"], [], [])
    with pytest.raises(UserError, match="--question Q --context C"):
        predicting.from_arguments(SQUAD, ["a"], [], [], [])


# ----------------------------------------------------------------------------
# The command, on model directories and exports
# ----------------------------------------------------------------------------

tf = pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from typer.testing import CliRunner

    d = tmp_path_factory.mktemp("predict")
    made = {"classify": sh.write_classifier(d / "classify"), "tag": sh.write_tagger(d / "tag", seed=12),
            "pretrained": sh.write_pretrained(d / "pretrained")}
    for name in ("classify", "pretrained"):
        result = CliRunner().invoke(app, ["export", str(made[name]), str(d / f"{name}-export")])
        assert result.exit_code == 0, result.output
        made[f"{name}-export"] = d / f"{name}-export"
    return made


def _jsonl(result):
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_model_directory_and_export_give_the_same_answers(runner, models, tmp_path):
    texts = sh.texts(40, 7) + ["", "great " * 500]
    path = tmp_path / "inputs.txt"
    path.write_text("\n".join(texts) + "\n")
    from_directory = _jsonl(runner.invoke(app, ["predict", str(models["classify"]), "--input", str(path),
                                                "--batch-size", "16"]))
    from_export = _jsonl(runner.invoke(app, ["predict", str(models["classify-export"]), "--input", str(path),
                                             "--jsonl"]))
    assert [r["text"] for r in from_directory] == texts
    assert [r["label"] for r in from_directory] == [r["label"] for r in from_export]
    assert len({r["label"] for r in from_directory}) > 1
    for a, b in zip(from_directory, from_export):
        assert set(a["probabilities"]) == {"neg", "pos", "neutral"}
        assert max(abs(a["probabilities"][k] - b["probabilities"][k]) for k in a["probabilities"]) <= 2e-6
    # The export as the demo uses it: one text as an argument.
    single = _jsonl(runner.invoke(app, ["predict", str(models["classify-export"]), texts[3]]))
    assert len(single) == 1 and single[0]["label"] == from_export[3]["label"]
    assert single[0]["probabilities"] == pytest.approx(from_export[3]["probabilities"], abs=2e-6)


def test_table_on_a_terminal(runner, models, monkeypatch):
    from bert_cli.commands import predict

    monkeypatch.setattr(predict, "_is_terminal", lambda: True)
    result = runner.invoke(app, ["predict", str(models["classify-export"]), "great w1", "bad w2 [x]"])
    assert result.exit_code == 0, result.output
    assert "probability" in result.stdout and "bad w2 [x]" in result.stdout and "{" not in result.stdout


def test_tagger_from_stdin(runner, models):
    texts = ["Ann Smith w1 ACME", "", "Bobs " * 30]
    records = _jsonl(runner.invoke(app, ["predict", str(models["tag"])], input="\n".join(texts) + "\n"))
    assert [r["words"] for r in records] == [t.split() for t in texts]
    assert all(len(r["tags"]) == len(r["words"]) and set(r["tags"]) <= set(sh.TAGS) for r in records)
    assert [r["tags"] for r in records] == sh.reference_tags(models["tag"], texts, 12)


def test_bad_targets_and_inputs(runner, models, tmp_path):
    assert_one_line_error(
        runner.invoke(app, ["predict", str(models["pretrained-export"]), "text"]), "feature extractor"
    )
    assert_one_line_error(runner.invoke(app, ["predict", str(models["pretrained"]), "text"]), "not fine-tuned")
    assert_one_line_error(runner.invoke(app, ["predict", str(tmp_path), "text"]), "neither a model directory")
    assert_one_line_error(runner.invoke(app, ["predict", str(models["classify"]), "a", "--input", "x.tsv"]), "not both")
    assert_one_line_error(runner.invoke(app, ["predict", str(models["classify"]), "--input", str(tmp_path / "no.tsv")]),
                    "no such file")
    assert_one_line_error(runner.invoke(app, ["predict", str(models["classify-export"]), "--question", "q",
                                        "--context", "c"]), "SQuAD")
    assert_one_line_error(runner.invoke(app, ["predict", str(models["classify-export"])], input=""), "no examples")
