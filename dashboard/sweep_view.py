"""The tour's learning-rate sweep: one click queues :mod:`lmcore.experiments.lr_sweep`'s runs on
the tour's corpus; their curves are drawn as the Runs page draws runs, refreshed while they
train, with what each did and what the finished sweep shows, read from the runs themselves."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard import access, charts, loaders, runlist
from lmcore import LMError
from lmcore.experiments import lr_sweep
from lmcore.jobs import queue

STEPS = 300  # per run: at 3e-3 the tiny GPT is well under the unigram entropy by then


def sweep_runs(source: str) -> dict[int, dict]:
    """The newest run of each sweep variant on ``source`` (runs are listed newest first)."""
    found: dict[int, dict] = {}
    for r in runlist.run_choices(lambda r: r["corpus"] == source):
        index = lr_sweep.variant_of(r["run_id"])
        if index is not None and index not in found:
            found[index] = r
    return found


def start_sweep(source: str) -> None:
    if access.policy().public and not access.actor().admin:
        st.caption("On this shared server the sweep is the presenter's (admin) to start.")
        return
    cols = st.columns([1, 3])
    steps = cols[0].number_input(
        "Steps per run", 30, access.step_cap(2000), STEPS, step=30, key="sweep-steps"
    )
    specs = lr_sweep.sweep_specs(source, int(steps))
    label = f"Run the sweep ({len(specs)} short runs of {int(steps)} steps, one after another)"
    if cols[1].button(label, type="primary"):
        try:
            for spec in specs:
                queue.launch(access.runs_root(), spec, actor=access.actor(), policy=access.policy())
        except LMError as err:
            st.error(access.shown(err))
        else:
            st.rerun()


def curve_step(source: str, view: str) -> None:
    """The tour's fifth step: the claim, the sweep's button, its curves and what they show."""
    st.markdown(
        "Training repeats that step thousands of times, each on fresh windows, and the loss "
        "falls: that is the curve. How far each step goes is the **learning rate**. The "
        "tutorial (section 5.5.1) says that too large a rate makes a model *overfit*. Overfitting "
        "is a model that fits its training text ever better while its validation loss turns up. "
        "Test the claim: the same small GPT, the same steps, at rates a hundredfold apart, then "
        "at a good rate with the decaying schedules the tutorial recommends."
    )
    found = sweep_runs(source)
    if len(found) < len(lr_sweep.VARIANTS):
        start_sweep(source)
    if not found:
        return
    follow = any(r["status"] not in queue.TERMINAL for r in found.values())
    unigram = loaders.entropy_bits(view) * math.log(2)  # nats, the loss's unit
    st.fragment(_sweep_view, run_every=2.0 if follow else None)(found, unigram, follow)


def _sweep_view(found: dict[int, dict], unigram: float, follow: bool) -> None:
    rows = lr_sweep.table([Path(r["path"]) for r in found.values()], unigram)
    done = [r for r in rows if r["status"] in queue.TERMINAL]
    if follow and len(done) == len(lr_sweep.VARIANTS):
        st.rerun()  # the sweep has ended: redraw the whole step once, without the timer
    frames = {
        lr_sweep.VARIANTS[i][0]: runlist.metrics_frame(Path(r["path"])) for i, r in sorted(found.items())
    }
    frames = {name: df for name, df in frames.items() if not df.empty}
    if frames:
        fig = charts.curve_figure(frames, "Loss (nats)")
        st.plotly_chart(
            fig.update_layout(height=420, title="Loss at each rate and schedule"), key="tour-sweep"
        )
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    if len(done) < len(lr_sweep.VARIANTS):
        st.caption(f"{len(done)} of {len(lr_sweep.VARIANTS)} runs finished; they train one after another.")
        return
    st.success(_conclusion(rows))


def _conclusion(rows: list[dict]) -> str:
    """What the finished sweep shows, from its own rows."""
    good = next((r for r in rows if r["lr"] == lr_sweep.GOOD and r["schedule"] == "constant"), None)
    large = [r for r in rows if r["lr"] > lr_sweep.GOOD and r["schedule"] == "constant"]
    words = ["What too large a rate really does:"]
    words += [
        f"**{r['variant']}**: {r['what it did']} (best validation {r['best val loss']:.2f})." for r in large
    ]
    if good is not None:
        words.append(f"At 3e-3 the best validation loss is {good['best val loss']:.2f}.")
    if not any(r["what it did"].startswith("overfitting") for r in rows):
        words.append(
            "No run overfits: that would be a validation loss turning up while training falls. "
            "A rate too large keeps the training loss itself high, so there is nothing fitted to overfit."
        )
    decaying = [r for r in rows if r["schedule"] != "constant" and r["best val loss"] is not None]
    if decaying:
        words.append(
            "The schedules the tutorial recommends start at 3e-3 and end lower: "
            + ", ".join(f"{r['variant']} {r['best val loss']:.2f}" for r in decaying)
            + " in these few steps (their lower rates at the end matter most in long runs)."
        )
    return " ".join(words)
