"""CoNLL files, tag schemes, first-piece labels and windows over long sentences."""

import random

import numpy as np
import pytest

from data import tagging as t
from data.errors import DataError


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_tab_separated_sentences_and_skips_docstart(tmp_path):
    text = "-DOCSTART-\tO\n\nEU\tB-ORG\nrejects\tO\n\t\nPeter\tB-PER\nBlackburn\tI-PER\n\n\n"
    tagged = t.read_conll(_write(tmp_path / "a.conll", text))
    assert [s.words for s in tagged.sentences] == [("EU", "rejects"), ("Peter", "Blackburn")]
    assert [s.tags for s in tagged.sentences] == [("B-ORG", "O"), ("B-PER", "I-PER")]
    assert tagged.sentences[1].line == 6 and tagged.words == 4


def test_reads_space_separated_conll2003_columns(tmp_path):
    text = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n"
    tagged = t.read_conll(_write(tmp_path / "b.txt", text))
    assert tagged.sentences[0].tags == ("B-ORG", "O")
    chunks = t.read_conll(_write(tmp_path / "b.txt", text), tag_column=2)
    assert chunks.sentences[0].tags == ("B-NP", "B-VP")


def test_file_without_tags_for_prediction(tmp_path):
    tagged = t.read_conll(_write(tmp_path / "test.conll", "a\nb\n\nc\n"), require_tags=False)
    assert not tagged.has_tags and [s.words for s in tagged.sentences] == [("a", "b"), ("c",)]


@pytest.mark.parametrize("text,fragment", [
    ("a\tO\nb\tO\tX\n", "bad.conll:2: 3 fields, expected 2 like line 1"),
    ("", "no sentences"),
    ("-DOCSTART-\tO\n\n\n", "no sentences"),
    ("a\tO\n\tO\n", "bad.conll:2: empty token"),
    ("a\n", "rows have one field; a CoNLL row needs a token and its tag"),
])
def test_bad_files_name_the_line(tmp_path, text, fragment):
    with pytest.raises(DataError) as error:
        t.read_conll(_write(tmp_path / "bad.conll", text))
    assert fragment in str(error.value)


def test_bad_columns_are_refused(tmp_path):
    with pytest.raises(DataError, match="are the same column"):
        t.read_conll(_write(tmp_path / "x.conll", "a\tO\n"), token_column=1, tag_column=-1)
    with pytest.raises(DataError, match="--tag-column 3 is out of range; rows have 2 field"):
        t.read_conll(_write(tmp_path / "x.conll", "a\tO\n"), tag_column=3)


def _tagged(tmp_path, sentences, name="f.conll"):
    text = "\n\n".join("\n".join(f"w{i}\t{tag}" for i, tag in enumerate(tags)) for tags in sentences) + "\n"
    return t.read_conll(_write(tmp_path / name, text))


@pytest.mark.parametrize("sentences,scheme", [
    ([["B-PER", "I-PER", "O"], ["O", "B-LOC"]], "IOB2"),
    ([["I-PER", "I-PER", "O"], ["I-LOC", "B-LOC"]], "IOB1"),
    ([["B-PER", "E-PER", "S-LOC", "O"]], "IOBES"),
    ([["B-PER", "L-PER", "U-LOC"]], "IOBES"),
    ([["NN", "VB", "DT"], ["O", "NN"]], "none"),
])
def test_scheme_detection(tmp_path, sentences, scheme):
    assert t.detect_scheme(_tagged(tmp_path, sentences)) == scheme


def test_mixed_schemes_are_refused_with_both_lines(tmp_path):
    with pytest.raises(DataError, match=r"mixes tagging schemes: 'B-PER' \(line 1\) .* 'PER' \(line 3\)"):
        t.detect_scheme(_tagged(tmp_path, [["B-PER", "O", "PER"]]))
    with pytest.raises(DataError, match="IOBES 'E-PER' .* BILOU 'U-LOC'"):
        t.detect_scheme(_tagged(tmp_path, [["B-PER", "E-PER", "U-LOC"]]))


def test_dev_scheme_must_match_training(tmp_path):
    train = _tagged(tmp_path, [["B-PER", "I-PER"]], "train.conll")
    dev = _tagged(tmp_path, [["B-PER", "E-PER"]], "dev.conll")
    with pytest.raises(DataError, match="dev.conll: uses IOBES tags but the training file .* uses IOB2"):
        t.check_scheme(dev, t.detect_scheme(dev), t.detect_scheme(train), train.path)
    iob1 = _tagged(tmp_path, [["I-PER", "O"]], "iob1.conll")
    t.check_scheme(iob1, "IOB1", "IOB2", train.path)  # both BIO: fine


def test_tag_set_order_and_unseen_tags(tmp_path):
    train = _tagged(tmp_path, [["I-PER", "B-PER", "O", "B-LOC"], ["I-LOC"]], "train.conll")
    assert t.tag_set(train) == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    dev = _tagged(tmp_path, [["O", "B-MISC"]], "dev.conll")
    with pytest.raises(DataError, match=r"dev.conll:2: tag 'B-MISC' does not occur in the training file"):
        t.check_tags(dev, t.tag_set(train))
    with pytest.raises(DataError, match="every token has the tag 'O'"):
        t.tag_set(_tagged(tmp_path, [["O", "O"]], "one.conll"))


def _check_plan(counts, capacity, context):
    plan = t.plan_windows(counts, capacity, context)
    cores = [word for _, core_start, core_end, _ in plan for word in range(core_start, core_end)]
    assert cores == list(range(len(counts))), "cores tile the sentence, each word once"
    for start, core_start, core_end, end in plan:
        assert start <= core_start < core_end <= end
        assert sum(counts[start:end]) <= capacity
    return plan


def test_windows_tile_long_sentences_with_context():
    assert t.plan_windows([1, 2, 3], 6, 1) == [(0, 0, 3, 3)]
    plan = _check_plan([1, 2, 1, 3, 1, 1, 2, 1, 1, 1], 6, 1)
    assert plan == [(0, 0, 2, 3), (2, 2, 5, 6), (4, 5, 8, 9), (7, 8, 10, 10)]
    rng = random.Random(0)
    for _ in range(300):
        capacity = rng.randint(1, 20)
        counts = [rng.randint(1, capacity) for _ in range(rng.randint(1, 60))]
        _check_plan(counts, capacity, capacity // 4)


def _pieces(vocabulary):
    def tokenize(words):
        return [[vocabulary[p] for p in w.split("+") if p] for w in words]

    return tokenize


def test_featurize_labels_first_pieces_and_windows(tmp_path):
    # Words are written as their pieces joined by "+": "Ann+##s" is two pieces.
    vocabulary = {"Ann": 10, "##s": 11, "went": 12, "to": 13, "IBM": 14, "x": 15}
    sentences = "Ann+##s\tB-PER\nwent\tO\nto\tO\nIBM\tB-ORG\n\n" + "\n".join(
        f"x\t{'B-PER' if i % 5 == 0 else 'O'}" for i in range(20)) + "\n\n+\tO\nx\tO\n"
    tagged = t.read_conll(_write(tmp_path / "s.conll", sentences))
    tags = t.tag_set(tagged)
    features = t.featurize(tagged, _pieces(vocabulary), 8, cls_id=2, sep_id=3, pad_id=0, unk_id=1, tags=tags)
    arrays = features.arrays
    # Sentence 1 fits one window: [CLS] Ann ##s went to IBM [SEP], labels at the first pieces only.
    assert arrays["input_ids"][0].tolist() == [2, 10, 11, 12, 13, 14, 3, 0]
    assert arrays["label_weights"][0].tolist() == [0, 1, 0, 1, 1, 1, 0, 0]
    assert [tags[i] for i in arrays["label"][0][[1, 3, 4, 5]]] == ["B-PER", "O", "O", "B-ORG"]
    # Sentence 2 (20 words, windows of 6) is split; the empty word of sentence 3 became [UNK].
    assert features.split_sentences == 1 and features.sentences == 3
    assert arrays["input_ids"][-1].tolist()[:4] == [2, 1, 15, 3]
    assert arrays["input_mask"].sum(axis=1).max() <= 8
    # Each word is predicted exactly once: putting the gold ids back gives the gold tags.
    assembled = t.assemble(features, arrays["label"], tagged)
    assert [[tags[i] for i in sentence] for sentence in assembled] == [list(s.tags) for s in tagged.sentences]
    assert int(arrays["label_weights"].sum()) == tagged.words


def test_word_longer_than_a_window_is_cut_after_its_first_pieces(tmp_path):
    tagged = t.read_conll(_write(tmp_path / "l.conll", "a+a+a+a+a+a\tB-X\nb\tO\n"))
    features = t.featurize(tagged, _pieces({"a": 5, "b": 6}), 5, 2, 3, 0, 1, tags=t.tag_set(tagged))
    assert features.long_words == 1 and len(features) == 2
    assert features.arrays["input_ids"][0].tolist() == [2, 5, 5, 5, 3]
    assert t.assemble(features, features.arrays["label"], tagged) == [[t.tag_set(tagged).index("B-X"), 0]]
    assert np.all(features.arrays["input_mask"].sum(axis=1) <= 5)
