"""The shared sidebar: the device, the runs folder or the admin unlock, and the jobs training now."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import access, fmt
from lmcore import device, runs
from lmcore.jobs import queue, warmup

# Seconds between refreshes of the sidebar's "Training now" list while jobs run. Each refresh
# is a run of the page's script on the server, on every page of every session, sharing the
# cores with training and racing the visitor's clicks; a list of step counts needs no more
# (the Train page's live view keeps its own, faster pace).
LIST_REFRESH_S = 5.0


@st.cache_resource(show_spinner=False)
def device_label() -> str:
    gpus = device.gpu_names_without_tf()
    return f"GPU ({gpus[0]})" if gpus else "CPU"


@st.cache_resource(show_spinner="Checking the GPU…")
def unused_gpu() -> str | None:
    """Said once per server: a GPU TensorFlow cannot use (checked in a child process)."""
    return device.unused_gpu_message()


@st.cache_resource(show_spinner=False)
def warm_start(root: str, step_cap: int | None) -> None:
    """Once per server and runs folder: a trainer with TensorFlow loaded waits for the first
    job (the job layer keeps one after each job, where memory allows), and the compilation
    cache is warmed for the default run (once per cache; it gives way to any job)."""
    try:
        queue.keep_spare(Path(root))
        warmup.start(Path(root), step_cap)
    except OSError:  # an unwritable runs folder: jobs start cold, and say why when they start
        pass


def draw() -> None:
    """The shared sidebar: the device, the runs folder (not in public mode), the admin unlock
    (public mode), and the jobs training now, refreshed every few seconds while any is."""
    policy = access.policy()
    warm_start(str(access.runs_root().resolve()), policy.max_steps if policy.public else None)
    with st.sidebar:
        st.caption(f"**Device:** {device_label()}")
        if device_label() != "CPU" and unused_gpu():
            st.warning(fmt.plain(unused_gpu()))
        if not access.policy().public:
            st.caption(f"**Runs:** `{access.runs_root().resolve()}`")
        else:
            access.admin_unlock()
        live = bool(queue.active(access.runs_root()) or queue.queued(access.runs_root()))

        @st.fragment(run_every=LIST_REFRESH_S if live else None)
        def jobs_now():
            if not training_now() and live:
                st.rerun()  # all finished: redraw once, without the timer

        jobs_now()


def training_now() -> bool:
    """List the runs training now, those still loading, and the queue; False if none."""
    root = access.runs_root()
    waiting = jobs_queue()
    running = {r["run_id"]: r for r in runs.list_runs(root) if r["status"] == "running"}
    comparison = lambda j: runs.read_comparison(root, j) is not None  # noqa: E731 (its runs are listed)
    # A job's process also outlives its run by a moment (saving, closing): "finishing", then.
    loading = {
        j: "starting" if queue.state(root, j)["status"] == "starting" else "finishing"
        for j in queue.active(root)
        if j not in running and not comparison(j)
    }
    if running or loading:
        st.caption("**Training now:**")
        for r in running.values():
            st.caption(f"• {r['run_id']} — step {r['step']}/{r['steps']}")
        for run_id, doing in loading.items():
            st.caption(f"• {run_id} — {doing}")
    else:
        st.caption("No training in progress.")
    if waiting:
        st.caption(f"**Queued:** {len(waiting)} (they start as training slots free)")
    return bool(running or loading or waiting or queue.active(root))


def jobs_queue() -> list[str]:
    """Ids of the jobs waiting for a training slot (starting any whose slot has freed)."""
    queue.dispatch(access.runs_root())
    return queue.queued(access.runs_root())
