"""bert demo's planning and plumbing (the full demo is run by hand: it takes minutes)."""

import json

from bert_cli import demo


def test_the_budget_scales_steps_and_epochs_and_the_default_fits_fifteen_minutes():
    small, default, large = demo.plan_for(3), demo.plan_for(demo.DEFAULT_MINUTES), demo.plan_for(30)
    assert small.train_steps < default.train_steps < large.train_steps
    assert small.classify_epochs <= default.classify_epochs < large.classify_epochs
    assert small.squad_epochs <= default.squad_epochs < large.squad_epochs
    assert (small.train_steps, small.classify_epochs, small.squad_epochs) == (100, 1.0, 1.0)  # the floors
    estimate = (demo.FIXED_SECONDS + default.train_steps * demo.PRETRAIN_SECONDS_PER_STEP
                + default.classify_epochs * demo.CLASSIFY_SECONDS_PER_EPOCH
                + default.squad_epochs * demo.SQUAD_SECONDS_PER_EPOCH)
    assert estimate <= 15 * 60


def test_dev_inputs_take_one_sentence_per_label_and_public_modules_questions(tmp_path):
    (tmp_path / "classify").mkdir()
    (tmp_path / "squad").mkdir()
    (tmp_path / "classify" / "dev.tsv").write_text(
        "sentence\tlabel\nOne a.\ta\nTwo a.\ta\n\"\"\"Quoted\"\" b.\"\tb\nThree b.\tb\nFour c.\tc\nFive d.\td\n",
        encoding="utf-8")

    def article(title: str) -> dict:
        qa = {"id": f"{title}.f", "question": "What does f return?", "answers": [{"text": "x", "answer_start": 10}]}
        return {"title": title, "paragraphs": [{"context": "f: Return x. g: Return y.", "qas": [qa]}]}

    squad = {"version": "1.1", "data": [article("_private"), article("json"), article("os"), article("re")]}
    (tmp_path / "squad" / "dev.json").write_text(json.dumps(squad), encoding="utf-8")
    sentences, questions = demo.dev_inputs(tmp_path)
    assert sentences == [("One a.", "a"), ("Three b.", "b"), ("Four c.", "c")]
    assert [(q, c[10:11], a) for q, c, a in questions] == [("What does f return?", "x", "x")] * 2


def test_every_tenth_document_is_held_out(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"Document {i} one.\nDocument {i} two.\n" for i in range(20)), encoding="utf-8")
    kept, spared = demo.split_held_out(corpus, tmp_path / "train.txt", tmp_path / "held.txt")
    assert (kept, spared) == (18, 2)
    held = (tmp_path / "held.txt").read_text(encoding="utf-8")
    assert held == "Document 9 one.\nDocument 9 two.\n\nDocument 19 one.\nDocument 19 two.\n"
