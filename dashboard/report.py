"""A run, or a comparison of runs, as one self-contained HTML file to send after a demo.

Everything is inside the file: the curves as Plotly figures with plotly.js itself (once), the
settings and the samples as escaped text, so it opens offline in any browser.
"""

from __future__ import annotations

import html
import time
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from dashboard import ablation_view, charts, fmt, math_views, runlist
from lmcore import runs
from lmcore.experiments import ablation, lr_sweep

SAMPLES_SHOWN = 3  # the latest samples of each run

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #262730; }
h1 { font-size: 1.8rem; } h2 { font-size: 1.3rem; margin-top: 2rem; }
table { border-collapse: collapse; font-size: 0.9rem; } td, th { border: 1px solid #ddd; padding: 4px 8px; }
th { background: #f5f5f5; text-align: left; }
pre { background: #f8f8f8; padding: 0.8rem; white-space: pre-wrap; }
.note { color: #666; font-size: 0.85rem; }
"""


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, escape=True, na_rep="", border=0)


def _figure(fig: go.Figure, first: bool) -> str:
    # plotly.js goes into the file once, with the first figure: no network needed to draw any
    return fig.to_html(full_html=False, include_plotlyjs=first, config={"displaylogo": False})


def summary_rows(selected: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "run": r["run_id"],
                "status": r["status"],
                "model": r["model"],
                "corpus": fmt.corpus_label(r["corpus"]),
                "tokenizer": r["tokenizer"],
                "step": r["step"],
                "steps": r["steps"],
                "val loss": r["val_loss"],
                "best val loss": r["best_val_loss"],
            }
            for r in selected
        ]
    )


def _settings(selected: list[dict]) -> tuple[str, pd.DataFrame]:
    """All settings of one run, or those that differ between several."""
    rows = {r["run_id"]: runlist.config_rows(Path(r["path"])) for r in selected}
    keys = sorted(set().union(*rows.values()))
    if len(selected) > 1:
        keys = [k for k in keys if len({str(v.get(k)) for v in rows.values()}) > 1]
    frame = pd.DataFrame([{"setting": k, **{rid: v.get(k) for rid, v in rows.items()}} for k in keys])
    return ("Settings" if len(selected) == 1 else "Settings that differ"), frame


def _samples(run: dict) -> str:
    samples = runs.read_jsonl(Path(run["path"]) / runs.SAMPLES)[-SAMPLES_SHOWN:]
    if not samples:
        return '<p class="note">No samples were generated during training.</p>'
    shown = ((int(s.get("step", 0)), html.escape(s.get("prompt", "") + s.get("text", ""))) for s in samples)
    return "".join(f"<p><b>Step {step}</b></p><pre>{text}</pre>" for step, text in shown)


def _experiments(selected: list[dict]) -> list[str]:
    """The ablation view and the learning-rate sweep's verdicts, for the runs that are theirs."""
    dirs = [Path(r["path"]) for r in selected]
    parts = []
    found = ablation.table([d for d in dirs if "-ablation-" in d.name])
    if found:
        frame = pd.DataFrame(found)
        parts += ["<h2>Ablation: what each modern change buys</h2>", _table(frame)]
        parts.append(_figure(ablation_view.steps_figure(frame), first=False))
    sweep = [d for d in dirs if lr_sweep.variant_of(d.name) is not None]
    if sweep:
        lines = dict(math_views.reference_lines(runs.read_record(sweep[0])))
        rows = lr_sweep.table(sweep, lines.get("unigram entropy"))
        parts += ["<h2>Learning-rate sweep: what each rate did</h2>", _table(pd.DataFrame(rows))]
    return parts


def build(selected: list[dict]) -> str:
    """The report of ``selected`` (run summaries, :func:`lmcore.runs.summary`) as an HTML page."""
    title = (
        f"LM Lab report: {selected[0]['run_id']}"
        if len(selected) == 1
        else f"LM Lab report: {len(selected)} runs compared"
    )
    frames = {r["run_id"]: runlist.metrics_frame(Path(r["path"])) for r in selected}
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="note">Written {time.strftime("%Y-%m-%d %H:%M")} by LM Lab. Curves: train (a point a '
        "step) and validation loss in nats per token; hover for values, drag to zoom.</p>",
        _table(summary_rows(selected)),
        "<h2>Loss</h2>",
    ]
    if len(selected) == 1:
        snap = runs.snapshot(Path(selected[0]["path"]))  # the live view's figures, as they are now
        look = (selected[0]["path"], snap.metrics_bytes, 0.0, False, "step", None)
        references = math_views.reference_lines(snap.record)
        parts.append(_figure(charts.live_figure(*look, references, snap.metrics), first=True))
        parts += ["<h2>More curves</h2>", _figure(charts.more_figure(*look, snap.metrics), first=False)]
    else:
        parts.append(_figure(charts.curve_figure(frames, "Loss (nats)"), first=True))
    parts += _experiments(selected)
    heading, settings = _settings(selected)
    parts += [f"<h2>{heading}</h2>", _table(settings) if not settings.empty else "<p>Identical.</p>"]
    for run in selected:
        parts += [f"<h2>Samples: {html.escape(run['run_id'])}</h2>", _samples(run)]
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n"
    )
