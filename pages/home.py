"""Home: what LM Lab is, a quick demo, the path through it, and the state of this machine."""

import streamlit as st

from dashboard import access, demo, nav, runlist, sidebar, tour
from lmcore.jobs import queue

nav.enter()

st.title("LM Lab")
st.markdown(
    "See how a language model learns. Pick or upload text, look at how it is cleaned and cut into "
    "tokens, explore the mathematics on your own data, train a small model while its curves move, "
    "then generate text with it and compare runs."
)

demo.section()

st.subheader("The path")
if (at := st.session_state.get(tour.STEP_KEY, 1)) > 1:  # a tour left part-way
    st.page_link(
        "pages/tour.py", label=f"Resume the tour at step {at}: {tour.TITLES[at - 1]}", icon=":material/tour:"
    )
steps = [
    ("pages/tour.py", "Tour", "the whole lab in six steps on your own corpus, with Back and Next"),
    ("pages/data.py", "1. Data", "choose text, clean it, see it as tokens and training windows"),
    ("pages/mathematics.py", "2. Math", "entropy, cross-entropy, Bayes, the chain rule, gradient descent"),
    ("pages/train.py", "3. Train", "the tutorial's LSTM, a GRU or a small GPT, with live curves"),
    ("pages/generate.py", "4. Generate", "sample text and see how likely each next token was"),
    ("pages/runs.py", "5. Compare", "overlay runs, diff their settings, download their metrics"),
]
for path, label, what in steps:
    cols = st.columns([1, 4])
    cols[0].page_link(path, label=label)
    cols[1].write(what)

st.subheader("This machine")
all_runs = runlist.run_choices()
counts = {s: sum(r["status"] == s for r in all_runs) for s in ("completed", "stopped", "failed")}
counts["running"] = len(queue.active(access.runs_root()))  # jobs still loading count too
cols = st.columns(5)
cols[0].metric("Device", sidebar.device_label())
cols[1].metric("Training now", counts["running"])
cols[2].metric("Completed runs", counts["completed"])
cols[3].metric("Stopped", counts["stopped"])
cols[4].metric("Failed", counts["failed"])
if access.policy().public:
    st.caption(f"This is a shared server in public mode: {access.caps_text()}")
else:
    st.caption(f"Runs are stored in `{access.runs_root().resolve()}`.")
