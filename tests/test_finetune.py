"""Fine-tuning a language model: surgery (freeze, drop, add), lineage, OOV counting, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, TINY
from lmcore import LMError, runs
from lmcore.nn.config import config_from_dict
from lmcore.training import finetune, lm, transfer

NEW_TEXT = "Ünïcödé text with “quotes” and plain words that come back again and again. " * 60


@pytest.fixture(scope="module")
def new_corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("new") / "new.txt"
    path.write_text(NEW_TEXT, encoding="utf-8")
    return path


def _parent(tiny_run) -> transfer.Parent:
    return transfer.load_parent(str(tiny_run), tiny_run.parent)


def _weights(model, name):
    return [np.array(w) for w in model.get_layer(name).get_weights()]


def test_plan_says_which_layers_are_frozen_dropped_and_new():
    config = config_from_dict({"family": "gpt", "n_layer": 4})
    rows = transfer.plan(config, transfer.Surgery(freeze=2, drop_top=1, add_layers=2))
    assert [(r["layer"], r["state"]) for r in rows] == [
        ("wte", "frozen"),
        ("wpe", "frozen"),
        ("block_0", "frozen"),
        ("block_1", "frozen"),
        ("block_2", "trainable"),
        ("block_3", "dropped"),  # the parent's top block ...
        ("block_3", "new"),  # ... and the two new ones stacked on block_2
        ("block_4", "new"),
        ("ln_f", "trainable"),
    ]
    rnn = transfer.plan(
        config_from_dict({"family": "lstm", "n_layer": 2}), transfer.Surgery(freeze=0, drop_top=1)
    )
    assert [(r["layer"], r["state"]) for r in rnn] == [
        ("embedding", "trainable"),
        ("lstm_0", "trainable"),
        ("lstm_1", "dropped"),
        ("head", "trainable"),
    ]


@pytest.mark.parametrize(
    "surgery, message",
    [
        (transfer.Surgery(drop_top=2), "would leave no block"),
        (transfer.Surgery(freeze=2, drop_top=1), "more than the 1 block"),
        (transfer.Surgery(add_layers=-1), "cannot be negative"),
    ],
)
def test_impossible_surgery_is_refused(surgery, message):
    with pytest.raises(LMError, match=message):
        transfer.check_surgery(config_from_dict({"family": "gpt", "n_layer": 2}), surgery)


def test_dropping_and_adding_blocks_changes_shapes_and_parameter_counts(tiny_run):
    from lmcore.nn import models

    parent = _parent(tiny_run)
    source = models.load_model(parent.checkpoint, compile=False)
    C = parent.model_config.n_embd
    per_block = 2 * C + 3 * C * C + C * C + 4 * C * C + 4 * C * C  # two LayerNorm scales, qkv, proj, MLP

    dropped = transfer.build_from_parent(parent, transfer.Surgery(drop_top=1))
    assert [layer.name for layer in dropped.layers if layer.name.startswith("block_")] == ["block_0"]
    assert dropped.count_params() == source.count_params() - per_block
    grown = transfer.build_from_parent(parent, transfer.Surgery(drop_top=1, add_layers=2))
    assert grown.count_params() == source.count_params() + per_block
    ids = np.arange(12, dtype=np.int32)[None, :] % parent.tokenizer.vocab_size
    assert grown(ids).shape == (1, 12, parent.tokenizer.vocab_size)
    # Kept layers carry the parent's weights; new blocks start as the identity.
    for name in ("wte", "wpe", "block_0", "ln_f"):
        for a, b in zip(_weights(grown, name), _weights(source, name), strict=True):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.array(grown(ids)), np.array(dropped(ids)), atol=1e-5)


def test_freezing_sets_exactly_the_bottom_blocks_and_embeddings(tiny_run, tmp_path):
    from lmcore.nn import models

    parent = _parent(tiny_run)
    model = transfer.build_from_parent(parent, transfer.Surgery(freeze=1))
    frozen = {layer.name for layer in model.layers if not layer.trainable and layer.weights}
    assert frozen == {"wte", "wpe", "block_0"}
    model.save(tmp_path / "frozen.keras")  # a checkpoint keeps every frozen weight frozen
    reloaded = models.load_model(tmp_path / "frozen.keras", compile=False)
    assert len(reloaded.trainable_weights) == len(model.trainable_weights)
    counts = transfer.count_params(model)
    assert counts["frozen_params"] + counts["trainable_params"] == model.count_params()
    assert counts["frozen_params"] == sum(
        int(np.prod(w.shape)) for name in frozen for w in model.get_layer(name).weights
    )


def test_oov_is_counted_and_handled_like_the_tokenizer_does(tiny_run):
    parent = _parent(tiny_run)
    report = transfer.oov_report(parent.tokenizer, "abc Ü Ü é")
    known = set(parent.tokenizer.chars)
    assert "Ü" not in known and "é" not in known  # the small Python-docs corpus is ASCII
    assert report["unknown"] == 3 and report["distinct"] == 2 and report["handling"] == "dropped"
    assert report["examples"][0] == ["Ü", 2]


def test_finetune_cli_trains_a_child_run_with_frozen_weights_unchanged(
    tiny_run, new_corpus, tmp_path, small_text
):
    """The real command line: a run that records its parent, counts OOV, and never touches frozen weights."""
    from lmcore.nn import models

    root = tmp_path / "runs"
    root.mkdir()
    parent_dir = root / tiny_run.name
    subprocess.run(["cp", "-r", str(tiny_run), str(parent_dir)], check=True)
    args = [
        "--from", tiny_run.name, "--corpus", str(new_corpus), "--freeze", "1", "--add-layers", "1",
        "--steps", "20", "--batch-size", str(TINY["batch_size"]), "--log-every", "10",
        "--eval-every", "10", "--eval-batches", "2", "--sample-length", "0",
    ]  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-m", "lmcore", "finetune", *args, "--runs-dir", str(root), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "not in the parent's vocabulary and are dropped" in out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == "completed" and result["parent"] == tiny_run.name
    known = set(small_text)  # the parent's character vocabulary is its corpus's characters
    assert result["oov"]["unknown"] == sum(c not in known for c in NEW_TEXT) > 0
    child = root / result["run_id"]
    config = runs.read_json(child / "config.json")
    assert config["parent"] == tiny_run.name
    assert config["model"]["n_layer"] == 3 and config["finetune"]["freeze"] == 1
    assert config["train"]["lr"] == pytest.approx(
        runs.read_json(parent_dir / "config.json")["train"]["lr"] * 0.1
    )

    before = models.load_model(runs.checkpoint(parent_dir, "best"), compile=False)
    after = models.load_model(runs.checkpoint(child, "last"), compile=False)
    for name in ("wte", "wpe", "block_0"):  # frozen: bit-for-bit the parent's
        for a, b in zip(_weights(after, name), _weights(before, name), strict=True):
            np.testing.assert_array_equal(a, b)
    pairs = zip(_weights(after, "block_1"), _weights(before, "block_1"), strict=True)
    changed = [not np.array_equal(a, b) for a, b in pairs]
    assert any(changed), "the trainable block did not train"
    assert not after.get_layer("block_0").trainable  # the checkpoint keeps the freeze (for resume)

    # Resuming (here: extending) the child trains on with the same layers frozen.
    more = subprocess.run(
        [sys.executable, "-m", "lmcore", "train", "--resume", result["run_id"], "--steps", "30"]
        + ["--runs-dir", str(root), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert more.returncode == 0, more.stderr[-2000:]
    resumed = models.load_model(runs.checkpoint(child, "last"), compile=False)
    assert int(json.loads(more.stdout.strip().splitlines()[-1])["steps"]) == 30
    for a, b in zip(_weights(resumed, "block_0"), _weights(before, "block_0"), strict=True):
        np.testing.assert_array_equal(a, b)


def test_bad_finetune_requests_are_one_clear_line(tiny_run, new_corpus):
    root = tiny_run.parent
    for argv, message in (
        (["--from", "no-such-run", "--corpus", str(new_corpus)], "no run 'no-such-run'"),
        (["--from", tiny_run.name, "--corpus", str(new_corpus), "--drop-top", "5"], "would leave no block"),
        (["--from", tiny_run.name, "--corpus", str(new_corpus), "--freeze", "some"], "--freeze takes"),
        (["--from", tiny_run.name, "--corpus", "/no/such/file.txt"], "no such file"),
    ):
        out = subprocess.run(
            [sys.executable, "-m", "lmcore", "finetune", *argv, "--runs-dir", str(root)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
        assert message in out.stderr
    assert not [p for p in root.iterdir() if p.name.startswith("20") and "ft-" in p.name]


def test_runs_summary_shows_the_parent(tiny_run, new_corpus, tmp_path):
    parent = _parent(tiny_run)
    s = transfer.Surgery()
    config = finetune.train_config_for(
        parent.train_config(), steps=10, log_every=5, eval_every=10, eval_batches=1, sample_length=0
    )
    job, record = finetune.prepare(parent, str(new_corpus), s, config)
    result = lm.start_child(parent, job, record, tmp_path)
    assert result["status"] == "completed"
    summary = runs.summary(Path(result["run_dir"]))
    assert summary["parent"] == tiny_run.name


def test_finetune_page_draws_the_plan_without_loading_tensorflow(tiny_run, tmp_path):
    """The page under AppTest, in a fresh process: the layer table follows the options, no TF import."""
    root = tmp_path / "runs"
    root.mkdir()
    subprocess.run(["cp", "-r", str(tiny_run), str(root / tiny_run.name)], check=True)
    script = f"""
import json, sys
from streamlit.testing.v1 import AppTest
at = AppTest.from_file({str(ROOT / "app.py")!r}, default_timeout=60)
at.run()
at.switch_page("pages/finetune.py")
at.run()
assert not at.exception, at.exception
at.number_input(key="ft-add").set_value(1).run()
at.number_input(key="ft-freeze-2").set_value(1).run()
assert not at.exception, at.exception
table = at.dataframe[0].value
print(json.dumps({{"states": dict(zip(table["layer"], table["state"])), "tf": "tensorflow" in sys.modules}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PYTHONPATH": str(ROOT), "LMLAB_RUNS_DIR": str(root)},
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["states"] == {
        "wte": "frozen",
        "wpe": "frozen",
        "block_0": "frozen",
        "block_1": "trainable",
        "block_2": "new",
        "ln_f": "trainable",
    }
    assert result["tf"] is False
