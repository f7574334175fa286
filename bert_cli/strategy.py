"""Choosing a tf.distribute strategy: TPU, several hosts, several GPUs, or one device.

The choice, in order (``--strategy auto``):

1. ``--tpu NAME`` (``--tpu local`` on a TPU VM): connect to the TPU and use
   ``TPUStrategy``.
2. ``TF_CONFIG`` names more than one worker: ``MultiWorkerMirroredStrategy``
   (every host runs the same command with its own ``TF_CONFIG``).
3. More than one GPU is visible: ``MirroredStrategy`` over all of them.
4. Otherwise the default strategy (one GPU, or the CPU).

``--strategy default|mirrored|multiworker|tpu`` forces one. The global batch
size is what the user gives; each replica gets ``batch_size / replicas``.
"""

from __future__ import annotations

import dataclasses
import json
import os

from bert_cli.errors import UserError

STRATEGIES = ("auto", "default", "mirrored", "multiworker", "tpu")


@dataclasses.dataclass
class Distribution:
    """A strategy and what a person should be told about it."""

    strategy: object  # tf.distribute.Strategy
    kind: str
    replicas: int
    description: str
    is_chief: bool = True

    def per_replica_batch(self, global_batch: int, option: str = "--batch-size") -> int:
        if global_batch % self.replicas:
            raise UserError(
                f"{option} {global_batch} is not divisible by the {self.replicas} replicas of the "
                f"{self.kind} strategy; use a multiple of {self.replicas}"
            )
        return global_batch // self.replicas


def _tf_config_workers() -> int:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 0
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as error:
        raise UserError(f"TF_CONFIG is not valid JSON ({error.msg}); see the README's multi-host section") from None
    cluster = config.get("cluster", {})
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def _is_chief_from_tf_config() -> bool:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return True
    task = json.loads(raw).get("task", {})
    cluster = json.loads(raw).get("cluster", {})
    if "chief" in cluster:
        return task.get("type") == "chief"
    return task.get("type", "worker") == "worker" and int(task.get("index", 0)) == 0


def resolve(strategy: str = "auto", tpu: str | None = None) -> Distribution:
    """Creates the strategy. Call before building any model or dataset."""
    import tensorflow as tf

    if strategy not in STRATEGIES:
        raise UserError(f"--strategy {strategy!r} is not known; use one of {', '.join(STRATEGIES)}")
    if tpu is not None or strategy == "tpu":
        if not tpu:
            raise UserError("--strategy tpu needs --tpu NAME (or --tpu local on a TPU VM)")
        return _connect_tpu(tf, tpu)
    if strategy == "auto":
        if _tf_config_workers() > 1:
            strategy = "multiworker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            strategy = "mirrored"
        else:
            strategy = "default"
    if strategy == "multiworker":
        if _tf_config_workers() < 1:
            raise UserError("--strategy multiworker needs TF_CONFIG naming the cluster's workers")
        resolved = tf.distribute.MultiWorkerMirroredStrategy()
        workers = _tf_config_workers()
        return Distribution(
            resolved, "multiworker", resolved.num_replicas_in_sync,
            f"MultiWorkerMirroredStrategy: {workers} workers, {resolved.num_replicas_in_sync} replicas",
            is_chief=_is_chief_from_tf_config(),
        )
    if strategy == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or [
            d.name for d in tf.config.list_logical_devices("CPU")
        ]
        resolved = tf.distribute.MirroredStrategy(devices)
        return Distribution(
            resolved, "mirrored", resolved.num_replicas_in_sync,
            f"MirroredStrategy over {', '.join(devices)}",
        )
    resolved = tf.distribute.get_strategy()
    gpus = tf.config.list_logical_devices("GPU")
    where = gpus[0].name if gpus else "CPU"
    return Distribution(resolved, "default", 1, f"default strategy on {where}")


def _connect_tpu(tf, name: str) -> Distribution:
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=name)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except Exception as error:  # noqa: BLE001  the resolver raises many kinds; all mean "not reachable"
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(
            f"--tpu {name}: no TPU reachable ({reason}); check the name, zone and that this VM may use it"
        ) from None
    resolved = tf.distribute.TPUStrategy(resolver)
    return Distribution(resolved, "tpu", resolved.num_replicas_in_sync, f"TPUStrategy on {name}: "
                        f"{resolved.num_replicas_in_sync} cores")
