"""Text classification on a pre-trained run: its body, mean pooling over the tokens, a dense head.

Texts (from :mod:`lmcore.text.labeled`) are encoded with the parent's tokenizer and cut to its
block size; padding is ignored by giving it zero weight in the pooling, so causal bodies
(GPT, LSTM, GRU) read each text exactly as it is. Training is the one loop of
:mod:`lmcore.training.loop` with the :class:`Classification` task.

A classifier run is a run folder like any other (a record with ``task: classify`` and its
``parent``, ``metrics.jsonl``, ``status.json``) plus ``results.json`` (held-out accuracy,
macro-F1, confusion matrix) and ``checkpoints/classifier.keras``; it is not a language model,
so the Generate page does not list it. Importing this module loads no TensorFlow.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import numpy as np

from lmcore import LMError, device, runs
from lmcore.nn.config import TrainConfig, check_train_config
from lmcore.runs import DataRecord, RunRecord
from lmcore.text import labeled, tokenizers
from lmcore.text.labeled import Labeled
from lmcore.training import transfer

DEFAULT_STEPS = 300
LR_FACTOR = 0.5  # fine-tuning rate: the parent's peak learning rate times this
HEAD_LR_FACTOR = 5.0  # the same with the body frozen (only the new head trains)
MODEL_FILE = "classifier.keras"


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


def plan(model_config, s: transfer.Surgery, n_labels: int | None = None) -> list[dict]:
    """Like :func:`lmcore.training.transfer.plan`, with the language-model head replaced by pooling
    and a classifier."""
    rows = transfer.plan(model_config, s)
    kept = model_config.n_layer - s.drop_top
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


def build_classifier(parent: transfer.Parent, s: transfer.Surgery, n_labels: int, scratch: bool = False):
    """The pre-trained body (after the surgery and freezing), mean pooling and a dense head.

    Inputs: ``ids`` (B, T) int32 and pooling ``weights`` (B, T); output: logits (B, n_labels).
    """
    import keras
    from keras import layers

    from lmcore.nn import models  # Keras, to build: the Fine-tune page imports this module

    lm = transfer.build_from_parent(parent, s, scratch=scratch)
    kept = parent.model_config.n_layer - s.drop_top
    if s.freeze == kept and s.add_layers == 0 and parent.model_config.family == "gpt":
        for layer in models.parts(lm).top:  # the whole body frozen (its final norm too): only the head learns
            layer.trainable = False
    body = keras.Model(lm.inputs, models.hidden_states(lm), name="body")  # (B, T, C)
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


def train_config_for(base: TrainConfig, scratch: bool, body_frozen: bool = False, **overrides) -> TrainConfig:
    """Training settings from the parent's ``base``: its optimizer and batch, a warm-up then a
    cosine schedule."""
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
    config = TrainConfig(**{**asdict(base), **values})
    check_train_config(config)
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


class Classification:
    """Labeled texts through the body, mean pooling and a dense head: what
    :class:`lmcore.training.loop.Trainer` needs to train a classifier. Nothing is saved during
    training; at the end, the classifier (``checkpoints/classifier.keras``) and its scores on
    the held-out test split (``results.json``)."""

    checkpoints = ()

    def __init__(self, data: Labeled, encoded: dict, c: TrainConfig):
        self.data, self.encoded, self.c, self.K = data, encoded, c, len(data.labels)

    def dataset(self, start_step: int):
        x, w, y, _ = self.encoded["train"]
        return _dataset(x, w, y, self.c.batch_size, self.c.seed)

    def record(self, logs: dict, steps: int, seconds: float) -> dict:
        return {
            "loss": float(logs.get("loss", math.nan)),
            "acc": float(logs.get("accuracy", math.nan)),
            "examples_per_s": round(steps * self.c.batch_size / seconds, 1),
        }

    def validate(self, model) -> dict:
        x, w, y, _ = self.encoded["val"]
        probs = _predict_probs(model, x, w)
        loss = float(-np.mean(np.log(np.maximum(probs[np.arange(len(y)), y], 1e-12))))
        val = scores(y, probs.argmax(-1), self.K)
        return {"val_loss": loss, "val_acc": val["accuracy"], "val_f1": val["macro_f1"]}

    def after_validation(self, model, step: int, run_dir: Path, listener) -> None:
        pass

    def finish(self, model, run_dir: Path) -> dict:
        runs.atomic_write(run_dir / runs.CHECKPOINTS / MODEL_FILE, lambda p: model.save(p))
        x, w, y, _ = self.encoded["test"]
        probs = _predict_probs(model, x, w)
        results = {
            **scores(y, probs.argmax(-1), self.K),
            "labels": self.data.labels,
            "test_examples": len(y),
            **transfer.count_params(model),
        }
        runs.write_json(run_dir / runs.RESULTS, results)
        shown = ("accuracy", "macro_f1", "confusion", "test_examples", "trainable_params", "frozen_params")
        return {k: results[k] for k in shown}


def _encode_splits(parent: transfer.Parent, data: Labeled) -> dict:
    """(ids, weights, label indices, stats) for training, validation (a tenth held out of the
    training examples) and test, encoded with the parent's tokenizer."""
    index = {label: i for i, label in enumerate(data.labels)}
    train_rows, val_rows = labeled.stratified_split(data.train, 0.1, labeled.SPLIT_SEED)
    encoded = {}
    for split, rows in (("train", train_rows), ("val", val_rows), ("test", data.test)):
        ids, weights, stats = encode(parent.tokenizer, [t for t, _ in rows], parent.model_config.block_size)
        encoded[split] = (ids, weights, np.array([index[label] for _, label in rows], dtype=np.int32), stats)
    return encoded


def _record(parent, data: Labeled, s, config: TrainConfig, encoded: dict, info: dict, scratch, comparison):
    """A classifier run's record: its body's config, the head, the labels, the lineage."""
    lineage = {
        **asdict(s),
        "parent": parent.run_dir.name,
        "parent_checkpoint": parent.checkpoint.stem,
        "parent_corpus": parent.record.data.source,
        "parent_n_layer": parent.model_config.n_layer,
        "scratch": scratch,
        "oov": transfer.oov_report(parent.tokenizer, "\n".join(t for t, _ in data.train + data.test)),
        "plan": plan(parent.model_config, s, len(data.labels)),
    }
    examples = {f"{k}_examples": len(encoded[k][2]) for k in ("train", "val", "test")}
    truncated = sum(e[3]["truncated"] for e in encoded.values())
    return RunRecord(
        "classifier",
        transfer.child_model_config(parent.model_config, s),
        config,
        DataRecord(source=data.source, tokenizer=parent.tokenizer.kind, truncated=truncated, **examples),
        info,
        task="classify",
        parent=None if scratch else parent.run_dir.name,
        finetune=lineage,
        comparison=comparison,
        head={"pooling": "mean", "n_labels": len(data.labels)},
        labels=data.labels,
    )


def train(
    parent: transfer.Parent,
    data: Labeled,
    s: transfer.Surgery,
    config: TrainConfig,
    root: Path,
    name: str | None = None,
    run_id: str | None = None,
    listener=None,
    scratch: bool = False,
    comparison: dict | None = None,
    limits=None,
) -> dict:
    """Create a classifier run, train it with the one training loop, and score it on the
    held-out split (within a shared server's ``limits``, if any)."""
    import keras

    from lmcore.training import loop  # TensorFlow, to train: the Fine-tune page imports this module

    transfer.check_surgery(parent.model_config, s)
    encoded = _encode_splits(parent, data)
    info = device.describe()
    device.setup(info)
    run_dir = runs.create(root, run_id or runs.new_run_id("classifier", name or "classify"))
    with runs.training_lock(run_dir):
        runs.write_record(run_dir, _record(parent, data, s, config, encoded, info, scratch, comparison))
        tokenizers.save(parent.tokenizer, run_dir / runs.TOKENIZER)  # the parent's, unchanged
        if listener:
            listener("start", {"run_id": run_dir.name, "run_dir": str(run_dir), **info})

        def make_model():
            keras.utils.set_random_seed(config.seed)
            model = build_classifier(parent, s, len(data.labels), scratch=scratch)
            loop.compile_model(model, config, "classifier")
            return model

        task = Classification(data, encoded, config)
        result = loop.Trainer(run_dir, task, config, 0, listener, limits).run(make_model, task.dataset)
    return {**result, "labels": data.labels, "parent": None if scratch else parent.run_dir.name}


# ---------------------------------------------------------------------------- prediction


class Predictor:
    """A trained classifier run, loaded once, labeling texts."""

    def __init__(self, run_dir: Path):
        from lmcore.nn import models  # Keras, to load: the Fine-tune page imports this module

        self.record = runs.read_record(run_dir)
        if self.record is None or self.record.task != "classify":
            raise LMError(f"run {run_dir.name} is not a classifier (train one with `classify train`)")
        path = run_dir / runs.CHECKPOINTS / MODEL_FILE
        if not path.is_file():
            raise LMError(f"run {run_dir.name} has no trained classifier yet")
        self.labels = self.record.labels
        self.block_size = self.record.model.block_size
        self.tokenizer = tokenizers.load(run_dir / runs.TOKENIZER)
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
    return runs.read_json(run_dir / runs.RESULTS, None)
