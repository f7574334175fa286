"""`bert pretrain --recipe`: the defaults of --learning-rate and --warmup-steps a user leaves out."""

import json

import pytest

from bert_cli.errors import UserError
from bert_cli.main import app
from bert_cli.pretraining import BUDGET_MAX_HIDDEN, PretrainOptions, _run_signature, apply_recipe
from cli_helpers import assert_one_line_error
from pretrain_helpers import make_examples, write_config, write_records, write_vocab


def _options(**changes) -> PretrainOptions:
    return PretrainOptions(inputs=("r",), output="o", **changes)


def test_the_original_recipe_is_the_releases_defaults():
    options = apply_recipe(_options())
    assert (options.learning_rate, options.warmup_steps, options.train_steps) == (5e-5, 10_000, 100_000)


@pytest.mark.parametrize("steps, warmup", [(5475, 547), (21_900, 2190), (9, 1), (1, 1)])
def test_the_budget_recipe_warms_up_for_a_tenth_of_the_run(steps, warmup):
    options = apply_recipe(_options(recipe="budget", train_steps=steps), hidden_size=128)
    assert (options.learning_rate, options.warmup_steps) == (1e-3, warmup)


def test_options_given_win_over_the_recipe():
    options = apply_recipe(_options(recipe="budget", train_steps=1000, learning_rate=3e-4, warmup_steps=7,
                                    dropout=0.1), hidden_size=4 * BUDGET_MAX_HIDDEN)  # a rate given: any width
    assert (options.learning_rate, options.warmup_steps, options.dropout) == (3e-4, 7, 0.1)


@pytest.mark.parametrize("recipe, objective, dropout", [("budget", "mlm", 0.0), ("budget", "electra", None),
                                                        ("original", "mlm", None)])
def test_the_budget_recipe_pretrains_masked_lm_without_dropout(recipe, objective, dropout):
    """None: the model's own (0.1); the budget's 0 was measured for masked LM, not for ELECTRA."""
    assert apply_recipe(_options(recipe=recipe, objective=objective), hidden_size=128).dropout == dropout


def test_the_budget_rate_is_refused_for_models_wider_than_it_was_measured_on():
    assert apply_recipe(_options(recipe="budget"), hidden_size=BUDGET_MAX_HIDDEN).learning_rate == 1e-3
    with pytest.raises(UserError, match="--learning-rate"):
        apply_recipe(_options(recipe="budget"), hidden_size=BUDGET_MAX_HIDDEN + 1)
    with pytest.raises(UserError, match="original or budget"):
        apply_recipe(_options(recipe="fast"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    directory = tmp_path_factory.mktemp("records")
    write_vocab(directory)
    config = write_config(directory)
    write_records(directory / "part-00000.tfrecord", make_examples(64, seed=2))
    return directory, config


def _pretrain(runner, corpus, output, *extra):
    directory, config = corpus
    return runner.invoke(app, [
        "pretrain", str(directory / "part-00000.tfrecord"), "-o", str(output), "--model", str(config), "--vocab",
        str(directory / "vocab.txt"), "--batch-size", "16", "--train-steps", "20", *extra])


def test_the_recipe_is_said_and_its_values_recorded(runner, corpus, tmp_path):
    output = tmp_path / "model"
    result = _pretrain(runner, corpus, output, "--recipe", "budget")
    assert result.exit_code == 0, result.output
    assert "lr 0.001, warmup 2 (recipe budget)" in " ".join(result.stderr.split())
    options = json.loads((output / "pretrain.json").read_text())["options"]
    assert (options["recipe"], options["learning_rate"], options["warmup_steps"], options["dropout"]) == (
        "budget", 1e-3, 2, 0.0)


def test_the_budget_recipe_keeps_the_models_dropout_for_fine_tuning(runner, corpus, tmp_path):
    directory, _ = corpus
    config = write_config(tmp_path, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    result = runner.invoke(app, [
        "pretrain", str(directory / "part-00000.tfrecord"), "-o", str(tmp_path / "model"), "--model", str(config),
        "--vocab", str(directory / "vocab.txt"), "--batch-size", "16", "--train-steps", "4", "--recipe", "budget"])
    assert result.exit_code == 0, result.output
    assert "dropout 0;" in result.stderr  # pre-trained without dropout, as the first line says
    saved = json.loads((tmp_path / "model" / "bert_config.json").read_text())
    assert (saved["hidden_dropout_prob"], saved["attention_probs_dropout_prob"]) == (0.1, 0.1)


def test_the_original_recipes_warmup_longer_than_the_run_is_one_line(runner, corpus, tmp_path):
    result = _pretrain(runner, corpus, tmp_path / "model")  # 10,000 warmup updates of 20
    assert_one_line_error(result, "--warmup-steps")
    bad = _pretrain(runner, corpus, tmp_path / "model", "--recipe", "quick")
    assert_one_line_error(bad, "--recipe")


def test_the_run_signature_names_dropout_only_where_it_differs_from_the_models():
    """A run made before the budget recipe set dropout 0 (no dropout in its signature) resumes when
    --dropout names the model's own value; a run without dropout clashes with it."""
    from models.config import BertConfig

    config = BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                        intermediate_size=8, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    old = _run_signature(_options(), config, "sha")
    assert "dropout" not in old
    assert _run_signature(_options(dropout=0.1), config, "sha") == old
    assert _run_signature(_options(dropout=0.0), config, "sha")["dropout"] == 0.0
