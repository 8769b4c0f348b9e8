"""App-side helpers shared by the pages: caching, the sidebar, the corpus choice, curve charts.

Per-user choices live in ``st.session_state``; shared read-only things (corpora, tokenizers,
loaded models) in ``st.cache_data``/``st.cache_resource``, keyed by everything that
determines them, so nothing one user does changes what another sees. Nothing here imports
TensorFlow; :func:`generator` reaches it through ``lmcore.generation.decoding`` only when called.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from lmcore import LMError, device, runs
from lmcore.jobs import public
from lmcore.text import corpus, tokenizers

SOURCES = {"Built-in corpus": "builtin", "Upload a file": "upload", "Web address": "url"}


def route_through_app() -> None:
    """Rerun through ``app.py`` when Streamlit ran this page straight from ``pages/``.

    With a ``pages/`` folder beside ``app.py``, a fresh server treats the first visit to a
    page's address (``/train``, a bookmark, a restarted Community Cloud app) in Streamlit's
    older multipage mode: it runs the page file alone, without ``app.py``'s navigation, layout
    or sidebar, and lists every file in ``pages/`` as a page. Only ``st.navigation`` turns that
    mode off, so the page turns it off the same way and reruns once through ``app.py``.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory and not st.session_state.get("routed_through_app"):
        st.session_state["routed_through_app"] = True  # once: AppTest resets the mode every run
        PagesManager.uses_pages_directory = False  # what st.navigation sets
        st.rerun()


def runs_root() -> Path:
    return runs.runs_dir()


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>$:])")


def plain(text: str) -> str:
    """``text`` (a file name, an address, a message quoting them) escaped for the elements that
    render Markdown (st.error, st.info, st.caption...): links, images, HTML-looking tags and
    formulas in it are shown as typed, never rendered."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))


@st.cache_resource(show_spinner=False)
def device_label() -> str:
    gpus = device.gpu_names_without_tf()
    return f"GPU ({gpus[0]})" if gpus else "CPU"


@st.cache_resource(show_spinner="Checking the GPU…")
def unused_gpu() -> str | None:
    """Said once per server: a GPU TensorFlow cannot use (checked in a child process)."""
    return device.unused_gpu_message()


def sidebar() -> None:
    """The shared sidebar: the device, the runs folder (not in public mode), the admin unlock
    (public mode), and the jobs training now, refreshed at the live view's pace while any is."""
    from lmcore.jobs import queue

    with st.sidebar:
        st.caption(f"**Device:** {device_label()}")
        if device_label() != "CPU" and unused_gpu():
            st.warning(plain(unused_gpu()))
        if not policy().public:
            st.caption(f"**Runs:** `{runs_root().resolve()}`")
        else:
            admin_unlock()
        live = bool(queue.active(runs_root()) or queue.queued(runs_root()))

        @st.fragment(run_every=st.session_state.get("live_pace", 2.0) if live else None)
        def jobs_now():
            if not training_now() and live:
                st.rerun()  # all finished: redraw once, without the timer

        jobs_now()


def training_now() -> bool:
    """List the runs training now, those still loading, and the queue; False if none."""
    from lmcore.jobs import queue

    root = runs_root()
    waiting = jobs_queue()
    running = {r["run_id"]: r for r in runs.list_runs(root) if r["status"] == "running"}
    comparison = lambda j: runs.read_comparison(root, j) is not None  # noqa: E731 (its runs are listed)
    loading = [j for j in queue.active(root) if j not in running and not comparison(j)]
    if running or loading:
        st.caption("**Training now:**")
        for r in running.values():
            st.caption(f"• {r['run_id']} — step {r['step']}/{r['steps']}")
        for run_id in loading:
            st.caption(f"• {run_id} — starting")
    else:
        st.caption("No training in progress.")
    if waiting:
        st.caption(f"**Queued:** {len(waiting)} (they start as training slots free)")
    return bool(running or loading or waiting or queue.active(root))


# ---------------------------------------------------------------------------- public mode


@st.cache_resource(show_spinner=False)
def _policy_from(settings: tuple) -> public.Policy:
    return public.Policy.from_settings(dict(settings))


def policy() -> public.Policy:
    """This server's rules: public mode from ``LMLAB_PUBLIC`` or ``[lmlab]`` in secrets."""
    try:
        settings = dict(st.secrets.get("lmlab", {}))
    except (FileNotFoundError, KeyError, ValueError, st.errors.StreamlitSecretNotFoundError):
        settings = {}  # no secrets file: a laptop
    return _policy_from(tuple(sorted(settings.items())))


def actor() -> public.Actor:
    """Who this browser session is, for the job layer: a private token, and the admin unlock."""
    token = st.session_state.setdefault("session_token", secrets.token_urlsafe(16))
    return public.Actor(token, admin=bool(st.session_state.get("admin")))


def may_manage(run_id: str) -> bool:
    from lmcore.jobs import queue

    return queue.may_manage(runs_root(), run_id, actor(), policy())


def admin_unlock() -> None:
    """The presenter's password box (public mode): it unlocks everything, for this session only."""
    if st.session_state.get("admin"):
        st.caption("**Admin:** every run can be stopped, resumed, deleted and pinned in this session.")
        if st.button("Lock admin", key="admin-lock"):
            st.session_state["admin"] = False
            st.rerun()
        return
    st.caption(f"**Public mode:** {caps_text()}")
    with st.form("admin-form", clear_on_submit=True, border=False):
        password = st.text_input("Admin password", type="password", key="admin-password")
        if st.form_submit_button("Unlock"):
            if policy().is_admin(password):
                st.session_state["admin"] = True
                st.rerun()
            st.error("Wrong admin password.")


def caps_text() -> str:
    p = policy()
    return (
        f"a run trains at most {p.max_steps:,} steps and {p.max_minutes:g} minutes; one job at a "
        f"time per visitor; uploads up to {p.upload_mb:g} MB, {p.uploads_per_session} per session."
    )


def step_cap(limit: int = 100_000) -> int:
    """The largest step count a form offers: ``limit``, or the server's cap in public mode."""
    if policy().public and not actor().admin:
        return min(limit, policy().max_steps)
    return limit


def hide_paths(text) -> str:
    """In public mode, ``text`` with the server's folders replaced by short names."""
    text = str(text)
    if policy().public:
        for folder, label in ((runs_root().resolve(), "runs"), (Path.home(), "~")):
            text = text.replace(str(folder), label)
    return text


def shown(text) -> str:
    """``text`` (a message that may quote a path or a file name) escaped for Markdown, with
    the server's folders hidden in public mode."""
    return plain(hide_paths(text))


# ---------------------------------------------------------------------------- corpora


@st.cache_data(show_spinner="Loading the corpus…", max_entries=16)
def load_source(source: str, options: dict, text_column: str | None = None) -> corpus.Corpus:
    return corpus.load(source, text_column=text_column, options=corpus.CleanOptions(**options))


@st.cache_data(show_spinner="Decoding the upload…", max_entries=8)
def load_upload(data: bytes, name: str, options: dict, text_column: str | None = None) -> corpus.Corpus:
    return corpus.load_bytes(data, name, text_column=text_column, options=corpus.CleanOptions(**options))


@st.cache_resource(show_spinner="Training the tokenizer…", max_entries=24)
def tokenizer_for(kind: str, text_sha: str, _text: str):
    """A tokenizer trained on a corpus, shared by all sessions (keyed by the text's hash)."""
    return tokenizers.train(kind, _text)


@st.cache_resource(show_spinner="Tokenizing…", max_entries=24)
def token_ids(kind: str, text_sha: str, _text: str):
    """The whole corpus encoded by ``kind``'s tokenizer (shared, keyed by the text's hash)."""
    return tokenizer_for(kind, text_sha, _text).encode(_text)


def upload_refused(data: bytes, name: str) -> str | None:
    """Why public mode refuses this upload (too large, or one too many this session), or None."""
    p = policy()
    if not p.public or actor().admin:
        return None
    if len(data) > p.upload_mb * 2**20:
        size = f"{len(data) / 2**20:.1f} MB" if len(data) >= 2**20 else f"{len(data) / 1024:.0f} KB"
        return f"{plain(name)} is {size}; this server accepts uploads up to {p.upload_mb:g} MB."
    seen = st.session_state.setdefault("uploads_seen", [])
    digest = hashlib.sha256(data).hexdigest()
    if digest not in seen:
        if len(seen) >= p.uploads_per_session:
            n = p.uploads_per_session
            return f"This server accepts {n} different uploads per visitor; reuse an earlier one."
        seen.append(digest)
    return None


def upload_path(data: bytes, name: str) -> Path:
    """Save an upload where a training child process can read it; same bytes, same file.

    ``.uploads/<content hash>/<the upload's own name, made safe>``: runs show the user's name.
    In public mode the disk budget is kept first (oldest finished runs removed).
    """
    from lmcore.jobs import queue

    folder = runs.uploads_dir(runs_root().resolve()) / hashlib.sha256(data).hexdigest()[:16]
    stem = re.sub(r"[^\w.-]+", "_", Path(name).stem).strip("._")[:60] or "upload"
    suffix = Path(name).suffix.lower() if Path(name).suffix.lower() in (".txt", ".md", ".csv") else ".txt"
    path = folder / f"{stem}{suffix}"
    if not path.exists():
        queue.make_room(runs_root(), policy())
        folder.mkdir(parents=True, exist_ok=True)
        runs.atomic_write(path, lambda tmp: tmp.write_bytes(data))
    return path


def _kept(key: str, kept: dict):
    """Give widget ``key`` back the value it had, if Streamlit forgot it while its page was hidden."""
    if key not in st.session_state and key in kept:
        st.session_state[key] = kept[key]
    return key


def _source_widgets(kind: str, key: str, kept: dict):
    """The widgets of one kind of source; returns (load(options), source or None for an
    upload, text column), or None while there is nothing to load."""
    if kind == "builtin":
        source = st.selectbox("Corpus", corpus.BUILTIN_SOURCES, key=_kept(f"{key}-builtin", kept))
        return (lambda opts: load_source(source, opts)), source, None
    if kind == "url":
        source = st.text_input("http(s) address of a text file", key=_kept(f"{key}-url", kept)).strip()
        if source and not source.startswith(("http://", "https://")):
            st.error("The address must start with http:// or https://")
        ok = source.startswith(("http://", "https://"))
        return ((lambda opts: load_source(source, opts)), source, None) if ok else None
    upload = st.file_uploader("Text file (.txt, .md, .csv)", type=["txt", "md", "csv"], key=f"{key}-up")
    if upload is not None:
        refused = upload_refused(upload.getvalue(), upload.name)
        if refused:
            st.error(refused)
            return None
        kept["upload"] = (upload.name, upload.getvalue())
    elif "upload" in kept:
        st.caption(f"Using your earlier upload, {plain(kept['upload'][0])}; choose a file to replace it.")
    else:
        return None
    name, data = kept["upload"]
    column = None
    if name.lower().endswith(".csv"):
        column = st.text_input("Text column", value="text", key=_kept(f"{key}-col", kept)) or None
    return (lambda opts: load_upload(data, name, opts, column)), None, column


def corpus_picker(key: str = "data") -> tuple[corpus.Corpus | None, corpus.Corpus | None, str | None]:
    """Widgets to choose and clean a corpus; returns (cleaned, uncleaned, source for training).

    The choice is remembered in ``st.session_state`` for the Train page, and the widgets come
    back as they were when the user returns to the page (Streamlit forgets the widgets of a
    page that is not shown; the last upload is kept as well).
    """
    kept = st.session_state.setdefault(f"{key}-kept", {})
    kind = SOURCES[st.radio("Source", list(SOURCES), horizontal=True, key=_kept(f"{key}-kind", kept))]
    cols = st.columns(3)
    options = {
        "strip_html": cols[0].checkbox(
            "Strip HTML tags",
            key=_kept(f"{key}-html", kept),
            help="For HTML sources: anything between < and > goes",
        ),
        "lowercase": cols[1].checkbox("Lowercase", key=_kept(f"{key}-lower", kept)),
        "remove_special": cols[2].checkbox("Remove special characters", key=_kept(f"{key}-special", kept)),
    }
    try:
        chosen = _source_widgets(kind, key, kept)
        if chosen is None:
            return None, None, None
        load, source, text_column = chosen
        for k in ("kind", "html", "lower", "special", "builtin", "col", "url"):
            if f"{key}-{k}" in st.session_state:
                kept[f"{key}-{k}"] = st.session_state[f"{key}-{k}"]
        cleaned = load(options)
        raw = load({}) if any(options.values()) else cleaned
        if source is None:  # an upload: saved for training only once it has decoded
            source = str(upload_path(kept["upload"][1], kept["upload"][0]))
    except LMError as err:
        st.error(plain(err))
        st.stop()
    for note in cleaned.notes:
        st.info(plain(note))
    st.session_state["corpus_source"] = source
    st.session_state["corpus_clean"] = {k: v for k, v in options.items() if v}
    st.session_state["corpus_text_column"] = text_column
    return cleaned, raw, source


# ---------------------------------------------------------------------------- runs and charts


def run_choices(predicate=lambda r: True) -> list[dict]:
    return [r for r in runs.list_runs(runs_root()) if predicate(r)]


def run_label(r: dict) -> str:
    best = f", best val {r['best_val_loss']:.3f}" if r.get("best_val_loss") is not None else ""
    return f"{r['run_id']} ({r['status']}, {r['model']}{best})"


def metrics_frame(run_dir: Path) -> pd.DataFrame:
    return pd.DataFrame(runs.read_jsonl(run_dir / runs.METRICS))


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
        traces.append(dict(x=line[x], y=y, mode="lines", name=f"{label}train"))
    if val_key and val_key in df:
        val = df.dropna(subset=[val_key])
        traces.append(dict(x=val[x], y=val[val_key], mode="lines+markers", name=f"{label}validation"))
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
def live_figure(run_dir: str, size: int, smooth: float, log_y: bool, x: str) -> go.Figure:
    """All of a run's curves in one figure (one chart to draw each second, not six).

    Cached on the metrics file's size: while no new record arrives, the same figure is reused.
    """
    df = metrics_frame(Path(run_dir))
    fig = make_subplots(rows=3, cols=2, subplot_titles=list(CURVES), vertical_spacing=0.08)
    colors = {"train": "#1f77b4", "validation": "#ff7f0e"}
    for n, metric in enumerate(CURVES):
        row, col = n // 2 + 1, n % 2 + 1
        for trace in curve_traces(df, metric, smooth, x):
            color = colors[trace["name"]]
            fig.add_scatter(
                **trace,
                line=dict(color=color),
                showlegend=n == 0,
                legendgroup=trace["name"],
                row=row,
                col=col,
            )
        if log_y:
            fig.update_yaxes(type="log", row=row, col=col)
    fig.update_xaxes(title_text=_x_title(x), row=3)
    fig.update_layout(height=820, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=1.06))
    return fig


def config_rows(run_dir: Path) -> dict:
    """A run's record flattened to ``section.key`` columns, for tables and diffs."""
    record = runs.read_record(run_dir)
    if record is None:
        return {"model_name": None}
    sections = record.to_json()
    flat = {"model_name": record.model_name}
    for section in ("model", "train", "data", "device"):  # device: where, precision, strategy
        for k, v in (sections.get(section) or {}).items():
            flat[f"{section}.{k}"] = v if not isinstance(v, dict | list) else str(v)
    if policy().public and "data.source" in flat:  # a file's name, never the server's folders
        flat["data.source"] = corpus_label(flat["data.source"])
    return flat


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def generator(run_dir: str, which: str, mtime: float):
    """(LogitsFn, tokenizer, config) for a checkpoint; ``mtime`` makes a newer checkpoint reload."""
    from lmcore.generation import decoding

    # No XLA in the server: its compiled code would stay in memory after the model is evicted.
    loaded = decoding.load_run(Path(run_dir), which, jit=False)
    decoding.warm_up(loaded[0])  # trace the decoder now, under this spinner, not at the first token
    return loaded


@st.cache_resource(show_spinner="Loading the classifier…", max_entries=4)
def classifier(run_dir: str):
    """A trained classifier run, loaded once (this is where TensorFlow gets imported)."""
    from lmcore.training import classify

    return classify.load_classifier(Path(run_dir))


def fmt_seconds(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def entropy_bits(text: str) -> float:
    from lmcore.explain import info

    return info.unigram_entropy(text) if text else 0.0


# ---------------------------------------------------------------------------- following a run

TERMINAL = ("completed", "stopped", "failed", "interrupted", "evicted")


def curve_controls(key: str) -> dict:
    cols = st.columns(3)
    return {
        "smooth": cols[0].slider("EMA smoothing", 0.0, 0.99, 0.0, 0.01, key=f"{key}-ema"),
        "log_y": cols[1].toggle("Log scale", key=f"{key}-log"),
        "x": {"Step": "step", "Wall time": "time"}[
            cols[2].radio("x axis", ["Step", "Wall time"], horizontal=True, key=f"{key}-x")
        ],
    }


def _status_line(box, state: dict, df: pd.DataFrame, total: int) -> None:
    """The run's state in one element: queued, starting, failed, removed, or a progress bar."""
    status, step = state["status"], int(state.get("step") or 0)
    if status == "queued":
        box.info(
            f"Queued: number {state['position']} of {state['queue_length']} waiting. It starts when one "
            f"of the {state['slots']} training slots frees (LMLAB_MAX_JOBS sets how many)."
        )
    elif status == "starting":
        box.info("Starting: loading the corpus and TensorFlow…")
    elif status == "failed":
        box.error(f"Failed: {shown(state.get('message'))}")
    elif status == "evicted":
        box.warning(
            f"This run ({state['bytes'] / 2**20:.0f} MB) was removed to keep the server's disk budget."
        )
    else:
        eta = ""
        if status == "running" and len(df) >= 2:
            seconds = max(df["time"].iloc[-1] - df["time"].iloc[0], 1e-9)
            rate = (df["step"].iloc[-1] - df["step"].iloc[0]) / seconds
            eta = f" · ETA {fmt_seconds((total - step) / rate)}" if rate > 0 else ""
        val = f" · val loss {state['val_loss']:.4f}" if state.get("val_loss") is not None else ""
        box.progress(min(step / total, 1.0), text=f"**{status}** · step {step}/{total}{val}{eta}")
        if status == "stopped" and state.get("message"):
            box.caption(shown(state["message"]))


def _controls(box, run_id: str, status: str) -> None:
    """Stop or Cancel for whoever may manage the run (public mode: its session, or the admin)."""
    from lmcore.jobs import queue

    manage = may_manage(run_id)
    if status in ("running", "starting") and manage:
        if box.button("Stop", key=f"stop-{run_id}", type="primary"):
            queue.stop(runs_root(), run_id, actor(), policy())
            st.toast("Stop requested: the run saves a checkpoint and ends after the current step.")
    elif status in ("running", "starting", "queued"):
        box.caption("Started by another visitor: only they (or the admin) can stop it.")
    if status == "queued" and manage and box.button("Cancel", key=f"cancel-{run_id}"):
        queue.stop(runs_root(), run_id, actor(), policy())
        st.rerun()
    if status == "interrupted":
        box.caption("Resume it on the Runs page.")


def run_view(run_id: str, controls: dict) -> str:
    """Progress, live curves, the latest sample and a Stop button for one run; returns its status."""
    from lmcore.jobs import queue

    root = runs_root()
    state = queue.state(root, run_id)
    run_dir = root / run_id
    record = runs.read_record(run_dir)
    total = state.get("total_steps") or (record.train.steps if record else None) or 1
    df = metrics_frame(run_dir) if run_dir.is_dir() else pd.DataFrame()
    head = st.columns([3, 1])
    _status_line(head[0], state, df, total)
    if state.get("job_error"):
        st.error(f"Resuming failed: {shown(state['job_error'])}")
    _controls(head[1], run_id, state["status"])
    if not df.empty:
        size = (run_dir / runs.METRICS).stat().st_size
        fig = live_figure(str(run_dir), size, controls["smooth"], controls["log_y"], controls["x"])
        st.plotly_chart(fig, key=f"curves-{run_id}")
        samples = runs.read_jsonl(run_dir / runs.SAMPLES)
        if samples:
            st.markdown(f"**Sample at step {samples[-1]['step']}**")
            st.text(samples[-1]["prompt"] + samples[-1]["text"])
    elif state["status"] == "failed":
        st.code(hide_paths(queue.log_tail(root, run_id)), language=None)
    return state["status"]


REFRESH_S = (1.0, 5.0)  # the live view's refresh interval, fastest and slowest


def refresh_interval(run_dir: Path) -> float:
    """Seconds between the run's last logged records, within :data:`REFRESH_S` (2 s before two).

    Nothing on the live view changes between records (status and metrics are written at each
    log), and every refresh costs the same, changed or not: about a fifth of a core in the
    browser and a twentieth in the server for each refresh per second (BENCHMARKS.md), taken
    from training when they share its cores. So the view refreshes as often as records come.
    """
    times = [m["time"] for m in runs.read_jsonl(run_dir / runs.METRICS)[-4:] if "time" in m]
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
    key = f"refresh-{run_id}"
    # Start at the pace of the records already logged: a page that opens (or switches to) a
    # running run then has no reason to rebuild itself a moment later, closing open menus.
    every = st.session_state.get(key) or refresh_interval(runs_root() / run_id)

    st.session_state["live_pace"] = every  # the sidebar's list refreshes with the view

    @st.fragment(run_every=every)
    def live():
        if run_view(run_id, controls) in TERMINAL:
            st.rerun()  # finished: redraw the whole page once, without the timer
        want = refresh_interval(runs_root() / run_id)
        # A fragment's timer is fixed, so a new pace rebuilds the page, which closes any open
        # menu on it: only for a pace at least twice as fast or slow, not for jitter.
        if want >= 2 * every or want <= every / 2:
            st.session_state[key] = want
            st.rerun()

    live()


def jobs_queue() -> list[str]:
    """Ids of the jobs waiting for a training slot (starting any whose slot has freed)."""
    from lmcore.jobs import queue

    queue.dispatch(runs_root())
    return queue.queued(runs_root())


def jobs_state(run_id: str) -> str:
    from lmcore.jobs import queue

    return queue.state(runs_root(), run_id)["status"]


def px_line(x, y, title: str) -> go.Figure:
    fig = go.Figure(go.Scatter(x=x, y=y, mode="lines"))
    fig.update_layout(title=title, height=260, margin=dict(l=10, r=10, t=40, b=10), xaxis_title="step")
    return fig


def show_token(token: str) -> str:
    """A token as a chart label: a space as '␣', other invisible characters escaped."""
    return (
        "␣" * len(token)
        if token.strip(" ") == "" and token
        else (repr(token)[1:-1] if not token.isprintable() else token)
    )


def corpus_label(source: str | None) -> str:
    """A short name for a corpus source: built-ins and URLs as they are, files by their name."""
    if not source or source.startswith(("builtin:", "http://", "https://")):
        return source or "?"
    return Path(source).name


@st.cache_data(show_spinner=False, max_entries=16)
def distinct_chars(text: str) -> str:
    """The characters of ``text``, once (the char tokenizer's vocabulary)."""
    return "".join(sorted(set(text)))
