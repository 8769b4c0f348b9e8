"""Following a run: its state, live curves, the latest sample and a Stop button, refreshed at
the pace of its logs (only this part of the page reruns)."""

from __future__ import annotations

import statistics
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard import access, charts, fmt, math_views
from lmcore import runs
from lmcore.jobs import queue

TERMINAL = queue.TERMINAL


def curve_controls(key: str, live: bool = True) -> dict:
    """The curves' look: smoothing, log scale, the x axis, and (for a live view) a pause."""
    cols = st.columns([3, 2, 3, 2] if live else [3, 2, 3])
    return {
        "smooth": cols[0].slider("EMA smoothing", 0.0, 0.99, 0.0, 0.01, key=f"{key}-ema"),
        "log_y": cols[1].toggle("Log scale", key=f"{key}-log"),
        "x": {"Step": "step", "Wall time": "time"}[
            cols[2].radio("x axis", ["Step", "Wall time"], horizontal=True, key=f"{key}-x")
        ],
        "paused": live
        and cols[3].toggle(
            "Pause view", key=f"{key}-pause", help="Hold the charts still; the run keeps training meanwhile."
        ),
    }


def _status_line(box, state: dict, df: pd.DataFrame, total: int) -> None:
    """The run's state in one element: queued, starting, failed, removed, or a progress bar."""
    status, step = state["status"], int(state.get("step") or 0)
    if status == "queued":
        setting = (
            " (LMLAB_MAX_JOBS sets how many)" if access.actor().admin or not access.policy().public else ""
        )
        start = state.get("starts_in")
        when = f" Estimated start: in about {fmt.fmt_seconds(start)}." if start is not None else ""
        box.info(
            f"Queued: number {state['position']} of {state['queue_length']} waiting. It starts when one "
            f"of the {state['slots']} training slots frees{setting}.{when}"
        )
    elif status == "starting":
        box.info(f"Starting: {state.get('phase') or 'loading the corpus and TensorFlow'}…")
    elif status == "failed":
        box.error(f"Failed: {access.shown(state.get('message'))}")
    elif status == "evicted":
        box.warning(
            f"This run ({state['bytes'] / 2**20:.0f} MB) was removed to keep the server's disk budget."
        )
    else:
        eta = ""
        trained = df[df["loss"].notna()] if "loss" in df else df  # not step 0's validation, before compiling
        if status == "running" and len(trained) >= 2:
            seconds = max(trained["time"].iloc[-1] - trained["time"].iloc[0], 1e-9)
            rate = (trained["step"].iloc[-1] - trained["step"].iloc[0]) / seconds
            eta = f" · ETA {fmt.fmt_seconds((total - step) / rate)}" if rate > 0 else ""
        val = f" · val loss {state['val_loss']:.4f}" if state.get("val_loss") is not None else ""
        doing = f" · {state['phase']}…" if status == "running" and state.get("phase") else ""
        box.progress(min(step / total, 1.0), text=f"**{status}**{doing} · step {step}/{total}{val}{eta}")
        if status == "stopped" and state.get("message"):
            box.caption(access.shown(state["message"]))


def _controls(box, run_id: str, status: str) -> None:
    """Stop or Cancel for whoever may manage the run (public mode: its session, or the admin)."""
    manage = access.may_manage(run_id)
    if status in ("running", "starting") and manage:
        if box.button("Stop", key=f"stop-{run_id}", type="primary"):
            queue.stop(access.runs_root(), run_id, access.actor(), access.policy())
            st.toast("Stop requested: the run saves a checkpoint and ends after the current step.")
    elif status in ("running", "starting", "queued") and not manage:
        box.caption("Started by another visitor: only they (or the admin) can stop it.")
    if status == "queued" and manage and box.button("Cancel", key=f"cancel-{run_id}"):
        queue.stop(access.runs_root(), run_id, access.actor(), access.policy())
        st.rerun()
    if status == "interrupted":
        box.caption("Resume it on the Runs page.")


def run_view(run_id: str, controls: dict) -> tuple[str, runs.Snapshot]:
    """Progress, live curves, the latest sample and a Stop button for one run; returns its
    status and what was read of it (one read of the run per refresh)."""
    root = access.runs_root()
    state = queue.state(root, run_id)
    if state["status"] == "queued":
        state["starts_in"] = queue.starts_in(root, run_id)
    run_dir = root / run_id
    snap = runs.snapshot(run_dir)
    record = snap.record
    total = state.get("total_steps") or (record.train.steps if record else None) or 1
    df = pd.DataFrame(snap.metrics)
    head = st.columns([3, 1])
    _status_line(head[0], state, df, total)
    if state.get("job_error"):
        st.error(f"Resuming failed: {access.shown(state['job_error'])}")
    _controls(head[1], run_id, state["status"])
    if not df.empty:
        steps = _window(run_id, total)
        look = (str(run_dir), snap.metrics_bytes, controls["smooth"], controls["log_y"], controls["x"], steps)
        references = math_views.reference_lines(record)
        st.plotly_chart(charts.live_figure(*look, references, snap.metrics), key=f"curves-{run_id}")
        with st.expander("More curves: bits per token, perplexity, accuracy, learning rate, tokens/s"):
            st.plotly_chart(charts.more_figure(*look, snap.metrics), key=f"more-{run_id}")
        if snap.sample:
            st.markdown(f"**Sample at step {snap.sample['step']}**")
            st.text(snap.sample["prompt"] + snap.sample["text"])
    elif state["status"] == "failed":
        st.code(access.hide_paths(queue.log_tail(root, run_id)), language=None)
    return state["status"], snap


def _window(run_id: str, total: int) -> tuple[int, int] | None:
    """The steps the charts show, chosen by the visitor and kept across refreshes; None for all."""
    if total < 2:
        return None
    key = f"window-{run_id}"
    if key in st.session_state and max(st.session_state[key]) > total:  # a resumed run's new length
        del st.session_state[key]
    first, last = st.slider(
        "Steps shown",
        0,
        total,
        (0, total),
        key=key,
        help="A part of the run to look at closely: the choice outlives every refresh of the view.",
    )
    return None if (first, last) == (0, total) else (first, last)


REFRESH_S = (1.0, 5.0)  # the live view's refresh interval, fastest and slowest


def refresh_interval(run_dir: Path) -> float:
    """Seconds between the run's last logged records, within :data:`REFRESH_S` (2 s before two)."""
    return pace(runs.read_appended(run_dir / runs.METRICS))  # the refreshes' read, shared


def pace(metrics: list[dict]) -> float:
    """Seconds between the last of ``metrics`` (a run's records), within :data:`REFRESH_S`.

    Nothing on the live view changes between records (status and metrics are written at each
    log), and every refresh costs the same, changed or not: about a fifth of a core in the
    browser and a twentieth in the server for each refresh per second (BENCHMARKS.md), taken
    from training when they share its cores. So the view refreshes as often as records come.
    """
    # Trained intervals only: step 0 (the untrained model's validation, at time 0) comes before
    # the first compiled interval, so its gap is start-up, not pace; counted, it made the view
    # change pace (and rebuild the page under the user's clicks) once the steady gaps came.
    times = [m["time"] for m in metrics if "time" in m and "loss" in m][-4:]
    if len(times) < 2:
        return 2.0
    gap = statistics.median(b - a for a, b in zip(times, times[1:], strict=False))
    return round(min(max(gap, REFRESH_S[0]), REFRESH_S[1]), 1)


def follow(run_id: str, controls: dict) -> None:
    """Show a run; while it trains, refresh at the pace of its logs (only this part of the page)."""
    status = jobs_state(run_id)
    if status in TERMINAL:
        run_view(run_id, controls)
        return
    if controls.get("paused"):  # drawn once, no timer: the visitor reads, zooms, points at it
        st.caption("The view is paused: the run keeps training. Switch the pause off to follow it again.")
        run_view(run_id, controls)
        return
    key = f"refresh-{run_id}"
    # Start at the pace of the records already logged: a page that opens (or switches to) a
    # running run then has no reason to rebuild itself a moment later, closing open menus.
    every = st.session_state.get(key) or refresh_interval(access.runs_root() / run_id)

    @st.fragment(run_every=every)
    def refresh():
        status, snap = run_view(run_id, controls)
        if status in TERMINAL:
            st.rerun()  # finished: redraw the whole page once, without the timer
        want = pace(snap.metrics)
        # A fragment's timer is fixed, so a new pace rebuilds the page, which closes any open
        # menu on it: only for a pace at least twice as fast or slow, not for jitter.
        if want >= 2 * every or want <= every / 2:
            st.session_state[key] = want
            st.rerun()

    refresh()


def joined_note(run_id: str) -> None:
    """Said to a visitor whose job was identical to one already on the server (public mode)."""
    st.info(
        f"The same run (same text, model, settings and seed) is already on this server: {run_id}. "
        "You follow it instead of training it again, and can generate from it once it has a "
        "checkpoint. Change any setting to train a run of your own.",
        icon=":material/group:",
    )


def jobs_state(run_id: str) -> str:
    return queue.state(access.runs_root(), run_id)["status"]
