"""Real strategies: MirroredStrategy over two logical CPUs and two local workers of
MultiWorkerMirroredStrategy on 127.0.0.1, each a few steps in subprocesses (the
device layout must be fixed before TensorFlow starts, so not in this process)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

WORKER = Path(__file__).resolve().parent / "distributed_worker.py"


def _run(args, env=None, timeout=240):
    return subprocess.run([sys.executable, str(WORKER), *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    result = _run(["mirrored", str(tmp_path / "mirrored.json"), "--logical-cpus", "2", "--steps", "4"])
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "mirrored.json").read_text())
    assert report["replicas"] == 2
    assert report["iterations"] == 4
    assert all(np.isfinite(report["losses"])) and len(report["losses"]) == 4


def test_mirrored_batch_not_divisible_by_replicas_is_refused(tmp_path):
    result = _run(["mirrored", str(tmp_path / "x.json"), "--logical-cpus", "2", "--batch-size", "7"])
    assert result.returncode != 0
    assert "--batch-size 7 is not divisible by the 2 replicas" in result.stderr


def test_two_workers_on_localhost_end_with_identical_weights(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    processes = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        processes.append(subprocess.Popen(
            [sys.executable, str(WORKER), "auto", str(tmp_path / f"worker{index}.json"), "--steps", "3"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        ))
    outputs = [p.communicate(timeout=300) for p in processes]
    for process, (_, err) in zip(processes, outputs):
        assert process.returncode == 0, err[-3000:]
    reports = [json.loads((tmp_path / f"worker{i}.json").read_text()) for i in range(2)]
    assert reports[0]["replicas"] == 2
    assert all(np.isfinite(r["losses"]).all() for r in reports)
    assert reports[0]["iterations"] == reports[1]["iterations"] == 3
    np.testing.assert_allclose(reports[0]["fingerprint"], reports[1]["fingerprint"], rtol=1e-6)
    # Both saved: the chief into the run's directory, the other into a scratch one it removes.
    assert not (tmp_path / "checkpoints-worker1" / ".worker-1").exists()


def test_accumulating_k_micro_batches_equals_one_batch_of_k_times_b(tmp_path):
    # With Adam's usual epsilon a first step is about lr * sign(g): a gradient that is
    # zero up to rounding can flip sign between the two ways of summing and move a
    # weight by 2 * lr. A large epsilon makes the update proportional to the gradient,
    # so the comparison measures the gradients themselves (a large rate makes them show).
    # Every example has 2 predictions: the MLM loss is a weighted mean per (micro-)batch,
    # so micro-batches must carry equal weight for the two to be the same mean.
    one = _run(["default", str(tmp_path / "one.json"), "--steps", "1", "--batch-size", "16", "--epsilon", "1",
                "--learning-rate", "1", "--predictions", "2"])
    assert one.returncode == 0, one.stderr[-3000:]
    accumulated = _run(["default", str(tmp_path / "acc.json"), "--steps", "1", "--batch-size", "4",
                        "--accumulation", "4", "--epsilon", "1", "--learning-rate", "1",
                        "--predictions", "2"])
    assert accumulated.returncode == 0, accumulated.stderr[-3000:]
    a = json.loads((tmp_path / "one.json").read_text())
    b = json.loads((tmp_path / "acc.json").read_text())
    np.testing.assert_allclose(a["losses"], b["losses"], rtol=1e-5)
    one_weights = np.load(tmp_path / "one.npz")
    accumulated_weights = np.load(tmp_path / "acc.npz")
    initial = np.load(tmp_path / "one.initial.npz")
    moved = max(np.abs(one_weights[k] - initial[k]).max() for k in one_weights.files)
    assert moved > 1e-5, "the step must change the weights for the comparison to mean anything"
    worst = max(np.abs(one_weights[k] - accumulated_weights[k]).max() for k in one_weights.files)
    assert worst < 1e-3 * moved, (worst, moved)
