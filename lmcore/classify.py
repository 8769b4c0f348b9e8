"""Text classification on a pre-trained run: its body, mean pooling over the tokens, a dense head.

The labeled data comes from ``builtin:reviews`` (the generated sentiment set, with its own
held-out test split), ``keras:imdb`` (the film reviews Keras downloads, decoded back to
text; needs the internet once) or a CSV file with a text and a label column and any number
of labels (a seeded, stratified fifth held out for testing). Texts are encoded with the
parent's tokenizer and cut to its block size; padding is ignored by giving it zero weight
in the pooling, so causal bodies (GPT, LSTM, GRU) read each text exactly as it is.

A classifier run is a run folder like any other (``config.json`` with ``task: classify``,
its ``parent``, ``metrics.jsonl``, ``status.json``) plus ``results.json`` (held-out
accuracy, macro-F1, confusion matrix) and ``checkpoints/classifier.keras``; it is not a
language model, so the Generate page does not list it.

``compare`` and ``compare_lm`` train the tutorial's three variants (from scratch, fine-tuned
with everything trainable, fine-tuned with the body frozen) over several seeds and keep the
table in ``<runs dir>/.comparisons/<id>.json``.

Importing this module loads no TensorFlow; training and prediction import it themselves.
"""

from __future__ import annotations

import csv
import io
import math
import random
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

import lmcore
from lmcore import LMError, corpus, finetune, public, runs
from lmcore import tokenizers as tok_mod
from lmcore import train as train_mod

DEFAULT_STEPS = 300
LR_FACTOR = 0.5  # fine-tuning rate: the parent's peak learning rate times this
HEAD_LR_FACTOR = 5.0  # the same with the body frozen (only the new head trains)
TEST_FRACTION = 0.2  # of a CSV, held out for the final scores
SPLIT_SEED = 2026  # the CSV split is the same for every training seed
DATA_SOURCES = ("builtin:reviews", "keras:imdb")
IMDB_EXAMPLES = (2000, 1000)  # train, test reviews taken from Keras' IMDB set
MODEL_FILE = "classifier.keras"


# ---------------------------------------------------------------------------- labeled data


@dataclass
class Labeled:
    """Texts with labels, split into training and held-out test examples."""

    source: str
    train: list[tuple[str, str]]  # (text, label)
    test: list[tuple[str, str]]
    labels: list[str]  # sorted; the classifier's output i is labels[i]
    notes: list[str] = field(default_factory=list)


def _rows_from_csv(data: bytes, name: str, text_column: str, label_column: str) -> list[tuple[str, str]]:
    """(text, label) rows of a CSV file, refusing missing columns and empty cells."""
    text, _, _ = corpus.decode_bytes(data, name)
    csv.field_size_limit(corpus.MAX_BYTES)
    try:
        reader = csv.DictReader(io.StringIO(corpus.normalize(text)))
        columns = reader.fieldnames or []
        if not columns:
            raise LMError(f"{name} is empty: it needs a header line and rows")
        missing = [c for c in (text_column, label_column) if c not in columns]
        if missing:
            raise LMError(
                f"{name} has no column {' or '.join(repr(c) for c in missing)}; columns are "
                f"{', '.join(columns)} (choose them with --text-column and --label-column)"
            )
        rows = [(r.get(text_column) or "", r.get(label_column) or "") for r in reader]
    except csv.Error as err:
        raise LMError(f"{name} is not a readable CSV file: {err}") from None
    for column, k in ((text_column, 0), (label_column, 1)):
        empty = [i + 2 for i, row in enumerate(rows) if not row[k].strip()]  # line 1 is the header
        if empty:
            lines = ", ".join(map(str, empty[:5])) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
            raise LMError(f"{name}: empty {column!r} on line(s) {lines}; fill them in or remove them")
    return [(t.strip(), label.strip()) for t, label in rows]


def check_labels(rows: list[tuple[str, str]], name: str) -> list[str]:
    """The sorted labels of ``rows``; refuses a single class or a label with one example."""
    if not rows:
        raise LMError(f"{name} has no rows")
    counts: dict[str, int] = {}
    for _, label in rows:
        counts[label] = counts.get(label, 0) + 1
    if len(counts) < 2:
        raise LMError(f"{name} has only one label ({next(iter(counts))!r}); a classifier needs at least two")
    rare = sorted(k for k, n in counts.items() if n < 2)
    if rare:
        raise LMError(
            f"{name}: label(s) {', '.join(map(repr, rare[:5]))} have a single example; each label needs "
            "at least two (one to train on, one to test)"
        )
    return sorted(counts)


def stratified_split(rows: list, fraction: float, seed: int) -> tuple[list, list]:
    """(kept, held out): ``fraction`` of each label's rows held out (at least one each)."""
    rng = random.Random(seed)
    kept, held = [], []
    by_label: dict[str, list] = {}
    for row in rows:
        by_label.setdefault(row[1], []).append(row)
    for label in sorted(by_label):
        group = by_label[label][:]
        rng.shuffle(group)
        n = min(max(1, round(len(group) * fraction)), len(group) - 1)
        held += group[:n]
        kept += group[n:]
    rng.shuffle(kept)
    rng.shuffle(held)
    return kept, held


def decode_imdb(sequences, word_index: dict, index_from: int = 3) -> list[str]:
    """Keras' IMDB id sequences back to text (ids below ``index_from`` are markers)."""
    words = {i + index_from: w for w, i in word_index.items()}
    return [" ".join(words[i] for i in seq if i in words) for seq in sequences]


def _imdb() -> tuple[list, list]:
    import keras

    from lmcore import device

    device.import_tensorflow()
    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.imdb.load_data()
        word_index = keras.datasets.imdb.get_word_index()
    except Exception as err:  # offline: urllib's errors arrive wrapped in Keras' own
        raise LMError(
            "keras:imdb is downloaded by Keras on first use (to ~/.keras/datasets) and that failed "
            f"({train_mod._first_line(err)}); use builtin:reviews offline"
        ) from None
    rng = np.random.default_rng(SPLIT_SEED)
    out = []
    for x, y, n in ((x_train, y_train, IMDB_EXAMPLES[0]), (x_test, y_test, IMDB_EXAMPLES[1])):
        pick = rng.choice(len(x), size=min(n, len(x)), replace=False)
        texts = decode_imdb([x[i] for i in pick], word_index)
        out.append([(t, ("negative", "positive")[int(y[i])]) for t, i in zip(texts, pick, strict=True)])
    return out[0], out[1]


def load_labeled(source: str, text_column: str = "text", label_column: str = "label") -> Labeled:
    """Labeled data from ``builtin:reviews``, ``keras:imdb`` or a CSV file."""
    if source == "builtin:reviews":
        from lmcore import reviews

        train, test = reviews.labeled()
        return Labeled(source, train, test, sorted(reviews.LABELS))
    if source == "keras:imdb":
        train, test = _imdb()
        return Labeled(source, train, test, ["negative", "positive"])
    if source.startswith(("builtin:", "keras:")):
        raise LMError(f"unknown labeled data {source!r}; use {', '.join(DATA_SOURCES)} or a CSV file")
    path = Path(source).expanduser()
    if not path.is_file():
        raise LMError(f"no such file: {source}")
    if path.suffix.lower() != ".csv":
        raise LMError(f"{path.name}: labeled data must be a .csv file with a text and a label column")
    if path.stat().st_size > corpus.MAX_BYTES:
        raise LMError(f"{source} is larger than {corpus.MAX_BYTES // 2**20} MB")
    rows = _rows_from_csv(path.read_bytes(), path.name, text_column, label_column)
    labels = check_labels(rows, path.name)
    train, test = stratified_split(rows, TEST_FRACTION, SPLIT_SEED)
    return Labeled(str(path), train, test, labels)


# ---------------------------------------------------------------------------- encoding, metrics


def encode(tokenizer, texts: list[str], block_size: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """(ids (N, T), pooling weights (N, T), stats): each text cut to ``block_size`` tokens.

    A row's weights are 1/length on its tokens and 0 on the padding, so the pooled vector is
    the mean over the text's own tokens. A text of unknown characters only becomes one
    token 0 (and is counted).
    """
    ids = np.zeros((len(texts), block_size), dtype=np.int32)
    weights = np.zeros((len(texts), block_size), dtype=np.float32)
    truncated = empty = 0
    for i, text in enumerate(texts):
        row = tokenizer.encode(text)
        truncated += len(row) > block_size
        row = row[:block_size]
        if len(row) == 0:
            empty += 1
            row = np.zeros(1, dtype=np.int32)
        ids[i, : len(row)] = row
        weights[i, : len(row)] = 1.0 / len(row)
    return ids, weights, {"truncated": truncated, "no_known_tokens": empty}


def scores(y_true, y_pred, n_labels: int) -> dict:
    """Accuracy, macro-F1 (the unweighted mean of each label's F1) and the confusion matrix.

    ``confusion[i][j]`` counts examples of label i predicted as label j. A label that is
    never predicted nor present has F1 0 (it still counts in the mean).
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    confusion = np.zeros((n_labels, n_labels), dtype=int)
    np.add.at(confusion, (y_true, y_pred), 1)
    tp = np.diag(confusion).astype(float)
    denom = confusion.sum(0) + confusion.sum(1)  # predicted + actual = 2tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros(n_labels), where=denom > 0)
    return {
        "accuracy": float(tp.sum() / max(len(y_true), 1)),
        "macro_f1": float(f1.mean()),
        "f1": [float(v) for v in f1],
        "confusion": confusion.tolist(),
    }


# ---------------------------------------------------------------------------- the model


def plan(model_config: dict, s: finetune.Surgery, n_labels: int | None = None) -> list[dict]:
    """Like :func:`finetune.plan`, with the language-model head replaced by pooling and a classifier."""
    rows = finetune.plan(model_config, s)
    kept = model_config["n_layer"] - s.drop_top
    body_frozen = s.freeze == kept and s.add_layers == 0
    for row in rows:
        if row["layer"] == "ln_f":
            row["state"] = "frozen" if body_frozen else "trainable"
        elif row["layer"] == "head":
            row.update(what="language-model output layer (not used)", state="dropped")
        elif row["layer"] == "wte":
            row["what"] = "token embedding"
    rows.append(dict(layer="pool", what="mean over the text's tokens", state="new"))
    to = f"{n_labels} labels" if n_labels else "one output per label"
    rows.append(dict(layer="classifier", what=f"dense layer to {to}", state="new"))
    return rows


def build_classifier(parent: finetune.Parent, s: finetune.Surgery, n_labels: int, scratch: bool = False):
    """The pre-trained body (after the surgery and freezing), mean pooling and a dense head.

    Inputs: ``ids`` (B, T) int32 and pooling ``weights`` (B, T); output: logits (B, n_labels).
    """
    import keras
    from keras import layers

    lm = finetune.build_from_parent(parent, s, scratch=scratch)
    gpt = parent.config["model"]["family"] == "gpt"
    hidden = lm.get_layer("ln_f").output if gpt else lm.get_layer("head").input  # (B, T, C)
    kept = parent.config["model"]["n_layer"] - s.drop_top
    if gpt and s.freeze == kept and s.add_layers == 0:
        lm.get_layer("ln_f").trainable = False  # the whole body frozen: only the head learns
    body = keras.Model(lm.inputs, hidden, name="body")
    ids = keras.Input(shape=(None,), dtype="int32", name="ids")  # (B, T)
    weights = keras.Input(shape=(None,), dtype="float32", name="weights")  # (B, T)
    pooled = layers.Dot(axes=1, name="pool")([weights, body(ids)])  # (B, C)
    pooled = layers.Dropout(0.1, name="pool_dropout")(pooled)
    logits = layers.Dense(n_labels, dtype="float32", name="classifier")(pooled)  # (B, K)
    return keras.Model([ids, weights], logits, name="classifier")


# ---------------------------------------------------------------------------- training


def default_lr(parent_lr: float, scratch: bool = False, body_frozen: bool = False) -> float:
    """From scratch: the parent's own peak rate (what the same network was pre-trained with).
    Fine-tuning: that times LR_FACTOR. Body frozen: times HEAD_LR_FACTOR, since only the new
    head learns (a linear probe takes larger steps safely)."""
    return parent_lr * (1 if scratch else HEAD_LR_FACTOR if body_frozen else LR_FACTOR)


def train_config_for(
    parent: finetune.Parent, scratch: bool, body_frozen: bool = False, **overrides
) -> train_mod.TrainConfig:
    """Training settings: the parent's optimizer and batch, a warm-up then cosine schedule."""
    base = parent.train_config()
    given = {k: v for k, v in overrides.items() if v is not None}
    steps = given.get("steps", DEFAULT_STEPS)
    lr = given.get("lr", default_lr(base.lr, scratch, body_frozen))
    values = dict(
        steps=steps,
        lr=lr,
        schedule="cosine",
        warmup_steps=min(20, steps // 10),
        min_lr=lr / 10,
        log_every=min(25, steps),
        eval_every=min(100, steps),
        sample_length=0,
        schedule_steps=None,
        augment={},
        jit_compile=False,
    )
    values.update({k: v for k, v in given.items() if k not in ("steps", "lr")})
    config = train_mod.TrainConfig(**{**asdict(base), **values})
    train_mod.check_train_config(config)
    return config


def _dataset(ids, weights, y, batch_size: int, seed: int):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(((ids, weights), y))
    ds = ds.shuffle(len(y), seed=seed, reshuffle_each_iteration=True).repeat()
    return ds.batch(batch_size, drop_remainder=len(y) >= batch_size).prefetch(2)


def _predict_probs(model, ids, weights, batch_size: int = 256) -> np.ndarray:
    import keras

    logits = model.predict([ids, weights], batch_size=batch_size, verbose=0)
    return keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1))


def train(
    parent: finetune.Parent,
    data: Labeled,
    s: finetune.Surgery,
    config: train_mod.TrainConfig,
    root: Path,
    name: str | None = None,
    run_id: str | None = None,
    listener=None,
    scratch: bool = False,
    extra: dict | None = None,
) -> dict:
    """Create a classifier run, train it, and score it on the held-out split."""
    import keras

    from lmcore import device

    finetune.check_surgery(parent.config["model"], s)
    T = parent.config["model"]["block_size"]
    index = {label: i for i, label in enumerate(data.labels)}
    train_rows, val_rows = stratified_split(data.train, 0.1, SPLIT_SEED)
    encoded = {}
    for split, rows in (("train", train_rows), ("val", val_rows), ("test", data.test)):
        ids, weights, stats = encode(parent.tokenizer, [t for t, _ in rows], T)
        encoded[split] = (ids, weights, np.array([index[label] for _, label in rows], dtype=np.int32), stats)
    all_text = "\n".join(t for t, _ in data.train + data.test)
    oov = finetune.oov_report(parent.tokenizer, all_text)
    info = device.describe()
    device.setup(info)
    run_dir = runs.create(root, run_id or runs.new_run_id("classifier", name or "classify"))
    record = {
        **asdict(s),
        "parent": parent.run_dir.name,
        "parent_checkpoint": parent.checkpoint.stem,
        "parent_corpus": (parent.config.get("data") or {}).get("source"),
        "parent_n_layer": parent.config["model"]["n_layer"],
        "scratch": scratch,
        "oov": oov,
        "plan": plan(parent.config["model"], s, len(data.labels)),
    }
    child_cfg = finetune.child_model_config(parent.config["model"], s)
    with runs.training_lock(run_dir):
        runs.write_json(
            run_dir / "config.json",
            {
                "task": "classify",
                "model_name": "classifier",
                "model": asdict(child_cfg),
                "head": {"pooling": "mean", "n_labels": len(data.labels)},
                "labels": data.labels,
                "train": asdict(config),
                "data": {
                    "source": data.source,
                    "tokenizer": parent.tokenizer.kind,
                    "train_examples": len(train_rows),
                    "val_examples": len(val_rows),
                    "test_examples": len(data.test),
                    "truncated": sum(e[3]["truncated"] for e in encoded.values()),
                },
                "device": info,
                "parent": None if scratch else parent.run_dir.name,
                "finetune": record,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "lmcore_version": lmcore.__version__,
                **(extra or {}),
            },
        )
        tok_mod.save(parent.tokenizer, run_dir / "tokenizer.json")  # the parent's, unchanged
        if listener:
            listener("start", {"run_id": run_dir.name, "run_dir": str(run_dir), **info})
        return _fit(run_dir, parent, data, s, config, encoded, scratch, listener, keras)


def _fit(run_dir, parent, data, s, c, encoded, scratch, listener, keras) -> dict:
    """The training loop of a classifier run: ``fit`` in intervals, a recorder, a final test."""
    stop_flag = threading.Event()
    limits = public.Limits.from_env()  # a shared server's time cap, if it set one
    restore = train_mod._install_signal_handlers(stop_flag)
    runs.write_status(run_dir, "running", step=0, total_steps=c.steps)
    K = len(data.labels)
    x_tr, w_tr, y_tr, _ = encoded["train"]
    x_va, w_va, y_va, _ = encoded["val"]
    failure, recorder = None, None
    try:
        keras.utils.set_random_seed(c.seed)
        model = build_classifier(parent, s, K, scratch=scratch)
        train_mod.compile_model(model, c, "classifier")
        recorder = _recorder(keras, run_dir, c, model, (x_va, w_va, y_va), K, listener, stop_flag, limits)
        model.fit(
            _dataset(x_tr, w_tr, y_tr, c.batch_size, c.seed),
            epochs=math.ceil(c.steps / c.log_every) + 1,
            steps_per_epoch=c.log_every,
            verbose=0,
            shuffle=False,  # the dataset shuffles itself, seeded
            callbacks=[recorder],
        )
        failure = recorder.failure
        if not failure:
            runs.atomic_write(run_dir / "checkpoints" / MODEL_FILE, lambda p: model.save(p))
            x_te, w_te, y_te, _ = encoded["test"]
            probs = _predict_probs(model, x_te, w_te)
            results = {
                **scores(y_te, probs.argmax(-1), K),
                "labels": data.labels,
                "test_examples": len(y_te),
                **finetune.count_params(model),
            }
            runs.write_json(run_dir / "results.json", results)
    except Exception as err:  # recorded in the run's status, like a language-model run
        failure = train_mod._first_line(err)
    finally:
        restore()
        runs.clear_stop(run_dir)
    if failure:
        status = runs.write_status(run_dir, "failed", message=failure)
        result = {"run_id": run_dir.name, "run_dir": str(run_dir), "status": "failed", "message": failure}
    else:
        status = runs.write_status(
            run_dir,
            "stopped" if recorder.stopped else "completed",
            step=recorder.step,
            val_loss=recorder.last_val,
            best_val_loss=recorder.best,
            accuracy=results["accuracy"],
            macro_f1=results["macro_f1"],
            message=limits.time_up_message() if recorder.stopped and limits.time_up() else None,
        )
        result = {
            "run_id": run_dir.name,
            "run_dir": str(run_dir),
            "status": status["status"],
            "steps": recorder.step,
            "val_loss": recorder.last_val,
            "accuracy": results["accuracy"],
            "macro_f1": results["macro_f1"],
            "confusion": results["confusion"],
            "labels": data.labels,
            "test_examples": results["test_examples"],
            "trainable_params": results["trainable_params"],
            "frozen_params": results["frozen_params"],
        }
    result["parent"] = None if scratch else parent.run_dir.name
    if listener:
        listener("end", result)
    return result


def _recorder(keras, run_dir, c, model, val, K, listener, stop_flag, limits):
    x_va, w_va, y_va = val

    class Recorder(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.step = self.logged = 0
            self.t0 = self.t_log = time.perf_counter()
            self.best, self.last_val = None, None
            self.failure, self.stopped = None, False

        def on_train_batch_begin(self, batch, logs=None):
            self.step += 1
            if self.step >= c.steps:
                self.model.stop_training = True
            elif stop_flag.is_set() or runs.stop_requested(run_dir) or limits.time_up():
                self.stopped = self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            now = time.perf_counter()
            loss = float(logs.get("loss", math.nan))
            if not math.isfinite(loss):
                self.failure = f"the loss became {loss} by step {self.step}; lower the learning rate"
                self.model.stop_training = True
                return
            record = {
                "step": self.step,
                "time": round(now - self.t0, 3),
                "loss": loss,
                "acc": float(logs.get("accuracy", math.nan)),
                "lr": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
                "examples_per_s": round(
                    (self.step - self.logged) * c.batch_size / max(now - self.t_log, 1e-9), 1
                ),
            }
            self.logged = self.step
            if self.step % c.eval_every < c.log_every or self.step >= c.steps or self.stopped:
                probs = _predict_probs(self.model, x_va, w_va)
                val_loss = float(-np.mean(np.log(np.maximum(probs[np.arange(len(y_va)), y_va], 1e-12))))
                val = scores(y_va, probs.argmax(-1), K)
                record.update(val_loss=val_loss, val_acc=val["accuracy"], val_f1=val["macro_f1"])
                self.last_val = val_loss
                self.best = val_loss if self.best is None else min(self.best, val_loss)
            runs.append_jsonl(run_dir / "metrics.jsonl", record)
            runs.write_status(
                run_dir, "running", step=self.step, val_loss=self.last_val, best_val_loss=self.best
            )
            if listener:
                listener("log", {**record, "tokens_per_s": record["examples_per_s"]})
            self.t_log = time.perf_counter()

    return Recorder()


def train_from_args(args, root: Path, listener=None) -> dict:
    """``classify train``: everything checked before the run folder is created."""
    from lmcore import device

    parent = finetune.load_parent(args.parent, root)
    s = finetune.surgery(parent.config["model"], args.freeze, args.drop_top, args.add_layers)
    kept = parent.config["model"]["n_layer"] - s.drop_top
    config = train_config_for(
        parent,
        args.scratch,
        s.freeze == kept and s.add_layers == 0,
        steps=args.steps,
        lr=args.lr,
        batch_size=args.batch_size,
        log_every=args.log_every,
        eval_every=args.eval_every,
        seed=args.seed,
    )
    data = load_labeled(args.data, args.text_column, args.label_column)
    device.import_tensorflow()
    return train(parent, data, s, config, root, args.name, args.run_id, listener, scratch=args.scratch)


# ---------------------------------------------------------------------------- prediction


class Predictor:
    """A trained classifier run, loaded once, labeling texts."""

    def __init__(self, run_dir: Path):
        from lmcore import models

        self.config = runs.read_json(run_dir / "config.json", {}) or {}
        if self.config.get("task") != "classify":
            raise LMError(f"run {run_dir.name} is not a classifier (train one with `classify train`)")
        path = run_dir / "checkpoints" / MODEL_FILE
        if not path.is_file():
            raise LMError(f"run {run_dir.name} has no trained classifier yet")
        self.labels = self.config["labels"]
        self.block_size = self.config["model"]["block_size"]
        self.tokenizer = tok_mod.load(run_dir / "tokenizer.json")
        self.model = models.load_model(path, compile=False)

    def predict(self, texts: list[str]) -> list[dict]:
        """One result per text: the likeliest label, every label's probability, and notes."""
        if not texts or not all(t.strip() for t in texts):
            raise LMError("give a non-empty text to classify")
        ids, weights, _ = encode(self.tokenizer, texts, self.block_size)
        probs = _predict_probs(self.model, ids, weights)
        out = []
        for text, p in zip(texts, probs, strict=True):
            notes = []
            unknown = self.tokenizer.unknown(text)
            if unknown:
                notes.append(f"{sum(unknown.values())} unknown token(s) ignored")
            if len(self.tokenizer.encode(text)) > self.block_size:
                notes.append(f"only the first {self.block_size} tokens were read")
            out.append(
                {
                    "text": text,
                    "label": self.labels[int(p.argmax())],
                    "probabilities": {label: float(v) for label, v in zip(self.labels, p, strict=True)},
                    "notes": notes,
                }
            )
        return out


def load_classifier(run_dir: Path) -> Predictor:
    return Predictor(run_dir)


def results(run_dir: Path) -> dict | None:
    """A classifier run's held-out scores (``results.json``), or None before it has finished."""
    return runs.read_json(run_dir / "results.json", None)


# ---------------------------------------------------------------------------- comparisons

VARIANTS = ("from scratch", "fine-tuned", "fine-tuned, body frozen")


def comparisons_dir(root: Path) -> Path:
    return root / ".comparisons"


def read_comparison(root: Path, compare_id: str) -> dict | None:
    return runs.read_json(comparisons_dir(root) / f"{runs.check_run_id(compare_id)}.json", None)


def list_comparisons(root: Path) -> list[dict]:
    folder = comparisons_dir(root)
    found = [runs.read_json(p, None) for p in folder.glob("*.json")] if folder.is_dir() else []
    return sorted((c for c in found if c), key=lambda c: c.get("created", ""), reverse=True)  # newest first


def summarize(table: dict) -> dict:
    """Per-variant mean and spread, and the per-seed margins over the from-scratch runs."""
    metric, better = table["metric"], table["better"]
    rows = []
    by = {
        v: {r["seed"]: r for r in table["runs"] if r["variant"] == v and r.get(metric) is not None}
        for v in VARIANTS
    }
    for v in VARIANTS:
        values = [by[v][s][metric] for s in sorted(by[v])]
        if values:
            row = {
                "variant": v,
                "values": values,
                "mean": float(np.mean(values)),
                "std": float(np.std(values)),
            }
            if table["kind"] == "classify":
                row["macro_f1"] = float(np.mean([by[v][s]["macro_f1"] for s in sorted(by[v])]))
            rows.append(row)
    margins = {}
    sign = 1 if better == "higher" else -1
    for v in VARIANTS[1:]:
        common = sorted(set(by[v]) & set(by[VARIANTS[0]]))
        if common:
            diffs = [sign * (by[v][s][metric] - by[VARIANTS[0]][s][metric]) for s in common]
            margins[f"{v} vs from scratch"] = (
                f"{np.mean(diffs):+.4f} mean, {min(diffs):+.4f} worst seed over {len(diffs)} seed(s) "
                f"({better} {metric} is better; a positive margin means fine-tuning wins)"
            )
    return {**table, "rows": rows, "margins": margins}


def _run_comparison(table: dict, root: Path, train_one, listener) -> dict:
    """Train every (variant, seed) with ``train_one``, saving the table as it grows."""
    import keras

    path = comparisons_dir(root) / f"{table['compare_id']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    runs.write_json(path, summarize(table))
    limits = public.Limits.from_env()  # a shared server's time cap, if it set one
    for seed in table["seed_list"]:
        for variant in VARIANTS:
            if limits.time_up():
                table["status"] = "stopped"
                table["message"] = limits.time_up_message()
                table = summarize(table)
                runs.write_json(path, table)
                return table
            keras.backend.clear_session()
            extra = {"comparison": {"id": table["compare_id"], "variant": variant, "seed": seed}}
            result = train_one(variant, seed, extra)
            table["runs"].append({"variant": variant, "seed": seed, **result})
            runs.write_json(path, summarize(table))
            if listener:
                shown = result.get(table["metric"])
                listener(
                    "run",
                    {
                        "variant": variant,
                        "seed": seed,
                        "summary": f"{result['run_id']} {result['status']}, {table['metric']} "
                        + (f"{shown:.4f}" if shown is not None else "-"),
                    },
                )
    table["status"] = "completed"
    table = summarize(table)
    runs.write_json(path, table)
    return table


def _new_table(args, root: Path, kind: str, parent: finetune.Parent, target: str, metric: str, better: str):
    compare_id = args.compare_id or time.strftime("%Y%m%d-%H%M%S") + f"-compare-{kind}"
    runs.check_run_id(compare_id)
    if (comparisons_dir(root) / f"{compare_id}.json").exists():
        raise LMError(f"a comparison named {compare_id!r} already exists")
    return {
        "compare_id": compare_id,
        "kind": kind,
        "parent": parent.run_dir.name,
        "target": target,
        "metric": metric,
        "better": better,
        "seeds": args.seeds,
        "seed_list": list(range(1, args.seeds + 1)),
        "status": "running",
        "runs": [],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def compare(args, root: Path, listener=None) -> dict:
    """``classify compare``: the three variants over ``args.seeds`` seeds; held-out accuracy."""
    from lmcore import device

    parent = finetune.load_parent(args.parent, root)
    kept = parent.config["model"]["n_layer"]
    data = load_labeled(args.data, args.text_column, args.label_column)
    table = _new_table(args, root, "classify", parent, args.data, "accuracy", "higher")
    device.import_tensorflow()

    def train_one(variant, seed, extra):
        scratch = variant == "from scratch"
        s = finetune.Surgery(freeze=kept if variant.endswith("frozen") else 0)
        config = train_config_for(parent, scratch, bool(s.freeze), steps=args.steps, seed=seed)
        name = f"cmp-{'scratch' if scratch else 'frozen' if s.freeze else 'ft'}-s{seed}"
        return train(parent, data, s, config, root, name, scratch=scratch, extra=extra)

    return _run_comparison(table, root, train_one, listener)


def compare_lm(args, root: Path, listener=None) -> dict:
    """``compare``: the language-model form, scored by the final validation loss on the new text."""
    from lmcore import device

    parent = finetune.load_parent(args.parent, root)
    kept = parent.config["model"]["n_layer"]
    table = _new_table(args, root, "lm", parent, args.corpus, "val_loss", "lower")
    jobs = {}
    for variant in VARIANTS:
        s = finetune.Surgery(freeze=kept if variant.endswith("frozen") else 0)
        config = finetune.train_config_for(parent, steps=args.steps, eval_every=args.eval_every)
        if variant == "from scratch":  # the parent's own recipe, as pre-training used
            base = parent.train_config()
            config = train_mod.TrainConfig(
                **{
                    **asdict(config),
                    "lr": base.lr,
                    "min_lr": base.min_lr,
                    "warmup_steps": config.warmup_steps,
                }
            )
        jobs[variant] = (s, *finetune.prepare(parent, args.corpus, s, config))
    device.import_tensorflow()

    def train_one(variant, seed, extra):
        s, job, record = jobs[variant]
        job.train.seed = seed
        name = f"lmcmp-{'scratch' if variant == 'from scratch' else 'frozen' if s.freeze else 'ft'}-s{seed}"
        result = finetune.start(
            parent, job, record, root, name, scratch=variant == "from scratch", extra=extra
        )
        return {k: result.get(k) for k in ("run_id", "status", "val_loss", "best_val_loss", "steps")}

    return _run_comparison(table, root, train_one, listener)
