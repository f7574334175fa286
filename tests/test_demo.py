"""bert demo's planning and plumbing (the full demo is run by hand: it takes minutes)."""

import json
from pathlib import Path

from bert_cli import demo


def test_the_budget_scales_steps_and_epochs_and_the_default_fits_fifteen_minutes():
    small, default, large = demo.plan_for(3), demo.plan_for(demo.DEFAULT_MINUTES), demo.plan_for(30)
    assert small.train_steps < default.train_steps < large.train_steps
    assert small.classify_epochs <= default.classify_epochs < large.classify_epochs
    assert small.squad_epochs <= default.squad_epochs < large.squad_epochs
    assert (small.train_steps, small.classify_epochs, small.squad_epochs) == (100, 1.0, 1.0)  # the floors
    estimate = (demo.FIXED_SECONDS + default.train_steps * demo.PRETRAIN_SECONDS_PER_STEP
                + 2 * default.classify_epochs * demo.CLASSIFY_SECONDS_PER_EPOCH  # from pre-trained and random init
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


def _fake_finetuning(monkeypatch) -> list[list[str]]:
    """Replaces running ``bert ARGS`` by writing the finetune.json a run would; returns the commands "run"."""
    ran: list[list[str]] = []

    def run(args: list[str]) -> None:
        ran.append(args)
        output = Path(args[args.index("--output") + 1])
        output.mkdir(parents=True, exist_ok=True)
        if args[1] == "classify":  # the pre-trained start scores higher, so a swap of the arms shows
            dev = {"accuracy": 0.625 if "--init" in args else 0.25, "macro_f1": 0.5}
        else:
            dev = {"exact_match": 10.0, "f1": 20.0}
        summary = {"final_step": 30, "dev": dev, "best": {"epoch": 2}}
        (output / "finetune.json").write_text(json.dumps(summary), encoding="utf-8")

    monkeypatch.setattr(demo, "_run", run)
    return ran


def _without_start_and_output(args: list[str]) -> list[str]:
    """A command line less the options that may differ between the two classifier runs (and their values)."""
    rest = list(args)
    for option in ("--output", "--init", "--model", "--vocab"):
        if option in rest:
            at = rest.index(option)
            del rest[at:at + 2]
    return rest


def test_the_random_init_classifier_runs_with_the_same_options_and_is_in_the_summary(tmp_path, monkeypatch):
    from rich.console import Console

    from bert_cli.commands.demo import summary_table

    ran = _fake_finetuning(monkeypatch)
    run = demo.Demo(tmp_path, demo.plan_for(demo.DEFAULT_MINUTES), seed=7)
    model = tmp_path / "model"
    run.finetune(model, tmp_path / "tasks")
    assert [step.args for step in run.steps] == ran
    pretrained, random_init, _ = run.steps
    assert (pretrained.name, random_init.name) == ("bert finetune classify", "bert finetune classify (random init)")
    assert _without_start_and_output(pretrained.args) == _without_start_and_output(random_init.args)
    assert {"--seed", "7", "--epochs", f"{run.plan.classify_epochs:g}"} <= set(random_init.args)
    assert pretrained.args[pretrained.args.index("--init") + 1] == str(model)
    assert "--init" not in random_init.args  # same shape and vocabulary as the pre-trained model, random weights
    assert random_init.args[random_init.args.index("--model") + 1] == str(model / "bert_config.json")
    assert random_init.args[random_init.args.index("--vocab") + 1] == str(model / "vocab.txt")
    assert pretrained.output != random_init.output

    console = Console(width=300, record=True)
    console.print(summary_table(run.steps, tmp_path))
    table = console.export_text()
    assert "bert finetune classify (random init)" in table
    assert "dev accuracy 25.0%" in table and "+37.5 points of accuracy over random init" in table

    summary = json.loads(demo.write_summary(tmp_path, run.steps).read_text(encoding="utf-8"))
    assert summary["classify"]["pretrained"]["accuracy"] == 0.625
    assert summary["classify"]["random_init"]["accuracy"] == 0.25
    assert summary["classify"]["difference_points"] == 37.5
    assert [step["command"] for step in summary["steps"]] == [["bert", *args] for args in ran]
