"""Distribution: which ``tf.distribute`` strategy trains a model, and what it needs from Keras.

``--strategy`` chooses:

- ``default``: one device (the first GPU if any, else the CPU); no replication.
- ``mirrored``: ``MirroredStrategy`` over every local GPU, or, on a machine without GPUs,
  over the logical CPU devices TensorFlow was configured with (how the tests run it).
- ``multiworker``: ``MultiWorkerMirroredStrategy`` over the cluster that ``TF_CONFIG``
  describes; every worker runs the same command, and each writes its own run folder.
- ``auto``: ``multiworker`` when ``TF_CONFIG`` names more than one worker, ``mirrored`` when
  there is more than one local GPU, otherwise ``default``.

The dataset always yields *global* batches (``batch_size`` windows); Keras splits each
across the replicas, and gradients are summed over them, so a step sees the same windows
and takes the same update as on one device. Two things differ from one-device training and
are handled here: XLA is off under a multi-replica strategy (Keras does not compile
``strategy.run``), and gradient clipping by global norm must see the *summed* gradient, not
each replica's share (Keras clips before it all-reduces), see :func:`clip_after_all_reduce`.
"""

from __future__ import annotations

import json
import os
import types

from lmcore import LMError, device

STRATEGIES = ("auto", "default", "mirrored", "multiworker")


def tf_config_workers() -> int:
    """Workers that ``TF_CONFIG`` names (0 when it is unset)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 0
    try:
        return len(json.loads(raw).get("cluster", {}).get("worker", []))
    except (ValueError, AttributeError):
        raise LMError("TF_CONFIG is not valid JSON with a cluster of workers") from None


def resolve(name: str) -> str:
    """The concrete strategy ``name`` means on this machine ("auto" decided here)."""
    if name not in STRATEGIES:
        raise LMError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    if name != "auto":
        return name
    if tf_config_workers() > 1:
        return "multiworker"
    gpus = device.import_tensorflow().config.list_physical_devices("GPU")
    return "mirrored" if len(gpus) > 1 else "default"


def make_strategy(name: str = "auto"):
    """Create the ``tf.distribute`` strategy for ``name``.

    Call it before TensorFlow runs any operation: ``MultiWorkerMirroredStrategy`` must
    configure the runtime's collectives first.
    """
    tf = device.import_tensorflow()
    name = resolve(name)
    if name == "multiworker":
        if tf_config_workers() < 1:
            raise LMError("--strategy multiworker needs TF_CONFIG with the cluster's workers (see README)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        if tf.config.list_physical_devices("GPU"):
            return tf.distribute.MirroredStrategy()
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=cpus)
    return tf.distribute.get_strategy()  # the default: one device, no replication


def describe(strategy) -> dict:
    """What a run records about its strategy (saved in its config)."""
    resolver = getattr(strategy.extended, "_cluster_resolver", None)
    workers = 1
    if resolver is not None and resolver.cluster_spec().as_dict():
        workers = len(resolver.cluster_spec().as_dict().get("worker", [])) or 1
    kind = {
        "MirroredStrategy": "mirrored",
        "MultiWorkerMirroredStrategy": "multiworker",
        "CollectiveAllReduceStrategy": "multiworker",
    }.get(type(strategy).__name__, "default")
    return {"strategy": kind, "replicas": int(strategy.num_replicas_in_sync), "workers": workers}


def clip_after_all_reduce(optimizer):
    """Make ``optimizer`` clip the summed gradient of all replicas, as one device would.

    Keras clips each replica's gradient before it sums them, which under N replicas clips
    at a norm N times too loose and with a different direction. Here, inside a replica, the
    gradients are summed first (one extra all-reduce), the clipping factor is computed from
    that sum's norm, and each replica's share is scaled by it, so the optimizer's own
    all-reduce then yields exactly the clipped full-batch gradient.
    """
    import tensorflow as tf

    own = type(optimizer)._clip_gradients

    def _clip_gradients(self, grads):
        ctx = tf.distribute.get_replica_context()
        present = [g for g in grads if g is not None]
        if not self.global_clipnorm or ctx is None or ctx.num_replicas_in_sync < 2 or not present:
            return own(self, grads)
        total = ctx.all_reduce(tf.distribute.ReduceOp.SUM, present)
        norm = tf.linalg.global_norm(total)
        scale = tf.minimum(1.0, self.global_clipnorm / tf.maximum(norm, 1e-12))
        return [None if g is None else g * tf.cast(scale, g.dtype) for g in grads]

    optimizer._clip_gradients = types.MethodType(_clip_gradients, optimizer)
    return optimizer


def is_multiworker(strategy) -> bool:
    return describe(strategy)["strategy"] == "multiworker"


def prepare_multiworker(model, dataset) -> None:
    """Work around Keras 3.15's ``fit``/``evaluate`` under ``MultiWorkerMirroredStrategy``.

    Two steps of Keras fail there (keras-team/keras#20585): its build reduces a distributed
    input batch ("Attempt to convert a value (PerReplica...)"), and its step functions reduce
    each scalar metric over axis 0 ("Invalid reduction dimension 0"). So the model is built
    here from one local batch inside the strategy's scope (only shapes matter), and it gets
    step functions that run ``train_step``/``test_step`` on every replica and average the
    scalar results over all of them, as Keras does on a single machine. Keras keeps
    functions already set (``make_train_function`` without ``force``).
    """
    import tensorflow as tf

    strategy = model.distribute_strategy
    with strategy.scope():
        model._symbolic_build(data_batch=next(iter(dataset.take(1))))
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None

    def make(step):
        @tf.function
        def function(iterator):
            outputs = strategy.run(step, args=(next(iterator),))
            return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), outputs)

        return function

    model.train_function = make(model.train_step)
    model.test_function = make(model.test_step)
