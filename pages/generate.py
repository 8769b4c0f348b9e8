"""Generate: sample text from a trained run and see how likely each next token is."""

import time
from pathlib import Path

import pandas as pd
import plotly.express as px
import streamlit as st

from lmcore import LMError, generate, runs
from pages import common

st.title("Generate")
choices = common.run_choices(lambda r: runs.existing_checkpoint(Path(r["path"])) is not None)
if not choices:
    st.info(
        "No run has a checkpoint yet. Train one on the Train page (a checkpoint is saved at each validation)."
    )
    st.stop()
labels = {common.run_label(r): r for r in choices}
run = labels[st.selectbox("Run", list(labels))]
run_dir = Path(run["path"])
which = st.radio("Checkpoint", ["last", "best"], horizontal=True, help="best = lowest validation loss so far")

prompt = st.text_area("Prompt", "The ", height=80)
cols = st.columns(5)
temperature = cols[0].slider(
    "Temperature", 0.0, 2.0, 0.8, 0.05, help="0 = greedy: always the likeliest token"
)
top_k = cols[1].number_input("Top-k (0 = off)", 0, 100_000, 0)
top_p = cols[2].slider("Top-p", 0.05, 1.0, 1.0, 0.05)
length = cols[3].number_input("Length (tokens)", 1, generate.MAX_LENGTH, 200)
seed = cols[4].number_input("Seed", 0, 2**31 - 1, 0)

if st.button("Generate", type="primary"):
    opts = generate.SamplingOptions(temperature, int(top_k), top_p, int(seed))
    ckpt = runs.existing_checkpoint(run_dir, which)
    try:
        opts.check()
        logits_fn, tok, _ = common.generator(str(run_dir), which, ckpt.stat().st_mtime)
        ids, notes = generate.prompt_ids(tok, prompt)
        for note in notes:
            st.info(note)
        seen = tok.decode(ids)  # the prompt as the model sees it (unknown characters dropped)
        out, box, started = [], st.empty(), time.perf_counter()
        for step in generate.stream(logits_fn, tok, prompt, int(length), opts):
            out.append(step.token_id)
            if len(out) % 4 == 0 or len(out) == length:
                box.text(seen + tok.decode(out))
        elapsed = time.perf_counter() - started
        box.empty()  # the finished text is shown below, with its chart
        st.session_state["generation"] = {
            "run": run["run_id"],
            "text": seen + tok.decode(out),
            "rate": len(out) / elapsed,
            "probs": generate.filter_probs(logits_fn([*ids, *out]), opts).tolist(),
            "tokens": [tok.token(i) for i in range(tok.vocab_size)],
        }
    except LMError as err:
        st.error(str(err))

result = st.session_state.get("generation")
if result and result["run"] == run["run_id"]:
    st.text(result["text"])
    st.caption(f"{result['rate']:.0f} tokens/s")
    probs = pd.DataFrame({"token": result["tokens"], "probability": result["probs"]})
    probs = probs.nlargest(20, "probability")
    probs["token"] = probs["token"].map(common.show_token)
    fig = px.bar(
        probs,
        x="token",
        y="probability",
        title="What could come next: the 20 likeliest tokens, after temperature, top-k and top-p",
    )
    st.plotly_chart(fig)
