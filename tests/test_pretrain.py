"""`bert pretrain` end to end on tiny synthetic records, and the training loop's guarantees."""

import json

import numpy as np
import pytest

from bert_cli.main import app
from pretrain_helpers import make_examples, write_config, write_records, write_vocab

tf = pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    directory = tmp_path_factory.mktemp("records")
    write_vocab(directory)
    config = write_config(directory)
    write_records(directory / "part-00000.tfrecord", make_examples(512, seed=1))
    write_records(directory / "part-00001.tfrecord", make_examples(512, seed=2))
    write_records(directory / "heldout.tfrecord.gz", make_examples(64, seed=3), gzip=True)
    return directory, config


def _pretrain(runner, corpus, output, *extra):
    directory, config = corpus
    args = [
        "pretrain", str(directory / "part-0000*.tfrecord"), "--output", str(output), "--model", str(config),
        "--vocab", str(directory / "vocab.txt"), "--batch-size", "16", "--log-every", "10",
        "--warmup-steps", "5", "--learning-rate", "2e-3", *extra,
    ]
    return runner.invoke(app, args)


def test_loss_decreases_and_model_directory_is_complete(runner, corpus, tmp_path):
    output = tmp_path / "model"
    result = _pretrain(runner, corpus, output, "--train-steps", "60", "--save-every", "30",
                       "--eval-input", str(corpus[0] / "heldout.tfrecord.gz"))
    assert result.exit_code == 0, result.output
    summary = json.loads((output / "pretrain.json").read_text())
    history = summary["history"]
    assert [h["step"] for h in history] == [10, 20, 30, 40, 50, 60]
    assert history[-1]["mlm_loss"] < history[0]["mlm_loss"] - 0.3
    assert history[-1]["mlm_accuracy"] > history[0]["mlm_accuracy"]
    assert summary["evaluation"]["mlm_accuracy"] > 0
    for name in ("bert_config.json", "vocab.txt", "model.weights.h5", "encoder.weights.h5", "task.json",
                 "training_curves.png", "run.json"):
        assert (output / name).is_file(), name
    assert json.loads((output / "task.json").read_text())["task"] == "pretraining"
    assert list((output / "logs" / "train").iterdir()), "TensorBoard events"
    assert (output / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rerun_resumes_with_step_and_optimizer_restored(runner, corpus, tmp_path):
    output = tmp_path / "model"
    assert _pretrain(runner, corpus, output, "--train-steps", "20", "--save-every", "10").exit_code == 0
    result = _pretrain(runner, corpus, output, "--train-steps", "30", "--save-every", "10")
    assert result.exit_code == 0, result.output
    assert "resuming from" in result.stderr and "at step 20" in result.stderr
    checkpoint = tf.train.load_checkpoint(str(output / "checkpoints"))
    iterations = [k for k in checkpoint.get_variable_to_shape_map() if k.startswith("optimizer/") and "iteration" in k]
    assert iterations and int(checkpoint.get_tensor(iterations[0])) == 30
    history = json.loads((output / "pretrain.json").read_text())["history"]
    assert [h["step"] for h in history] == [10, 20, 30]


def test_interrupted_run_resumes_from_last_checkpoint(runner, corpus, tmp_path, monkeypatch):
    import bert_cli.display as display

    output = tmp_path / "model"
    original = display.TrainingDisplay.log

    def crash_after_step_20(self, step, metrics):
        original(self, step, metrics)
        if step == 20:
            raise KeyboardInterrupt

    monkeypatch.setattr(display.TrainingDisplay, "log", crash_after_step_20)
    crashed = _pretrain(runner, corpus, output, "--train-steps", "40", "--save-every", "10")
    assert crashed.exit_code == 130
    assert not (output / "model.weights.h5").exists(), "no final weights from an interrupted run"
    monkeypatch.setattr(display.TrainingDisplay, "log", original)
    result = _pretrain(runner, corpus, output, "--train-steps", "40", "--save-every", "10")
    assert result.exit_code == 0, result.output
    assert "at step 10 " in result.stderr or "at step 10 of" in result.stderr


def test_init_checkpoint_starts_from_another_runs_weights(runner, corpus, tmp_path):
    first = tmp_path / "phase1"
    assert _pretrain(runner, corpus, first, "--train-steps", "40").exit_code == 0
    trained_loss = json.loads((first / "pretrain.json").read_text())["history"][-1]["mlm_loss"]
    second = tmp_path / "phase2"
    result = _pretrain(runner, corpus, second, "--train-steps", "10", "--init-checkpoint", str(first))
    assert result.exit_code == 0, result.output
    history = json.loads((second / "pretrain.json").read_text())["history"]
    # Starting from trained weights: the first window is already near the first run's end, far below chance.
    assert history[0]["mlm_loss"] < trained_loss + 0.3
    fresh = _pretrain(runner, corpus, tmp_path / "fresh", "--train-steps", "10")
    assert fresh.exit_code == 0
    fresh_loss = json.loads((tmp_path / "fresh" / "pretrain.json").read_text())["history"][0]["mlm_loss"]
    assert history[0]["mlm_loss"] < fresh_loss - 0.2
    missing = _pretrain(runner, corpus, tmp_path / "x", "--train-steps", "10", "--init-checkpoint", str(tmp_path))
    assert missing.exit_code == 2 and "not a model directory" in missing.stderr


def test_mixed_bfloat16_runs(runner, corpus, tmp_path):
    result = _pretrain(runner, corpus, tmp_path / "bf16", "--train-steps", "10", "--precision", "mixed_bfloat16")
    assert result.exit_code == 0, result.output
    final = json.loads((tmp_path / "bf16" / "pretrain.json").read_text())["final_metrics"]
    assert np.isfinite(final["loss"])


@pytest.mark.parametrize("accumulation", ["1", "2"])
def test_dynamic_masking_and_no_nsp(runner, corpus, tmp_path, accumulation, recwarn):
    result = _pretrain(runner, corpus, tmp_path / "dyn", "--train-steps", "10", "--dynamic-masking", "--no-nsp",
                       "--accumulation-steps", accumulation)
    assert result.exit_code == 0, result.output
    assert not [w for w in recwarn if "Gradients do not exist" in str(w.message)]  # the unused pooler is frozen
    final = json.loads((tmp_path / "dyn" / "pretrain.json").read_text())["final_metrics"]
    assert "nsp_accuracy" not in final and np.isfinite(final["mlm_loss"])


def test_config_of_another_vocabulary_is_refused(runner, corpus, tmp_path):
    directory, _ = corpus
    config = write_config(tmp_path, vocab_size=999)
    result = runner.invoke(app, ["pretrain", str(directory / "part-00000.tfrecord"), "-o", str(tmp_path / "m"),
                                 "--vocab", str(directory / "vocab.txt"), "--model", str(config)])
    assert result.exit_code == 2, result.output
    assert "vocab_size 999" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("option", ["--batch-size", "--train-steps", "--accumulation-steps"])
def test_non_positive_counts_are_refused(runner, corpus, tmp_path, option):
    directory, config = corpus
    result = runner.invoke(app, ["pretrain", str(directory / "part-00000.tfrecord"), "-o", str(tmp_path / "m"),
                                 "--vocab", str(directory / "vocab.txt"), "--model", str(config), option, "0"])
    assert result.exit_code == 2, result.output
    assert f"{option} must be at least 1" in result.stderr


def test_unreachable_tpu_is_one_line(runner, corpus, tmp_path):
    directory, config = corpus
    result = runner.invoke(app, ["pretrain", str(directory / "part-00000.tfrecord"), "-o", str(tmp_path / "m"),
                                 "--vocab", str(directory / "vocab.txt"), "--model", str(config),
                                 "--tpu", "no-such-tpu"])
    assert result.exit_code == 2, result.output
    assert "--tpu no-such-tpu: no TPU reachable" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_records_longer_than_the_model_are_refused(runner, corpus, tmp_path):
    directory, _ = corpus
    config = write_config(tmp_path, max_position_embeddings=16)
    result = runner.invoke(app, ["pretrain", str(directory / "part-00000.tfrecord"), "-o", str(tmp_path / "m"),
                                 "--vocab", str(directory / "vocab.txt"), "--model", str(config)])
    assert result.exit_code == 2 and "max_position_embeddings 16" in result.stderr


def test_empty_glob_and_corrupt_file(runner, corpus, tmp_path):
    directory, config = corpus
    result = runner.invoke(app, ["pretrain", str(tmp_path / "nothing-*.tfrecord"), "-o", str(tmp_path / "m"),
                                 "--vocab", str(directory / "vocab.txt"), "--model", str(config)])
    assert result.exit_code == 2 and "no file matches this pattern" in result.stderr
    broken = tmp_path / "broken.tfrecord"
    broken.write_bytes(b"this is not a record file at all" * 10)
    result = runner.invoke(app, ["pretrain", str(broken), "-o", str(tmp_path / "m"),
                                 "--vocab", str(directory / "vocab.txt"), "--model", str(config)])
    assert result.exit_code == 2 and "broken.tfrecord" in result.stderr


def test_different_config_in_output_is_refused_without_overwrite(runner, corpus, tmp_path):
    output = tmp_path / "model"
    assert _pretrain(runner, corpus, output, "--train-steps", "6").exit_code == 0
    other = write_config(tmp_path, hidden_size=64, intermediate_size=128)
    directory, _ = corpus
    args = ["pretrain", str(directory / "part-00000.tfrecord"), "-o", str(output), "--vocab",
            str(directory / "vocab.txt"), "--model", str(other), "--train-steps", "6", "--warmup-steps", "1",
            "--batch-size", "16"]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "--overwrite" in refused.stderr
    assert runner.invoke(app, args + ["--overwrite"]).exit_code == 0


def test_held_out_loss_is_pooled_over_every_prediction_and_counts_are_reported(runner, corpus, tmp_path):
    """19 held-out examples in batches of 8 (a partial last batch): the held-out MLM loss is the weighted mean over
    all real predictions, as the original's metric_fn computes it (checked by hand from the saved model's
    logits), not the mean of three batch means; the batches and examples evaluated are reported."""
    import keras

    from models.config import BertConfig
    from models.pretraining import build_pretrainer

    _, config = corpus
    held_out = write_records(tmp_path / "held.tfrecord", make_examples(19, seed=9))
    output = tmp_path / "model"
    result = _pretrain(runner, corpus, output, "--train-steps", "10", "--batch-size", "8",
                       "--eval-input", str(held_out), "--eval-batches", "50")
    assert result.exit_code == 0, result.output
    assert "--eval-batches 50: the held-out records hold only 3 batches (19 examples)" in result.stderr
    evaluation = json.loads((output / "pretrain.json").read_text())["evaluation"]
    assert (evaluation["eval_batches"], evaluation["eval_examples"]) == (3, 19)

    model = build_pretrainer(BertConfig.from_json_file(config))
    model.load_weights(str(output / "model.weights.h5"))
    examples = make_examples(19, seed=9)
    arrays = {k: np.array([e[k] for e in examples]) for k in examples[0]}
    logits = keras.ops.convert_to_numpy(model({
        "token_ids": arrays["input_ids"].astype("int32"), "segment_ids": arrays["segment_ids"].astype("int32"),
        "padding_mask": arrays["input_mask"].astype("int32"),
        "masked_lm_positions": arrays["masked_lm_positions"].astype("int32")}, training=False)["mlm_logits"])
    logits = logits.astype(np.float64)
    log_p = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    picked = -np.take_along_axis(log_p, arrays["masked_lm_ids"][..., None], -1)[..., 0]  # [N, P]
    weights = arrays["masked_lm_weights"]
    pooled = float((picked * weights).sum() / weights.sum())
    batch_means = [float((picked[i:i + 8] * weights[i:i + 8]).sum() / weights[i:i + 8].sum()) for i in (0, 8, 16)]
    assert evaluation["mlm_loss"] == pytest.approx(pooled, rel=1e-4)
    assert abs(np.mean(batch_means) - pooled) > 1e-4  # the two figures differ here: the test can tell them apart

    # bert evaluate: the same figures from the saved model directory, without training.
    from bert_cli.pretraining import EvaluateOptions, run_evaluation

    evaluated = run_evaluation(EvaluateOptions(model=output, inputs=(str(held_out),), batch_size=8)).metrics
    for key in ("mlm_loss", "mlm_accuracy", "nsp_loss", "nsp_accuracy", "eval_batches", "eval_examples"):
        assert evaluated[key] == pytest.approx(evaluation[key], rel=1e-5, abs=1e-7), key
    shown = runner.invoke(app, ["evaluate", str(output), str(held_out), "--batch-size", "8", "--eval-batches", "2"])
    assert shown.exit_code == 0, shown.output
    assert "evaluation" in shown.stdout and "16 examples" in shown.stdout


def test_original_optimizer_without_bias_correction(runner, corpus, tmp_path):
    output = tmp_path / "model"
    result = _pretrain(runner, corpus, output, "--train-steps", "6", "--no-adam-bias-correction")
    assert result.exit_code == 0, result.output
    assert json.loads((output / "run.json").read_text())["adam_bias_correction"] is False
    assert json.loads((output / "pretrain.json").read_text())["options"]["adam_bias_correction"] is False
    refused = _pretrain(runner, corpus, output, "--train-steps", "6")
    assert refused.exit_code == 2 and "adam_bias_correction" in refused.stderr
    lamb = _pretrain(runner, corpus, tmp_path / "lamb", "--optimizer", "lamb", "--no-adam-bias-correction")
    assert lamb.exit_code == 2 and "for --optimizer adamw" in lamb.stderr


def test_evaluate_refuses_a_model_without_masked_lm_head(runner, corpus, tmp_path):
    import serving_helpers as sh
    from cli_helpers import assert_one_line_error

    classifier = sh.write_classifier(tmp_path / "classifier")
    result = runner.invoke(app, ["evaluate", str(classifier), str(corpus[0] / "part-00000.tfrecord")])
    assert_one_line_error(result, "has no masked-LM head", "'classify'")
