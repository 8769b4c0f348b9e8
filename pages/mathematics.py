"""Math: the tutorial's section 4, computed exactly on the user's corpus and trained runs.

With no run chosen, nothing here loads TensorFlow; choosing a run loads its model for the
chain-rule and embedding sections.
"""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from dashboard import fmt, math_views, nav, runlist
from lmcore import LMError, runs
from lmcore.explain import embeddings, info

nav.enter()

st.title("Math")
key = math_views.corpus_key()
source = key[0]
try:
    math_views.corpus_text(key)
except LMError as err:  # e.g. an address that no longer answers
    st.error(f"The corpus chosen on the Data page cannot be loaded: {err}")
    st.stop()
finished = runlist.run_choices(lambda r: runs.existing_checkpoint(Path(r["path"])) is not None)
labels = ["none"] + [runlist.run_label(r) for r in finished]
choice = st.selectbox("Compare with a trained run (loads its model)", labels)
run = finished[labels.index(choice) - 1] if choice != "none" else None
st.caption(f"Corpus: `{fmt.corpus_label(source)}` (choose another on the Data page)")

st.header("1. Entropy")
st.markdown(r"$H(p) = -\sum_i p_i \log_2 p_i$ bits: how uncertain the next symbol is. A fair coin has 1 bit.")
cols = st.columns(2)
table = cols[0].data_editor(
    pd.DataFrame({"symbol": ["a", "b", "c", "d"], "p": [0.25] * 4}), num_rows="dynamic", key="dist"
)
try:
    p = table["p"].astype(float).to_numpy()
    cols[0].metric("Entropy", f"{info.entropy(p):.4f} bits")
    cols[0].caption(f"Uniform over {len(p)} symbols would give log2 {len(p)} = {np.log2(len(p)):.4f} bits.")
except (ValueError, TypeError) as err:
    cols[0].error(str(err))
q = np.linspace(0, 1, 201)
fig = px.line(x=q, y=[info.entropy([x, 1 - x]) for x in q], labels={"x": "P(heads)", "y": "bits"})
cols[1].plotly_chart(fig.update_layout(title="A biased coin: H(p)", height=300))

st.header("2. Mutual information")
st.markdown(r"$I(X;Y) = H(X) + H(Y) - H(X,Y)$: how much knowing $X$ tells about $Y$. Edit the joint table.")
preset = st.radio("Start from", ["independent", "perfectly correlated"], horizontal=True)
start = np.outer([0.5, 0.5], [0.3, 0.7]) if preset == "independent" else np.diag([0.4, 0.6])
joint = st.data_editor(
    pd.DataFrame(start, index=["x=0", "x=1"], columns=["y=0", "y=1"]), key=f"joint-{preset}"
)
try:
    j = joint.to_numpy(dtype=float)
    cols = st.columns(4)
    cols[0].metric("H(X)", f"{info.entropy(j.sum(axis=1)):.4f}")
    cols[1].metric("H(Y)", f"{info.entropy(j.sum(axis=0)):.4f}")
    cols[2].metric("H(Y | X)", f"{info.conditional_entropy(j):.4f}")
    cols[3].metric("I(X; Y)", f"{info.mutual_information(j):.4f} bits")
except (ValueError, TypeError) as err:
    st.error(str(err))

st.header("3. Conditional probability and Bayes' theorem")
unit = st.radio("Tokens", ["characters", "words"], horizontal=True, key="bayes-unit")
try:
    counts = math_views.bigram_model(key, unit, 0.0)
    cols = st.columns(2)
    prev = cols[0].selectbox("Previous token a", counts.vocab[:200], format_func=fmt.show_token)
    top = counts.next_distribution(prev)
    fig = px.bar(x=[fmt.show_token(t) for t, _ in top], y=[p for _, p in top], labels={"x": "next", "y": "P"})
    cols[0].plotly_chart(fig.update_layout(title=f"P(next | {fmt.show_token(prev)})", height=300))
    nxt = cols[1].selectbox("Next token b", [t for t, _ in top], format_func=fmt.show_token)
    p_a, p_b = counts.pair_marginals(prev, nxt)
    posterior = info.bayes(counts.cond(nxt, prev), p_a, p_b)
    cols[1].markdown(
        f"P(b | a) = {counts.cond(nxt, prev):.4f}, P(a) = {p_a:.4f}, P(b) = {p_b:.4f}  \n"
        f"Bayes: P(a | b) = P(b | a) P(a) / P(b) = **{posterior:.4f}**  \n"
        f"Counted directly: P(a | b) = {counts.cond_prev(prev, nxt):.4f}"
    )
except ValueError as err:  # e.g. a one-character corpus has no pairs to count
    st.warning(f"Not enough text for pair counts: {err}")

st.header("4. The probability of a sentence")
st.markdown(
    r"The chain rule: $P(S) = \prod_i P(w_i \mid w_1 \ldots w_{i-1})$, a **product**. "
    r"The tutorial writes a sum; summing probabilities is wrong (it can exceed 1). "
    r"Logarithms turn the product into a sum: $\log_2 P(S) = \sum_i \log_2 P(w_i \mid \ldots)$, "
    r"and $-\log_2 P(S) / n$ is the cross-entropy in bits per token."
)
sentence = st.text_input("Sentence", "The object is returned by the function.")
scored = {}
try:
    bigram = math_views.bigram_model(key, "characters", 1.0)
    scored["bigram model of the corpus (characters, add-one smoothing)"] = bigram.sequence_probs(sentence)
    unseen = sorted({c for c in sentence if c not in bigram.unigrams})
    if unseen:
        st.caption(f"Left out of the bigram score (never in the corpus): {''.join(unseen)!r}")
except ValueError as err:
    st.warning(f"Not enough text for a bigram model: {err}")
if run is not None:
    scored[f"run {run['run_id']}"] = math_views.run_token_probs(run["path"], sentence)
for name, probs in scored.items():
    if len(probs) == 0:
        st.warning(f"{name}: the sentence needs at least two known tokens")
        continue
    bits = -np.log2(np.maximum(probs, 1e-300))
    total = -info.sequence_log_prob(np.maximum(probs, 1e-300))  # -log2 of the chain rule's product
    per = total / len(probs)
    st.markdown(
        f"**{name}**: {total:.2f} bits in all = {total * math.log(2):.2f} nats (1 bit = ln 2 nats); "
        f"{per:.3f} bits per token; perplexity 2^{per:.3f} = {info.perplexity(per):.2f}"
    )
    st.plotly_chart(
        px.bar(
            x=list(range(1, len(bits) + 1)), y=bits, labels={"x": "token position", "y": "surprisal (bits)"}
        ).update_layout(height=250),
        key=f"surprisal-{name}",
    )

st.header("5. Gradient descent")
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

st.header("6. How predictable is the corpus?")
st.markdown(
    r"The plug-in estimate of $H(X_t \mid X_{t-n} \ldots X_{t-1})$ from character counts: more context, less "
    "uncertainty (high orders underestimate on small corpora: most long contexts are seen once)."
)
try:
    curve = math_views.ngram_curve(key)
except ValueError as err:
    st.warning(f"Not enough text for these estimates: {err}")
    curve = []
fig = go.Figure(go.Scatter(x=list(range(7)), y=curve, mode="lines+markers", name="n-gram estimate"))
if (floor := math_views.true_entropy_rate(source)) is not None:
    fig.add_hline(y=floor, line_dash="dot", annotation_text=f"true entropy rate {floor:.4f}")
if run is not None and run.get("best_val_loss") is not None:
    bpc = math_views.run_bits_per_char(run["path"])
    same = run["corpus"] == source
    note = "" if same else f" — trained on {fmt.corpus_label(run['corpus'])}, not this corpus"
    fig.add_hline(
        y=bpc,
        line_color="crimson" if same else "gray",
        annotation_text=f"{run['run_id']}: {bpc:.3f} bits/char (validation){note}",
    )
st.plotly_chart(
    fig.update_layout(xaxis_title="context (characters)", yaxis_title="bits per character", height=340)
)

st.header("7. Embeddings")
if run is None:
    st.info("Choose a trained run at the top of the page to see its embeddings.")
    st.stop()
vectors, names = math_views.run_embeddings(run["path"])
points, explained = embeddings.pca_2d(vectors)
fig = px.scatter(x=points[:, 0], y=points[:, 1], text=[fmt.show_token(n) for n in names])
st.plotly_chart(
    fig.update_traces(textposition="top center").update_layout(
        title=f"Token embeddings, PCA ({explained[0]:.0%} + {explained[1]:.0%} of the variance)", height=450
    )
)
cols = st.columns(2)
query = cols[0].selectbox(
    "Nearest neighbours of", range(len(names)), format_func=lambda i: fmt.show_token(names[i])
)
cols[0].dataframe(
    pd.DataFrame(math_views.neighbours(vectors, names, query), columns=["token", "cosine"]), hide_index=True
)
a, b, c = (
    cols[1].selectbox(
        f"{lbl}",
        range(len(names)),
        index=min(i, len(names) - 1),
        format_func=lambda i: fmt.show_token(names[i]),
        key=f"an-{lbl}",
    )
    for i, lbl in ((0, "a"), (1, "minus b"), (2, "plus c"))
)
cols[1].caption("The tutorial's idea: vector(a) − vector(b) + vector(c) lands near a related token.")
cols[1].dataframe(
    pd.DataFrame(math_views.analogy(vectors, names, a, b, c), columns=["token", "cosine"]), hide_index=True
)
