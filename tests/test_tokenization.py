"""The tokenizer gives exactly the original BERT FullTokenizer's tokens.

Three kinds of evidence: a table of cases worked out by hand; agreement with
``tests/reference_tokenizer.py`` (the original algorithm in plain Python) on
every Unicode code point, on seeded random text and on real corpora; and the
TensorFlow integration (tf.data, tf.function, SavedModel).
"""

from __future__ import annotations

import json
import random
import unicodedata

import pytest

tf = pytest.importorskip("tensorflow")

from conftest import SHARED_DATA  # noqa: E402
from data.errors import DataError  # noqa: E402
from data.tokenization import (  # noqa: E402
    SPECIAL_TOKENS,
    Tokenizer,
    Vocabulary,
    normalize,
    read_vocab_manifest,
    resolve_lowercase,
    split_words,
)
from reference_tokenizer import ReferenceTokenizer, basic_words  # noqa: E402

UNK = "[UNK]"

# Tokens the hand-worked cases need, besides the specials. NFD Hangul jamo
# for 한국 / 어 are there to show what uncased normalisation does to Korean.
HAND_TOKENS = [
    "a", "b", "c", "e", "é", "##a", "##b", "##c", "##e", "##é",
    "ab", "hello", "world", "Hello", "World", "hi", "un", "##aff", "##able",
    "que", "Qué", "¿", "?", "!", "…", ".", "—", "+", "$", "5", "##€", "##×", "`",
    "fine", "ﬁ", "##ne", "ａｂｃ", "！", "中", "文", "한국", "##어",
    "\u1112\u1161\u11ab\u1100\u116e\u11a8", "##\u110b\u1165",
    "οδος", "istanbul", "straße", "strasse",
]

# (text, lowercase, expected pieces), each worked out by hand from the
# original algorithm, with the reason in the id.
HAND_CASES = [
    pytest.param("Hello World", True, ["hello", "world"], id="lower-cased"),
    pytest.param("Hello World", False, ["Hello", "World"], id="cased-keeps-case"),
    pytest.param("héllo", True, ["hello"], id="uncased-strips-accent"),
    pytest.param("Héllo", False, [UNK], id="cased-keeps-accent"),
    pytest.param("e\u0301", False, [UNK], id="cased-combining-accent-is-part-of-the-word"),
    pytest.param("e\u0301", True, ["e"], id="uncased-drops-combining-accent"),
    pytest.param("\u0301", True, [], id="lone-accent-vanishes-uncased"),
    pytest.param("a…b", True, ["a", "…", "b"], id="ellipsis-is-one-punctuation-char-not-three-dots"),
    pytest.param("ﬁne", True, ["ﬁ", "##ne"], id="ligature-not-folded"),
    pytest.param("ＡＢＣ！", True, ["ａｂｃ", "！"], id="full-width-lowered-not-folded"),
    pytest.param("ＡＢＣ", False, [UNK], id="full-width-cased"),
    pytest.param("中文ab", True, ["中", "文", "ab"], id="cjk-each-char-a-word"),
    pytest.param("ab中", False, ["ab", "中"], id="cjk-split-off-cased"),
    pytest.param("한국어", False, ["한국", "##어"], id="korean-not-split"),
    pytest.param(
        "한국어", True, ["\u1112\u1161\u11ab\u1100\u116e\u11a8", "##\u110b\u1165"], id="korean-uncased-becomes-jamo"
    ),
    pytest.param("a\x01b", True, ["ab"], id="control-char-deleted-not-split"),
    pytest.param("a\x00b", True, ["ab"], id="nul-deleted"),
    pytest.param("a\ufffdb", True, ["ab"], id="replacement-char-deleted"),
    pytest.param("a\u200bb a\u200db a\u00adb", False, ["ab", "ab", "ab"], id="zero-width-and-soft-hyphen-deleted"),
    pytest.param("\ufeffhello", True, ["hello"], id="byte-order-mark-deleted"),
    pytest.param("a\u2028b\u2029c", True, ["a", "b", "c"], id="line-and-paragraph-separators-split"),
    pytest.param("a\tb\nc\r\n", True, ["a", "b", "c"], id="tab-newline-cr-are-spaces"),
    pytest.param("a\u00a0b\u3000c", True, ["a", "b", "c"], id="no-break-and-ideographic-spaces"),
    pytest.param("a\x0bb", True, ["ab"], id="vertical-tab-is-a-control-char"),
    pytest.param("   \t ", True, [], id="blank"),
    pytest.param("", True, [], id="empty"),
    pytest.param("¿Qué?", True, ["¿", "que", "?"], id="spanish-uncased"),
    pytest.param("¿Qué?", False, ["¿", "Qué", "?"], id="spanish-cased"),
    pytest.param("a—b", True, ["a", "—", "b"], id="em-dash-punctuation"),
    pytest.param("a+b $5", True, ["a", "+", "b", "$", "5"], id="ascii-symbols-count-as-punctuation"),
    pytest.param("a×b 5€", True, ["a", "##×", "##b", "5", "##€"], id="non-ascii-symbols-stay-in-words"),
    pytest.param("a\u1fefb", True, ["a", "`", "b"], id="greek-varia-decomposes-to-backtick-then-splits"),
    pytest.param("a\u1fefb", False, [UNK], id="greek-varia-cased-stays"),
    pytest.param("hi😀", True, [UNK], id="unknown-char-makes-whole-word-unk"),
    pytest.param("hi 😀!", True, ["hi", UNK, "!"], id="emoji-alone-unk"),
    pytest.param("a" * 201, True, [UNK], id="201-char-word-unk"),
    pytest.param("a" * 200, True, ["a"] + ["##a"] * 199, id="200-char-word-kept"),
    pytest.param("é" * 150, False, ["é"] + ["##é"] * 149, id="150-chars-300-bytes-kept"),
    pytest.param("é" * 201, False, [UNK], id="201-non-ascii-chars-unk"),
    pytest.param("e\u0301" * 150, False, [UNK], id="300-chars-with-combining-accents-cased-unk"),
    pytest.param("e\u0301" * 150, True, ["e"] + ["##e"] * 149, id="accents-stripped-before-counting"),
    pytest.param("x" * 300 + " hi", True, [UNK, "hi"], id="long-word-then-short"),
    pytest.param("unaffable", True, ["un", "##aff", "##able"], id="continuation-pieces"),
    pytest.param("ΟΔΟΣ", True, ["οδος"], id="final-sigma"),
    pytest.param("İstanbul", True, ["istanbul"], id="dotted-capital-i-lowers-then-loses-dot"),
    pytest.param("İstanbul", False, [UNK], id="dotted-capital-i-cased"),
    pytest.param("STRAßE", True, ["straße"], id="sharp-s-is-not-expanded"),
    # "[" and "]" split off and "unk", "cls" are not in this vocabulary.
    pytest.param("[UNK] [CLS]", True, [UNK] * 6, id="special-token-text-is-just-text"),
]


@pytest.fixture(scope="module")
def hand_vocab() -> Vocabulary:
    return Vocabulary.from_tokens(list(SPECIAL_TOKENS) + HAND_TOKENS)


@pytest.fixture(scope="module")
def hand_tokenizers(hand_vocab):
    return {lowercase: Tokenizer(hand_vocab, lowercase) for lowercase in (True, False)}


def _pieces(tokenizer: Tokenizer, texts: list[str]) -> list[list[str]]:
    return [[piece.decode() for piece in row] for row in tokenizer.pieces(tf.constant(texts, tf.string)).to_list()]


@pytest.mark.parametrize("text, lowercase, expected", HAND_CASES)
def test_hand_worked_cases(hand_vocab, hand_tokenizers, text, lowercase, expected):
    assert ReferenceTokenizer(hand_vocab.tokens, lowercase).tokenize(text) == expected, "reference disagrees"
    assert _pieces(hand_tokenizers[lowercase], [text]) == [expected]


def test_hand_cases_batched_together(hand_tokenizers):
    """The same cases in one batch: the long words send the batch down the word-by-word path."""
    for lowercase in (True, False):
        cases = [p.values for p in HAND_CASES if p.values[1] == lowercase]
        texts = [text for text, _, _ in cases]
        expected = [pieces for _, _, pieces in cases]
        assert _pieces(hand_tokenizers[lowercase], texts) == expected
        short = [(t, e) for t, e in zip(texts, expected) if len(t) < 150]
        assert _pieces(hand_tokenizers[lowercase], [t for t, _ in short]) == [e for _, e in short]


def test_tokenize_words_groups_pieces_by_word(hand_vocab, hand_tokenizers):
    tokenizer = hand_tokenizers[True]
    texts = ["Unaffable world!", "", "a" * 201]
    grouped = tokenizer.tokenize_words(tf.constant(texts)).to_list()
    ids = hand_vocab.token_to_id
    assert grouped == [
        [[ids["un"], ids["##aff"], ids["##able"]], [ids["world"]], [ids["!"]]],
        [],
        [[ids[UNK]]],
    ]
    assert tokenizer.tokenize(tf.constant(texts)).to_list() == [sum(words, []) for words in grouped]
    assert tokenizer.encode(texts, batch_size=2) == [sum(words, []) for words in grouped]


def test_normalize_and_split_words_keep_shape():
    texts = tf.constant([["Héllo,  Wörld!", "中文"], ["a\x00b", ""]])
    normalized = normalize(texts, lowercase=True)
    assert normalized.shape == (2, 2)
    assert [v.decode() for v in normalized.numpy().ravel()] == ["hello,  world!", " 中  文 ", "ab", ""]
    words = split_words(tf.reshape(normalized, [-1]))
    assert words.to_list() == [[b"hello", b",", b"world", b"!"], [b"\xe4\xb8\xad", b"\xe6\x96\x87"], [b"ab"], []]


# ---------------------------------------------------------------------------
# Agreement with the reference implementation
# ---------------------------------------------------------------------------


def _our_words(texts: list[str], lowercase: bool) -> list[list[str]]:
    words = split_words(normalize(tf.constant(texts, tf.string), lowercase)).to_list()
    return [[word.decode("utf-8") for word in row] for row in words]


def _in_cjk_ranges(cp: int) -> bool:
    return 0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2FA1F or 0xF900 <= cp <= 0xFAFF


@pytest.mark.parametrize("lowercase", [True, False], ids=["uncased", "cased"])
def test_code_points_normalize_and_split_like_the_original(lowercase):
    """Each code point between two letters: all of planes 0-1 (where every script
    and every Unicode 15/16 addition lives, assigned or not for Python) and
    every 16th code point beyond. Exercises the exact word-by-word path."""
    code_points = [cp for cp in range(0x20000) if not 0xD800 <= cp <= 0xDFFF] + list(range(0x20000, 0x110000, 16))
    texts = [
        " ".join(f"A{chr(cp)}b" for cp in code_points[start : start + 256])
        for start in range(0, len(code_points), 256)
    ]
    ours = _our_words(texts, lowercase)
    mismatches = [
        (text[:40], got, want)
        for text, got in zip(texts, ours)
        if got != (want := basic_words(text, lowercase))
    ]
    assert not mismatches, mismatches[:3]


@pytest.mark.parametrize("lowercase", [True, False], ids=["uncased", "cased"])
def test_assigned_code_points_tokenize_like_the_original(lowercase):
    """Ids for every code point Python knows (but the thousands of CJK
    ideographs, sampled), inside a word: the fast end-to-end path, whose
    own word splitting must agree with the original's on each of them."""
    tokens = list(SPECIAL_TOKENS) + ["a", "b", "##a", "##b", "ab"]
    tokenizer = Tokenizer(Vocabulary.from_tokens(tokens), lowercase)
    reference = ReferenceTokenizer(tokens, lowercase)
    texts = [
        f"a{chr(cp)}b"
        for cp in range(0xF0000)  # planes 15-16 are private use only
        if unicodedata.category(chr(cp)) not in ("Cn", "Cs", "Co") and (not _in_cjk_ranges(cp) or cp % 64 == 0)
    ]
    got = tokenizer.encode(texts, batch_size=8192)
    mismatches = [(text, g) for text, g in zip(texts, got) if g != reference.encode(text)]
    assert not mismatches, mismatches[:5]


# Code points to draw random text from, by kind, so every category shows up.
def _sample_pool(rng: random.Random) -> list[str]:
    by_category: dict[str, list[str]] = {}
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        by_category.setdefault(unicodedata.category(chr(cp)), []).append(chr(cp))
    pool = []
    for category, chars in sorted(by_category.items()):
        pool.extend(rng.sample(chars, min(len(chars), 40)))
    pool += list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") * 6
    pool += list(" " * 30 + ".,;:!?'\"()-[]#") + ["Σ", "ς", "İ", "ß", "ﬁ", "…", "\u0301", "\u0308", "中", "한"] * 3
    return pool


def test_random_unicode_text_matches_the_reference():
    rng = random.Random(20181031)
    pool = _sample_pool(rng)
    texts = []
    for _ in range(3000):
        length = rng.choice([0, 1, 3, 8, 20, 60])
        text = "".join(rng.choice(pool) for _ in range(length))
        if rng.random() < 0.03:  # occasionally an over-long word
            text += " " + "x" * rng.choice([199, 200, 201, 250])
        texts.append(text)
    # A small vocabulary that covers most, not all, characters and some words.
    chars = sorted({c for text in texts for word in basic_words(text, True) + basic_words(text, False) for c in word})
    known = [c for c in chars if rng.random() < 0.8]
    words = sorted({w for text in texts[:500] for w in basic_words(text, True) if 1 < len(w) < 6})
    tokens = list(SPECIAL_TOKENS) + known + ["##" + c for c in known] + words[:300]
    tokens = list(dict.fromkeys(tokens))
    vocab = Vocabulary.from_tokens(tokens)
    for lowercase in (True, False):
        reference = ReferenceTokenizer(tokens, lowercase)
        got = Tokenizer(vocab, lowercase).encode(texts, batch_size=256)
        mismatches = [(text, g) for text, g in zip(texts, got) if g != reference.encode(text)]
        assert not mismatches, (lowercase, mismatches[:3])


REAL_VOCAB = SHARED_DATA / "vocab" / "bert-base-uncased-vocab.txt"


@pytest.fixture(scope="module")
def real_vocab() -> Vocabulary:
    if not REAL_VOCAB.is_file() or not list((SHARED_DATA / "corpora").glob("*.txt")):
        pytest.skip("../shared/data (BERT vocabulary and corpora) is not present")
    return Vocabulary.load(REAL_VOCAB)


@pytest.mark.parametrize("lowercase", [True, False], ids=["uncased", "cased"])
def test_real_text_matches_the_reference(real_vocab, lowercase):
    """About 2,000 lines spread over each corpus: 100% identical ids."""
    from data.textio import iter_lines

    tokenizer = Tokenizer(real_vocab, lowercase)
    reference = ReferenceTokenizer(real_vocab.tokens, lowercase)
    for corpus in sorted((SHARED_DATA / "corpora").glob("*.txt")):
        lines = list(iter_lines(corpus))
        lines = lines[:: max(1, len(lines) // 2000)]
        got = tokenizer.encode(lines)
        mismatches = [(line, g) for line, g in zip(lines, got) if g != reference.encode(line)]
        assert not mismatches, (corpus.name, len(mismatches), mismatches[:2])


def test_real_vocabulary_facts(real_vocab):
    assert len(real_vocab) == 30522
    assert (real_vocab.pad_id, real_vocab.unk_id, real_vocab.cls_id, real_vocab.sep_id, real_vocab.mask_id) == (
        0, 100, 101, 102, 103,
    )
    # It holds "ℝ" (upper case without a lower-case form) and is still uncased.
    assert "ℝ" in real_vocab
    assert resolve_lowercase(real_vocab, None) is True


# ---------------------------------------------------------------------------
# TensorFlow integration
# ---------------------------------------------------------------------------

TEXTS = ["Hello, World!", "unaffable", "", "a" * 201 + " hi", "中文 ¿Qué?"]


def test_inside_tf_data(hand_tokenizers):
    tokenizer = hand_tokenizers[True]
    expected = tokenizer.tokenize(tf.constant(TEXTS)).to_list()
    dataset = tf.data.Dataset.from_tensor_slices(TEXTS).batch(2).map(tokenizer.tokenize)
    assert [row for batch in dataset for row in batch.to_list()] == expected
    normalized = tf.data.Dataset.from_tensor_slices(TEXTS).map(lambda text: normalize(text, True))
    assert [t.numpy() for t in normalized] == list(normalize(tf.constant(TEXTS), True).numpy())


def test_inside_tf_function(hand_tokenizers):
    tokenizer = hand_tokenizers[False]

    @tf.function
    def padded(texts):
        return tokenizer.tokenize(texts).to_tensor(default_value=-1)

    expected = tokenizer.tokenize(tf.constant(TEXTS)).to_tensor(default_value=-1)
    assert padded(tf.constant(TEXTS)).numpy().tolist() == expected.numpy().tolist()


def test_saved_model_round_trip(hand_tokenizers, tmp_path):
    tokenizer = hand_tokenizers[True]
    tf.saved_model.save(tokenizer, str(tmp_path / "tokenizer"))
    loaded = tf.saved_model.load(str(tmp_path / "tokenizer"))
    texts = tf.constant(TEXTS)
    assert loaded.tokenize(texts).to_list() == tokenizer.tokenize(texts).to_list()
    assert loaded.tokenize_words(texts).to_list() == tokenizer.tokenize_words(texts).to_list()
    assert loaded.pieces(texts).to_list() == tokenizer.pieces(texts).to_list()


# ---------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------


def _write(path, text: str | bytes):
    if isinstance(text, str):
        text = text.encode("utf-8")
    path.write_bytes(text)
    return path


SPECIALS_TEXT = "\n".join(SPECIAL_TOKENS) + "\n"


def test_vocabulary_load_save_and_lookups(tmp_path):
    crlf = _write(tmp_path / "crlf.txt", (SPECIALS_TEXT + "hello\n##lo\n").replace("\n", "\r\n"))
    vocab = Vocabulary.load(crlf)
    assert vocab.tokens == SPECIAL_TOKENS + ("hello", "##lo")
    assert len(vocab) == 7 and "hello" in vocab and "bye" not in vocab
    assert vocab.id("##lo") == 6 and vocab.token_to_id["hello"] == 5
    assert (vocab.pad_id, vocab.unk_id, vocab.cls_id, vocab.sep_id, vocab.mask_id) == (0, 1, 2, 3, 4)
    vocab.save(tmp_path / "out" / "vocab.txt")
    assert (tmp_path / "out" / "vocab.txt").read_bytes() == (SPECIALS_TEXT + "hello\n##lo\n").encode()
    again = Vocabulary.load(tmp_path / "out" / "vocab.txt")
    assert again.sha256 == vocab.sha256 and again.tokens == vocab.tokens
    assert len(vocab.sha256) == 64
    assert not list((tmp_path / "out").glob(".*tmp*"))


def test_special_ids_are_looked_up_not_assumed():
    tokens = ["[unused0]", "x", "[SEP]", "[MASK]", "[UNK]", "[CLS]", "[PAD]"]
    vocab = Vocabulary.from_tokens(tokens)
    assert (vocab.pad_id, vocab.unk_id, vocab.cls_id, vocab.sep_id, vocab.mask_id) == (6, 4, 5, 2, 3)


@pytest.mark.parametrize(
    "content, message",
    [
        (SPECIALS_TEXT + "a\nb\na\n", r"dup\.txt:8: duplicate token 'a', already at line 6"),
        ("[PAD]\n[UNK]\n[SEP]\nhello\n", r"missing required special tokens \[CLS\], \[MASK\]"),
        ((SPECIALS_TEXT + "ok\n").encode() + b"caf\xe9\n", r"dup\.txt:7: not valid UTF-8"),
        ("", r"dup\.txt: the vocabulary file is empty"),
        (SPECIALS_TEXT + "a\n\nb\n", r"dup\.txt:7: blank token"),
    ],
    ids=["duplicate", "missing-specials", "not-utf8", "empty", "blank-line"],
)
def test_vocabulary_errors_name_the_file_and_line(tmp_path, content, message):
    path = _write(tmp_path / "dup.txt", content)
    with pytest.raises(DataError, match=message):
        Vocabulary.load(path)


def test_vocabulary_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match="no such vocabulary file"):
        Vocabulary.load(tmp_path / "nope.txt")
    with pytest.raises(DataError, match="is a directory"):
        Vocabulary.load(tmp_path)


def test_from_tokens_errors():
    with pytest.raises(DataError, match="duplicate token 'x', already at id 5"):
        Vocabulary.from_tokens(list(SPECIAL_TOKENS) + ["x", "x"])
    with pytest.raises(DataError, match=r"missing required special token \[MASK\]"):
        Vocabulary.from_tokens(SPECIAL_TOKENS[:4])
    assert len(Vocabulary.from_tokens(["a"], required=())) == 1
    with pytest.raises(DataError, match=r"has no '\[CLS\]' token"):
        Vocabulary.from_tokens(["a"], required=()).cls_id


def test_resolve_lowercase(tmp_path):
    uncased = Vocabulary.load(_write(tmp_path / "u.txt", SPECIALS_TEXT + "[unused0]\nhello\nℝ\n"))
    cased = Vocabulary.load(_write(tmp_path / "c.txt", SPECIALS_TEXT + "hello\nHello\n"))
    assert resolve_lowercase(uncased, None) is True
    assert resolve_lowercase(cased, None) is False
    assert resolve_lowercase(cased, True) is True and resolve_lowercase(uncased, False) is False
    assert read_vocab_manifest(tmp_path / "u.txt") is None
    (tmp_path / "c.json").write_text(json.dumps({"lowercase": True}))
    assert read_vocab_manifest(tmp_path / "c.txt") == {"lowercase": True}
    assert resolve_lowercase(cased, None) is True  # the manifest wins over the guess
    (tmp_path / "c.json").write_text("{not json")
    with pytest.raises(DataError, match=r"c\.json:1: not valid JSON"):
        resolve_lowercase(cased, None)
