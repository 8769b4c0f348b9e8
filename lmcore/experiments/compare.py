"""Comparisons: the tutorial's three variants trained over several seeds, side by side.

From scratch (the parent's network and tokenizer, untrained), fine-tuned with everything
trainable, and fine-tuned with the body frozen; scored by held-out accuracy for a classifier
(:func:`compare_classifiers`) or by the final validation loss on the new text for a language
model (:func:`compare_language_models`). The table, kept in
``<runs dir>/.comparisons/<id>.json`` as it grows, gives each variant's mean and spread and the
per-seed margins over the from-scratch runs. Each run is an ordinary run whose record names
its place in the comparison.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from lmcore import LMError, device, runs
from lmcore.text.labeled import Labeled
from lmcore.training import classify, finetune, lm, transfer

VARIANTS = ("from scratch", "fine-tuned", "fine-tuned, body frozen")


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


def _run_comparison(table: dict, root: Path, train_one, listener, limits) -> dict:
    """Train every (variant, seed) with ``train_one(variant, seed, place in the comparison)``,
    saving the table as it grows; a shared server's time cap (``limits``) ends it early, saying so."""
    import keras

    runs.write_comparison(root, summarize(table))
    for seed in table["seed_list"]:
        for variant in VARIANTS:
            if limits is not None and limits.time_up():
                table["status"] = "stopped"
                table["message"] = limits.time_up_message()
                table = summarize(table)
                runs.write_comparison(root, table)
                return table
            keras.backend.clear_session()
            place = {"id": table["compare_id"], "variant": variant, "seed": seed}
            result = train_one(variant, seed, place)
            table["runs"].append({"variant": variant, "seed": seed, **result})
            runs.write_comparison(root, summarize(table))
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
    runs.write_comparison(root, table)
    return table


def new_table(
    root: Path, kind: str, parent: transfer.Parent, target: str, seeds: int, compare_id: str | None = None
) -> dict:
    """The empty table of a new comparison (its id checked and unused)."""
    compare_id = compare_id or time.strftime("%Y%m%d-%H%M%S") + f"-compare-{kind}"
    runs.check_run_id(compare_id)
    if runs.read_comparison(root, compare_id) is not None:
        raise LMError(f"a comparison named {compare_id!r} already exists")
    metric, better = ("accuracy", "higher") if kind == "classify" else ("val_loss", "lower")
    return {
        "compare_id": compare_id,
        "kind": kind,
        "parent": parent.run_dir.name,
        "target": target,
        "metric": metric,
        "better": better,
        "seeds": seeds,
        "seed_list": list(range(1, seeds + 1)),
        "status": "running",
        "runs": [],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def _short(variant: str) -> str:
    return {"from scratch": "scratch", "fine-tuned": "ft"}.get(variant, "frozen")


def compare_classifiers(
    parent: transfer.Parent,
    data: Labeled,
    root: Path,
    steps: int | None = None,
    seeds: int = 3,
    compare_id: str | None = None,
    listener=None,
    limits=None,
) -> dict:
    """The three variants over ``seeds`` seeds, scored by held-out accuracy."""
    table = new_table(root, "classify", parent, data.source, seeds, compare_id)
    kept = parent.model_config.n_layer
    device.import_tensorflow()

    def train_one(variant, seed, place):
        scratch = variant == "from scratch"
        s = transfer.Surgery(freeze=kept if variant.endswith("frozen") else 0)
        config = classify.train_config_for(
            parent.train_config(), scratch, bool(s.freeze), steps=steps, seed=seed
        )
        name = f"cmp-{_short(variant)}-s{seed}"
        return classify.train(
            parent, data, s, config, root, name, scratch=scratch, comparison=place, limits=limits
        )

    return _run_comparison(table, root, train_one, listener, limits)


def compare_language_models(
    parent: transfer.Parent,
    source: str,
    root: Path,
    steps: int | None = None,
    seeds: int = 1,
    eval_every: int | None = None,
    compare_id: str | None = None,
    listener=None,
    limits=None,
) -> dict:
    """The three variants over ``seeds`` seeds on the new text ``source``, scored by the final
    validation loss; from scratch trains with the parent's own recipe, as pre-training did."""
    table = new_table(root, "lm", parent, source, seeds, compare_id)
    kept = parent.model_config.n_layer
    jobs = {}
    for variant in VARIANTS:
        s = transfer.Surgery(freeze=kept if variant.endswith("frozen") else 0)
        config = finetune.train_config_for(parent.train_config(), steps=steps, eval_every=eval_every)
        if variant == "from scratch":
            base = parent.train_config()
            config = replace(config, lr=base.lr, min_lr=base.min_lr)
        jobs[variant] = (s, *finetune.prepare(parent, source, s, config))
    device.import_tensorflow()

    def train_one(variant, seed, place):
        s, job, record = jobs[variant]
        job.train.seed = seed
        name = f"lmcmp-{_short(variant)}-s{seed}"
        scratch = variant == "from scratch"
        result = lm.start_child(
            parent, job, record, root, name, scratch=scratch, comparison=place, limits=limits
        )
        return {k: result.get(k) for k in ("run_id", "status", "val_loss", "best_val_loss", "steps")}

    return _run_comparison(table, root, train_one, listener, limits)
