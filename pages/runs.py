"""Runs: every run in a table; overlay curves, diff settings, download metrics or a whole run
(.zip), upload a run, resume or delete."""

import hashlib
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard import ablation_view, access, charts, fmt, keep, links, live, nav, report, runlist
from lmcore import LMError, runs
from lmcore.jobs import public, queue

nav.enter()

st.title("Runs")
root, rules = access.runs_root(), access.policy()
if rules.public:
    gone = public.evictions(root)[-5:]
    if gone:
        st.warning(
            "Removed to keep this server's disk budget of "
            f"{rules.disk_budget_mb:,g} MB (oldest finished runs first; pinned runs are kept): "
            + ", ".join(f"{e['kind']} {fmt.plain(e['name'])} ({e['bytes'] / 2**20:.1f} MB)" for e in gone)
        )
with st.expander("Upload a run"):
    keep.upload(root)  # before the listing, so that the table holds the run it adds
rows = runlist.run_choices()
ablation_view.show(root, rows)
if not rows:
    st.info("No runs yet. Start one on the Train page, or upload one above.")
    st.stop()


def _run_ids(raw: str) -> list[str]:
    """Runs named in a link: each must be a run on this server."""
    known = {r["run_id"] for r in rows}
    ids = list(dict.fromkeys(raw.split(",")))
    if not ids or len(ids) > 20 or not set(ids) <= known:
        raise ValueError(raw)
    return ids


LINKED = [  # what a link to this page keeps: the filter, the target, the curve and the selection
    links.Field("filter", "runs-filter", links.text(200)),
    links.Field("target", "runs-target", links.real(0.0, 100.0)),
    links.Field("curve", "runs-curve", links.choice(list(charts.CURVES))),
]
links.restore("runs", [*LINKED, links.Field("runs", "runs-linked", _run_ids)])
links.notice("runs")
cols = st.columns([3, 1])
find = cols[0].text_input(
    "Filter", placeholder="part of a run's name, model, corpus or status", max_chars=200, key="runs-filter"
)
target = cols[1].number_input(
    "Target loss",
    0.0,
    100.0,
    None,
    0.05,
    placeholder="e.g. 1.9",
    help="adds the time and tokens to reach it",
    key="runs-target",
)
if find.strip():
    words = find.lower().split()
    rows = [
        r
        for r in rows
        if all(
            w in " ".join(str(r.get(k) or "") for k in ("run_id", "model", "corpus", "status")).lower()
            for w in words
        )
    ]
    if not rows:
        st.info(f"No run matches {fmt.plain(find)}.")
        st.stop()
reached = {r["run_id"]: runs.to_target(Path(r["path"]), target) if target else None for r in rows}

pins = public.pinned(root)
table = pd.DataFrame(
    [
        {
            "run": r["run_id"],
            "status": r["status"],
            "model": r["model"],
            "corpus": fmt.corpus_label(r["corpus"]),
            "fine-tuned from": r.get("parent") or "",
            "tokenizer": r["tokenizer"],
            "step": r["step"],
            "steps": r["steps"],
            "val loss": r["val_loss"],
            "best val loss": r["best_val_loss"],
            **(
                {
                    f"step to {target:g}": (reached[r["run_id"]] or {}).get("step"),
                    f"seconds to {target:g}": (reached[r["run_id"]] or {}).get("seconds"),
                    f"tokens to {target:g}": (reached[r["run_id"]] or {}).get("tokens"),
                }
                if target
                else {}
            ),
            **({"pinned": r["run_id"] in pins} if rules.public else {}),
            **{
                k: v
                for k, v in runlist.config_rows(Path(r["path"])).items()
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
if selected:  # the visitor's own choice replaces the link's
    st.session_state.pop("runs-linked", None)
elif st.session_state.get("runs-linked"):
    selected = [by_id[i] for i in st.session_state["runs-linked"] if i in by_id]
    if selected:
        st.caption(
            f"Selected by the link: {', '.join(r['run_id'] for r in selected)}. Select rows to change it."
        )
kept = {"runs": ",".join(r["run_id"] for r in selected)}
if not selected:
    links.keep("runs", LINKED, kept)
    st.caption("Select runs in the table to compare, download, resume or delete them.")
    st.stop()

frames = {r["run_id"]: runlist.metrics_frame(Path(r["path"])) for r in selected}
metric = st.selectbox("Curve", list(charts.CURVES), key="runs-curve")
links.keep("runs", LINKED, kept)
controls = live.curve_controls("runs", live=False)
st.plotly_chart(charts.curve_figure(frames, metric, controls["smooth"], controls["log_y"], controls["x"]))

if len(selected) == 2:
    a, b = (runlist.config_rows(Path(r["path"])) for r in selected)
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
cols = st.columns(3)
cols[0].download_button("Download metrics (CSV)", metrics.to_csv(index=False), "metrics.csv", "text/csv")
cols[1].download_button(
    "Download report (HTML)",
    lambda: report.build(selected),  # written at the click: the curves, settings and samples, offline
    "lmlab-report.html",
    "text/html",
    help="One file to send: it opens offline in any browser.",
)
if len(selected) == 1:
    with cols[2]:
        keep.download(selected[0])

mine = [r for r in selected if access.may_manage(r["run_id"])]
if len(mine) < len(selected):
    st.caption(
        f"{len(selected) - len(mine)} of the selected runs were started by other visitors: you can compare, "
        "download, generate from and fine-tune them, but only they (or the admin) can resume or delete them."
    )
resumable = [r for r in mine if r["status"] in ("stopped", "interrupted")]
if resumable and st.button(f"Resume {len(resumable)} run(s)"):
    try:
        for r in resumable:
            queue.resume(root, r["run_id"], actor=access.actor(), policy=rules)
        st.toast("Resuming in the background; follow on the Train page.")
    except LMError as err:
        st.error(access.shown(err))

if rules.public and access.actor().admin:
    cols = st.columns(2)
    if cols[0].button(f"Pin {len(selected)} run(s)", help="pinned runs are never removed for disk space"):
        for r in selected:
            public.pin(root, r["run_id"])
        st.rerun()
    if cols[1].button(f"Unpin {len(selected)} run(s)"):
        for r in selected:
            public.pin(root, r["run_id"], on=False)
        st.rerun()

if mine:
    with st.expander("Delete"):
        sure = st.checkbox(f"Yes, delete {len(mine)} run(s) and their checkpoints for good")
        if st.button("Delete", disabled=not sure):
            for r in mine:
                try:
                    queue.delete(root, r["run_id"], access.actor(), rules)
                except LMError as err:
                    st.error(access.shown(err))
            st.rerun()
