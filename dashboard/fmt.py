"""Text for the page: Markdown escaping, durations, token labels and short corpus names."""

from __future__ import annotations

import re
from pathlib import Path

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>$:])")


def plain(text: str) -> str:
    """``text`` (a file name, an address, a message quoting them) escaped for the elements that
    render Markdown (st.error, st.info, st.caption...): links, images, HTML-looking tags and
    formulas in it are shown as typed, never rendered."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))


def fmt_seconds(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


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
