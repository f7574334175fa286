"""Classification files: TSV (quoted fields, with or without header), CSV, JSONL; labels; packing."""

import gzip
import json
import random

import numpy as np
import pytest

from data import classification as c
from data.errors import DataError


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_glue_tsv_with_header_uses_sentence_and_label(tmp_path):
    path = _write(tmp_path / "train.tsv", "sentence\tlabel\nit is good\t1\nit is bad\t0\n")
    dataset = c.read_dataset(path)
    assert dataset.columns == c.Columns("sentence", None, "label")
    assert [(e.text, e.text_pair, e.label, e.line) for e in dataset.examples] == [
        ("it is good", None, "1", 2), ("it is bad", None, "0", 3)]


def test_sentence1_defaults_to_a_pair_with_sentence2(tmp_path):
    path = _write(tmp_path / "rte.tsv", "sentence1\tsentence2\tlabel\tidx\na\tb\tx\t0\nc\td\ty\t1\n")
    dataset = c.read_dataset(path)
    assert dataset.columns == c.Columns("sentence1", "sentence2", "label")
    assert dataset.examples[1].text_pair == "d"


def test_quoted_tsv_fields_are_unquoted_and_stray_quotes_kept(tmp_path):
    rows = [
        'id\ttext\tlabel',
        '1\t"a field with a\ttab"\tpos',
        '2\t"she said ""hi"" twice"\tneg',
        '3\t"unbalanced quote stays\tpos',
        '4\tinner "quotes" stay\tneg',
        '5\t""\tpos',
    ]
    path = _write(tmp_path / "q.tsv", "\n".join(rows) + "\n")
    texts = [e.text for e in c.read_dataset(path, text_column="text").examples]
    assert texts == ["a field with a\ttab", 'she said "hi" twice', '"unbalanced quote stays', 'inner "quotes" stay', ""]


def test_split_tsv_line_edge_cases():
    assert c.split_tsv_line("a\tb\t") == ["a", "b", ""]
    assert c.split_tsv_line('"x"') == ["x"]
    assert c.split_tsv_line('"x"y\tz') == ['"x"y', "z"]
    assert c.split_tsv_line("") == [""]


def test_headerless_tsv_takes_text_first_and_label_last(tmp_path):
    path = _write(tmp_path / "plain.tsv", "good film\t1\nawful film\t0\n")
    dataset = c.read_dataset(path)
    assert dataset.columns == c.Columns("0", None, "1")
    assert [e.label for e in dataset.examples] == ["1", "0"]
    # Columns by number, e.g. CoLA's original files: source, label, mark, sentence.
    path = _write(tmp_path / "cola.tsv", "gj04\t1\t\tThe sailors rode the breeze.\ngj04\t0\t*\tThe more books.\n")
    dataset = c.read_dataset(path, text_column="3", label_column="1")
    assert [(e.text, e.label) for e in dataset.examples] == [
        ("The sailors rode the breeze.", "1"),
        ("The more books.", "0"),
    ]


def test_header_option_overrides_detection(tmp_path):
    path = _write(tmp_path / "t.tsv", "label\tsentence\nx\ty\n")
    assert len(c.read_dataset(path, text_column="1", label_column="0", header=False).examples) == 2


def test_csv_with_quoted_commas_and_newlines(tmp_path):
    path = _write(tmp_path / "d.csv", 'text,label\n"hello, world",a\n"two\nlines",b\nplain,a\n')
    dataset = c.read_dataset(path)
    assert [(e.text, e.label, e.line) for e in dataset.examples] == [
        ("hello, world", "a", 2), ("two\nlines", "b", 3), ("plain", "a", 5)]


def test_jsonl_with_numbers_as_labels(tmp_path):
    lines = [json.dumps({"premise": "p1", "hypothesis": "h1", "label": 2}),
             "",
             json.dumps({"premise": "p2", "hypothesis": "h2", "label": 0})]
    path = _write(tmp_path / "d.jsonl", "\n".join(lines) + "\n")
    dataset = c.read_dataset(path, text_column="premise", text_pair_column="hypothesis")
    assert [(e.text, e.text_pair, e.label, e.line) for e in dataset.examples] == [
        ("p1", "h1", "2", 1), ("p2", "h2", "0", 3)]


def test_gzip_files_are_read(tmp_path):
    path = tmp_path / "d.tsv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("sentence\tlabel\na\t0\nb\t1\n")
    assert len(c.read_dataset(path).examples) == 2


@pytest.mark.parametrize("name,text,fragment", [
    ("cols.tsv", "sentence\tlabel\na\t1\n", "no column 'txt' for --text-column; the columns are: sentence, label"),
    ("empty.tsv", "", "the file is empty"),
    ("blank.tsv", "\n\n", "the file is empty"),
    ("header.tsv", "sentence\tlabel\n", "holds only a header row"),
    ("fields.tsv", "sentence\tlabel\na\t1\nb\t0\textra\n", "fields.tsv:3: 3 fields, expected 2"),
    ("nolabel.tsv", "sentence\tlabel\na\t1\nb\t\n", "nolabel.tsv:3: no label in column 'label'"),
    ("bad.jsonl", '{"sentence": "a", "label": 1}\n{"sentence": "b"\n', "bad.jsonl:2: invalid JSON"),
    ("key.jsonl", '{"sentence": "a", "label": 1}\n{"text": "b", "label": 0}\n', "key.jsonl:2: no key 'sentence'"),
    ("notobj.jsonl", '[1, 2]\n', "notobj.jsonl:1: expected a JSON object"),
    ("data.xml", "a", "cannot tell the format"),
])
def test_bad_files_name_the_file_and_line(tmp_path, name, text, fragment):
    path = _write(tmp_path / name, text)
    text_column = "txt" if name == "cols.tsv" else None
    with pytest.raises(DataError) as error:
        c.read_dataset(path, text_column=text_column)
    assert fragment in str(error.value)
    assert "\n" not in str(error.value)


def test_non_utf8_is_refused_with_its_line(tmp_path):
    path = tmp_path / "latin.tsv"
    path.write_bytes(b"sentence\tlabel\ncaf\xe9\t1\n")
    with pytest.raises(DataError, match=r"latin.tsv:2: not valid UTF-8"):
        c.read_dataset(path)


def test_label_set_sorted_numerically_or_given(tmp_path):
    path = _write(tmp_path / "t.tsv", "sentence\tlabel\n" + "".join(f"s\t{n}\n" for n in (10, 2, 1, 2)))
    dataset = c.read_dataset(path)
    assert c.label_set(dataset) == ["1", "2", "10"]
    assert c.label_set(dataset, ["10", "2", "1"]) == ["10", "2", "1"]
    with pytest.raises(DataError, match=r"t.tsv:2: label '10' does not occur in --labels"):
        c.label_set(dataset, ["1", "2"])


def test_one_class_is_refused(tmp_path):
    path = _write(tmp_path / "t.tsv", "sentence\tlabel\na\tpos\nb\tpos\n")
    with pytest.raises(DataError, match="holds one class \\('pos'\\)"):
        c.label_set(c.read_dataset(path))


def test_unseen_dev_label_names_the_line(tmp_path):
    train = c.read_dataset(_write(tmp_path / "train.tsv", "sentence\tlabel\na\tpos\nb\tneg\n"))
    dev = c.read_dataset(_write(tmp_path / "dev.tsv", "sentence\tlabel\na\tpos\nb\tmaybe\n"))
    with pytest.raises(DataError, match=r"dev.tsv:3: label 'maybe' does not occur in the training file"):
        c.check_labels(dev, c.label_set(train))


def test_unlabelled_test_file_is_allowed_when_labels_are_not_required(tmp_path):
    path = _write(tmp_path / "test.tsv", "index\tsentence\n0\ta\n1\tb\n")
    dataset = c.read_dataset(path, "sentence", None, "label", require_labels=False)
    assert not dataset.has_labels and dataset.columns.label is None


def test_regression_targets_must_be_numbers(tmp_path):
    good = c.read_dataset(_write(tmp_path / "sts.tsv", "sentence1\tsentence2\tscore\na\tb\t3.8\nc\td\t0\n"),
                          label_column="score")
    assert c.regression_targets(good).tolist() == pytest.approx([3.8, 0.0])
    bad = c.read_dataset(_write(tmp_path / "bad.tsv", "sentence\tscore\na\t1\nb\thigh\n"), label_column="score")
    with pytest.raises(DataError, match=r"bad.tsv:3: label 'high' is not a finite number"):
        c.regression_targets(bad)


def _reference_truncation(a, b, max_length):
    """The original release's loop, written out independently: pop from the longer list."""
    a, b = list(a), list(b)
    while len(a) + len(b) > max_length:
        (a if len(a) > len(b) else b).pop()
    return a, b


def test_truncate_pair_matches_longest_first_popping():
    rng = random.Random(0)
    for _ in range(500):
        a = list(range(rng.randint(0, 30)))
        b = list(range(100, 100 + rng.randint(0, 30)))
        limit = rng.randint(0, 40)
        assert c.truncate_pair(a, b, limit) == _reference_truncation(a, b, limit)


def test_pack_layout_and_segments():
    ids, segments, truncated = c.pack([10, 11, 12], [20, 21], 9, cls_id=2, sep_id=3)
    assert ids == [2, 10, 11, 12, 3, 20, 21, 3] and segments == [0, 0, 0, 0, 0, 1, 1, 1] and not truncated
    ids, segments, truncated = c.pack([10, 11, 12, 13], [20, 21], 7, cls_id=2, sep_id=3)
    assert ids == [2, 10, 11, 3, 20, 21, 3] and truncated  # the longer segment lost its tail
    ids, segments, truncated = c.pack([10, 11, 12], None, 4, cls_id=2, sep_id=3)
    assert ids == [2, 10, 11, 3] and segments == [0, 0, 0, 0] and truncated


def test_featurize_pads_to_a_multiple_of_eight_and_maps_labels(tmp_path):
    path = _write(tmp_path / "t.tsv", "sentence1\tsentence2\tlabel\nx y\tz\tb\nx\tx y z\ta\n")
    dataset = c.read_dataset(path)
    vocab = {"x": 10, "y": 11, "z": 12}

    def tokenize(texts):
        return [[vocab[w] for w in text.split()] for text in texts]

    features = c.featurize(dataset, tokenize, 64, cls_id=2, sep_id=3, pad_id=0, labels=["a", "b"])
    arrays = features.arrays
    assert arrays["input_ids"].shape == (2, 8) and arrays["input_ids"].dtype == np.int32
    assert arrays["input_ids"][0].tolist() == [2, 10, 11, 3, 12, 3, 0, 0]
    assert arrays["segment_ids"][1].tolist() == [0, 0, 0, 1, 1, 1, 1, 0]
    assert arrays["input_mask"][1].tolist() == [1, 1, 1, 1, 1, 1, 1, 0]
    assert arrays["label"].tolist() == [1, 0]
    assert features.truncated == 0 and features.labelled
