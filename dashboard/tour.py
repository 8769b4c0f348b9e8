"""The guided tour's six steps, on the corpus chosen on the Data page, from the pages' own pieces.

The text and its statistics (the Data page's), its tokens and a training window
(:mod:`dashboard.token_views`), one gradient step on that window
(:func:`lmcore.explain.info.window_step`, the Math page's update), the curves of the
learning-rate sweep (:mod:`lmcore.experiments.lr_sweep`, drawn as the Runs page draws runs),
and one generated token with why it was chosen (:mod:`dashboard.why`, the Generate page's).
The step a visitor is on is kept in the session (and the address), so the tour can be left
for any page and resumed where it was.
"""

from __future__ import annotations

import math
from pathlib import Path

import streamlit as st

from dashboard import fmt, loaders, math_views, runlist, sweep_view, token_views, why
from lmcore import runs
from lmcore.experiments import lr_sweep
from lmcore.explain import info
from lmcore.generation import decoding
from lmcore.text import windows

TITLES = (
    "The text",
    "Its tokens",
    "A training window",
    "One training step",
    "The curve, and the learning rate",
    "One generated token, and why",
)
STEP_KEY = "tour_step"  # 1-based; kept across pages, so the tour resumes where it was left
BLOCK = 16  # the window's length: short enough to read position by position


class Corpus:
    """The tour's corpus, read once per run of the page: its text, character tokens, windows."""

    def __init__(self):
        key = math_views.corpus_key()
        self.source = key[0]
        self.corpus = loaders.load_source(key[0], dict(key[1]), key[2])
        self.view = self.corpus.text[:2_000_000]
        sha = f"{self.corpus.sha256}:{len(self.view)}"
        self.tok = loaders.tokenizer_for("char", sha, self.view)
        self.train_ids, _ = windows.split(loaders.token_ids("char", sha, self.view))

    def window(self):
        """The tour's window (inputs, targets), the same one at every step; None (said on the
        page) if the text is too short for one."""
        drawn = token_views.sample_windows(self.train_ids, BLOCK, st.session_state.get("tour_seed", 0), 1)
        if drawn is None:
            st.warning("This text is too short for a training window; choose a longer one on the Data page.")
            return None
        return drawn[1][0], drawn[2][0]


def text_step(c: Corpus) -> None:
    st.markdown(
        f"A language model learns from nothing but text. This tour uses "
        f"**{fmt.plain(fmt.corpus_label(c.source))}**, the corpus chosen on the Data page "
        "(choose your own there, an upload included, and come back)."
    )
    cols = st.columns(3)
    cols[0].metric("Characters", f"{len(c.corpus.text):,}")
    cols[1].metric("Distinct characters", f"{len(loaders.distinct_chars(c.corpus.text)):,}")
    cols[2].metric("Unigram entropy", f"{loaders.entropy_bits(c.view):.3f} bits/char")
    st.text(c.corpus.text[:600])
    st.caption(
        "The unigram entropy is how uncertain the next character is if you know only how often "
        "each character occurs: a model that learns nothing else scores about that."
    )


def tokens_step(c: Corpus) -> None:
    ids = c.tok.encode(c.corpus.text[:300])
    st.markdown(
        f"The model never sees letters: a tokenizer turns the text into numbers. Here each "
        f"character is one token, one of **{c.tok.vocab_size}** (the vocabulary). The first 300 "
        f"characters are {len(ids)} tokens; each chip shows a token and its id."
    )
    token_views.chips(st, c.tok, ids)
    st.caption("The Data page compares this with word and BPE tokens on the same text.")


def window_step(c: Corpus) -> None:
    if (pair := c.window()) is None:
        return
    x, y = pair
    st.markdown(
        f"Training reads windows of **{BLOCK}** tokens cut at random places. The target is the "
        "same window shifted by one token: at every position the model must predict the next "
        f"token from the ones before it, so one window is {BLOCK} predictions.  \n"
        f"Input: `{fmt.show_token(c.tok.decode(x))}`  \nTarget: `{fmt.show_token(c.tok.decode(y))}`"
    )
    token_views.shift_table(c.tok, x, y)
    if st.button("Draw another window"):
        st.session_state["tour_seed"] = st.session_state.get("tour_seed", 0) + 1
        st.rerun()


def gradient_step(c: Corpus) -> None:
    if (pair := c.window()) is None:
        return
    x, y = pair
    lr = st.slider("Learning rate α", 0.1, 20.0, 5.0, 0.1, key="tour-lr")
    s = info.window_step(x, y, c.tok.vocab_size, lr)
    first = fmt.show_token(c.tok.token(int(y[0])))
    st.markdown(
        f"Take the simplest model: a table of scores (logits) for each next token given the "
        f"previous one, all zero before training. Every one of the {c.tok.vocab_size} tokens then "
        f"has probability 1/{c.tok.vocab_size}, so the loss (cross-entropy) is "
        f"ln {c.tok.vocab_size} = **{s.loss_before:.4f} nats** at every position of the window.  \n"
        f"The gradient says how to change each score to lower the loss. At the first position "
        f"the target is `{first}`: its score's gradient is **{s.grad_target:.4f}** (negative: raise "
        f"it), every other token's **{s.grad_other:+.5f}** (lower them a little); the whole "
        f"gradient's length is {s.grad_norm:.4f}.  \n"
        f"One step θ ← θ − α∇J with α = {lr:g} (the Math page's gradient descent) takes the "
        f"window's loss from {s.loss_before:.4f} to **{s.loss_after:.4f} nats**, and the "
        f"probability of `{first}` there from {s.target_prob_before:.4f} to "
        f"**{s.target_prob_after:.4f}**."
    )
    cols = st.columns(3)
    cols[0].metric("Loss before", f"{s.loss_before:.4f}")
    cols[1].metric(
        "Loss after one step",
        f"{s.loss_after:.4f}",
        f"{s.loss_after - s.loss_before:+.4f}",
        delta_color="inverse",
    )
    cols[2].metric(f"P({first}) after", f"{s.target_prob_after:.4f}")
    st.caption(
        "A GPT does the same with millions of scores: the same loss, the same gradient at its "
        "output, carried back through every layer (backpropagation), then one optimizer step."
    )


def model_for(c: Corpus) -> dict | None:
    """The run the tour generates with: the sweep's best on this corpus, else the newest run."""
    with_ckpt = runlist.run_choices(lambda r: runs.existing_checkpoint(Path(r["path"])) is not None)
    mine = [r for r in with_ckpt if lr_sweep.variant_of(r["run_id"]) is not None and r["corpus"] == c.source]
    best = [r for r in mine if r.get("best_val_loss") is not None and math.isfinite(r["best_val_loss"])]
    if best:
        return min(best, key=lambda r: r["best_val_loss"])
    return with_ckpt[0] if with_ckpt else None


def token_step(c: Corpus) -> None:
    if (pair := c.window()) is None:
        return
    if (run := model_for(c)) is None:
        st.info("No run has a checkpoint yet: run the sweep at the step before, or train one.")
        return
    x, y = pair
    prompt = c.tok.decode(x)
    ckpt = runs.existing_checkpoint(Path(run["path"]), "best")
    logits_fn, tok, _ = loaders.generator(run["path"], ckpt.stem, ckpt.stat().st_mtime)
    opts = decoding.SamplingOptions(temperature=1.0, seed=0)
    step = next(iter(decoding.stream(logits_fn, tok, prompt, 1, opts)), None)
    if step is None:
        st.warning("The model wrote nothing for this window.")
        return
    names = {cand.token_id: tok.token(cand.token_id) for cand in step.candidates}
    st.markdown(
        f"The model of run `{run['run_id']}` reads the window `{fmt.show_token(prompt)}` and gives "
        "every token in its vocabulary a probability for what comes next. Sampling (temperature 1, "
        f"seed 0) drew `{fmt.show_token(step.text)}`; in the corpus the next character is "
        f"`{fmt.show_token(c.tok.token(int(y[-1])))}`."
    )
    why.token_metrics(st, step)
    st.plotly_chart(why.candidates_figure(step, names, 1), key="tour-why")
    if all(cand.token_id != step.token_id for cand in step.candidates):
        st.caption(
            f"The drawn token is not among the {len(step.candidates)} likeliest: sampling draws "
            "each token with its probability, so a rare one comes now and then."
        )
    st.caption("The Generate page does this for every token of a longer text, with the filters to play with.")


def curve_step(c: Corpus) -> None:
    if c.window() is None:  # nothing to train the sweep's runs on
        return
    sweep_view.curve_step(c.source, c.view)


STEPS = (text_step, tokens_step, window_step, gradient_step, curve_step, token_step)
