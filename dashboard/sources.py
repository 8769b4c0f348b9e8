"""The corpus picker: a built-in corpus, an upload or a web address, with its cleaning.

The choice is remembered in ``st.session_state`` for the other pages (Math, Train), and the
widgets come back as they were when the visitor returns to the page.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import streamlit as st

from dashboard import access, fmt, loaders
from lmcore import LMError, runs
from lmcore.jobs import queue
from lmcore.text import corpus

SOURCES = {"Built-in corpus": "builtin", "Upload a file": "upload", "Web address": "url"}


def upload_refused(data: bytes, name: str) -> str | None:
    """Why public mode refuses this upload (too large, or one too many this session), or None."""
    p = access.policy()
    if not p.public or access.actor().admin:
        return None
    if len(data) > p.upload_mb * 2**20:
        size = f"{len(data) / 2**20:.1f} MB" if len(data) >= 2**20 else f"{len(data) / 1024:.0f} KB"
        return f"{fmt.plain(name)} is {size}; this server accepts uploads up to {p.upload_mb:g} MB."
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
    folder = runs.uploads_dir(access.runs_root().resolve()) / hashlib.sha256(data).hexdigest()[:16]
    stem = re.sub(r"[^\w.-]+", "_", Path(name).stem).strip("._")[:60] or "upload"
    suffix = Path(name).suffix.lower() if Path(name).suffix.lower() in (".txt", ".md", ".csv") else ".txt"
    path = folder / f"{stem}{suffix}"
    if not path.exists():
        queue.make_room(access.runs_root(), access.policy())
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
        return (lambda opts: loaders.load_source(source, opts)), source, None
    if kind == "url":
        source = st.text_input("http(s) address of a text file", key=_kept(f"{key}-url", kept)).strip()
        if source and not source.startswith(("http://", "https://")):
            st.error("The address must start with http:// or https://")
        ok = source.startswith(("http://", "https://"))
        return ((lambda opts: loaders.load_source(source, opts)), source, None) if ok else None
    upload = st.file_uploader("Text file (.txt, .md, .csv)", type=["txt", "md", "csv"], key=f"{key}-up")
    if upload is not None:
        refused = upload_refused(upload.getvalue(), upload.name)
        if refused:
            st.error(refused)
            return None
        kept["upload"] = (upload.name, upload.getvalue())
    elif "upload" in kept:
        st.caption(f"Using your earlier upload, {fmt.plain(kept['upload'][0])}; choose a file to replace it.")
    else:
        return None
    name, data = kept["upload"]
    column = None
    if name.lower().endswith(".csv"):
        column = st.text_input("Text column", value="text", key=_kept(f"{key}-col", kept)) or None
    return (lambda opts: loaders.load_upload(data, name, opts, column)), None, column


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
        st.error(fmt.plain(err))
        st.stop()
    for note in cleaned.notes:
        st.info(fmt.plain(note))
    st.session_state["corpus_source"] = source
    st.session_state["corpus_clean"] = {k: v for k, v in options.items() if v}
    st.session_state["corpus_text_column"] = text_column
    return cleaned, raw, source
