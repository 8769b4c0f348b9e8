"""Why a token was chosen, drawn once for the Generate page and the tour: the token's
probabilities and surprisal, and the likeliest candidates before and after the filters."""

from __future__ import annotations

import plotly.graph_objects as go

from dashboard import fmt


def token_metrics(where, step) -> None:
    """The drawn token, its probability under the model and after the filters, its surprisal."""
    cols = where.columns(4)
    cols[0].metric("Token", repr(step.text))
    cols[1].metric("Probability (model)", f"{step.raw_prob:.3f}")
    cols[2].metric("Probability (after filters)", f"{step.prob:.3f}")
    cols[3].metric("Surprisal", f"{step.surprisal_bits:.2f} bits")


def candidates_figure(step, names: dict, position: int) -> go.Figure:
    """The candidates at one position (``names``: token id → token): what the model offered
    (grey where the filters removed it, outlined where drawn), and what the filters left."""
    labels = [f"{i + 1}. {fmt.show_token(names[c.token_id])}" for i, c in enumerate(step.candidates)]
    fig = go.Figure(
        [
            go.Bar(
                name="model",
                x=labels,
                y=[c.raw_prob for c in step.candidates],
                marker_color=["#636efa" if c.kept else "#c8c8c8" for c in step.candidates],
                marker_line_color=[
                    "black" if c.token_id == step.token_id else "rgba(0,0,0,0)" for c in step.candidates
                ],
                marker_line_width=3,
            ),
            go.Bar(
                name="after filters", x=labels, y=[c.prob for c in step.candidates], marker_color="#ef553b"
            ),
        ]
    )
    removed = sum(not c.kept for c in step.candidates)
    fig.update_layout(
        barmode="group",
        title=(
            f"The {len(step.candidates)} likeliest candidates at token {position} "
            f"(grey: removed by the filters ({removed}); outlined: the one drawn)"
        ),
        yaxis_title="probability",
        height=340,
        margin=dict(t=40, b=30),
    )
    return fig
