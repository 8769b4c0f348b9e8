"""Curve charts of a run's metrics: one metric for several runs, or all of a run's curves at once."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from lmcore import runs


def step_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A point a step: loss, bits, perplexity and learning rate (:func:`lmcore.runs.per_step`)."""
    steps = pd.DataFrame(runs.per_step(df.to_dict("records"))) if not df.empty else pd.DataFrame()
    if "loss" in steps:
        steps["bits"] = steps["loss"] / math.log(2)
        steps["ppl"] = np.exp(np.minimum(steps["loss"], 50))
    return steps


def ema(values: pd.Series, alpha: float) -> pd.Series:
    """Exponential moving average; alpha 0 leaves the curve as it is."""
    return values if alpha <= 0 else values.ewm(alpha=1 - alpha, adjust=True, ignore_na=True).mean()


CURVES = {
    "Loss (nats)": ("loss", "val_loss"),
    "Bits per token": ("bits", "val_bits"),
    "Perplexity": ("ppl", "val_ppl"),
    "Accuracy": ("acc", "val_acc"),
    "Learning rate": ("lr", None),
    "Tokens/s": ("tokens_per_s", None),
}
FROM_ZERO = ("Accuracy", "Learning rate", "Tokens/s")  # measures whose scale starts at zero


LOWER_IS_BETTER = ("val_loss", "val_bits", "val_ppl")


def best_point(df: pd.DataFrame, val_key: str = "val_loss") -> dict | None:
    """The record with the lowest ``val_key`` (the first of equals), or None before any validation."""
    if df.empty or val_key not in df or df[val_key].notna().sum() == 0:
        return None
    return df.loc[df[val_key].idxmin()].to_dict()


def curve_traces(
    df: pd.DataFrame, metric: str, smooth: float, x: str, label: str = "", steps: tuple | None = None
) -> list[dict]:
    """Scatter arguments for one run's ``metric``: the training line (smoothed over a faint raw
    one, except the learning rate and speed, which are not noisy), the validation points, and a
    marker at the best validation value; only the ``steps`` (first, last) window, if given, with
    the smoothing and the best value taken over the whole run."""
    train_key, val_key = CURVES[metric]
    if df.empty or x not in df:
        return []

    def shown(frame: pd.DataFrame) -> pd.DataFrame:
        return frame if steps is None else frame[frame["step"].between(*steps)]

    traces = []
    line = step_frame(df) if train_key in ("loss", "bits", "ppl", "lr") else df  # a point a step
    if train_key in line and x in line:
        line = line.assign(smoothed=ema(line[train_key], smooth) if val_key else line[train_key])
        part = shown(line)
        raw, y = part[train_key], part["smoothed"]
        mode = "lines" if y.notna().sum() > 1 else "markers"  # one point: a dot, not an invisible line
        if val_key and smooth > 0 and raw.notna().sum() > 1:  # smoothed: the raw curve in view, faint
            traces.append(dict(x=part[x], y=raw, mode="lines", name=f"{label}train (raw)", opacity=0.25))
        traces.append(dict(x=part[x], y=y, mode=mode, name=f"{label}train"))
    if val_key and val_key in df:
        val = shown(df.dropna(subset=[val_key]))
        traces.append(dict(x=val[x], y=val[val_key], mode="lines+markers", name=f"{label}validation"))
        best = best_point(df, val_key) if val_key in LOWER_IS_BETTER else None
        if best is not None and x in best and (steps is None or steps[0] <= best["step"] <= steps[1]):
            traces.append(
                dict(
                    x=[best[x]],
                    y=[best[val_key]],
                    mode="markers+text",
                    name=f"{label}best validation",
                    text=[f"best {best[val_key]:.3f} (step {int(best['step'])})"],
                    textposition="top center",
                    marker=dict(symbol="star", size=14),
                    cliponaxis=False,
                )
            )
    for trace in traces:
        if "text" not in trace and trace["y"].notna().sum() == 1:  # the first point: whole, and big
            trace.update(cliponaxis=False, marker=dict(size=9))
    return traces


def _x_title(x: str) -> str:
    return "step" if x == "step" else "wall time (s)"


PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
PART_COLORS = {
    "train": "#1f77b4",
    "train (raw)": "#1f77b4",
    "validation": "#ff7f0e",
    "best validation": "#d62728",
}


def _add(fig: go.Figure, trace: dict, color: str, **where) -> None:
    """One trace in ``color``; a run's parts share a legend group, so one click hides them together."""
    fig.add_scatter(
        **{**trace, "marker": {**trace.get("marker", {}), "color": color}}, line=dict(color=color), **where
    )


def curve_figure(
    frames: dict[str, pd.DataFrame], metric: str, smooth: float = 0.0, log_y: bool = False, x: str = "step"
) -> go.Figure:
    """One chart of ``metric`` (a CURVES key) for one or more runs: train lines, validation
    markers, each run in its own colour."""
    fig = go.Figure()
    for n, (name, df) in enumerate(frames.items()):
        for trace in curve_traces(df, metric, smooth, x, f"{name} "):
            _add(fig, trace, PALETTE[n % len(PALETTE)], legendgroup=name)
    fig.update_layout(
        title=metric,
        xaxis_title=_x_title(x),
        height=320,
        margin=dict(l=10, r=10, t=40, b=10),
        legend=dict(orientation="h", y=-0.25),
    )
    if log_y:
        fig.update_yaxes(type="log")
    return fig


@st.cache_data(show_spinner=False, max_entries=64)
def live_figure(
    run_dir: str,
    size: int,
    smooth: float,
    log_y: bool,
    x: str,
    steps: tuple[int, int] | None,
    references: tuple[tuple[str, float], ...],
    _metrics: list[dict],
) -> go.Figure:
    """The run's loss, large: train and validation, the best validation loss marked, and the
    corpus's ``references`` ((label, nats) pairs) as dotted lines. Cached on the metrics file's
    size (``_metrics`` are its records): while no new record arrives, the same figure is reused.
    ``steps`` (first, last) narrows it to a window of the run, which refreshes keep: Streamlit
    1.67 gives a chart whose data changed a new identity, so Plotly's own zoom (``uirevision``
    is set for the day it does not) lasts only until the next record."""
    df = pd.DataFrame(_metrics)
    fig = go.Figure()
    for trace in curve_traces(df, "Loss (nats)", smooth, x, steps=steps):
        _add(fig, trace, PART_COLORS[trace["name"]])
    for label, nats in references:
        fig.add_hline(
            y=nats,
            line_dash="dot",
            line_color="#7f7f7f",
            annotation_text=f"{label} {nats:.3f}",
            annotation_position="bottom left",
        )
    fig.update_xaxes(rangemode="tozero", title_text=_x_title(x))
    fig.update_yaxes(title_text="loss (nats per token)", type="log" if log_y else None)
    fig.update_layout(
        height=440,
        uirevision=run_dir,
        margin=dict(l=10, r=10, t=30, b=10),
        legend=dict(orientation="h", y=1.08),
    )
    return fig


MORE_CURVES = [m for m in CURVES if m != "Loss (nats)"]


@st.cache_data(show_spinner=False, max_entries=64)
def more_figure(
    run_dir: str, size: int, smooth: float, log_y: bool, x: str, steps: tuple | None, _metrics: list[dict]
) -> go.Figure:
    """The run's other curves (bits, perplexity, accuracy, learning rate, speed) in one figure."""
    df = pd.DataFrame(_metrics)
    fig = make_subplots(rows=3, cols=2, subplot_titles=MORE_CURVES, vertical_spacing=0.1)
    for n, metric in enumerate(MORE_CURVES):
        row, col = n // 2 + 1, n % 2 + 1
        for trace in curve_traces(df, metric, smooth, x, steps=steps):
            part = trace["name"]
            _add(fig, trace, PART_COLORS[part], showlegend=n == 0, legendgroup=part, row=row, col=col)
        if log_y:
            fig.update_yaxes(type="log", row=row, col=col)
        elif metric in FROM_ZERO:  # a first point reads on an axis from 0, not on value ± 1
            fig.update_yaxes(rangemode="tozero", row=row, col=col)
    fig.update_xaxes(rangemode="tozero")
    fig.update_xaxes(title_text=_x_title(x), row=3)
    fig.update_layout(
        height=720,
        uirevision=run_dir,
        margin=dict(l=10, r=10, t=40, b=10),
        legend=dict(orientation="h", y=1.06),
    )
    return fig


def px_line(x, y, title: str) -> go.Figure:
    fig = go.Figure(go.Scatter(x=x, y=y, mode="lines"))
    fig.update_layout(title=title, height=260, margin=dict(l=10, r=10, t=40, b=10), xaxis_title="step")
    return fig
