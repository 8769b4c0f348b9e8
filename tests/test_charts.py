"""The live loss chart's contents: the best validation marked where the metrics say, the raw
curve under the smoothed one, a window of steps, and the corpus's reference lines at the Math
page's figures (issue 21, part 4). The browser side (a window kept across refreshes, the pause)
is in ``test_browser.py``."""

from __future__ import annotations

import math
import re

import pytest

from dashboard import charts, math_views
from lmcore import runs
from lmcore.explain import info
from lmcore.text import corpus

RECORDS = [
    {"step": 0, "time": 0.0, "val_loss": 4.0},
    {"step": 10, "time": 1.0, "loss": 3.0, "step_losses": [3.4, 3.2, 3.0, 3.1, 2.9, 3.0, 2.8, 2.9, 3.0, 3.0]},
    {"step": 20, "time": 2.0, "loss": 2.5, "val_loss": 2.6, "step_losses": [2.5] * 10},
    {"step": 30, "time": 3.0, "loss": 2.2, "val_loss": 2.7, "step_losses": [2.2] * 10},
]


def traces(fig) -> dict:
    return {t.name: t for t in fig.data}


def test_the_loss_chart_marks_the_best_validation_and_keeps_the_raw_curve_faint():
    fig = charts.live_figure("run-a", 1, 0.9, False, "step", None, (), RECORDS)
    shown = traces(fig)
    assert set(shown) == {"train", "train (raw)", "validation", "best validation"}
    best = shown["best validation"]
    assert (best.x[0], best.y[0]) == (20, 2.6) and "best 2.600 (step 20)" in best.text[0]
    assert shown["train (raw)"].opacity == 0.25 and list(shown["train (raw)"].y[:3]) == [3.4, 3.2, 3.0]
    assert shown["train"].y[1] != 3.2  # smoothed
    assert fig.layout.uirevision == "run-a"
    # without smoothing there is one training line, the raw one
    assert "train (raw)" not in traces(charts.live_figure("run-a", 1, 0.0, False, "step", None, (), RECORDS))


def test_a_window_of_steps_shows_only_those_and_keeps_the_smoothing_of_the_whole_run():
    whole = traces(charts.live_figure("run-b", 1, 0.9, False, "step", None, (), RECORDS))
    part = traces(charts.live_figure("run-b", 1, 0.9, False, "step", (25, 30), (), RECORDS))
    assert list(part["train"].x) == list(range(25, 31))
    assert list(part["train"].y) == list(whole["train"].y[-6:])  # the same values, not re-smoothed
    assert list(part["validation"].x) == [30] and "best validation" not in part  # step 20 is outside


def test_one_point_reads_as_a_dot_and_the_best_is_that_point():
    shown = traces(charts.live_figure("run-c", 1, 0.0, False, "step", None, (), RECORDS[:1]))
    assert shown["validation"].marker.size == 9 and shown["best validation"].y[0] == 4.0


def test_reference_lines_sit_at_the_math_pages_figures_in_nats():
    lines = (("unigram entropy", 3.25), ("bigram entropy", 2.46))
    fig = charts.live_figure("run-d", 1, 0.0, False, "step", None, lines, RECORDS)
    assert [(s.y0, s.y1) for s in fig.layout.shapes] == [(3.25, 3.25), (2.46, 2.46)]
    assert [a.text for a in fig.layout.annotations] == ["unigram entropy 3.250", "bigram entropy 2.460"]


@pytest.mark.parametrize("tokenizer", ["char", "word"])
def test_a_runs_reference_lines_are_the_math_pages_n_gram_figures(tokenizer):
    record = runs.RunRecord(
        model_name="tiny",
        model=None,
        train=None,
        data=runs.DataRecord(source="builtin:markov", tokenizer=tokenizer),
    )
    lines = dict(math_views.reference_lines(record))
    if tokenizer != "char":  # other units than the loss's: no line rather than a wrong one
        assert lines == {}
        return
    key = ("builtin:markov", (), None)
    h0, h1 = math_views.ngram_curve(key)[:2]  # the Math page's section 6, orders 0 and 1
    exact = info.markov_entropy_rate(corpus.markov_chain()[1])
    assert lines == pytest.approx(
        {
            "unigram entropy": h0 * math.log(2),
            "bigram entropy": h1 * math.log(2),
            "true entropy rate": exact * math.log(2),
        }
    )
    assert h1 == pytest.approx(exact, abs=0.01)  # a first-order chain: the bigram estimate is the truth


def test_no_reference_lines_for_a_web_address_or_a_classifier():
    web = runs.RunRecord(
        model_name="tiny", model=None, train=None, data=runs.DataRecord(source="https://x.invalid/a")
    )
    clf = runs.RunRecord(model_name="tiny", model=None, train=None, task="classify")
    assert (
        math_views.reference_lines(web)
        == ()
        == math_views.reference_lines(clf)
        == math_views.reference_lines(None)
    )


def test_a_runs_report_is_one_file_with_its_curves_settings_and_escaped_samples(tiny_run, tmp_path):
    import shutil

    from dashboard import report

    run = shutil.copytree(tiny_run, tmp_path / tiny_run.name)  # the shared run stays as it is
    with (run / runs.SAMPLES).open("a") as f:
        f.write('{"step": 99, "prompt": "<script>x</script>", "text": "&"}\n')
    page = report.build([runs.summary(run)])
    assert page.startswith("<!DOCTYPE html>") and page.count("<script") >= 3  # plotly.js inline, two figures
    assert not re.search(r"<script[^>]*\bsrc=", page)  # nothing fetched to draw (the browser test: offline)
    assert "&lt;script&gt;x&lt;/script&gt;&amp;" in page and "<script>x</script>" not in page
    assert "<h2>Settings</h2>" in page and "train.batch_size" in page and run.name in page


def test_a_report_of_an_ablation_and_a_sweep_carries_their_views(tiny_run, tmp_path):
    import shutil

    from dashboard import report

    ablation_run = shutil.copytree(tiny_run, tmp_path / "20261203-100000-ablation-0-abcdef12")
    sweep_run = shutil.copytree(tiny_run, tmp_path / "20261203-100001-lr-sweep-3-abcdef12")
    page = report.build([runs.summary(ablation_run), runs.summary(sweep_run)])
    assert "<h2>Ablation: what each modern change buys</h2>" in page and "Steps to a validation loss" in page
    assert "<h2>Learning-rate sweep: what each rate did</h2>" in page
    assert "constant 0.3 (far too large)" in page
    plain = report.build([runs.summary(tiny_run)])
    assert "Ablation:" not in plain and "Learning-rate sweep" not in plain
