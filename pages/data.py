"""Data: choose text, clean it, and see it as statistics, tokens and training windows."""

from collections import Counter

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from dashboard import fmt, links, loaders, nav, sources, token_views
from lmcore.text import corpus, tokenizers, windows

nav.enter()

st.title("Data")
st.caption(
    "A language model learns only from its text. Choose some, clean it, and see what the model will see."
)


def _linked_corpus(value: str) -> None:
    builtin = value in corpus.BUILTIN_SOURCES
    st.session_state["data-kind"] = "Built-in corpus" if builtin else "Web address"
    st.session_state["data-builtin" if builtin else "data-url"] = value


LINKED = [  # what a link to this page keeps: the corpus (not an upload) and its cleaning
    links.Field("strip_html", "data-html", links.flag),
    links.Field("lowercase", "data-lower", links.flag),
    links.Field("remove_special", "data-special", links.flag),
]
links.restore("data", [*LINKED, links.Field("corpus", "", links.source, _linked_corpus)])
links.notice("data")
cleaned, raw, source = sources.corpus_picker()
links.keep("data", LINKED, {"corpus": links.linkable(source)})
if cleaned is None:
    st.info("Choose a corpus to begin.")
    st.stop()
text = cleaned.text
# Counting, tokenizing and windowing look at a bounded prefix, so that a 50 MB upload keeps
# the page (and the server's other sessions) responsive; the totals below are exact.
PREVIEW_CHARS = 2_000_000
view = text[:PREVIEW_CHARS]
view_key = f"{cleaned.sha256}:{len(view)}"

with st.expander("Before and after cleaning", expanded=raw is not cleaned):
    cols = st.columns(2)
    cols[0].text_area("Before", raw.text[:1500], height=220, disabled=True)
    cols[1].text_area("After", text[:1500], height=220, disabled=True)

st.subheader("Statistics")
cols = st.columns(4)
cols[0].metric("Characters", f"{len(text):,}")
cols[1].metric("Lines", f"{text.count(chr(10)) + 1:,}")
cols[2].metric("Distinct characters", f"{len(loaders.distinct_chars(text)):,}")
cols[3].metric("Unigram entropy", f"{loaders.entropy_bits(view):.3f} bits/char")
if len(text) > len(view):
    st.caption(f"A long text: entropy, counts, tokens and windows use its first {len(view):,} characters.")

unit = st.radio("Count", ["characters", "words"], horizontal=True)
tokens = list(view) if unit == "characters" else [t for t in tokenizers.word_pieces(view) if not t.isspace()]
top = Counter(tokens).most_common(40)
freq = pd.DataFrame(top, columns=["token", "count"])
freq["token"] = freq["token"].map(fmt.show_token)
st.plotly_chart(px.bar(freq, x="token", y="count", title=f"The 40 most frequent {unit}"))

st.subheader("Tokens")
kinds = {kind: loaders.tokenizer_for(kind, view_key, view) for kind in tokenizers.KINDS}
length = st.slider("Characters shown", 40, 600, 200, step=20)
snippet = text[:length]
cols = st.columns(3)
for col, (kind, tok) in zip(cols, kinds.items(), strict=True):
    ids = tok.encode(snippet)
    col.markdown(f"**{kind}** — vocabulary {tok.vocab_size:,}, {len(ids)} tokens")
    token_views.chips(col, tok, ids)

sizes = []
for kind, tok in kinds.items():
    train_ids, val_ids = windows.split(loaders.token_ids(kind, view_key, view))
    sizes.append(
        {
            "tokenizer": kind,
            "vocabulary": tok.vocab_size,
            "train tokens": len(train_ids),
            "validation tokens": len(val_ids),
        }
    )
st.dataframe(pd.DataFrame(sizes), hide_index=True)

st.subheader("Training windows")
st.caption(
    "Each window gives an input and a target shifted by one token: the model is scored at every position."
)
cols = st.columns(3)
kind = cols[0].selectbox("Tokenizer", tokenizers.KINDS)
block = cols[1].slider("Block size", 4, 64, 16)
seed = cols[2].number_input("Seed", min_value=0, max_value=2**32 - 1, value=0, step=1)
tok = kinds[kind]
train_ids, _ = windows.split(loaders.token_ids(kind, view_key, view))
drawn = token_views.sample_windows(train_ids, block, int(seed), 5)
if drawn is None:
    st.warning("This text is too short for windows of this size.")
    st.stop()
starts, x, y = drawn
st.dataframe(
    pd.DataFrame(
        {
            "input": [tok.decode(r) for r in x],
            "target": [tok.decode(r) for r in y],
            "input ids": [r.tolist() for r in x],
        }
    ),
    hide_index=True,
)

with st.expander("Augmentation preview (training windows only; off by default)"):
    cols = st.columns(3)
    aug = windows.Augment(
        delete=cols[0].slider("Random deletion", 0.0, 0.5, 0.1),
        substitute=cols[1].slider("Random substitution", 0.0, 0.5, 0.1),
        swap=cols[2].slider("Random swap", 0.0, 0.5, 0.1),
    )
    span = block + 1 + aug.slack(block)
    window = train_ids[starts[0] : starts[0] + span][None, :]
    if window.shape[1] == span:
        out = windows.augment(window, block + 1, tok.vocab_size, aug, np.random.default_rng(int(seed)))
        st.text(f"original:  {tok.decode(window[0, : block + 1])!r}\naugmented: {tok.decode(out[0])!r}")
