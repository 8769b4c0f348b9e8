"""The ablation: what each modern change buys, one at a time, against nanoGPT's classic ``nano``.

:data:`VARIANTS` runs from classic ``nano`` with Adam, through ``nano`` with Muon and each
architectural change of ``modern-nano`` added alone, to all of them together. Every variant
trains on the same corpus for the same steps with the same (short) schedule, so what
differs is the one change. :func:`table` reads any set of runs, the ablation's or the
user's own, and counts the steps and tokens each took to reach a validation loss: counts
that do not depend on how busy the machine was. TensorFlow-free, for the Runs page.
"""

from __future__ import annotations

from dataclasses import fields, replace

from lmcore import runs
from lmcore.jobs import specs
from lmcore.nn.config import MODERN, TRIED, DataConfig, GPTConfig, make_train_config

TARGETS = (1.8857, 1.62)  # nanoGPT's CPU recipe after its 2,000 iterations; and a stricter one
SHORT = dict(schedule="cosine", warmup_steps=50, min_lr=4e-4)  # one schedule for every variant
ADAM, MUON = dict(optimizer="adam", lr=3e-3), dict(optimizer="muon", lr=8e-3)
ONE_BY_ONE = {  # each modern change alone
    "rotary positions": dict(rotary=True),
    "QK-norm": dict(qk_norm=True),
    "ReLU² MLP": dict(mlp="relu2"),
    "zero-initialised projections": dict(zero_init=True),
    "untied head": dict(tied_head=False),
    "logit soft-cap": dict(softcap=TRIED["softcap"]),
}


def modern_changes() -> list[str]:
    """The names of the changes the ``modern-*`` presets switch on (:data:`MODERN`)."""
    return [name for name, changes in ONE_BY_ONE.items() if changes.items() <= MODERN.items()]


VARIANTS = (  # (label, the model's changes on nano, the optimizer)
    ("nano, Adam", {}, ADAM),
    ("nano, Muon", {}, MUON),
    *((f"nano, Muon, {name}", changes, MUON) for name, changes in ONE_BY_ONE.items()),
    ("nano, Muon, all six", {**MODERN, **TRIED}, MUON),
    ("modern-nano (the three that helped), Muon", dict(MODERN), MUON),
)


def variant_specs(
    source: str, steps: int = 700, batch_size: int = 32, seed: int = 1337
) -> list[specs.TrainSpec]:
    """One training job per variant on ``source``, named for the ablation."""
    out = []
    for i, (_, changes, optimizer) in enumerate(VARIANTS):
        c = replace(
            make_train_config("nano"), steps=steps, batch_size=batch_size, seed=seed, **SHORT, **optimizer
        )
        c = replace(c, log_every=50, eval_every=50, sample_length=0)  # a validation every 50 steps
        out.append(
            specs.TrainSpec(
                "nano", DataConfig(source), c, model_overrides=dict(changes), name=f"ablation-{i}"
            )
        )
    return out


def label(record: runs.RunRecord) -> str:
    """A run's place in the ablation: its optimizer and how its GPT differs from classic nano."""
    classic = GPTConfig()
    defaults = {f.name: getattr(classic, f.name) for f in fields(GPTConfig) if f.name in {**MODERN, **TRIED}}
    changes = [k for k, v in defaults.items() if getattr(record.model, k, v) != v]
    return f"{record.model_name}, {record.train.optimizer}" + (f", {' + '.join(changes)}" if changes else "")


def first_reached(metrics: list[dict], target: float) -> dict | None:
    """The first validation at or under ``target``: its step and wall time, or None."""
    return next((m for m in metrics if m.get("val_loss") is not None and m["val_loss"] <= target), None)


def table(run_dirs) -> list[dict]:
    """A row per GPT run: the variant, steps, tokens and seconds to each target, the best loss."""
    rows = []
    for run_dir in run_dirs:
        record = runs.read_record(run_dir)
        if record is None or record.model is None or record.model.family != "gpt" or record.task != "lm":
            continue
        metrics = runs.read_jsonl(run_dir / runs.METRICS)
        tokens = record.train.batch_size * record.model.block_size
        row = {
            "run": run_dir.name,
            "variant": label(record),
            "steps trained": metrics[-1]["step"] if metrics else 0,
        }
        for target in TARGETS:
            hit = first_reached(metrics, target)
            row[f"steps to {target}"] = hit["step"] if hit else None
            row[f"tokens to {target}"] = hit["step"] * tokens if hit else None
            row[f"seconds to {target}"] = round(hit["time"], 1) if hit else None
        vals = [m["val_loss"] for m in metrics if m.get("val_loss") is not None]
        row["best val loss"] = min(vals) if vals else None
        rows.append(row)
    return rows
