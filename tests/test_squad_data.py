"""SQuAD data: offsets, reading, windows, featurisation round trip, post-processing and official-style scoring.

Scores are checked against values worked out by hand and against a small
independent re-implementation of the official scripts' normalisation written
here (not shared with data.squad).
"""

from __future__ import annotations

import json
import random
import re
import unicodedata

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from conftest import SHARED_DATA  # noqa: E402
from data import squad  # noqa: E402
from data.errors import DataError  # noqa: E402
from data.tokenization import SPECIAL_TOKENS, Tokenizer, Vocabulary  # noqa: E402
from test_tokenization import HAND_CASES, HAND_TOKENS, _sample_pool  # noqa: E402

# ---------------------------------------------------------------------------
# Tokenizer.tokenize_with_offsets
# ---------------------------------------------------------------------------


def _offsets(tokenizer, texts):
    ids, starts, ends = tokenizer.tokenize_with_offsets(tf.constant(texts, tf.string))
    return ids.to_list(), starts.to_list(), ends.to_list()


def _check_offsets(tokenizer, texts, retokenize=True):
    """Ids equal tokenize()'s; spans are increasing word spans; each span alone tokenizes to its pieces."""
    ids, starts, ends = _offsets(tokenizer, texts)
    assert ids == tokenizer.tokenize(tf.constant(texts, tf.string)).to_list()
    words, expected = [], []
    for text, row_ids, row_starts, row_ends in zip(texts, ids, starts, ends):
        data = text.encode("utf-8")
        pieces_by_span: dict = {}
        for piece, span in zip(row_ids, zip(row_starts, row_ends)):
            pieces_by_span.setdefault(span, []).append(piece)
        previous_end = 0
        for start, end in pieces_by_span:  # in order, not overlapping, inside the text
            assert previous_end <= start < end <= len(data), (text, start, end)
            previous_end = end
        words += [data[s:e].decode("utf-8") for s, e in pieces_by_span]
        expected += list(pieces_by_span.values())
    if retokenize and words:
        # Each word's original text, tokenized alone, gives exactly that word's pieces.
        alone = tokenizer.tokenize(tf.constant(words, tf.string)).to_list()
        wrong = [(w, a, e) for w, a, e in zip(words, alone, expected) if a != e]
        assert not wrong, wrong[:3]


RANDOM = random.Random(5)
# Random text from every Unicode category (but the final sigma, which depends on its neighbours).
RANDOM_POOL = [c for c in _sample_pool(RANDOM) if c not in "Σς"]
RANDOM_TEXTS = ["".join(RANDOM.choice(RANDOM_POOL) for _ in range(RANDOM.choice([0, 3, 10, 40]))) for _ in range(400)]
RANDOM_TEXTS += ["x" * 201 + ",y", "é" * 201 + " ok", "Hello,  World!\n¿Qué?"]


@pytest.fixture(scope="module")
def tokenizers():
    """Uncased and cased tokenizers whose vocabulary covers the hand cases and part of the random text."""
    chars = {c for t in RANDOM_TEXTS for c in t.lower() if not c.isspace() and unicodedata.category(c)[0] not in "CZ"}
    chars = sorted(chars)[:300]
    tokens = list(dict.fromkeys(list(SPECIAL_TOKENS) + HAND_TOKENS + chars + ["##" + c for c in chars]))
    vocab = Vocabulary.from_tokens(tokens)
    return {lowercase: Tokenizer(vocab, lowercase) for lowercase in (True, False)}


@pytest.mark.parametrize("lowercase", [True, False], ids=["uncased", "cased"])
def test_offsets_on_hand_cases_and_random_unicode_text(tokenizers, lowercase):
    texts = [p.values[0] for p in HAND_CASES] + RANDOM_TEXTS
    _check_offsets(tokenizers[lowercase], texts)


def test_offsets_worked_by_hand(tokenizers):
    ids, starts, ends = _offsets(tokenizers[True], ["¿Qué?  unaffable中\x00文", "a\u2260b", "ΟΔΟΣ ΑΣ.Α Α.Σ."])
    # Byte spans of words; the pieces of one word share its span; the deleted NUL belongs to no word.
    assert list(zip(starts[0], ends[0])) == [(0, 2), (2, 6), (6, 7), (9, 18), (9, 18), (9, 18), (18, 21),
                                             (22, 25)]
    # Uncased "≠" is "=" + U+0338: the mark goes, "=" splits off as punctuation, and keeps "≠"'s span.
    assert list(zip(starts[1], ends[1])) == [(0, 1), (1, 4), (4, 5)]
    # Final sigmas: ids as tokenize() (checked in _check_offsets), spans of the Greek words.
    _check_offsets(tokenizers[True], ["ΟΔΟΣ ΑΣ.Α Α.Σ."], retokenize=False)
    assert list(zip(starts[2], ends[2]))[:2] == [(0, 8), (9, 13)]


def test_offsets_on_real_text_with_the_bert_vocabulary():
    vocab_path = SHARED_DATA / "vocab" / "bert-base-uncased-vocab.txt"
    corpora = sorted((SHARED_DATA / "corpora").glob("*.txt")) if SHARED_DATA.is_dir() else []
    if not vocab_path.is_file() or not corpora:
        pytest.skip("../shared/data is not present")
    from data.textio import iter_lines

    lines = []
    for corpus in corpora:
        corpus_lines = list(iter_lines(corpus))
        lines += corpus_lines[:: max(1, len(corpus_lines) // 300)]
    _check_offsets(Tokenizer(Vocabulary.load(vocab_path), True), lines)


def test_offsets_are_plain_graph_ops(tokenizers):
    """No Python inside the graph, so `bert export` can save it in a SavedModel (tested there)."""
    graph = tokenizers[True].tokenize_with_offsets.get_concrete_function().graph
    types = {op.type for op in graph.get_operations()}
    assert "RegexSplitWithOffsets" in types and not [t for t in types if "PyFunc" in t]


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------


def _document(paragraphs, version="1.1"):
    return {"version": version, "data": [{"title": "t", "paragraphs": paragraphs}]}


def _write(path, value):
    path.write_text(value if isinstance(value, str) else json.dumps(value), encoding="utf-8")
    return path


def test_reads_v1_and_v2_and_reports_mismatched_answers(tmp_path):
    paragraphs = [{"context": "Denver Broncos won. Carolina lost.", "qas": [
        {"id": "a", "question": "Who won?", "answers": [{"text": "Denver Broncos", "answer_start": 0}]},
        {"id": "b", "question": "Who lost?", "answers": [{"text": "Carolina", "answer_start": 21}]},
    ]}]
    v1 = squad.read_squad(_write(tmp_path / "v1.json", _document(paragraphs)))
    assert not v1.version_2 and v1.mismatched == ["b"]  # "Carolina" starts at 20
    assert v1.questions[0] == squad.Question("a", "Who won?", 0, (squad.Answer("Denver Broncos", 0),), False)
    paragraphs[0]["qas"].append({"id": "c", "question": "Who tied?", "answers": [], "is_impossible": True})
    v2 = squad.read_squad(_write(tmp_path / "v2.json", _document(paragraphs, "v2.0")))
    assert v2.version_2 and v2.unanswerable == 1 and v2.questions[2].answers == ()


BAD_FILES = {
    "malformed json": ('{"data": [\n  {"paragraphs": [}\n]}', "bad.json:2:19: not valid JSON"),
    "no data key": ({"version": "1.1"}, 'has no "data" key'),
    "no context": (_document([{"qas": []}]), 'data[0].paragraphs[0] has no "context" string'),
    "no question": (_document([{"context": "x", "qas": [{"id": "q1", "answers": []}]}]),
                    "data[0].paragraphs[0].qas[0] (id 'q1') has no \"question\" string"),
    "no answers": (_document([{"context": "x", "qas": [{"id": "q1", "question": "?", "answers": []}]}]),
                   'has no answers and is not marked "is_impossible": true'),
    "empty": (_document([{"context": "x", "qas": []}]), "holds no questions"),
    "outside": (_document([{"context": "short", "qas": [{"id": "q1", "question": "?",
                                                         "answers": [{"text": "shorter", "answer_start": 2}]}]}]),
                "lies outside its context of 5 characters"),
    "duplicate id": (_document([{"context": "x", "qas": [
        {"id": "q", "question": "?", "answers": [{"text": "x", "answer_start": 0}]},
        {"id": "q", "question": "?", "answers": [{"text": "x", "answer_start": 0}]}]}]),
        "repeats the id of data[0].paragraphs[0].qas[0]"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_are_one_clear_error(tmp_path, case):
    content, message = BAD_FILES[case]
    with pytest.raises(DataError) as error:
        squad.read_squad(_write(tmp_path / "bad.json", content))
    assert message in str(error.value) and "bad.json" in str(error.value) and "\n" not in str(error.value)


def test_lengths_are_checked():
    squad.check_lengths(384, 128, 64)
    with pytest.raises(DataError, match=r"--doc-stride 40 must be less than a window's context room .* = 40"):
        squad.check_lengths(64, 40, 21)
    with pytest.raises(DataError, match="leaves no room for the context"):
        squad.check_lengths(32, 8, 30)


# ---------------------------------------------------------------------------
# Windows and the max-context rule
# ---------------------------------------------------------------------------


def test_window_spans_like_the_original():
    assert squad.window_spans(20, 10, 5) == [(0, 10), (5, 10), (10, 10)]
    assert squad.window_spans(22, 10, 5) == [(0, 10), (5, 10), (10, 10), (15, 7)]
    assert squad.window_spans(7, 10, 5) == [(0, 7)]
    assert squad.window_spans(0, 10, 5) == [(0, 0)]


def test_max_context_picks_the_most_central_window():
    spans = [(0, 10), (5, 10)]
    chosen = squad.max_context(spans, 15)
    assert chosen.sum(axis=0).tolist() == [1] * 15  # every piece scored exactly once
    # piece 6: min(6, 3) = 3 in window 0 vs min(1, 8) = 1 in window 1; piece 8: 1 vs 3;
    # piece 7: 2 vs 2, equal lengths: the first window.
    assert [int(np.argmax(chosen[:, p])) for p in (4, 6, 7, 8, 12)] == [0, 0, 0, 1, 1]
    # Equal context on the short side: the longer window wins (0.01 per piece). Piece 4 has
    # min(3, 3) + 0.07 in window (1, 7) and min(4, 3) + 0.08 in window (0, 8).
    assert squad.max_context([(1, 7), (0, 8)], 8)[:, 4].tolist() == [False, True]


def test_best_spans_respect_the_constraints():
    start = np.array([0.0, 5.0, 1.0, 4.0, 0.0])
    end = np.array([9.0, 0.0, 2.0, 1.0, 3.0])
    allowed = np.array([False, True, True, True, True])
    starts, ends, scores = squad.best_spans(start, end, allowed, allowed, max_answer_length=3, count=10)
    # [CLS] (0) never; end >= start; at most 3 long; (1, 4) is 4 long.
    # Equal scores: the earlier span first.
    assert list(zip(starts.tolist(), ends.tolist(), scores.tolist()))[:5] == [
        (1, 2, 7.0), (3, 4, 7.0), (1, 3, 6.0), (1, 1, 5.0), (3, 3, 5.0)]
    assert len(starts) == 9
    assert squad.answer_span(start, end, allowed, allowed, 3) == (1, 2, 7.0)
    scored = np.array([False, False, False, True, True])  # start 1 is scored in another window
    assert squad.answer_span(start, end, scored, allowed, 3) == (3, 4, 7.0)
    assert squad.answer_span(start, end, np.zeros(5, bool), allowed, 3) is None


# ---------------------------------------------------------------------------
# Featurisation round trip
# ---------------------------------------------------------------------------

WORDS = ["alpha", "beta", "gamma", "Delta", "café", "naïve", "Ünïcode", "x-ray", "U.S.", "中文", "über", "ok",
         "unaffable", "d'Arc", "1,000", "3.5%"]
SEPARATORS = [" ", " ", " ", "  ", "\n", " \t ", "\u00a0"]


def _generated_squad(count: int, seed: int) -> dict:
    """Questions whose answers are runs of 1-3 words (punctuation attached, odd whitespace inside) anywhere in
    contexts long enough to need several windows."""
    rng = random.Random(seed)
    paragraphs = []
    for _ in range(count):
        words = [rng.choice(WORDS) + rng.choice(["", "", "", ",", ".", ")"]) for _ in range(rng.randint(5, 40))]
        starts = []
        text = rng.choice(["", "(", " "])
        for word in words:
            starts.append(len(text))
            text += word + rng.choice(SEPARATORS)
        qas = []
        for number in range(3):
            first = rng.randrange(len(words))
            last = min(len(words) - 1, first + rng.randint(0, 2))
            answer = text[starts[first]:starts[last] + len(words[last])]
            begin = starts[first]
            qas.append({"id": f"{len(paragraphs)}-{number}",
                        "question": " ".join(rng.choices(WORDS, k=rng.randint(1, 8))),
                        "answers": [{"text": answer, "answer_start": begin}]})
        qas.append({"id": f"{len(paragraphs)}-n", "question": "nothing here?", "answers": [], "is_impossible": True})
        paragraphs.append({"context": text, "qas": qas})
    return _document(paragraphs, "v2.0")


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    directory = tmp_path_factory.mktemp("generated")
    path = _write(directory / "generated.json", _generated_squad(60, 3))
    tokens = list(SPECIAL_TOKENS) + ["alpha", "beta", "##ta", "gam", "##ma", "café", "na", "##ïve", "ok", "中",
                                     "文", ",", ".", ")", "(", "%", "-", "'", "x", "ray", "3", "5", "1", "000", "u",
                                     "s", "d", "arc", "##f", "un", "##aff", "##able", "über", "delta", "?"]
    vocab = Vocabulary.from_tokens(tokens)
    return squad.read_squad(path), vocab, {lowercase: Tokenizer(vocab, lowercase) for lowercase in (True, False)}


def _oracle_logits(features):
    """Logits that point at each window's target (10 at the target, 0 elsewhere)."""
    count, length = features.arrays["input_ids"].shape
    start_logits = np.zeros((count, length), np.float32)
    end_logits = np.zeros((count, length), np.float32)
    start_logits[np.arange(count), features.arrays["start_positions"]] = 10.0
    end_logits[np.arange(count), features.arrays["end_positions"]] = 10.0
    return start_logits, end_logits


@pytest.mark.parametrize("lowercase", [True, False], ids=["uncased", "cased"])
def test_gold_answers_come_back_exactly_through_post_processing(generated, lowercase):
    data, vocab, tokenizers = generated
    tokenizer = tokenizers[lowercase]
    # Windows of at least 40 - 8 - 3 = 29 context pieces, 6 apart: they overlap by 23 or more pieces, twice
    # the longest answer, so each answer's start is scored in a window that holds the whole answer (see
    # data.squad.max_context for what happens otherwise; the defaults overlap by some 200 pieces).
    features = squad.featurize(data, tokenizer, max_seq_length=40, doc_stride=6, max_query_length=8)
    ids = features.arrays["input_ids"]
    assert ids.shape[1] == 40 and (ids[:, 0] == vocab.cls_id).all()
    # Windows: [CLS] question [SEP] context [SEP], segment 1 from the context on.
    row = 0
    q = features.doc_offset[row] - 2
    assert (ids[row, q + 1] == vocab.sep_id
            and ids[row, features.doc_offset[row] + features.doc_length[row]] == vocab.sep_id)
    assert features.arrays["segment_ids"][row].tolist() == \
        [0] * (q + 2) + [1] * (features.doc_length[row] + 1) + [0] * (40 - q - 3 - features.doc_length[row])
    assert features.query_truncated.any()  # some questions were longer than 8 pieces
    # Several windows per context, and answers that a window boundary cuts through.
    windows = np.bincount(features.question)
    assert windows.max() >= 3
    crossing = longest = 0
    for index, question in enumerate(data.questions):
        if question.is_impossible:
            continue
        base = features.piece_splits[question.context]
        pieces = squad.answer_pieces(features.piece_starts[base:features.piece_splits[question.context + 1]],
                                     features.piece_ends[base:features.piece_splits[question.context + 1]],
                                     question.answers[0].start,
                                     question.answers[0].start + len(question.answers[0].text))
        longest = max(longest, pieces[1] - pieces[0] + 1)
        for row in features.windows_of(index):
            begin, end = features.doc_start[row], features.doc_start[row] + features.doc_length[row]
            crossing += begin <= pieces[0] < end <= pieces[1] or begin <= pieces[1] < end and pieces[0] < begin
    assert crossing >= 10 and features.out_of_window >= 10 and longest <= 23 / 2
    start_logits, end_logits = _oracle_logits(features)
    predicted = squad.predict_answers(data, features, start_logits, end_logits, n_best_size=5,
                                      max_answer_length=30, version_2_with_negative=True)
    wrong = [(q.id, q.answers[0].text if q.answers else "", predicted.answers[q.id])
             for q in data.questions if predicted.answers[q.id] != (q.answers[0].text if q.answers else "")]
    assert not wrong, wrong[:5]
    assert squad.score(data, predicted.answers)["exact"] == 100.0
    first = data.questions[0].id
    assert len(predicted.nbest[first]) <= 6 and any(e["text"] == "" for e in predicted.nbest[first])
    assert abs(sum(e["probability"] for e in predicted.nbest[first]) - 1.0) < 1e-6


def test_training_targets_point_at_the_answer_or_cls(generated):
    data, vocab, tokenizers = generated
    tokenizer = tokenizers[False]
    features = squad.featurize(data, tokenizer, max_seq_length=32, doc_stride=8, max_query_length=8)
    start, end = features.arrays["start_positions"], features.arrays["end_positions"]
    impossible = np.array([data.questions[q].is_impossible for q in features.question])
    assert (start[impossible] == 0).all() and (end[impossible] == 0).all()
    targeted = start > 0
    assert (end[targeted] >= start[targeted]).all()
    assert (start[targeted] >= features.doc_offset[targeted]).all()
    assert (end[targeted] < (features.doc_offset + features.doc_length)[targeted]).all()
    # Every answerable question has at least one window that holds the whole answer.
    assert set(features.question[targeted].tolist()) == {i for i, q in enumerate(data.questions) if not q.is_impossible}


def test_features_are_cached_beside_the_data_or_in_the_fallback(generated, tmp_path):
    data, vocab, tokenizers = generated
    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / "train.json"
    path.write_bytes(data.path.read_bytes())
    own = squad.read_squad(path)
    tokenizer = tokenizers[True]
    first, cached, hit = squad.cached_featurize(own, tokenizer, 32, 8, 8)
    assert not hit and cached.parent == folder and cached.name.startswith("train.features-")
    again, cached_again, hit = squad.cached_featurize(own, tokenizer, 32, 8, 8)
    assert hit and cached_again == cached
    for key, value in first.arrays.items():
        assert np.array_equal(value, again.arrays[key]), key
    assert np.array_equal(first.is_max_context, again.is_max_context)
    # Another option or casing is another cache file.
    assert not squad.cached_featurize(own, tokenizer, 32, 9, 8)[2]
    assert not squad.cached_featurize(own, tokenizers[False], 32, 8, 8)[2]
    folder.chmod(0o555)  # read-only data folder: the fallback is used
    try:
        _, fallback, hit = squad.cached_featurize(own, tokenizer, 32, 8, 7, fallback_dir=tmp_path / "out")
        assert not hit and fallback.parent == tmp_path / "out"
    finally:
        folder.chmod(0o755)


# ---------------------------------------------------------------------------
# Scoring: hand-worked cases and an independent normalisation
# ---------------------------------------------------------------------------


def _independent_normalize(text: str) -> str:
    """The official normalisation, rewritten independently for these tests."""
    lowered = text.lower()
    no_punctuation = "".join(ch for ch in lowered if ch not in set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"))
    no_articles = re.sub(r"\b(?:a|an|the)\b", " ", no_punctuation)
    return " ".join(no_articles.split())


NORMALISATION_CASES = ["The Denver Broncos!", "an apple, a day", "U.S.", "theater of the absurd", "  A  ",
                       "«Paris»", "Ünïcode Ａ", "the", "rock-n-roll", "O'Neil's", "\tthe\nend "]


@pytest.mark.parametrize("text", NORMALISATION_CASES)
def test_normalisation_matches_an_independent_version(text):
    assert squad.normalize_answer(text) == _independent_normalize(text)


@pytest.mark.parametrize("prediction, gold, exact, f1", [
    ("The Broncos", "Broncos", 1.0, 1.0),  # article dropped
    ("Denver Broncos.", "denver broncos", 1.0, 1.0),  # case and punctuation
    ("U.S.", "US", 1.0, 1.0),  # punctuation inside a word goes
    ("an apple pie", "apple", 0.0, 2 / 3),  # P = 1/2, R = 1
    ("x x y", "x y", 0.0, 0.8),  # repeated tokens count once each: P = 2/3, R = 1
    ("«Paris»", "Paris", 0.0, 0.0),  # only ASCII punctuation is removed
    ("theater", "the theater", 1.0, 1.0),  # "the" only as a whole word
    ("Broncos", "Carolina Panthers", 0.0, 0.0),
])
def test_exact_match_and_f1_worked_by_hand(prediction, gold, exact, f1):
    assert squad.exact_match_score(prediction, gold) == exact
    assert squad.f1_score(prediction, gold) == pytest.approx(f1)
    assert squad.f1_score(prediction, gold, version_2=True) == pytest.approx(f1)


def test_empty_answers_v1_and_v2_rules():
    assert squad.f1_score("", "", version_2=False) == 0.0  # v1.1: no common token
    assert squad.f1_score("", "", version_2=True) == 1.0  # v2.0: both empty
    assert squad.f1_score("the", "", version_2=True) == 1.0  # "the" normalises to nothing
    assert squad.f1_score("x", "", version_2=True) == 0.0


def _scored_file(tmp_path, version_2: bool):
    qas = [
        {"id": "q1", "question": "?", "answers": [{"text": "Denver Broncos", "answer_start": 0},
                                                  {"text": "Broncos", "answer_start": 7}]},
        {"id": "q2", "question": "?", "answers": [{"text": "Carolina Panthers", "answer_start": 20}]},
        {"id": "q3", "question": "?", "answers": [{"text": "Super Bowl", "answer_start": 41}]},
    ]
    if version_2:
        qas += [{"id": "q4", "question": "?", "answers": [], "is_impossible": True},
                {"id": "q5", "question": "?", "answers": [], "is_impossible": True}]
    context = "Denver Broncos beat Carolina Panthers in Super Bowl 50."
    return squad.read_squad(_write(tmp_path / "gold.json", _document([{"context": context, "qas": qas}])))


def test_file_scores_worked_by_hand_v1(tmp_path):
    gold = _scored_file(tmp_path, False)
    predictions = {"q1": "the Broncos", "q2": "Panthers"}  # q3 missing: counts 0
    result = squad.score(gold, predictions)
    # q1 exact on the second gold; q2 F1 = 2/3 (P 1, R 1/2); q3 0.
    assert result["exact"] == pytest.approx(100 / 3)
    assert result["f1"] == pytest.approx(100 * (1 + 2 / 3) / 3)
    assert result["total"] == 3 and result["missing"] == 1 and not result["version_2"]


def test_file_scores_worked_by_hand_v2_with_null_odds(tmp_path):
    gold = _scored_file(tmp_path, True)
    predictions = {"q1": "Denver Broncos", "q2": "", "q3": "Super", "q4": "", "q5": "Broncos"}
    result = squad.score(gold, predictions)
    # Has answer: q1 1/1, q2 0/0, q3 EM 0 F1 2/3. No answer: q4 1/1, q5 0/0.
    assert result["HasAns_exact"] == pytest.approx(100 / 3) and result["HasAns_total"] == 3
    assert result["HasAns_f1"] == pytest.approx(100 * (1 + 2 / 3) / 3)
    assert result["NoAns_exact"] == result["NoAns_f1"] == 50.0 and result["NoAns_total"] == 2
    assert result["exact"] == pytest.approx(40.0) and result["f1"] == pytest.approx(100 * (2 + 2 / 3) / 5)
    odds = {"q1": -3.0, "q2": 0.5, "q3": -1.0, "q4": 2.0, "q5": 1.5}
    with_odds = squad.score(gold, predictions, odds, na_prob_threshold=1.0)
    # Odds above 1.0 count as "no answer": q5 becomes right (q4 was already).
    assert with_odds["exact"] == pytest.approx(60.0) and with_odds["NoAns_exact"] == 100.0
    # Sweep (by odds: q1, q3, q2, q5, q4): start at 2 (all no-answer); +1 (q1) = 3 best at -3.0;
    # +0 (q3 EM) ; +0 (q2 empty) ; q5 answered "Broncos": -1 ; q4 empty: 0. Best EM 3/5 at -3.0.
    assert with_odds["best_exact"] == pytest.approx(60.0) and with_odds["best_exact_thresh"] == -3.0
    # F1: 2 + 1 (q1) = 3, + 2/3 (q3) = 3.667 at -1.0, then q5 -1.
    assert with_odds["best_f1"] == pytest.approx(100 * (3 + 2 / 3) / 5) and with_odds["best_f1_thresh"] == -1.0


def test_null_answer_decision_and_threshold():
    data = squad.SquadFile(path=None, version="2", contexts=["aa bb cc"],
                           questions=[squad.Question("q", "?", 0, (), True)], mismatched=[])
    features = squad.SquadFeatures(
        arrays={"input_ids": np.zeros((1, 6), np.int32), "start_positions": np.zeros(1, np.int32)},
        question=np.zeros(1, np.int32), doc_start=np.zeros(1, np.int32), doc_offset=np.array([2], np.int32),
        doc_length=np.array([3], np.int32), is_max_context=np.array([[0, 0, 1, 1, 1, 0]], bool),
        piece_starts=np.array([0, 3, 6]), piece_ends=np.array([2, 5, 8]), piece_splits=np.array([0, 3]),
        trainable=np.ones(1, bool), has_answer=np.zeros(1, bool), query_truncated=np.zeros(1, bool))
    start = np.array([[1.0, 0, 2.0, 0, 0, 0]])
    end = np.array([[1.0, 0, 0, 1.5, 0, 0]])
    # Best span "aa bb" scores 3.5; null 2.0: difference -1.5.
    answer = squad.predict_answers(data, features, start, end, 20, 30, True, 0.0)
    assert answer.answers == {"q": "aa bb"} and answer.null_odds == {"q": -1.5} and answer.best_span == {"q": "aa bb"}
    assert squad.predict_answers(data, features, start, end, 20, 30, True, -2.0).answers == {"q": ""}
    assert squad.predict_answers(data, features, start, end, 20, 30, False).answers == {"q": "aa bb"}


def test_reading_prediction_files(tmp_path):
    assert squad.read_predictions(_write(tmp_path / "p.json", {"a": "x"})) == {"a": "x"}
    with pytest.raises(DataError, match="p2.json: the value for 'a' is not a string"):
        squad.read_predictions(_write(tmp_path / "p2.json", {"a": 1}))
    with pytest.raises(DataError, match=r"p3.json:1:\d+: not valid JSON"):
        squad.read_predictions(_write(tmp_path / "p3.json", "{'a': 1}"))
    with pytest.raises(DataError, match="is not a number"):
        squad.read_predictions(_write(tmp_path / "o.json", {"a": "x"}), "null odds")
