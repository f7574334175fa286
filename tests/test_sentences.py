"""The sentence rule and the paragraph-as-document rule, on cases written out by hand."""

import pytest

from data.sentences import paragraphs_to_documents, split_sentences


@pytest.mark.parametrize(
    "text, expected",
    [
        ("This is one. This is two.", ["This is one.", "This is two."]),
        ("Is it ready? Yes! Ship it.", ["Is it ready?", "Yes!", "Ship it."]),
        # Abbreviations before a capital letter do not end a sentence.
        ("Use a language, e.g. Python, for this. It works.", ["Use a language, e.g. Python, for this.", "It works."]),
        ("Mr. Smith met Dr. Jones. They talked.", ["Mr. Smith met Dr. Jones.", "They talked."]),
        ("That is, i.e. The rest of it. Next.", ["That is, i.e. The rest of it.", "Next."]),
        ("See Fig. 3 and item No. 5 here. Done.", ["See Fig. 3 and item No. 5 here.", "Done."]),
        ("Compare lists vs. Tuples today. Done now.", ["Compare lists vs. Tuples today.", "Done now."]),
        ("Apples, pears, etc. Are fruit.", ["Apples, pears, etc. Are fruit."]),
        ("(e.g. Python) is a language. Yes.", ["(e.g. Python) is a language.", "Yes."]),
        # Initials: one capital letter, or several dotted letters.
        ("J. R. R. Tolkien wrote it. He was English.", ["J. R. R. Tolkien wrote it.", "He was English."]),
        ("The U.S. Army is old. It is big.", ["The U.S. Army is old.", "It is big."]),
        # ...but a single lower-case letter is a variable ending the sentence.
        ("The function returns x. Then it stops.", ["The function returns x.", "Then it stops."]),
        # Numbers and dotted names have no space inside.
        ("Pi is about 3.14 in value. It is irrational.", ["Pi is about 3.14 in value.", "It is irrational."]),
        ("Call os.path.join on them. It returns a str.", ["Call os.path.join on them.", "It returns a str."]),
        ("Python 3.11. Next one.", ["Python 3.11.", "Next one."]),
        ("The sum is 4. 5 comes next.", ["The sum is 4.", "5 comes next."]),
        # Closing quotes and brackets stay with their sentence; opening ones start the next.
        ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
        ('"Why?" she asked. He shrugged.', ['"Why?" she asked.', "He shrugged."]),
        ("(See above.) Next one.", ["(See above.)", "Next one."]),
        ('It ended. "Really?" Yes.', ["It ended.", '"Really?"', "Yes."]),
        ("It is “done.” Then more.", ["It is “done.”", "Then more."]),
        # A lower-case next word never starts a sentence.
        ("It is done. then more text", ["It is done. then more text"]),
        ("Wait... Then go.", ["Wait...", "Then go."]),
        # Trailing text without a period is the last sentence.
        ("First sentence. And then no period", ["First sentence.", "And then no period"]),
        ("no punctuation at all", ["no punctuation at all"]),
        # Whitespace, line breaks included, collapses to single spaces.
        ("  A   line\nbreak here.\tNext  one. ", ["A line break here.", "Next one."]),
        ("", []),
        ("  \n\t ", []),
    ],
)
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected


def test_splitting_a_sentence_again_gives_it_back():
    for text in ["Mr. Smith met Dr. Jones.", 'He said "Stop."', "Python 3.11.", "J. R. R. Tolkien wrote it."]:
        assert split_sentences(text) == [text]


def test_each_paragraph_with_two_sentences_is_a_document():
    lines = [
        "Heading without a period",
        "",
        "The first paragraph is hard-wrapped",
        "over two lines. It has two sentences.",
        "   ",  # whitespace only: still a blank line
        "A single sentence is not a document.",
        "",
        "",
        "The last paragraph. It has no blank line after it.\n",
    ]
    assert list(paragraphs_to_documents(lines)) == [
        ["The first paragraph is hard-wrapped over two lines.", "It has two sentences."],
        ["The last paragraph.", "It has no blank line after it."],
    ]


def test_min_sentences_can_keep_single_sentence_paragraphs():
    lines = ["One.", "", "Two. Three.", ""]
    assert list(paragraphs_to_documents(lines, min_sentences=1)) == [["One."], ["Two.", "Three."]]
    assert list(paragraphs_to_documents([])) == []
