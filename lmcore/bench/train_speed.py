"""Training benchmarks: ``python -m lmcore bench train`` and ``bench train-to-quality``.

``train`` times the training loop itself (the model, optimizer, input pipeline and
``steps_per_execution`` that ``lmcore.training.lm`` uses) on random tokens after a warm-up, and
turns tokens/s into model FLOP/s and MFU against a matmul roof measured in the same process,
so that the ratio means the same on a fast or a slow, a quiet or a busy machine.

Model FLOPs per token (nanoGPT's estimate, as in the PaLM paper's appendix B):

    6 N + 12 L T C    (GPT)        6 N    (recurrent)

``N`` counts the weights that take part in matrix products: every parameter except the
learned positions and, for the recurrent models, the input embedding (both are looked up,
not multiplied). Each such weight costs 2 FLOPs per token forwards and 4 backwards. The
attention term is the score and weighted-sum products, QK^T and AV: 2 x 2 T C FLOPs per
token and layer forwards, times 3 with the backward pass, counted over the full T x T
square as nanoGPT does (causal masking skips half of it in principle, not in these kernels).
LayerNorm, softmax, GELU, the loss and the optimizer update are not counted: they are real
work, but "model FLOPs" conventionally leaves them out, which makes MFU a conservative figure.

The roof is the best of several timed fp32 ``2048 x 2048`` matmuls (XLA-compiled and plain),
measured before and after the models, the best of all kept.

``train-to-quality`` trains ``nano`` on ``builtin:tiny-shakespeare`` with its default recipe
through ``lmcore.training.lm.start`` (the same code as ``python -m lmcore train``), validates every
``eval_every`` steps on the fixed validation subset (``data.val_dataset``), and reports the
wall time, from the start of training (model build and compilation included), at which the
validation loss first reaches the target.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from lmcore import device
from lmcore.experiments import ablation
from lmcore.nn import models
from lmcore.nn.config import DataConfig, make_train_config
from lmcore.text import corpus, windows
from lmcore.training import lm, lmdata, loop

TRAIN_CONFIGS = (  # (label, preset, batch)
    ("nano", "nano", 12),
    ("nano", "nano", 64),
    ("modern-nano", "modern-nano", 12),
    ("modern-nano", "modern-nano", 64),
    ("seed-lstm", "seed-lstm", 32),
)
VOCAB = 65
RECIPE_KEYS = ("steps", "batch_size", "lr", "schedule", "warmup_steps", "min_lr")
TARGET_LOSS = 1.8857  # nanoGPT's CPU "baby GPT" after 2,000 iterations (68 s)


def matmul_roof(n: int = 2048, reps: int = 8, trials: int = 3, dtype: str = "float32") -> float:
    """Best matmul GFLOP/s of this machine in ``dtype``, XLA-compiled or not."""
    a = tf.cast(tf.random.normal((n, n), seed=1), dtype)
    b = tf.cast(tf.random.normal((n, n), seed=2), dtype)
    best = 0.0
    for jit in (True, False):
        f = tf.function(lambda a, b: tf.matmul(a, b), jit_compile=jit)
        f(a, b).numpy()  # compile
        for _ in range(trials):
            start = time.perf_counter()
            for _ in range(reps):
                c = f(a, b)
            c.numpy()
            best = max(best, 2 * n**3 * reps / (time.perf_counter() - start) / 1e9)
    return best


def flops_per_token(model, config) -> float:
    """Model FLOPs per trained token, ``6 N (+ 12 L T C)`` (see the module docstring)."""
    n = model.count_params()
    if config.family == "gpt":
        if not config.rotary:
            n -= config.block_size * config.n_embd  # learned positions: a lookup
        return 6 * n + 12 * config.n_layer * config.block_size * config.n_embd
    return 6 * (n - config.vocab_size * config.n_embd)  # input embedding: a lookup


def train_config(label: str, preset: str, batch: int, intervals: int = 4, seed: int = 0) -> dict:
    """Time ``intervals`` logging intervals of training after a warm-up interval."""
    config = models.make_config(preset, vocab_size=VOCAB)
    c = make_train_config(preset, batch_size=batch, seed=seed)
    keras.utils.set_random_seed(seed)
    model = models.build_model(config)
    loop.compile_model(model, c, config.family)
    model.steps_per_execution = loop.steps_per_execution(c)
    ids = np.random.default_rng(seed).integers(0, VOCAB, 400_000).astype(np.int32)
    ds = windows.train_dataset(ids, config.block_size, batch, seed=seed)
    ends = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            float(logs["loss"])  # wait for the device, as the trainer's logging does
            ends.append(time.perf_counter())

    model.fit(
        ds, epochs=intervals + 1, steps_per_epoch=c.log_every, verbose=0, shuffle=False, callbacks=[Clock()]
    )
    seconds = statistics.median(np.diff(ends))  # the first interval (compilation) is left out
    tokens_per_s = c.log_every * batch * config.block_size / seconds
    fpt = flops_per_token(model, config)
    return {
        "model": label,
        "batch": batch,
        "block_size": config.block_size,
        "parameters": model.count_params(),
        "jit": bool(model.jit_compile),
        "steps_per_execution": model.steps_per_execution,
        "tokens_per_s": round(tokens_per_s, 1),
        "flops_per_token": fpt,
        "gflops": round(tokens_per_s * fpt / 1e9, 2),
    }


def plain_keras(
    batch: int = 12, preset: str = "nano", intervals: int = 4, steps: int = 50, seed: int = 0
) -> dict:
    """The reference: a GPT of ``preset``'s shape as the Keras guides write one (functional,
    ``MultiHeadAttention`` with its causal mask, learned positions, a GELU MLP), compiled by
    default without XLA and trained with ``train_on_batch``; tokens/s, timed as
    :func:`train_config` times ours."""
    from keras import layers

    c = models.make_config(preset, vocab_size=VOCAB)
    keras.utils.set_random_seed(seed)
    ids = keras.Input(shape=(c.block_size,), dtype="int32")
    x = layers.Embedding(VOCAB, c.n_embd)(ids)
    x = x + layers.Embedding(c.block_size, c.n_embd)(keras.ops.arange(c.block_size))[None]
    for _ in range(c.n_layer):
        h = layers.LayerNormalization()(x)
        x = x + layers.MultiHeadAttention(c.n_head, c.n_embd // c.n_head)(h, h, use_causal_mask=True)
        h = layers.LayerNormalization()(x)
        x = x + layers.Dense(c.n_embd)(layers.Dense(4 * c.n_embd, activation="gelu")(h))
    logits = layers.Dense(VOCAB)(layers.LayerNormalization()(x))
    model = keras.Model(ids, logits)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
    windows = (
        np.random.default_rng(seed).integers(0, VOCAB, (steps, batch, c.block_size + 1)).astype(np.int32)
    )
    times = []
    for _ in range(intervals + 1):
        start = time.perf_counter()
        for w in windows:
            model.train_on_batch(w[:, :-1], w[:, 1:])
        times.append(time.perf_counter() - start)
    tokens_per_s = steps * batch * c.block_size / statistics.median(times[1:])  # the first: tracing
    fpt = flops_per_token(model, c)
    return {
        "model": f"plain Keras {preset}",
        "batch": batch,
        "block_size": c.block_size,
        "parameters": model.count_params(),
        "jit": False,
        "steps_per_execution": 1,
        "tokens_per_s": round(tokens_per_s, 1),
        "flops_per_token": fpt,
        "gflops": round(tokens_per_s * fpt / 1e9, 2),
    }


def train_bench(configs=TRAIN_CONFIGS, intervals: int = 4, reference: str | None = "nano"):
    """Yield one result per configuration, each with the roof and MFU, then the plain-Keras
    reference at batch 12 and each GPT's speed against it, all measured in this one run."""
    device.setup({"precision": device.describe()["precision"]})
    roof = matmul_roof()
    results = [train_config(*cfg, intervals=intervals) for cfg in configs]
    if reference:
        results.append(plain_keras(12, reference, intervals))
    roof = max(roof, matmul_roof())  # before and after: the best the machine gave
    base = results[-1]["tokens_per_s"] if reference else None
    for r in results:
        vs = {"vs_plain_keras": round(r["tokens_per_s"] / base, 2)} if base and r["batch"] == 12 else {}
        yield {**r, "roof_gflops": round(roof, 1), "mfu": round(r["gflops"] / roof, 4), **vs}


def _best_ms(fn, *args, reps: int = 20, trials: int = 3) -> float:
    fn(*args)  # compile
    best = math.inf
    for _ in range(trials):
        start = time.perf_counter()
        for _ in range(reps):
            out = fn(*args)
        [o.numpy() for o in (out if isinstance(out, list | tuple) else [out])]
        best = min(best, (time.perf_counter() - start) / reps * 1e3)
    return best


def _gemm_only(config, batch: int):
    """A compiled function doing only a training step's matrix products, on random operands."""
    B, T, C, H, V = batch, config.block_size, config.n_embd, config.n_head, VOCAB
    shapes = [(C, 3 * C), (C, C), (C, 4 * C), (4 * C, C)] * config.n_layer + [(C, V)]
    weights = [tf.random.normal(s) for s in shapes]
    acts = {k: tf.random.normal((B * T, k)) for k in {s[0] for s in shapes} | {s[1] for s in shapes}}
    q = tf.random.normal((B, H, T, C // H))
    att = tf.random.normal((B, H, T, T))

    @tf.function(jit_compile=True)
    def gemm():
        out = []
        for w in weights:
            k, n = w.shape
            xs, dy = acts[k], acts[n]
            out += [tf.reduce_sum(xs @ w), tf.reduce_sum(dy @ tf.transpose(w))]
            out.append(tf.reduce_sum(tf.transpose(xs) @ dy))
        for _ in range(config.n_layer):  # QK^T, AV, and their two gradients each
            out.append(tf.reduce_sum(q @ tf.transpose(q, (0, 1, 3, 2))))
            out.append(tf.reduce_sum(att @ q))
            out += [tf.reduce_sum(att @ q), tf.reduce_sum(tf.transpose(att, (0, 1, 3, 2)) @ q)]
            out += [tf.reduce_sum(att @ q), tf.reduce_sum(tf.transpose(att, (0, 1, 3, 2)) @ q)]
        return tf.add_n(out)

    return gemm


def _keras_step_ms(model, config, c, rng, seed: int) -> float:
    """Milliseconds per step of the whole Keras step (the run's own loop), best of three."""
    loop.compile_model(model, c, config.family)
    model.steps_per_execution = loop.steps_per_execution(c)
    ids = rng.integers(0, VOCAB, 200_000).astype(np.int32)
    ds = windows.train_dataset(ids, config.block_size, c.batch_size, seed=seed)
    model.fit(ds, epochs=1, steps_per_epoch=c.log_every, verbose=0, shuffle=False)  # compile
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        model.fit(ds, epochs=1, steps_per_epoch=c.log_every, verbose=0, shuffle=False)
        best = min(best, (time.perf_counter() - start) / c.log_every * 1e3)
    return best


def step_profile(batch: int, preset: str = "nano", seed: int = 0) -> dict:
    """Where one training step's time goes: milliseconds of its parts, each XLA-compiled alone.

    ``forward``: logits and loss; ``backward``: forward plus gradients; ``step``: the whole
    Keras step with the optimizer (a ``steps_per_execution`` loop, per step); ``gemm``: only
    the step's matrix products, forward and backward (for every ``X @ W``, also ``dY @ W^T``
    and ``X^T @ dY``; the attention's batched products likewise), on the same shapes. The
    gap from ``gemm`` to ``step`` is everything else (LayerNorm, softmax, GELU, the loss,
    Adam, the input pipeline, the loop); ``gemm`` against the roof is what XLA's CPU
    matrix kernels reach at these small shapes.
    """
    config = models.make_config(preset, vocab_size=VOCAB)
    c = make_train_config(preset, batch_size=batch, seed=seed)
    keras.utils.set_random_seed(seed)
    model = models.build_model(config)
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.integers(0, VOCAB, (batch, config.block_size)), tf.int32)
    y = tf.constant(rng.integers(0, VOCAB, (batch, config.block_size)), tf.int32)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function(jit_compile=True)
    def forward(x, y):
        return loss_fn(y, model(x, training=True))

    @tf.function(jit_compile=True)
    def backward(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        return tape.gradient(loss, model.trainable_variables)

    best = _keras_step_ms(model, config, c, rng, seed)
    fpt = flops_per_token(model, config)
    result = {
        "model": preset,
        "batch": batch,
        "forward_ms": _best_ms(forward, x, y),
        "backward_ms": _best_ms(backward, x, y),
        "step_ms": best,
        "gemm_ms": _best_ms(_gemm_only(config, batch)),
        "model_gflop_per_step": fpt * batch * config.block_size / 1e9,
    }
    result["gemm_gflops"] = result["model_gflop_per_step"] / result["gemm_ms"] * 1e3
    result["step_gflops"] = result["model_gflop_per_step"] / result["step_ms"] * 1e3
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}


def format_profile(r: dict) -> str:
    return (
        f"{r['model']} batch {r['batch']}: forward {r['forward_ms']:.2f} ms, forward+backward "
        f"{r['backward_ms']:.2f} ms, whole step {r['step_ms']:.2f} ms; its matrix products alone "
        f"{r['gemm_ms']:.2f} ms ({r['gemm_gflops']:.0f} GFLOP/s; the step {r['step_gflops']:.0f} GFLOP/s; "
        f"roof {r['roof_gflops']:.0f})"
    )


def process_seconds() -> float:
    """Seconds since this process started (from /proc: its start time against the uptime)."""
    import os

    with open("/proc/self/stat") as f:
        start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def time_to_quality(
    target: float = TARGET_LOSS,
    model_name: str = "nano",
    source: str = "builtin:tiny-shakespeare",
    eval_every: int = 100,
    steps: int | None = None,
    runs_root: Path | None = None,
    model_overrides: dict | None = None,
    **overrides,
) -> dict:
    """Train with the default recipe, validating every ``eval_every`` steps; the time to ``target``."""
    c = make_train_config(
        model_name, steps=steps, eval_every=eval_every, log_every=eval_every, sample_length=0, **overrides
    )
    job = lmdata.prepare(
        model_name, DataConfig(source=source), c, model_overrides=model_overrides, loaded=corpus.load(source)
    )
    curve, t0 = [], [None]

    def listener(event: str, record: dict) -> None:
        if event == "start":
            t0[0] = time.perf_counter()
        elif event == "log" and "val_loss" in record and record["step"] > 0:  # not the untrained model
            curve.append(
                {
                    "step": record["step"],
                    "tokens": record["step"] * c.batch_size * job.model_config.block_size,
                    "command_s": round(process_seconds(), 2),  # from the process's start
                    "wall_s": round(time.perf_counter() - t0[0], 2),
                    "val_loss": round(record["val_loss"], 4),
                    "tokens_per_s": record["tokens_per_s"],
                }
            )

    with tempfile.TemporaryDirectory() as tmp:
        result = lm.start(job, Path(runs_root or tmp), name="bench", listener=listener)
    reached = next((p for p in curve if p["val_loss"] <= target), None)
    strict = next((p for p in curve if p["val_loss"] <= 1.62), None)
    by_68 = [p["val_loss"] for p in curve if p["command_s"] <= 68]  # of the whole command
    return {
        "model": model_name,
        "corpus": source,
        "recipe": {k: getattr(c, k) for k in RECIPE_KEYS},
        "eval_every": eval_every,
        "eval_windows": c.eval_batches * c.batch_size,
        "target": target,
        "seconds_to_target": reached["wall_s"] if reached else None,
        "command_seconds_to_target": reached["command_s"] if reached else None,
        "step_at_target": reached["step"] if reached else None,
        "tokens_to_target": reached["tokens"] if reached else None,
        "step_at_1.62": strict["step"] if strict else None,
        "tokens_to_1.62": strict["tokens"] if strict else None,
        "command_seconds_to_1.62": strict["command_s"] if strict else None,
        "best_val_within_68s": min(by_68) if by_68 else None,
        "final_val_loss": curve[-1]["val_loss"] if curve else None,
        "wall_s": curve[-1]["wall_s"] if curve else None,
        "status": result["status"],
        "curve": curve,
    }


def startup(model_name: str = "modern-nano", source: str = "builtin:tiny-shakespeare") -> dict:
    """Seconds from this process's start to its first trained steps, by phase: importing
    TensorFlow (done by the command before this), preparing the job (corpus, tokenizer,
    checks), then building, tracing and compiling the model up to the end of its first
    call into the graph (one logged interval of ``log_every`` steps, timed apart; it follows
    the step-0 validation, whose time to the curve's first point is reported too)."""
    imported = process_seconds()
    t0 = time.perf_counter()
    c = make_train_config(model_name, steps=150, log_every=50, eval_every=150, sample_length=0)
    job = lmdata.prepare(model_name, DataConfig(source=source), c, loaded=corpus.load(source))
    prepared = time.perf_counter() - t0
    marks = []

    def listener(event: str, record: dict) -> None:
        if event == "log" and record["step"] == 0:
            marks.append(("point", time.perf_counter()))
        elif event in ("start", "log"):
            marks.append((event, time.perf_counter()))

    with tempfile.TemporaryDirectory() as tmp:
        lm.start(job, Path(tmp), name="startup", listener=listener)
    point = next((t for name, t in marks if name == "point"), None)  # the untrained model's validation
    (_, t_start), (_, t_first), (_, t_second) = [m for m in marks if m[0] != "point"][:3]
    interval = t_second - t_first  # a steady interval of the same steps: no compiling in it
    first = t_first - t_start
    return {
        "model": model_name,
        "import_s": round(imported, 2),
        "prepare_s": round(prepared, 2),
        "first_interval_s": round(first, 2),
        "steady_interval_s": round(interval, 2),
        "build_trace_compile_s": round(first - interval, 2),
        "to_first_step_s": round(imported + prepared + first - interval, 2),
        "to_first_point_s": round(imported + prepared + point - t_start, 2) if point else None,
    }


def ablation_rows(steps: int = 700, source: str = "builtin:tiny-shakespeare"):
    """Yield the time to quality of every variant of :data:`lmcore.experiments.ablation.VARIANTS`, each
    trained the same steps on the same schedule, validated every 50 steps."""
    for label, changes, optimizer in ablation.VARIANTS:
        r = time_to_quality(
            TARGET_LOSS,
            "nano",
            source,
            eval_every=50,
            steps=steps,
            model_overrides=dict(changes),
            **ablation.SHORT,
            **optimizer,
        )
        keras.backend.clear_session()
        yield {"variant": label, **{k: v for k, v in r.items() if k != "curve"}, "curve": r["curve"]}


GPU_MODELS = ("modern-small", "small", "seed-lstm")


def gpu_bench(steps: int = 300, names=GPU_MODELS, source: str = "builtin:tiny-shakespeare"):
    """For a GPU host (``bench gpu``; runs on a CPU too, in fp32): each model trained ``steps``
    steps on its recipe through the trainer, in the precision :func:`lmcore.device.describe`
    picks (mixed float16 on a GPU; Keras' LSTM takes cuDNN's kernel there, the trainer leaves
    recurrent models out of XLA); tokens/s (median of the logged intervals after the first),
    MFU against a matmul roof in the compute dtype measured in this run, and the validation
    loss reached."""
    info = device.describe()
    device.setup(info)
    dtype = keras.mixed_precision.global_policy().compute_dtype
    roof = matmul_roof(n=8192 if info["gpus"] else 2048, dtype=dtype)
    for name in names:
        every = max(1, steps // 4)
        r = time_to_quality(model_name=name, source=source, steps=steps, eval_every=every)
        speeds = [p["tokens_per_s"] for p in r["curve"][1:]] or [r["curve"][-1]["tokens_per_s"]]
        tokens_per_s = statistics.median(speeds)
        config = models.make_config(name, vocab_size=VOCAB)
        fpt = flops_per_token(models.build_model(config), config)
        keras.backend.clear_session()
        yield {
            "model": name,
            "device": info["device"],
            "precision": info["precision"],
            "steps": steps,
            "batch": r["recipe"]["batch_size"],
            "block_size": config.block_size,
            "tokens_per_s": round(tokens_per_s, 1),
            "flops_per_token": fpt,
            "gflops": round(tokens_per_s * fpt / 1e9, 2),
            "roof_gflops": round(roof, 1),
            "mfu": round(tokens_per_s * fpt / 1e9 / roof, 4),
            "val_loss": r["final_val_loss"],
            "wall_s": r["wall_s"],
        }


def rows(what: str, target: float = TARGET_LOSS, model: str = "nano", eval_every: int = 100, steps=None):
    """(record, line) pairs of ``python -m lmcore bench WHAT``, every benchmark but generate."""
    if what == "train-to-quality":
        r = time_to_quality(target, model, eval_every=eval_every, steps=steps)
        yield r, format_quality(r)
    elif what == "startup":
        r = startup(model)
        yield r, ", ".join(f"{k} {v}" for k, v in r.items())
    elif what == "ablation":
        for r in ablation_rows(steps or 700):
            yield r, f"{r['variant']}: {format_quality(r)}"
    elif what == "train-profile":
        roof = matmul_roof()
        for batch in (12, 64):
            r = {**step_profile(batch), "roof_gflops": round(roof, 1)}
            yield r, format_profile(r)
    elif what == "train":
        for r in train_bench():
            yield r, format_train(r)
    elif what == "gpu":
        for r in gpu_bench(steps or 300):
            yield (
                r,
                (
                    f"{format_train(r)}; {r['precision']} on {r['device']}, val {r['val_loss']} "
                    f"after {r['steps']} steps"
                ),
            )


def format_train(r: dict) -> str:
    vs = f", {r['vs_plain_keras']:.2f}x plain Keras" if "vs_plain_keras" in r else ""
    return (
        f"{r['model']:<17} batch {r['batch']:>3} block {r['block_size']:>3}: "
        f"{r['tokens_per_s']:>9,.0f} tok/s, "
        f"{r['flops_per_token'] / 1e6:.2f} MFLOP/token, {r['gflops']:7.1f} GFLOP/s of a "
        f"{r['roof_gflops']:.0f} GFLOP/s roof: MFU {r['mfu']:.1%}{vs}"
    )


def format_quality(r: dict) -> str:
    hit = (
        f"val {r['target']} at {r['seconds_to_target']:.1f} s (step {r['step_at_target']})"
        if r["seconds_to_target"] is not None
        else f"val {r['target']} not reached"
    )
    best = r["best_val_within_68s"]
    within = f"; best val within 68 s {best:.4f}" if best is not None else ""
    return f"{r['model']} on {r['corpus']}: {hit}{within}; final val {r['final_val_loss']} at {r['wall_s']} s"
