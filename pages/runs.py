"""Runs: every run in a table; overlay curves, diff settings, download metrics, resume or delete."""

import hashlib
from pathlib import Path

import pandas as pd
import streamlit as st

from lmcore import LMError, jobs, runs
from pages import common

common.route_through_app()

st.title("Runs")
rows = common.run_choices()
if not rows:
    st.info("No runs yet. Start one on the Train page.")
    st.stop()

table = pd.DataFrame(
    [
        {
            "run": r["run_id"],
            "status": r["status"],
            "model": r["model"],
            "corpus": common.corpus_label(r["corpus"]),
            "fine-tuned from": r.get("parent") or "",
            "tokenizer": r["tokenizer"],
            "step": r["step"],
            "steps": r["steps"],
            "val loss": r["val_loss"],
            "best val loss": r["best_val_loss"],
            **{
                k: v
                for k, v in common.config_rows(Path(r["path"])).items()
                if k in ("train.batch_size", "train.lr", "train.schedule", "model.block_size")
            },
        }
        for r in rows
    ]
)
# The key changes with the set of runs, so a selection never carries over to other rows.
ids = table["run"].tolist()
key = "runs-" + hashlib.sha1("\n".join(ids).encode()).hexdigest()[:12]
event = st.dataframe(table, on_select="rerun", selection_mode="multi-row", hide_index=True, key=key)
by_id = {r["run_id"]: r for r in rows}
selected = [by_id[ids[i]] for i in event.selection.rows if 0 <= i < len(ids)]
if not selected:
    st.caption("Select runs in the table to compare, download, resume or delete them.")
    st.stop()

frames = {r["run_id"]: common.metrics_frame(Path(r["path"])) for r in selected}
metric = st.selectbox("Curve", list(common.CURVES))
controls = common.curve_controls("runs")
st.plotly_chart(common.curve_figure(frames, metric, controls["smooth"], controls["log_y"], controls["x"]))

if len(selected) == 2:
    a, b = (common.config_rows(Path(r["path"])) for r in selected)
    diff = pd.DataFrame(
        [
            {"setting": k, selected[0]["run_id"]: str(a.get(k)), selected[1]["run_id"]: str(b.get(k))}
            for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k)
        ]
    )
    st.markdown("**Settings that differ**")
    if diff.empty:
        st.caption("The two configs are identical.")
    else:
        st.dataframe(diff, hide_index=True)

metrics = pd.concat([df.assign(run_id=rid) for rid, df in frames.items() if not df.empty] or [pd.DataFrame()])
st.download_button("Download metrics (CSV)", metrics.to_csv(index=False), "metrics.csv", "text/csv")

resumable = [r for r in selected if r["status"] in ("stopped", "interrupted")]
if resumable and st.button(f"Resume {len(resumable)} run(s)"):
    for r in resumable:
        jobs.resume(common.runs_root(), r["run_id"])
    st.toast("Resuming in the background; follow on the Train page.")

with st.expander("Delete"):
    sure = st.checkbox(f"Yes, delete {len(selected)} run(s) and their checkpoints for good")
    if st.button("Delete", disabled=not sure):
        for r in selected:
            try:
                runs.delete(Path(r["path"]))
            except LMError as err:
                st.error(str(err))
        st.rerun()
