"""The Runs page's ablation view: what each modern change buys, from the user's own runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import access, fmt
from lmcore import LMError, runs
from lmcore.experiments import ablation
from lmcore.jobs import queue


def start_button(root: Path) -> None:
    """One button that queues the ablation's runs on the session's corpus (or Tiny Shakespeare)."""
    source = st.session_state.get("corpus_source") or "builtin:tiny-shakespeare"
    cols = st.columns([3, 1])
    cap = access.step_cap(2000)  # a public server's cap may be under the default
    low = min(100, cap)
    steps = cols[1].number_input("Steps per run", low, cap, min(700, cap), step=100, key="abl-steps")
    where = fmt.plain(fmt.corpus_label(source))
    cols[0].caption(
        f"{len(ablation.VARIANTS)} runs of `nano`'s shape on {where}, the same steps and schedule "
        "each: Adam, then Muon, then each modern change alone, then all of them. They wait in the "
        "queue and train one after another."
    )
    if access.policy().public and not access.actor().admin:
        st.caption("On this shared server the ablation is the presenter's (admin) to start.")
        return
    if st.button(f"Train the ablation ({len(ablation.VARIANTS)} runs)"):
        try:
            for spec in ablation.variant_specs(source, int(steps)):
                queue.launch(root, spec, actor=access.actor(), policy=access.policy())
            st.toast("Queued: follow them on the Train page; the table below fills as they validate.")
        except LMError as err:
            st.error(access.shown(err))


def show(root: Path, rows: list[dict]) -> None:
    with st.expander("Ablation: what each modern change buys", expanded=False):
        start_button(root)
        gpt = [r for r in rows if r["task"] == "lm"]
        mine = [r["run_id"] for r in gpt if "-ablation-" in r["run_id"]]
        chosen = st.multiselect("Runs compared", [r["run_id"] for r in gpt], default=mine, key="abl-runs")
        table = pd.DataFrame(
            ablation.table([root / run_id for run_id in chosen if runs.has_record(root / run_id)])
        )
        if table.empty:
            st.caption("Choose GPT runs (or train the ablation) to count the steps each took to each loss.")
            return
        st.dataframe(table, hide_index=True)
        st.plotly_chart(steps_figure(table), key="abl-steps-chart")


def steps_figure(table: pd.DataFrame) -> go.Figure:
    """Steps each variant took to the first target: the ablation at a glance (the report's too)."""
    target = ablation.TARGETS[0]
    fig = go.Figure(go.Bar(x=table["variant"], y=table[f"steps to {target}"], marker_color="#636efa"))
    fig.update_layout(
        title=f"Steps to a validation loss of {target} (fewer is better; counted, not timed)",
        height=340,
        margin=dict(t=40, b=10),
    )
    return fig
