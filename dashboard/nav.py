"""The app's pages, and the way into them: every page runs through ``app.py``'s navigation.

A fresh server (a bookmark, a restarted Community Cloud app) that is first asked for a page's
address runs the page file alone, in Streamlit's older ``pages/`` mode: no navigation, no
shared sidebar, every file in ``pages/`` listed as a page. :func:`enter` is the first call of
every page: run without ``app.py``, it does what ``app.py`` does (:func:`frame`: the page
settings, ``st.navigation`` over the app's pages, which also turns that older mode off for
the server, and the sidebar; then the page inside it), so the page shows as it does through
``app.py``, and every later run goes through ``app.py``.
"""

from __future__ import annotations

import contextlib
import contextvars

import streamlit as st

from dashboard import sidebar

PAGES = (  # (file, title, icon, address: None for the file's name; Home is the root)
    ("pages/home.py", "Home", ":material/home:", None),
    ("pages/tour.py", "Tour", ":material/tour:", None),
    ("pages/data.py", "Data", ":material/description:", None),
    ("pages/mathematics.py", "Math", ":material/functions:", "math"),
    ("pages/train.py", "Train", ":material/model_training:", None),
    ("pages/generate.py", "Generate", ":material/edit_note:", None),
    ("pages/finetune.py", "Fine-tune", ":material/tune:", None),
    ("pages/runs.py", "Runs", ":material/table_chart:", None),
)

_in_app = contextvars.ContextVar("lmlab_in_app", default=False)


def pages() -> list:
    return [
        st.Page(path, title=title, icon=icon, url_path=address, default=n == 0)
        for n, (path, title, icon, address) in enumerate(PAGES)
    ]


@contextlib.contextmanager
def through_app():
    """``app.py`` runs the chosen page inside this: :func:`enter` then knows it came that way."""
    token = _in_app.set(True)
    try:
        yield
    finally:
        _in_app.reset(token)


def frame():
    """The app's frame: page settings, the navigation over the eight pages (returns the page
    asked for) and the shared sidebar."""
    st.set_page_config(page_title="LM Lab", page_icon=":material/science:", layout="wide")
    page = st.navigation(pages())
    sidebar.draw()
    return page


def enter() -> None:
    """The first call of every page. Run without ``app.py``, it does what ``app.py`` does (the
    frame, then the page inside it, so its widgets are the same widgets as on any later run)
    and ends this run of the page file."""
    if not _in_app.get():
        page = frame()
        with through_app():
            page.run()
        st.stop()
