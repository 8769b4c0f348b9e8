"""How the model sees a text, drawn once for the Data page and the tour: tokens as coloured
chips with their ids, and training windows with their targets shifted by one."""

from __future__ import annotations

import html

import numpy as np
import streamlit as st

from dashboard import fmt
from lmcore.text import windows

PALETTE = ["#fde68a", "#bfdbfe", "#bbf7d0", "#fbcfe8", "#ddd6fe", "#fed7aa"]


def chips(where, tok, ids) -> None:
    """Each token of ``ids`` as a chip: its text, and its id below it."""
    spans = "".join(
        f'<span title="id {i}" style="background:{PALETTE[n % len(PALETTE)]};border-radius:3px;'
        f'padding:0 1px;margin:1px;word-break:break-all">{html.escape(fmt.show_token(tok.token(i)))}'
        f'<sub style="color:#555">{i}</sub></span>'
        for n, i in enumerate(ids)
    )
    where.html(f'<div style="font-family:monospace;line-height:2">{spans}</div>')


def sample_windows(train_ids, block: int, seed: int, count: int) -> tuple | None:
    """``count`` windows drawn as training draws them: (starts, inputs, targets), or None if
    the text is too short for one."""
    if len(train_ids) <= block + 1:
        return None
    starts = np.random.default_rng(int(seed)).integers(0, len(train_ids) - block - 1, count)
    return (starts, *windows.pairs(train_ids, block, starts))


def shift_table(tok, x_row, y_row) -> None:
    """One window position by position: what the model reads, and the token it must predict."""
    st.dataframe(
        {
            "position": list(range(1, len(x_row) + 1)),
            "reads (input)": [fmt.show_token(tok.token(int(i))) for i in x_row],
            "must predict (target)": [fmt.show_token(tok.token(int(i))) for i in y_row],
            "target id": [int(i) for i in y_row],
        },
        hide_index=True,
    )
