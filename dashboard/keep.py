"""Keep a run: the Runs page's download of one run as a .zip, and the upload that imports one
(:mod:`lmcore.archive` does the work and all the checking)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import access, sources
from lmcore import LMError, archive
from lmcore.jobs import queue


def download(run: dict) -> None:
    """The button that downloads ``run`` as one .zip; a run still training has none yet."""
    if run["status"] == "running":
        st.caption("A run can be downloaded as a .zip once it stops training.")
        return
    st.download_button(
        "Download run (.zip)",
        lambda: archive.export_bytes(Path(run["path"])),  # built at the click: a run can be 260 MB
        f"{run['run_id']}.zip",
        "application/zip",
        help="Its record, metrics, samples, tokenizer and checkpoints: Upload a run adds it back.",
    )


def upload(root: Path) -> None:
    """The uploader that imports a run's .zip. Streamlit hands the same file to every rerun
    of the page, so each upload (its ``file_id``) is imported once and its outcome kept."""
    file = st.file_uploader(
        "Upload a run (.zip)",
        type=["zip"],
        key="runs-upload",
        help="A run downloaded here or written by `python -m lmcore runs export`.",
    )
    if file is None:
        return
    done = st.session_state.get("runs-imported")
    if done is None or done[0] != file.file_id:
        done = (file.file_id, *_import(root, file))
        st.session_state["runs-imported"] = done
    _, error, run_id = done
    if error:
        st.error(error)
    else:
        st.success(f"Imported run `{run_id}`: it is in the table below.")  # an id: plain characters


def _import(root: Path, file) -> tuple[str | None, str | None]:
    """(the error to show, or None; the new run's id)."""
    rules = access.policy()
    refused = sources.upload_refused(file.getvalue(), file.name)  # public mode's size and count
    if refused:
        return refused, None
    cap = int(rules.upload_mb * 2**20) if rules.public else archive.MAX_BYTES
    try:
        run_id = archive.import_run(root, file, access.actor().owner_id if rules.public else None, cap)
    except LMError as err:
        return f"{access.shown(file.name)} was not imported: {access.shown(err)}", None
    queue.make_room(root, rules)  # public mode's disk budget, now with this run in it
    return None, run_id
