"""Faults a long run meets: SIGKILL between checkpoints and during one, a full disk.

A run killed with SIGKILL and rerun must end with exactly the weights of a
run that was never interrupted (same seed, CPU): the loop restores the
model, optimizer and dropout state, and the input pipelines start where the
killed run's stood (:meth:`bert_cli.training.Task.train_dataset`).
"""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import finetune_helpers as fh
from bert_cli.main import app
from cli_helpers import assert_one_line_error
from conftest import REPO
from pretrain_helpers import make_examples, write_config, write_records, write_vocab

tf = pytest.importorskip("tensorflow")
pytestmark = pytest.mark.slow


def _weights(path: Path) -> dict[str, np.ndarray]:
    import h5py

    arrays = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda name, item: arrays.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset)
                          else None)
    return arrays


def _assert_same_weights(first: Path, second: Path) -> None:
    a, b = _weights(first), _weights(second)
    assert a.keys() == b.keys() and a
    different = {name: float(np.abs(a[name].astype(np.float64) - b[name]).max()) for name in a
                 if not np.array_equal(a[name], b[name])}
    assert different == {}, different


def _kill_after(args: list[str], checkpoint: Path, finished: Path, seed: int) -> None:
    """Runs ``bert ARGS`` in a process, SIGKILLs it at a random moment after ``checkpoint`` appears."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "bert_cli", *args], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not checkpoint.is_file():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.02)
    time.sleep(random.Random(seed).uniform(0.0, 0.4))  # somewhere between this checkpoint and the next
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    assert not finished.exists(), "the run finished before it was killed: the test proved nothing"


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    directory = tmp_path_factory.mktemp("fault-records")
    write_vocab(directory)
    # Dropout on: its random state must be restored too for the weights to match.
    config = write_config(directory, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    write_records(directory / "part-00000.tfrecord", make_examples(256, seed=1))
    write_records(directory / "part-00001.tfrecord", make_examples(256, seed=2))
    return directory, config


def _pretrain_args(records, output: Path, steps: int = 45) -> list[str]:
    directory, config = records
    return ["pretrain", str(directory / "part-0000*.tfrecord"), "-o", str(output), "--model", str(config),
            "--vocab", str(directory / "vocab.txt"), "--batch-size", "16", "--train-steps", str(steps),
            "--save-every", "15", "--log-every", "5", "--warmup-steps", "5", "--learning-rate", "2e-3",
            "--dynamic-masking", "--seed", "7"]


def test_pretraining_killed_between_checkpoints_resumes_to_the_same_weights(runner, records, tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert runner.invoke(app, _pretrain_args(records, whole)).exit_code == 0
    _kill_after(_pretrain_args(records, killed), killed / "checkpoints" / "ckpt-15.index",
                killed / "model.weights.h5", seed=1)
    result = runner.invoke(app, _pretrain_args(records, killed))
    assert result.exit_code == 0, result.output
    assert "resuming from" in result.stderr
    _assert_same_weights(whole / "model.weights.h5", killed / "model.weights.h5")


def _classify_args(work: Path, output: Path) -> list[str]:
    return ["finetune", "classify", str(work / "train.tsv"), "-o", str(output),
            "--model", str(work / "bert_config.json"),
            "--vocab", str(work / "vocab.txt"), "--epochs", "3", "--batch-size", "8", "--learning-rate", "1e-3",
            "--max-seq-length", "16", "--seed", "5"]


def test_finetuning_killed_between_epochs_resumes_to_the_same_weights(runner, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    fh.write_vocab(work)
    fh.write_config(work, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    fh.write_tsv(work / "train.tsv", ["sentence", "label"], fh.sentiment_rows(200, seed=3))
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert runner.invoke(app, _classify_args(work, whole)).exit_code == 0
    # 200 examples / batch 8 = 25 steps an epoch, a checkpoint after each.
    _kill_after(_classify_args(work, killed), killed / "checkpoints" / "ckpt-25.index", killed / "task.json", seed=2)
    result = runner.invoke(app, _classify_args(work, killed))
    assert result.exit_code == 0, result.output
    assert "resuming from" in result.stderr
    _assert_same_weights(whole / "model.weights.h5", killed / "model.weights.h5")


def test_a_checkpoint_cut_off_mid_write_is_passed_over(runner, records, tmp_path):
    """The state a kill during ``CheckpointManager.save`` leaves: the new checkpoint's temporary data, no index,
    and the state file still naming the previous checkpoint. The rerun resumes from that one."""
    output = tmp_path / "model"
    assert runner.invoke(app, _pretrain_args(records, output, steps=15)).exit_code == 0
    checkpoints = output / "checkpoints"
    partial = checkpoints / "ckpt-30_temp"
    partial.mkdir()
    (partial / "part-00000-of-00001.data-00000-of-00001").write_bytes(
        (checkpoints / "ckpt-15.data-00000-of-00001").read_bytes()[:1000])
    result = runner.invoke(app, _pretrain_args(records, output, steps=30))
    assert result.exit_code == 0, result.output
    assert "at step 15 of" in result.stderr
    assert not partial.exists() and (checkpoints / "ckpt-30.index").is_file()


@pytest.fixture
def small_disk(tmp_path):
    """A 24 MB tmpfs (root only; skipped where mounting is not allowed)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _fill(disk: Path, leave: int) -> Path:
    """Fills ``disk`` but for about ``leave`` bytes."""
    stats = os.statvfs(disk)
    filler = disk / "filler"
    filler.write_bytes(b"\0" * max(0, stats.f_bavail * stats.f_frsize - leave))
    return filler


def test_full_disk_while_checkpointing_is_one_line_and_the_last_checkpoint_survives(runner, records, small_disk):
    output = small_disk / "model"
    assert runner.invoke(app, _pretrain_args(records, output, steps=15)).exit_code == 0
    before = (output / "checkpoints" / "ckpt-15.data-00000-of-00001").read_bytes()
    filler = _fill(small_disk, leave=20_000)
    result = runner.invoke(app, _pretrain_args(records, output, steps=30))
    # Progress lines come first (the run trained to its next checkpoint); the error is the last line.
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {output / 'checkpoints'}: no space left on the device"), last
    assert (output / "checkpoints" / "ckpt-15.data-00000-of-00001").read_bytes() == before
    filler.unlink()
    resumed = runner.invoke(app, _pretrain_args(records, output, steps=30))
    assert resumed.exit_code == 0, resumed.output
    assert "at step 15 of" in resumed.stderr


def test_full_disk_during_export_leaves_no_export(runner, small_disk, tmp_path):
    import serving_helpers as sh

    model = sh.write_classifier(tmp_path / "models")
    _fill(small_disk, leave=50_000)
    result = runner.invoke(app, ["export", str(model), str(small_disk / "export")])
    assert_one_line_error(result, "OUTPUT_DIR", "no space left on the device")
    assert [p.name for p in small_disk.iterdir()] == ["filler"]
