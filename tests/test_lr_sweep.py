"""The learning-rate sweep: its runs differ in the rate and schedule only, and its verdicts
name what a curve did."""

from __future__ import annotations

from dataclasses import asdict

import pytest

from lmcore.experiments import lr_sweep
from lmcore.nn import schedule


def test_the_sweep_differs_only_in_its_rate_and_schedule():
    specs = lr_sweep.sweep_specs("builtin:markov", steps=120, seed=7)
    assert len(specs) == len(lr_sweep.VARIANTS)
    assert {s.model for s in specs} == {lr_sweep.MODEL} and {s.train.steps for s in specs} == {120}
    assert {s.train.seed for s in specs} == {7} and {s.data.source for s in specs} == {"builtin:markov"}
    assert all(s.train.eval_every == 20 for s in specs)  # a curve of 7 validations
    varied = {"lr", "schedule", "warmup_steps", "min_lr", "decay_steps", "decay_rate", "staircase"}
    first = asdict(specs[0].train)
    for spec in specs[1:]:
        assert {k for k, v in asdict(spec.train).items() if first[k] != v} <= varied
    rates = [s.train.lr for s in specs if s.train.schedule == "constant"]
    assert max(rates) / min(rates) == pytest.approx(1000)
    exp = next(s.train for s in specs if s.train.schedule == "exponential")
    assert float(schedule.lr_at(exp, 120)) == pytest.approx(exp.lr / 10, rel=1e-5)  # tenfold over the run


def test_a_sweep_run_is_known_by_its_id():
    assert lr_sweep.variant_of("20261203-200319-lr-sweep-3-ee00fb74") == 3
    assert lr_sweep.variant_of("20261203-200319-lr-sweep-99-ee00fb74") is None  # no such variant
    assert lr_sweep.variant_of("20261203-200319-quick-demo-ee00fb74") is None


def curve(vals, losses=None):
    losses = losses or [v + 0.1 for v in vals]
    return [{"step": 0, "val_loss": vals[0]}] + [
        {"step": 10 * i, "loss": loss, "val_loss": val}
        for i, (loss, val) in enumerate(zip(losses[1:], vals[1:], strict=True), 1)
    ]


DONE = {"status": "completed"}


@pytest.mark.parametrize(
    "metrics, status, word",
    [
        (
            [],
            {"status": "failed", "message": "the loss became nan between steps 0 and 25; lower"},
            "diverged",
        ),
        (curve([4.6, 3.3, 3.0, 2.98, 2.95], [4.7, 3.3, 3.25, 3.24, 3.21]), DONE, "stalled"),
        (curve([4.6, 4.2, 3.9, 3.6, 3.3], [4.7, 4.3, 3.9, 3.4, 3.22]), DONE, "slow"),
        (curve([4.6, 3.0, 2.5, 2.3, 2.2]), DONE, "learning"),
        (curve([4.6, 2.0, 1.8, 1.9, 2.1], [4.7, 2.0, 1.6, 1.4, 1.2]), DONE, "overfitting"),
        (curve([4.6, float("nan")], [4.7, float("nan")]), DONE, "diverged"),
        (curve([4.6]), DONE, "too early"),
    ],
)
def test_the_verdict_names_what_the_curve_did(metrics, status, word):
    assert lr_sweep.verdict(metrics, status, unigram=3.25).startswith(word)
