"""Runs to choose from: the list, a label for each, and a run's settings as flat columns."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dashboard import access, fmt
from lmcore import runs


def run_choices(predicate=lambda r: True) -> list[dict]:
    return [r for r in runs.list_runs(access.runs_root()) if predicate(r)]


def run_label(r: dict) -> str:
    best = f", best val {r['best_val_loss']:.3f}" if r.get("best_val_loss") is not None else ""
    return f"{r['run_id']} ({r['status']}, {r['model']}{best})"


def config_rows(run_dir: Path) -> dict:
    """A run's record flattened to ``section.key`` columns, for tables and diffs."""
    record = runs.read_record(run_dir)
    if record is None:
        return {"model_name": None}
    sections = record.to_json()
    flat = {"model_name": record.model_name}
    for section in ("model", "train", "data", "device"):  # device: where, precision, strategy
        for k, v in (sections.get(section) or {}).items():
            flat[f"{section}.{k}"] = v if not isinstance(v, dict | list) else str(v)
    if access.policy().public and "data.source" in flat:  # a file's name, never the server's folders
        flat["data.source"] = fmt.corpus_label(flat["data.source"])
    return flat


def metrics_frame(run_dir: Path) -> pd.DataFrame:
    return pd.DataFrame(runs.read_jsonl(run_dir / runs.METRICS))
