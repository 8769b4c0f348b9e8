"""Fine-tune: adapt a pre-trained run to new text or to a labeled task, compare with training from scratch."""

import csv
import io
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard import access, charts, fmt, live, nav, runlist, sources
from lmcore import LMError, runs
from lmcore.jobs import queue, specs
from lmcore.text import corpus
from lmcore.training import classify, finetune, lmdata, transfer

nav.enter()


@st.cache_resource(show_spinner="Loading the classifier…", max_entries=4)
def load_classifier(run_dir: str):
    """A trained classifier run, loaded once per server (this is where TensorFlow gets imported)."""
    return classify.load_classifier(Path(run_dir))


st.title("Fine-tune")
root = access.runs_root()
parents = runlist.run_choices(
    lambda r: r["task"] != "classify" and runs.existing_checkpoint(root / r["run_id"]) is not None
)
if not parents:
    st.info("Fine-tuning starts from a trained language model: train one on the Train page first.")
    st.stop()

by_id = {r["run_id"]: r for r in parents}
# Options are run ids (stable while runs train and finish), shown with their status.
parent_row = by_id[
    st.selectbox(
        "Pre-trained run", list(by_id), format_func=lambda i: runlist.run_label(by_id[i]), key="ft-parent"
    )
]
parent_record = runs.read_record(root / parent_row["run_id"])
model_config = parent_record.model
n_layer = model_config.n_layer
st.caption(
    f"{parent_row['model']} trained on {fmt.corpus_label(parent_row['corpus'])} with the "
    f"{parent_row['tokenizer']} tokenizer; {n_layer} blocks, context {model_config.block_size} tokens."
)

target = st.radio("Target", ["New text (language model)", "Labeled texts (classifier)"], horizontal=True)
as_classifier = target.startswith("Labeled")
if as_classifier:
    kind = st.radio("Labeled data", ["builtin:reviews", "keras:imdb", "Upload a CSV"], horizontal=True)
    text_column, label_column = "text", "label"
    data = kind
    if kind == "Upload a CSV":
        upload = st.file_uploader("CSV with a text column and a label column", type=["csv"])
        if upload is None:
            st.stop()
        refused = sources.upload_refused(upload.getvalue(), upload.name)
        if refused:
            st.error(refused)
            st.stop()
        header = next(csv.reader(io.StringIO(upload.getvalue()[:65536].decode("utf-8", "replace"))), [])
        if len(header) < 2:
            st.error("The CSV needs a header line with at least two columns (text and label).")
            st.stop()
        cols = st.columns(2)
        text_column = cols[0].selectbox(
            "Text column", header, index=header.index("text") if "text" in header else 0
        )
        label_column = cols[1].selectbox(
            "Label column", header, index=header.index("label") if "label" in header else len(header) - 1
        )
        data = str(sources.upload_path(upload.getvalue(), upload.name))
    elif kind == "keras:imdb":
        st.caption("Keras downloads the IMDB reviews on first use (the internet is needed once).")
else:
    # Offline-friendly first: the generated reviews; Tiny Shakespeare needs a download once.
    order = ["builtin:reviews", "builtin:markov", "builtin:python-docs", "builtin:tiny-shakespeare"]
    choices = [c for c in order if c in corpus.BUILTIN_SOURCES and c != parent_record.data.source]
    chosen = st.session_state.get("corpus_source")
    if chosen and chosen not in choices and chosen != parent_record.data.source:
        choices.insert(0, chosen)
    source = st.selectbox("New text (choose others on the Data page)", choices, format_func=fmt.corpus_label)

cols = st.columns(4)
freeze_all = cols[0].checkbox("Freeze the whole body", key="ft-freeze-all")
drop_top = cols[1].number_input("Remove top blocks", 0, n_layer - 1, 0, key=f"ft-drop-{n_layer}")
add_layers = cols[2].number_input("Add new blocks", 0, 8, 0, key="ft-add")
kept = n_layer - int(drop_top)
freeze = (
    "all" if freeze_all else cols[3].number_input("Freeze bottom blocks", 0, kept, 0, key=f"ft-freeze-{kept}")
)
cols = st.columns(3)
body_frozen = freeze in ("all", kept) and not add_layers
parent_lr = parent_record.train.lr
base_lr = (
    classify.default_lr(parent_lr, body_frozen=body_frozen)
    if as_classifier
    else parent_lr * finetune.LR_FACTOR
)
lr = cols[0].number_input(
    "Learning rate",
    1e-6,
    1.0,
    base_lr,
    format="%.5f",
    help="default: the parent's rate x 0.1 (new text), x 0.5 (classifier), x 5 (body frozen)",
    key=f"ft-lr-{as_classifier}-{body_frozen}",
)
default_steps = classify.DEFAULT_STEPS if as_classifier else finetune.DEFAULT_STEPS
cap = access.step_cap()
steps = cols[1].number_input("Steps", 10, cap, min(default_steps, cap), 50, key=f"ft-steps-{as_classifier}")
seed = cols[2].number_input("Seed", 0, 2**31 - 1, 1)

try:
    s = transfer.surgery(model_config, freeze, int(drop_top), int(add_layers))
except LMError as err:
    st.error(str(err))
    st.stop()
rows = classify.plan(model_config, s) if as_classifier else transfer.plan(model_config, s)
colors = {"frozen": "#cfe2ff", "dropped": "#f8d7da", "new": "#d1e7dd", "trainable": ""}
st.dataframe(
    pd.DataFrame(rows).style.apply(lambda r: [f"background-color: {colors[r['state']]}"] * len(r), axis=1),
    hide_index=True,
)

surgery = dict(freeze=freeze, drop_top=int(drop_top), add_layers=int(add_layers))
overrides = dict(lr=lr, steps=int(steps), seed=int(seed))
if as_classifier:
    spec = specs.ClassifySpec(
        parent_row["run_id"], data, text_column, label_column, **surgery, overrides=overrides
    )
else:
    spec = specs.FinetuneSpec(
        parent_row["run_id"], source, **surgery, overrides=overrides, name=f"ft-{parent_row['model']}"
    )
# The child's size and memory, by the checks the trainer makes again.
child = transfer.child_model_config(model_config, s)
try:
    check = lmdata.preflight(child, finetune.train_config_for(parent_record.train, **overrides))
    need = check.estimate["total_bytes"] / 2**30
    st.caption(f"Training needs about {need:.1f} GB ({check.estimate['parameters']:,} parameters).")
except LMError as err:
    st.error(access.shown(err))
who = dict(actor=access.actor(), policy=access.policy())
if access.policy().public and not access.actor().admin:
    st.caption(f"Public mode: {access.caps_text()}")
if st.button("Start fine-tuning", type="primary"):
    try:
        run_id = queue.launch(root, spec, **who)
    except LMError as err:  # public mode: one job per visitor, the caps
        st.error(access.shown(err))
    else:
        st.session_state["ft_follow"] = run_id
        st.rerun()

mine = st.session_state.get("ft_follow")
if mine:
    st.subheader("Fine-tuning run")
    live.follow(mine, live.curve_controls("ft"))
    result = classify.results(root / mine)
    if result:
        cols = st.columns(2)
        cols[0].metric("Held-out accuracy", f"{result['accuracy']:.3f}")
        cols[1].metric("Macro-F1", f"{result['macro_f1']:.3f}")
        confusion = pd.DataFrame(result["confusion"], index=result["labels"], columns=result["labels"])
        st.markdown("**Confusion matrix** (rows: true label, columns: predicted)")
        st.dataframe(confusion)

st.subheader("Compare with training from scratch")
st.caption(
    "The same data trained three ways, each over several seeds: from scratch (the parent's network and "
    "tokenizer, untrained), fine-tuned with everything trainable, and fine-tuned with the body frozen."
)
cols = st.columns(3)
n_seeds = cols[0].number_input("Seeds", 1, 5, 3)
cmp_steps = cols[1].number_input("Steps per run", 10, access.step_cap(), int(steps), step=50)
if cols[2].button("Run the comparison"):
    target = (data, text_column, label_column) if as_classifier else (source,)
    task = "classify" if as_classifier else "lm"
    cmp = specs.CompareSpec(task, parent_row["run_id"], *target, steps=int(cmp_steps), seeds=int(n_seeds))
    try:
        st.session_state["ft_compare"] = queue.launch(root, cmp, **who)
    except LMError as err:
        st.error(access.shown(err))

tables = {t["compare_id"]: t for t in runs.list_comparisons(root)}
wanted = st.session_state.get("ft_compare")
if wanted or tables:
    ids = list(dict.fromkeys([*([wanted] if wanted else []), *tables]))
    shown = st.selectbox("Comparison", ids)

    @st.fragment(run_every=2.0)
    def comparison():
        table = runs.read_comparison(root, shown)
        if table is None:
            state = queue.state(root, shown)
            if state["status"] == "failed":
                st.error(access.shown(state.get("message")))
            else:
                st.info(f"The comparison is {state['status']}…")
            return
        st.caption(f"{table['kind']} on {fmt.corpus_label(table['target'])}: {table['status']}")
        st.dataframe(pd.DataFrame(table["rows"]), hide_index=True)
        for key, text in table["margins"].items():
            st.markdown(f"**{key}:** {text}")
        frames = {
            f"{r['variant']} s{r['seed']}": runlist.metrics_frame(root / r["run_id"]) for r in table["runs"]
        }
        metric = "Accuracy" if table["kind"] == "classify" else "Loss (nats)"
        st.plotly_chart(charts.curve_figure(frames, metric), key=f"cmp-{shown}")

    comparison()

st.subheader("Try a classifier")
trained = [r for r in runlist.run_choices(lambda r: r["task"] == "classify" and r["status"] == "completed")]
if not trained:
    st.caption("No classifier has finished training yet.")
    st.stop()
which = st.selectbox("Classifier run", [r["run_id"] for r in trained])
text = st.text_area("Text to classify", "The plot is not bad at all, but the ending is a letdown.")
if st.button("Classify"):
    try:
        result = load_classifier(str(root / which)).predict([text])[0]
    except LMError as err:
        st.error(str(err))
        st.stop()
    best = result["probabilities"][result["label"]]
    st.markdown(f"Predicted label: **{result['label']}** (probability {best:.3f})")
    st.bar_chart(pd.Series(result["probabilities"], name="probability"))
    for note in result["notes"]:
        st.caption(note)
