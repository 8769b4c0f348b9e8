"""Generate: sample text from a trained run, and see why each token was chosen."""

import dataclasses
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from dashboard import fmt, links, loaders, nav, runlist, why
from lmcore import LMError, runs
from lmcore.generation import decoding

nav.enter()

ATTENTION_TOKENS = 48  # the heatmap shows the attention among the last this-many tokens

st.title("Generate")
choices = runlist.run_choices(lambda r: runs.existing_checkpoint(Path(r["path"])) is not None)
if not choices:
    st.info(
        "No run has a checkpoint yet. Train one on the Train page (a checkpoint is saved at each validation)."
    )
    st.stop()
by_id = {r["run_id"]: r for r in choices}
LINKED = [  # what a link to this page keeps: the run and every setting of the text
    links.Field("run", "generate-run", links.choice(list(by_id))),
    links.Field("checkpoint", "gen-which", links.choice(["last", "best"])),
    links.Field("prompt", "gen-prompt", links.text(links.MAX_VALUE)),
    links.Field("temperature", "gen-temp", links.real(0.0, 2.0)),
    links.Field("top_k", "gen-topk", links.integer(0, 100_000)),
    links.Field("top_p", "gen-topp", links.real(0.05, 1.0)),
    links.Field("penalty", "gen-pen", links.real(1.0, 3.0)),
    links.Field("length", "gen-len", links.integer(1, decoding.MAX_LENGTH)),
    links.Field("seed", "gen-seed", links.integer(0, 2**31 - 1)),
    links.Field("stop", "gen-stop", links.text(100)),
    links.Field("greedy", "gen-greedy", links.flag),
]
links.restore("generate", LINKED)
links.notice("generate")
if (pick := st.session_state.pop("generate_pick", None)) in by_id:  # sent here: Home's quick demo
    st.session_state["generate-run"] = pick
if st.session_state.get("generate-run") not in by_id:  # a run deleted meanwhile
    st.session_state.pop("generate-run", None)
run = by_id[
    st.selectbox("Run", list(by_id), format_func=lambda i: runlist.run_label(by_id[i]), key="generate-run")
]
run_dir = Path(run["path"])
which = st.radio(
    "Checkpoint",
    ["last", "best"],
    horizontal=True,
    key="gen-which",
    help="best = lowest validation loss so far",
)


def checkpoint_time() -> float | None:
    """The chosen checkpoint's time (a newer one reloads), or None if it has just gone."""
    ckpt = runs.existing_checkpoint(run_dir, which)
    try:
        return ckpt.stat().st_mtime if ckpt else None
    except OSError:  # deleted or pruned since the list was read
        return None


if (mtime := checkpoint_time()) is not None:
    loaders.preload_generator(str(run_dir), which, mtime)  # loads while the settings are chosen

prompt = st.text_area("Prompt", "The ", height=80, key="gen-prompt")
cols = st.columns(4)
temperature = cols[0].slider(
    "Temperature", 0.0, 2.0, 0.8, 0.05, help="0 = greedy: always the likeliest token", key="gen-temp"
)
top_k = cols[1].number_input(
    "Top-k (0 = off)", 0, 100_000, 0, help="keep only the k likeliest tokens", key="gen-topk"
)
top_p = cols[2].slider(
    "Top-p",
    0.05,
    1.0,
    1.0,
    0.05,
    help="keep the likeliest tokens until their probabilities add up to p",
    key="gen-topp",
)
penalty = cols[3].slider(
    "Repetition penalty",
    1.0,
    3.0,
    1.0,
    0.05,
    help="above 1, tokens already in the text become less likely",
    key="gen-pen",
)
cols = st.columns(4)
length = cols[0].number_input("Length (tokens)", 1, decoding.MAX_LENGTH, 200, key="gen-len")
seed = cols[1].number_input("Seed", 0, 2**31 - 1, 0, help="the same seed gives the same text", key="gen-seed")
stop = cols[2].text_input(
    "Stop at", "", max_chars=100, help="end the text where this appears; \\n means a new line", key="gen-stop"
)
side_by_side = cols[3].toggle(
    "Greedy alongside", True, help="also show the greedy continuation", key="gen-greedy"
)
links.keep("generate", LINKED)


def run_generation(logits_fn, tok, opts, box, seen: str, model: tuple, shared: bool) -> dict:
    """Stream one continuation into ``box``; returns what the inspection below needs. A first
    text the visitor was sent here for is ``shared``: written once for all who ask the same."""
    if shared:
        out = loaders.shared_text(*model, prompt, int(length), dataclasses.asdict(opts))
    else:
        out = loaders.write(logits_fn, tok, prompt, int(length), opts, lambda text: box.text(seen + text))
    box.text(seen + out["text"])
    return out


clicked = st.button("Generate", type="primary")
landed = st.session_state.pop("generate_now", False)  # sent here (the quick demo) to show a first text
if clicked or landed:
    stops = (stop.replace("\\n", "\n"),) if stop else ()
    opts = decoding.SamplingOptions(temperature, int(top_k), top_p, int(seed), penalty, stops)
    try:
        opts.check()
        if (mtime := checkpoint_time()) is None:
            raise LMError(f"run {run_dir.name} has no {which} checkpoint any more")
        model = (str(run_dir), which, mtime)
        logits_fn, tok, _ = loaders.generator(*model)
        ids, notes = decoding.prompt_ids(tok, prompt)
        seen = tok.decode(ids)  # the prompt as the model sees it (unknown characters dropped)
        left, right = st.columns(2) if side_by_side else (st.container(), None)
        left.caption("Sampled")
        sampled = run_generation(logits_fn, tok, opts, left.empty(), seen, model, landed and not clicked)
        greedy = None
        if right is not None:
            right.caption("Greedy (temperature 0, same penalty and stop)")
            greedy_opts = decoding.SamplingOptions(0, 0, 1.0, None, penalty, stops)
            greedy = run_generation(
                logits_fn, tok, greedy_opts, right.empty(), seen, model, landed and not clicked
            )
        shown = [*sampled["steps"], *(greedy["steps"] if greedy else [])]
        st.session_state["generation"] = {
            "run": run["run_id"],
            "model": model,
            "names": {c.token_id: tok.token(c.token_id) for s in shown for c in s.candidates},
            "family": logits_fn.config.family,
            "prompt_ids": ids,
            "notes": notes,  # shown below, after the rerun
            "seen": seen,
            "sampled": sampled,
            "greedy": greedy,
        }
        st.rerun()  # show the finished texts below, with the inspection tools
    except LMError as err:
        st.error(str(err))

result = st.session_state.get("generation")
if not result or result["run"] != run["run_id"]:
    st.stop()

for note in result["notes"]:  # what became of the prompt (empty, or characters it lacks)
    st.info(note)
sampled, greedy = result["sampled"], result["greedy"]
panes = st.columns(2) if greedy else [st.container()]
for pane, (name, out) in zip(panes, [("Sampled", sampled), ("Greedy", greedy)], strict=False):
    pane.caption(f"{name}: {len(out['steps'])} tokens at {out['rate']:,.0f} tokens/s")
    pane.text(result["seen"] + out["text"])

steps = sampled["steps"]
if not steps:
    st.stop()
st.subheader("Why this token?")
position = st.slider("Token to inspect", 1, len(steps), 1, help="or read the surprisal chart to find one")
fig = go.Figure(
    go.Bar(
        x=list(range(1, len(steps) + 1)),
        y=[s.surprisal_bits for s in steps],
        hovertext=[fmt.show_token(s.text) for s in steps],
        marker_color=["#ef553b" if i == position else "#636efa" for i in range(1, len(steps) + 1)],
    )
)
fig.update_layout(
    title="Surprisal of each sampled token (bits): tall bars surprised the model; red: the one inspected",
    xaxis_title="token",
    yaxis_title="bits",
    height=260,
    margin=dict(t=40, b=30),
)
st.plotly_chart(fig)
step = steps[position - 1]
why.token_metrics(st, step)
st.plotly_chart(why.candidates_figure(step, result["names"], position))

st.subheader("Attention")
if result["family"] != "gpt":
    st.caption("Attention maps exist only for the GPT models; this run is a recurrent network.")
    st.stop()
logits_fn, tok, config = loaders.generator(*result["model"])
ids = [*result["prompt_ids"], *(s.token_id for s in steps)][-logits_fn.block_size :]
maps = decoding.attention_maps(logits_fn, ids)[:, :, -ATTENTION_TOKENS:, -ATTENTION_TOKENS:]
cols = st.columns(2)
layer = cols[0].selectbox("Layer", range(1, maps.shape[0] + 1)) - 1
head = cols[1].selectbox("Head", range(1, maps.shape[1] + 1)) - 1
labels = [fmt.show_token(tok.token(i)) for i in ids[-maps.shape[-1] :]]
ticks = dict(tickmode="array", tickvals=list(range(len(labels))), ticktext=labels, tickfont=dict(size=9))
fig = go.Figure(go.Heatmap(z=maps[layer, head], colorscale="Blues", zmin=0, zmax=1))
fig.update_layout(
    title=f"Layer {layer + 1}, head {head + 1}: each row is a token, its colours what it attends to",
    xaxis=dict(title="attended to", **ticks),
    yaxis=dict(title="attending", autorange="reversed", **ticks),
    height=620,
    margin=dict(t=40),
)
st.plotly_chart(fig)
st.caption(f"The last {len(labels)} tokens of the prompt and the sampled text; a row sums to 1.")
