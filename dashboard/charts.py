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


def curve_traces(df: pd.DataFrame, metric: str, smooth: float, x: str, label: str = "") -> list[dict]:
    """Scatter arguments for one run's ``metric``: the training line (smoothed, except the
    learning rate and speed, which are not noisy) and the validation points."""
    train_key, val_key = CURVES[metric]
    if df.empty or x not in df:
        return []
    traces = []
    line = step_frame(df) if train_key in ("loss", "bits", "ppl", "lr") else df  # a point a step
    if train_key in line and x in line:
        y = ema(line[train_key], smooth) if val_key else line[train_key]
        mode = "lines" if y.notna().sum() > 1 else "markers"  # one point: a dot, not an invisible line
        traces.append(dict(x=line[x], y=y, mode=mode, name=f"{label}train"))
    if val_key and val_key in df:
        val = df.dropna(subset=[val_key])
        traces.append(dict(x=val[x], y=val[val_key], mode="lines+markers", name=f"{label}validation"))
    for trace in traces:
        if trace["y"].notna().sum() == 1:  # the first point (step 0 sits on the axis): whole, and big
            trace.update(cliponaxis=False, marker=dict(size=9))
    return traces


def _x_title(x: str) -> str:
    return "step" if x == "step" else "wall time (s)"


def curve_figure(
    frames: dict[str, pd.DataFrame], metric: str, smooth: float = 0.0, log_y: bool = False, x: str = "step"
) -> go.Figure:
    """One chart of ``metric`` (a CURVES key) for one or more runs: train lines, validation markers."""
    fig = go.Figure()
    for name, df in frames.items():
        for trace in curve_traces(df, metric, smooth, x, f"{name} "):
            fig.add_scatter(**trace)
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
    run_dir: str, size: int, smooth: float, log_y: bool, x: str, _metrics: list[dict]
) -> go.Figure:
    """All of a run's curves (``_metrics``, its records) in one figure: one chart to draw at each
    refresh, not six. Cached on the metrics file's size: while no new record arrives, the same
    figure is reused."""
    df = pd.DataFrame(_metrics)
    fig = make_subplots(rows=3, cols=2, subplot_titles=list(CURVES), vertical_spacing=0.08)
    colors = {"train": "#1f77b4", "validation": "#ff7f0e"}
    for n, metric in enumerate(CURVES):
        row, col = n // 2 + 1, n % 2 + 1
        for trace in curve_traces(df, metric, smooth, x):
            color = colors[trace["name"]]
            fig.add_scatter(
                **{**trace, "marker": {**trace.get("marker", {}), "color": color}},
                line=dict(color=color),
                showlegend=n == 0,
                legendgroup=trace["name"],
                row=row,
                col=col,
            )
        if log_y:
            fig.update_yaxes(type="log", row=row, col=col)
        elif metric in FROM_ZERO:  # a first point reads on an axis from 0, not on value ± 1
            fig.update_yaxes(rangemode="tozero", row=row, col=col)
    fig.update_xaxes(rangemode="tozero")
    fig.update_xaxes(title_text=_x_title(x), row=3)
    fig.update_layout(height=820, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=1.06))
    return fig


def px_line(x, y, title: str) -> go.Figure:
    fig = go.Figure(go.Scatter(x=x, y=y, mode="lines"))
    fig.update_layout(title=title, height=260, margin=dict(l=10, r=10, t=40, b=10), xaxis_title="step")
    return fig
