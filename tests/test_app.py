"""Every page under Streamlit's AppTest: renders without an exception, and has its key widgets."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from streamlit.testing.v1 import AppTest

from conftest import ROOT
from lmcore import runs

APP = str(ROOT / "app.py")


def open_page(page: str | None = None, timeout: float = 60) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=timeout)
    at.run()
    if page:
        at.switch_page(f"pages/{page}.py")
        at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_home():
    at = open_page()
    assert at.title[0].value == "LM Lab"
    assert any(m.label == "Device" for m in at.metric)


def test_data_page_shows_statistics_and_three_tokenizers():
    at = open_page("data")
    assert at.radio[0].options == ["Built-in corpus", "Upload a file", "Web address"]
    labels = [m.label for m in at.metric]
    assert labels[:4] == ["Characters", "Lines", "Distinct characters", "Unigram entropy"]
    text = " ".join(md.value for md in at.markdown)
    for kind in ("char", "word", "bpe"):
        assert f"**{kind}** — vocabulary" in text


def test_data_page_refuses_a_bad_address():
    at = open_page("data")
    at.radio[0].set_value("Web address").run()
    at.text_input[0].set_value("ftp://example.org/x.txt").run()
    assert "must start with http" in at.error[0].value


def test_math_page_computes_the_worked_example():
    at = open_page("mathematics")
    assert at.metric[0].value == "2.0000 bits"  # four equally likely symbols
    assert any("0.6, 0.4" in md.value for md in at.markdown)
    assert any("The tutorial writes a sum" in md.value for md in at.markdown)
    mi = {m.label: m.value for m in at.metric}
    assert mi["I(X; Y)"] == "0.0000 bits"  # the independent preset
    next(r for r in at.radio if r.label == "Start from").set_value("perfectly correlated").run()
    mi = {m.label: m.value for m in at.metric}
    assert mi["I(X; Y)"] == f"{mi['H(X)']} bits"  # perfectly correlated: I(X;Y) = H(X)
    bayes = next(md.value for md in at.markdown if "Counted directly" in md.value)
    posterior, direct = (float(v) for v in re.findall(r"= \**([0-9.]+)\**\s*(?:\n|$)", bayes)[-2:])
    assert posterior == direct  # Bayes' inversion agrees with counting
    assert "Choose a trained run" in at.info[-1].value


def test_math_page_with_a_run_shows_its_probabilities_and_embeddings(tiny_run, monkeypatch):
    monkeypatch.setenv("LMLAB_RUNS_DIR", str(tiny_run.parent))
    at = open_page("mathematics", timeout=180)
    choice = next(s for s in at.selectbox if s.label.startswith("Compare with a trained run"))
    choice.set_value(choice.options[1]).run()
    assert not at.exception, [e.message for e in at.exception]
    assert any(md.value.startswith(f"**run {tiny_run.name}**") for md in at.markdown)
    assert any(s.label == "Nearest neighbours of" for s in at.selectbox)


def test_train_page_has_the_run_form():
    at = open_page("train")
    assert [b.label for b in at.button] == ["Start training"]
    labels = [s.label for s in at.selectbox]
    assert {"Model", "Tokenizer", "Schedule", "Optimizer"} <= set(labels)
    model = next(s for s in at.selectbox if s.label == "Model")
    model.set_value("seed-lstm").run()
    assert next(r for r in at.radio if r.label == "Length in").value == "epochs"  # the tutorial's 10 epochs
    assert next(n for n in at.number_input if n.label == "Epochs").value == 10.0
    assert next(n for n in at.number_input if n.label == "Batch size").value == 32


def test_generate_and_runs_pages_without_runs():
    assert "No run has a checkpoint" in open_page("generate").info[0].value
    assert "No runs yet" in open_page("runs").info[0].value


def test_generate_and_runs_pages_with_a_run(tiny_run, monkeypatch):
    monkeypatch.setenv("LMLAB_RUNS_DIR", str(tiny_run.parent))
    at = open_page("generate", timeout=120)
    at.button[0].click().run()
    assert not at.exception
    assert any("tokens/s" in c.value for c in at.caption)
    at = open_page("runs")
    assert at.dataframe[0].value["run"].tolist() == [tiny_run.name]
    # a target loss adds when each run reached it, from its own metrics
    first_val = next(m for m in runs.read_jsonl(tiny_run / runs.METRICS) if m.get("val_loss") is not None)
    at.number_input(key="runs-target").set_value(100.0).run()
    table = at.dataframe[0].value
    assert table["step to 100"].tolist() == [first_val["step"]]
    assert table["seconds to 100"].tolist() == [first_val["time"]]
    # the filter: every word must match; none matching says so
    at.text_input(key="runs-filter").input("shared tiny").run()
    assert at.dataframe[0].value["run"].tolist() == [tiny_run.name]
    at.text_input(key="runs-filter").input("nosuchrun").run()
    assert not at.exception and any("No run matches nosuchrun" in i.value for i in at.info)


def test_home_data_and_math_never_import_tensorflow():
    script = f"""
import json, sys
from streamlit.testing.v1 import AppTest
at = AppTest.from_file({APP!r}, default_timeout=60)
at.run()
for page in ("data", "mathematics"):
    at.switch_page(f"pages/{{page}}.py")
    at.run()
    assert not at.exception, at.exception
print(json.dumps({{"tensorflow": "tensorflow" in sys.modules, "keras": "keras" in sys.modules}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"tensorflow": False, "keras": False}


@pytest.mark.parametrize("page", ["home", "data", "mathematics", "train", "generate", "runs"])
def test_pages_import_no_tensorflow_directly(page):
    source = (ROOT / "pages" / f"{page}.py").read_text(encoding="utf-8")
    for bad in ("import tensorflow", "import keras", "from tensorflow", "from keras"):
        assert bad not in source


def test_the_live_view_refreshes_at_the_pace_of_the_logs(tmp_path):
    from dashboard import live

    def interval(times):
        (tmp_path / "metrics.jsonl").write_text(
            "".join(json.dumps({"step": i, "time": t, "loss": 1.0}) + "\n" for i, t in enumerate(times))
        )
        return live.refresh_interval(tmp_path)

    assert live.refresh_interval(tmp_path) == 2.0  # no records yet
    assert interval([3.0]) == 2.0
    assert interval([0.0, 4.0, 8.1, 12.0, 16.0]) == 4.0  # the last three gaps: 4.1, 3.9, 4.0
    assert interval([0.0, 0.2, 0.4]) == 1.0  # faster logs: at most once a second
    assert interval([0.0, 30.0, 60.0]) == 5.0  # slow logs: still at least every 5 s
    # step 0 (the untrained model's validation, no training loss) is start-up, not pace
    (tmp_path / "metrics.jsonl").write_text(
        json.dumps({"step": 0, "time": 0.0, "val_loss": 4.6})
        + "\n"
        + "".join(json.dumps({"step": s, "time": t, "loss": 3.0}) + "\n" for s, t in ((10, 9.0), (20, 10.1)))
    )
    assert live.refresh_interval(tmp_path) == 1.1


def test_generate_preloads_the_chosen_checkpoint_once_and_the_click_takes_it_over(monkeypatch):
    import threading

    from dashboard import loaders

    loads, gate = [], threading.Event()

    def load(run_dir, which):
        gate.wait(10)  # still loading when asked for: the click waits for the same load
        loads.append((run_dir, which))
        return ("fn", "tok", run_dir)

    monkeypatch.setattr(loaders, "_load_generator", load)
    monkeypatch.setattr(loaders, "_preloads", {})
    loaders.generator.clear()
    loaders.preload_generator("runs/a", "last", 1.0)
    loaders.preload_generator("runs/a", "last", 1.0)  # each rerun of the page asks again
    gate.set()
    assert loaders.generator("runs/a", "last", 1.0) == ("fn", "tok", "runs/a")
    assert loads == [("runs/a", "last")]  # loaded once, by the preload
    for n in range(4):  # a visitor clicking through runs: only the newest few are kept
        loaders.preload_generator(f"runs/{n}", "best", 2.0)
    assert list(loaders._preloads) == [("runs/2", "best", 2.0), ("runs/3", "best", 2.0)]
    loaders._preloader.submit(lambda: None).result()  # the queue has drained
    assert ("runs/3", "best") in loads
    loaders.generator.clear()


def open_linked(page: str, params: dict, timeout: float = 60) -> AppTest:
    """A page opened from a link: its address carries ``params``."""
    at = AppTest.from_file(APP, default_timeout=timeout)
    at.run()
    at.switch_page(f"pages/{page}.py")
    at.query_params.update(params)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_a_train_link_restores_the_form_and_ignores_what_the_form_would_refuse():
    good = {"model": "nano", "tokenizer": "word", "steps": "123", "lr": "0.01", "schedule": "constant"}
    bad = {"batch": "99999", "seed": "nan", "corpus": "/etc/passwd", "x": "<script>", "block": "1e400"}
    at = open_linked("train", {**good, **bad})
    numbers = {n.label: n.value for n in at.number_input}
    boxes = {s.label: s.value for s in at.selectbox}
    assert (boxes["Model"], boxes["Tokenizer"], boxes["Schedule"]) == ("nano", "word", "constant")
    assert numbers["Steps"] == 123 and numbers["Learning rate"] == 0.01
    assert numbers["Batch size"] == 32 and numbers["Block size"] == 64  # refused: the recipe's stay
    assert boxes["Corpus (choose others on the Data page)"] == "builtin:python-docs"  # never a server's file
    (warning,) = [w.value for w in at.warning]
    assert all(name in warning for name in bad) and not any(name in warning for name in good)
    assert at.query_params["steps"] == "123" and "x" not in at.query_params  # the address: what is shown
    next(n for n in at.number_input if n.label == "Steps").set_value(150).run()
    assert at.query_params["steps"] == "150" and not at.warning  # changed: the notice has been read


def test_a_data_link_restores_the_corpus_and_its_cleaning():
    at = open_linked("data", {"corpus": "builtin:markov", "lowercase": "1"})
    assert at.radio[0].value == "Built-in corpus" and at.selectbox[0].value == "builtin:markov"
    assert next(c for c in at.checkbox if c.label == "Lowercase").value is True
    at = open_linked("data", {"corpus": "file:///etc/passwd"})  # neither built in nor on the web
    assert at.selectbox[0].value == "builtin:python-docs" and "corpus" in at.warning[0].value
    at = open_linked("data", {"corpus": "https://example.org/a.txt"})
    assert at.radio[0].value == "Web address" and at.text_input[0].value == "https://example.org/a.txt"


def test_generate_and_runs_links_restore_their_settings_and_selection(tiny_run, monkeypatch):
    monkeypatch.setenv("LMLAB_RUNS_DIR", str(tiny_run.parent))
    params = {"run": tiny_run.name, "checkpoint": "best", "prompt": "To be", "temperature": "1.25"}
    at = open_linked("generate", {**params, "top_k": "7", "length": "0", "seed": "12"}, timeout=120)
    assert at.selectbox[0].value == tiny_run.name and at.radio[0].value == "best"
    assert at.text_area[0].value == "To be" and at.slider[0].value == 1.25
    numbers = {n.label: n.value for n in at.number_input}
    assert numbers["Top-k (0 = off)"] == 7 and numbers["Seed"] == 12
    assert numbers["Length (tokens)"] == 200 and "length" in at.warning[0].value  # 0 tokens: refused
    at = open_linked("generate", {"run": "../../etc"}, timeout=120)  # not a run here: the first run shown
    assert at.selectbox[0].value == tiny_run.name and "run" in at.warning[0].value

    at = open_linked("runs", {"runs": tiny_run.name, "curve": "Accuracy", "target": "100"})
    assert any(f"Selected by the link: {tiny_run.name}" in c.value for c in at.caption)
    assert at.selectbox(key="runs-curve").value == "Accuracy" and "step to 100" in at.dataframe[0].value
    assert at.query_params["runs"] == tiny_run.name
    at = open_linked("runs", {"runs": f"{tiny_run.name},nosuchrun"})  # every run must exist
    assert not any("Selected by the link" in c.value for c in at.caption) and "runs" in at.warning[0].value


def test_the_tour_walks_its_steps_with_back_and_next_and_resumes_where_it_was_left():
    from dashboard import token_views, tour
    from lmcore.explain import info
    from lmcore.text import corpus, tokenizers, windows

    at = open_page("tour")
    assert at.header[0].value == "1. The text"
    assert [m.label for m in at.metric] == ["Characters", "Distinct characters", "Unigram entropy"]
    assert next(b for b in at.button if b.label == "Back").disabled
    for title in tour.TITLES[1:4]:
        next(b for b in at.button if b.label == "Next").click().run()
        assert not at.exception, [e.message for e in at.exception]
        assert at.header[0].value.endswith(title)
    assert at.query_params["step"] in ("4", ["4"])
    # step 4's numbers are the window's own: recomputed here from the same corpus and seed
    text = corpus.load(corpus.DEFAULT_SOURCE).text[:2_000_000]
    tok = tokenizers.train("char", text)
    train_ids, _ = windows.split(tok.encode(text))
    _, x, y = token_views.sample_windows(train_ids, tour.BLOCK, 0, 1)
    s = info.window_step(x[0], y[0], tok.vocab_size, 5.0)
    shown = " ".join(md.value for md in at.markdown)
    assert f"ln {tok.vocab_size} = **{s.loss_before:.4f} nats**" in shown
    assert f"**{s.loss_after:.4f} nats**" in shown and f"**{s.grad_target:.4f}**" in shown
    next(b for b in at.button if b.label == "Back").click().run()
    assert at.header[0].value == "3. A training window"
    at.switch_page("pages/home.py").run()  # leave the tour: Home offers to resume it
    assert any("Resume the tour at step 3" in str(link.proto.label) for link in at.get("page_link"))
    at.switch_page("pages/tour.py").run()
    assert at.header[0].value == "3. A training window"


def test_the_tour_on_a_text_too_short_for_a_window_says_so_at_each_step(tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("abc", encoding="utf-8")
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["corpus_source"] = str(short)
    at.run()
    at.switch_page("pages/tour.py").run()
    for n in range(1, 7):
        assert not at.exception, [e.message for e in at.exception]
        if n >= 3:
            assert any("too short for a training window" in w.value for w in at.warning), n
        if n < 6:
            next(b for b in at.button if b.label == "Next").click().run()


def test_a_first_text_is_written_once_for_every_visitor_sent_to_generate_and_matches_a_click(
    tiny_run, monkeypatch
):
    from dashboard import loaders

    monkeypatch.setenv("LMLAB_RUNS_DIR", str(tiny_run.parent))
    loaders.shared_text.clear()
    written = []
    real_write = loaders.write
    monkeypatch.setattr(loaders, "write", lambda *a, **k: written.append(1) or real_write(*a, **k))

    def sent_here() -> AppTest:  # what Home's quick demo does for each visitor of a class
        at = AppTest.from_file(APP, default_timeout=120)
        at.session_state["generate_pick"], at.session_state["generate_now"] = tiny_run.name, True
        at.run()
        at.switch_page("pages/generate.py").run()
        assert not at.exception, [e.message for e in at.exception]
        return at

    first, second = sent_here(), sent_here()
    assert len(written) == 2  # sampled and greedy, once: the second visitor read them
    texts = [[t.value for t in at.text] for at in (first, second)]
    assert texts[0] == texts[1] and texts[0]
    first.button[0].click().run()  # a click writes afresh, streamed, with the same seed
    assert len(written) == 4 and [t.value for t in first.text] == texts[0]
