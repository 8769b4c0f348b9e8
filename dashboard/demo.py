"""Home's quick demo and its live corner.

One click trains :func:`lmcore.jobs.warmup.demo_spec` (the Train page's default GPT, shortened;
the server's warm-up has compiled it) through the job layer, like any run, public mode's caps
included. Its curves move on Home; once it completes, the visitor lands on Generate with the
demo's model chosen and a first text generated. A session without a demo sees the server's
newest run instead: live while one trains, else the last finished one's curve and sample.
"""

from __future__ import annotations

import streamlit as st

from dashboard import access, live, runlist
from lmcore import LMError
from lmcore.jobs import queue, warmup

VIEW = {"smooth": 0.0, "log_y": False, "x": "step", "paused": False}  # Home's fixed look of a run


def section() -> None:
    st.subheader("Quick demo")
    run_id = st.session_state.get("demo_run")
    if run_id is None:
        _offer()
        _newest()
        return
    status = live.jobs_state(run_id)
    if run_id == st.session_state.get("joined_run"):
        live.joined_note(run_id)
    if status == "completed" and not st.session_state.get("demo_landed"):
        st.session_state["demo_landed"] = True  # once: back on Home, the finished demo stays in view
        to_generate(run_id)
    live.follow(run_id, VIEW)
    if status in live.TERMINAL:
        cols = st.columns(4)
        if status == "completed" and cols[0].button("Generate with it", type="primary"):
            to_generate(run_id)
        if cols[1].button("Another demo"):
            for key in ("demo_run", "demo_landed"):
                st.session_state.pop(key, None)
            st.rerun()


def _offer() -> None:
    spec = warmup.demo_spec(access.step_cap())
    cols = st.columns([1, 4])
    if cols[0].button("Start the quick demo", type="primary", icon=":material/play_arrow:"):
        try:
            run_id, joined = queue.launch_or_join(access.runs_root(), spec, access.actor(), access.policy())
        except LMError as err:  # public mode: one job per visitor, the caps, a full queue
            st.error(access.shown(err))
        else:
            st.session_state["demo_run"] = st.session_state["follow_run"] = run_id
            st.session_state["joined_run"] = run_id if joined else None
            st.rerun()
    cols[1].markdown(
        f"Trains a small GPT (`{spec.model}`, {spec.train.steps} steps) on Python's own "
        "documentation, about a minute on two cores, with its loss falling here; then it "
        "writes text on the Generate page, where you can see why each character was chosen."
    )


def _newest() -> None:
    """The server's newest run in training, else its newest finished one (nothing if none)."""
    found = runlist.run_choices()
    shown = next((r for r in found if r["status"] == "running"), None) or next(
        (r for r in found if r["status"] in ("completed", "stopped")), None
    )
    if shown is None:
        return
    doing = "training now" if shown["status"] == "running" else "the newest run"
    st.caption(f"On this server, {doing}: {runlist.run_label(shown)}")
    live.follow(shown["run_id"], VIEW)


def to_generate(run_id: str) -> None:
    """Open Generate with ``run_id`` chosen and a first text generated at once."""
    st.session_state["generate_pick"] = run_id
    st.session_state["generate_now"] = True
    st.switch_page("pages/generate.py")
