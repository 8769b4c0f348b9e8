"""Links that reproduce a setup: a page's settings kept in its address (``st.query_params``).

A page names its linkable settings as :class:`Field` s: the parameter's name in the address,
the widget's session-state key, and a parser that accepts exactly what the widget accepts
(the same choices, the same ranges, text within the same length). :func:`restore`, before the
widgets, takes each parameter that parses into its widget, once per session and page, so a
link opened in a new browser shows the setup it was copied from; anything else in the
address (an unknown name, a bad or hostile value) is ignored and said so on the page.
:func:`keep`, after the widgets, writes their values back, so the address is always a link
to what is on the screen. Nothing from the address reaches a path, a job or a command line
except through the widgets, and so through the checks the page makes of what is typed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import streamlit as st

from dashboard import fmt
from lmcore.text import corpus

MAX_VALUE = 2000  # characters: a longer parameter is refused before it is parsed


@dataclass(frozen=True)
class Field:
    name: str  # in the address
    key: str  # the widget's session-state key
    parse: Callable[[str], Any]  # raises ValueError for what the widget would not accept
    apply: Callable[[Any], None] | None = None  # instead of setting ``key``: for a value of two widgets


def choice(options: Sequence) -> Callable[[str], Any]:
    return lambda raw: options[[str(o) for o in options].index(raw)]


def integer(lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if not lo <= value <= hi:
            raise ValueError(raw)
        return value

    return parse


def real(lo: float, hi: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        value = float(raw)
        if not (math.isfinite(value) and lo <= value <= hi):
            raise ValueError(raw)
        return value

    return parse


def text(limit: int) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if len(raw) > limit or any(ord(c) < 32 and c not in "\n\t" for c in raw):
            raise ValueError(raw)
        return raw

    return parse


def source(raw: str) -> str:
    """A corpus in a link: a built-in one or a web address (never a file on the server)."""
    if raw in corpus.BUILTIN_SOURCES:
        return raw
    if raw.startswith(("http://", "https://")) and len(raw) > 8 and not any(c.isspace() for c in raw):
        return raw
    raise ValueError(raw)


def linkable(value: str | None) -> str | None:
    """``value`` if a link may carry it as a corpus (an upload's path on the server may not)."""
    try:
        return source(value) if value else None
    except ValueError:
        return None


def flag(raw: str) -> bool:
    return {"1": True, "0": False, "true": True, "false": False}[raw.lower()]


def _shown(value) -> str:
    return ("1" if value else "0") if isinstance(value, bool) else str(value)


def restore(page: str, fields: Sequence[Field], extra: Sequence[str] = ()) -> None:
    """Once per session and page: put each field's parameter, where it parses, into its
    widget; remember what was ignored (``extra``: names another call of this page restores,
    as the Train page restores its model before the fields that belong to the model)."""
    done = f"links-{page}"
    if done in st.session_state:  # set by keep(): a whole run of the page has shown the link
        return
    known, ignored = {f.name for f in fields} | set(extra), []
    for f in fields:
        raw = st.query_params.get(f.name)
        if raw is None:
            continue
        try:
            if len(raw) > MAX_VALUE:
                raise ValueError(raw)
            value = f.parse(raw)
            if f.apply is not None:
                f.apply(value)
            else:
                st.session_state[f.key] = value
        except (ValueError, KeyError, TypeError):
            ignored.append(f.name)
    ignored += [name for name in st.query_params if name not in known]
    ignored = list(dict.fromkeys([*st.session_state.get(f"{done}-ignored", []), *ignored]))
    if ignored:
        st.session_state[f"{done}-ignored"] = ignored[:10]


def notice(page: str) -> None:
    """Say which parameters of the link were ignored (until a setting is changed)."""
    ignored = st.session_state.get(f"links-{page}-ignored")
    if ignored:
        names = ", ".join(fmt.plain(name[:40]) for name in ignored)
        box = st.session_state[f"links-{page}-box"] = st.empty()  # emptied by keep() once read
        box.warning(
            f"Ignored from the link: {names} (not a setting of this page, or a value it does not accept)."
        )


def keep(page: str, fields: Sequence[Field], values: dict | None = None) -> None:
    """Write the fields' widget values (and ``values``, already checked) into the address."""
    params = {
        f.name: _shown(st.session_state[f.key]) for f in fields if st.session_state.get(f.key) is not None
    }
    params.update({k: v for k, v in (values or {}).items() if v})
    params = {k: v for k, v in params.items() if len(v) <= MAX_VALUE}  # a longer one would not restore
    last = st.session_state.get(f"links-{page}-last")
    if last is not None and params != last:  # the visitor changed a setting: the notice has been read
        st.session_state.pop(f"links-{page}-ignored", None)
        if (box := st.session_state.pop(f"links-{page}-box", None)) is not None:
            box.empty()  # drawn in this very run, above the widgets
    st.session_state[f"links-{page}-last"] = params
    # Restored for good only now: a run cut short before this point (a new click restarts the
    # script) restores the link again in the next one, from the address not yet rewritten.
    st.session_state[f"links-{page}"] = True
    if params != st.query_params.to_dict():
        st.query_params.from_dict(params)
