"""Math: entropy, the predictability of the corpus, and gradient descent, computed exactly."""

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from lmcore import corpus, info
from pages import common

st.title("Math")

st.header("1. Entropy")
st.markdown(r"$H(p) = -\sum_i p_i \log_2 p_i$ bits: how uncertain the next symbol is. A fair coin has 1 bit.")
cols = st.columns(2)
table = cols[0].data_editor(
    pd.DataFrame({"symbol": ["a", "b", "c", "d"], "p": [0.25, 0.25, 0.25, 0.25]}),
    num_rows="dynamic",
    key="dist",
)
try:
    p = table["p"].astype(float).to_numpy()
    cols[0].metric(
        "Entropy", f"{info.entropy(p):.4f} bits", help=f"uniform over {len(p)} symbols: log2 {len(p)}"
    )
    cols[0].caption(f"Maximum for {len(p)} symbols: log2 {len(p)} = {np.log2(len(p)):.4f} bits")
except (ValueError, TypeError) as err:
    cols[0].error(str(err))
q = np.linspace(0, 1, 201)
coin = [info.entropy([x, 1 - x]) for x in q]
fig = go.Figure(go.Scatter(x=q, y=coin, mode="lines"))
fig.update_layout(title="A biased coin: H(p) in bits", xaxis_title="P(heads)", yaxis_title="bits", height=300)
cols[1].plotly_chart(fig)

st.header("2. How predictable is the corpus?")
st.markdown(
    "The plug-in estimate of $H(X_t \\mid X_{t-n..t-1})$ from character counts: the more context, the less "
    "uncertainty. A trained model's validation bits per character can be read against it."
)
source = st.session_state.get("corpus_source") or corpus.DEFAULT_SOURCE
st.caption(f"Corpus: `{source}` (choose another on the Data page)")


@st.cache_data(show_spinner="Counting n-grams…")
def ngram_curve(source: str, clean: tuple) -> list[float]:
    text = common.load_source(source, dict(clean)).text[:1_000_000]
    return [info.ngram_conditional_entropy(text, order) for order in range(7)]


try:
    curve = ngram_curve(source, tuple(sorted(st.session_state.get("corpus_clean", {}).items())))
    fig = go.Figure(go.Scatter(x=list(range(7)), y=curve, mode="lines+markers"))
    fig.update_layout(
        title="Conditional entropy by context length",
        xaxis_title="context (characters)",
        yaxis_title="bits per character",
        height=320,
    )
    st.plotly_chart(fig)
except Exception as err:  # a corpus that no longer loads (e.g. offline URL)
    st.error(f"Could not load the corpus: {err}")

st.header("3. Gradient descent")
st.markdown(
    r"$J(\theta) = (\theta_1 - 1)^2 + \theta_2^2$, $\nabla J = (2(\theta_1 - 1),\ 2\theta_2)$, "
    r"$\theta \leftarrow \theta - \alpha \nabla J$. From $\theta = (0.5, 0.5)$ with $\alpha = 0.1$, "
    r"one step gives "
    r"$\theta = (0.6, 0.4)$. **The tutorial prints 0.3 for $\theta_1$: that is an error**, since "
    r"$0.5 - 0.1 \cdot 2(0.5 - 1) = 0.6$."
)
cols = st.columns(4)
alpha = cols[0].slider("α (learning rate)", 0.01, 1.2, 0.1, 0.01)
t1 = cols[1].slider("start θ1", -2.0, 3.0, 0.5, 0.1)
t2 = cols[2].slider("start θ2", -2.0, 2.0, 0.5, 0.1)
steps = cols[3].slider("steps", 1, 50, 10)
path = info.gradient_descent(lambda th: np.array([2 * (th[0] - 1), 2 * th[1]]), [t1, t2], alpha, steps)
if alpha == 1:
    st.info("α = 1 overshoots to the mirror point every step: it oscillates forever.")
elif alpha > 1:
    st.warning("α > 1: every step overshoots further, so the path diverges.")
g1, g2 = np.meshgrid(np.linspace(-2, 3, 80), np.linspace(-2, 2, 80))
fig = go.Figure(go.Contour(x=g1[0], y=g2[:, 0], z=(g1 - 1) ** 2 + g2**2, colorscale="Blues", ncontours=25))
fig.add_scatter(x=path[:, 0], y=path[:, 1], mode="lines+markers", name="path", line=dict(color="crimson"))
fig.update_layout(height=420, xaxis_title="θ1", yaxis_title="θ2", xaxis_range=[-2, 3], yaxis_range=[-2, 2])
cols = st.columns([3, 2])
cols[0].plotly_chart(fig)
cols[1].dataframe(
    pd.DataFrame({"θ1": path[:, 0], "θ2": path[:, 1], "J(θ)": (path[:, 0] - 1) ** 2 + path[:, 1] ** 2}),
    height=400,
)
