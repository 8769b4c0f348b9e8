"""Who may do what: this server's policy (public mode), the visitor's session, and what it may see.

Per-user choices live in ``st.session_state``; the policy comes from ``LMLAB_PUBLIC`` or the
``[lmlab]`` secrets and is shared by every session.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import streamlit as st

from dashboard import fmt
from lmcore import runs
from lmcore.jobs import public, queue


def runs_root() -> Path:
    return runs.runs_dir()


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
        f"time per visitor, {p.max_queued} waiting at most; uploads up to {p.upload_mb:g} MB, "
        f"{p.uploads_per_session} per session."
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
    return fmt.plain(hide_paths(text))
