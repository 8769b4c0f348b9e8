"""Train: choose a model and its settings, start a run in the background, and watch it learn."""

from dataclasses import replace

import streamlit as st

from dashboard import access, charts, fmt, links, live, loaders, nav, runlist, sidebar
from lmcore import LMError, device
from lmcore.experiments import ablation
from lmcore.jobs import queue, specs
from lmcore.nn import schedule
from lmcore.nn.config import (
    DEFAULT_MODEL,
    MODEL_NAMES,
    OPTIMIZERS,
    SCHEDULES,
    DataConfig,
    form_steps,
    make_config,
    make_train_config,
)
from lmcore.text import corpus, tokenizers
from lmcore.training import lmdata

nav.enter()

st.title("Train")
root = access.runs_root()


def linked(model: str) -> list[links.Field]:
    """What a link to this page keeps: the form, within the ranges its widgets accept."""
    return [
        links.Field("model", "train-model", links.choice(MODEL_NAMES)),
        links.Field("tokenizer", "train-kind", links.choice(tokenizers.KINDS)),
        links.Field("unit", f"unit-{model}", links.choice(["steps", "epochs"])),
        links.Field("steps", f"st-{model}", links.integer(10, access.step_cap())),
        links.Field("epochs", f"ep-{model}", links.real(0.1, 100.0)),
        links.Field("batch", f"b-{model}", links.integer(1, 1024)),
        links.Field("block", f"t-{model}", links.integer(4, 1024)),
        links.Field("lr", f"lr-{model}", links.real(1e-6, 1.0)),
        links.Field("schedule", f"sch-{model}", links.choice(SCHEDULES)),
        links.Field("optimizer", f"opt-{model}", links.choice(OPTIMIZERS)),
        links.Field("seed", f"seed-{model}", links.integer(0, 2**31 - 1)),
        links.Field("warmup", f"wu-{model}", links.integer(0, 10_000)),
    ]


def _linked_corpus(value: str) -> None:
    st.session_state["corpus_source"] = value


names = [f.name for f in linked(DEFAULT_MODEL)]
links.restore("train", linked(DEFAULT_MODEL)[:1], extra=[*names, "corpus"])  # the model first:
links.restore(  # the other fields' widgets are the chosen model's
    "train",
    [
        *linked(st.session_state.get("train-model", DEFAULT_MODEL))[1:],
        links.Field("corpus", "", links.source, _linked_corpus),
    ],
    extra=["model"],
)
links.notice("train")

# Folded once this session has started a run (not when it merely looks at someone else's).
with st.expander("New run", expanded="started_run" not in st.session_state):
    choices = list(corpus.BUILTIN_SOURCES)
    chosen = st.session_state.get("corpus_source")
    if chosen and chosen not in choices:
        choices.insert(0, chosen)
    source = st.selectbox(
        "Corpus (choose others on the Data page)",
        choices,
        index=choices.index(chosen) if chosen in choices else 0,
        format_func=fmt.corpus_label,
    )
    cols = st.columns(3)
    model = cols[0].selectbox(
        "Model",
        MODEL_NAMES,
        index=MODEL_NAMES.index(DEFAULT_MODEL),
        key="train-model",
        help="seed-lstm is the tutorial's network: Embedding 64, two LSTM 128 layers, Dense; "
        f"nano is nanoGPT's CPU shape; modern-nano the same shape with "
        f"{', '.join(ablation.modern_changes())}, trained with Muon",
    )
    kind = cols[1].selectbox("Tokenizer", tokenizers.KINDS, key="train-kind")
    name = cols[2].text_input("Run name (optional)", max_chars=40)
    recipe = make_train_config(model)
    cols = st.columns(4)
    unit = cols[0].radio(
        "Length in", ["steps", "epochs"], index=int(model == "seed-lstm"), key=f"unit-{model}"
    )
    by_epochs = unit == "epochs"
    length = (
        cols[1].number_input("Epochs", 0.1, 100.0, 10.0 if model == "seed-lstm" else 1.0, key=f"ep-{model}")
        if by_epochs
        else cols[1].number_input(
            "Steps",
            10,
            access.step_cap(),
            min(form_steps(model), access.step_cap()),
            step=100,
            key=f"st-{model}",
        )
    )
    batch = cols[2].number_input("Batch size", 1, 1024, recipe.batch_size, key=f"b-{model}")
    block = cols[3].number_input("Block size", 4, 1024, make_config(model).block_size, key=f"t-{model}")
    cols = st.columns(4)
    lr = cols[0].number_input(
        "Learning rate", 1e-6, 1.0, recipe.lr, step=1e-4, format="%.5f", key=f"lr-{model}"
    )
    chosen_schedule = cols[1].selectbox(
        "Schedule", SCHEDULES, index=SCHEDULES.index(recipe.schedule), key=f"sch-{model}"
    )
    optimizer = cols[2].selectbox(
        "Optimizer", OPTIMIZERS, index=OPTIMIZERS.index(recipe.optimizer), key=f"opt-{model}"
    )
    seed = cols[3].number_input("Seed", 0, 2**31 - 1, recipe.seed, key=f"seed-{model}")
    warmup = recipe.warmup_steps
    if chosen_schedule == "cosine":
        warmup = st.number_input("Warm-up steps", 0, 10_000, recipe.warmup_steps, key=f"wu-{model}")
    links.keep("train", linked(model), {"corpus": links.linkable(source)})

    # The Data page's cleaning and CSV column apply to the corpus chosen there, not to others.
    own = source == chosen
    clean = st.session_state.get("corpus_clean", {}) if own else {}
    column = st.session_state.get("corpus_text_column") if own else None
    if clean:
        st.caption(f"With the Data page's cleaning: {', '.join(k.replace('_', ' ') for k in clean)}.")
    c = replace(
        recipe,
        steps=int(length) if not by_epochs else recipe.steps,
        batch_size=int(batch),
        lr=lr,
        schedule=chosen_schedule,
        optimizer=optimizer,
        warmup_steps=int(warmup),
        seed=int(seed),
    )
    spec = specs.TrainSpec(
        model,
        DataConfig(source, kind, text_column=column, clean=dict(clean)),
        c,
        block_size=int(block),
        epochs=float(length) if by_epochs else None,
        name=name or None,
    )
    try:
        text = loaders.load_source(source, clean, column).text
    except LMError as err:  # e.g. offline: say so, and keep the page (and a followed run) working
        st.error(fmt.plain(err))
        text = None
    # Too big for this machine, too long for this server? Said here, before a job is started,
    # by the same checks the trainer makes again.
    fits = text is not None
    try:
        chars = len(loaders.distinct_chars(text or "")) if kind == "char" else None  # cached per text
        check = lmdata.form_preflight(model, kind, c, text or "", int(block), spec.epochs, chars)
        have, where = device.available_memory()
        st.caption(
            f"Training needs about {check.estimate['total_bytes'] / 2**30:.1f} GB "
            f"({check.estimate['parameters']:,} parameters); {have / 2**30:.0f} GB of {where}."
        )
        if "note" in check.estimate:  # a small host: XLA off, so that it fits
            st.caption(check.estimate["note"] + ".")
        if check.steps > access.step_cap():  # epochs past the server's cap (public mode)
            cap = access.step_cap()
            st.error(f"About {check.steps:,} steps: this server trains at most {cap:,}; fewer epochs.")
            fits = False
    except LMError as err:
        st.error(fmt.plain(err))
        fits, check = False, None
    if access.policy().public and not access.actor().admin:
        st.caption(f"Public mode: {access.caps_text()}")
    preview = replace(c, steps=check.steps if check else c.steps)
    x, y = schedule.lr_curve(preview)
    estimated = " (steps estimated)" if check and check.steps_estimated else ""
    st.plotly_chart(charts.px_line(x, y, "Learning-rate schedule" + estimated), key="lr-preview")

    if st.button("Start training", type="primary", disabled=not fits):
        try:
            run_id, joined = queue.launch_or_join(root, spec, access.actor(), access.policy())
        except LMError as err:  # public mode: one job per visitor, the caps, a full queue
            st.error(access.shown(err))
        else:
            st.session_state["follow_run"] = st.session_state["started_run"] = run_id
            st.session_state["joined_run"] = run_id if joined else None
            st.rerun()

st.subheader("Follow a run")
active = [r["run_id"] for r in runlist.run_choices(lambda r: r["status"] == "running")]
waiting = sidebar.jobs_queue()
busy = len(queue.active(root))
st.caption(
    f"Training slots: {busy} of {queue.max_jobs()} busy"
    + (f" · {len(waiting)} queued: {', '.join(waiting)}" if waiting else "")
)
mine = st.session_state.get("follow_run")
starting = [j for j in queue.active(root) if j not in active]  # launched, still loading
options = list(dict.fromkeys([*active, *starting, *waiting]))  # a steady order: the choice keeps its place
if mine and mine not in options:  # the visitor's run, finished meanwhile: still theirs to see
    options.insert(0, mine)
if not options:
    st.info("No run in progress. Start one above; it keeps training if you leave this page or close the tab.")
    st.stop()


def _chosen() -> None:
    """The visitor's own pick in the box: the one thing, besides starting a run, that moves it."""
    st.session_state["follow_run"] = st.session_state["follow-choice"]


# The followed run is kept apart from the box and put back into it only where the two differ
# (a run just started, or the box's state dropped by a rerun that raced a click). Written on
# every run, the box is sent a value each time; one sent before a click can reach the browser
# after it and put the old run back, and the next timed refresh reports that as the pick (the
# likeliest way CI's starved follower, on 2026-12-03, lost its pick three times running).
if st.session_state.get("follow-choice") != (want := mine if mine in options else options[0]):
    st.session_state["follow-choice"] = want
run_id = st.selectbox("Run", options, key="follow-choice", on_change=_chosen)
st.session_state["follow_run"] = run_id
if run_id == st.session_state.get("joined_run"):
    live.joined_note(run_id)
live.follow(run_id, live.curve_controls("train"))
