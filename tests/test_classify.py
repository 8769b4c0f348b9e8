"""Classification on a pre-trained body: the reviews set, CSV checks, metrics, a real train + predict."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from lmcore import LMError, runs
from lmcore.experiments import compare
from lmcore.text import corpus, labeled, reviews
from lmcore.training import classify, transfer


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m lmcore ARGS``, as a user would run it."""
    return subprocess.run(
        [sys.executable, "-m", "lmcore", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def _csv(tmp_path: Path, text: str, name: str = "data.csv") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


# ---------------------------------------------------------------------------- the built-in set


def test_builtin_reviews_are_balanced_split_and_not_keyword_separable():
    train, test = reviews.labeled()
    assert len(train) + len(test) >= 600 and len(test) >= 100
    for split in (train, test):
        labels = [label for _, label in split]
        assert labels.count("positive") == labels.count("negative")
    texts = [t for t, _ in train + test]
    assert len(set(texts)) == len(texts)  # no review twice, none in both splits
    assert reviews.labeled() == (train, test)  # seeded: the same set every time
    # Praise and complaint words occur on both sides (negation and contrast).
    for word in ("great", "awful", "not", "but"):
        assert all(
            any(re.search(rf"\b{word}\b", t) for t, label in train if label == side)
            for side in reviews.LABELS
        )
    pool = corpus.load("builtin:reviews").text
    assert not {t for t, _ in test} & set(pool.splitlines())  # pre-training never sees a test review
    assert len(pool.splitlines()) == reviews.POOL_REVIEWS


# ---------------------------------------------------------------------------- CSV validation


@pytest.mark.parametrize(
    "text, message",
    [
        ("review,label\ngood,pos\nbad,neg\n", "has no column 'text'; columns are review, label"),
        ("text,stars\ngood,pos\nbad,neg\n", "has no column 'label'"),
        ("text,label\ngood,pos\nfine,pos\nnice,pos\n", "only one label ('pos')"),
        ("text,label\ngood,pos\n  ,neg\nbad,neg\n,neg\n", "empty 'text' on line(s) 3, 5"),
        ("text,label\ngood,pos\nbad,\nawful,neg\n", "empty 'label' on line(s) 3"),
        ("text,label\ngood,pos\nfine,pos\nbad,neg\nmeh,neutral\n", "'neg', 'neutral' have a single example"),
        ("", "is empty"),
    ],
)
def test_bad_csvs_get_clear_messages(tmp_path, text, message):
    with pytest.raises(LMError, match=re.escape(message)):
        labeled.load_labeled(_csv(tmp_path, text))


def test_a_csv_with_many_labels_splits_every_label(tmp_path):
    rows = [f"text {i} of {k},{k}" for k in ("red", "green", "blue", "gold") for i in range(10)]
    data = labeled.load_labeled(_csv(tmp_path, "text,label\n" + "\n".join(rows) + "\n"))
    assert data.labels == ["blue", "gold", "green", "red"]
    assert sorted({label for _, label in data.test}) == data.labels  # every label is tested
    assert len(data.test) == 8 and len(data.train) == 32
    assert not {t for t, _ in data.test} & {t for t, _ in data.train}
    other = labeled.load_labeled(_csv(tmp_path, "text,label\n" + "\n".join(rows) + "\n"))
    assert other.test == data.test  # the held-out split does not move between runs


def test_unknown_sources_are_refused(tmp_path):
    with pytest.raises(LMError, match="unknown labeled data"):
        labeled.load_labeled("builtin:nothing")
    with pytest.raises(LMError, match="must be a .csv file"):
        labeled.load_labeled(_csv(tmp_path, "hello", "notes.txt"))


def test_imdb_ids_decode_back_to_words():
    index = {"the": 1, "film": 2, "was": 3, "fine": 4}
    # Keras shifts word ids by 3: 0 padding, 1 start, 2 unknown; 3 + rank is the word.
    assert labeled.decode_imdb([[1, 4, 5, 6, 7, 2]], index) == ["the film was fine"]


# ---------------------------------------------------------------------------- encoding and metrics


def test_scores_match_a_hand_computed_example():
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 1, 2, 2]
    s = classify.scores(y_true, y_pred, 3)
    assert s["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert s["accuracy"] == pytest.approx(4 / 6)
    # F1 per label: 2*2/(3+2)=0.8, 2*1/(2+2)=0.5, 2*1/(1+2)=2/3
    assert s["f1"] == pytest.approx([0.8, 0.5, 2 / 3])
    assert s["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


def test_encoding_pads_truncates_and_weights_the_mean(tiny_run):
    tok = transfer.load_parent(str(tiny_run), tiny_run.parent).tokenizer
    ids, weights, stats = classify.encode(tok, ["abc", "x" * 50, "ÜÜ"], 8)
    assert ids.shape == weights.shape == (3, 8)
    np.testing.assert_allclose(weights.sum(1), 1.0)
    assert list(weights[0]) == pytest.approx([1 / 3] * 3 + [0] * 5)
    assert stats == {"truncated": 1, "no_known_tokens": 1}


# ---------------------------------------------------------------------------- a real run


@pytest.fixture(scope="module")
def classifier_run(tiny_run, tmp_path_factory):
    """A real classify train through the command line, on a small three-label CSV."""
    root = tmp_path_factory.mktemp("cls-runs")
    subprocess.run(["cp", "-r", str(tiny_run), str(root / tiny_run.name)], check=True)
    words = {"happy": "glad joy", "sad": "grim gloom", "angry": "mad rage"}
    lines = [f'"{w.split()[i % 2]} day number {i}",{k}' for k, w in words.items() for i in range(20)]
    data = tmp_path_factory.mktemp("cls-data") / "moods.csv"
    data.write_text("sentence,mood\n" + "\n".join(lines) + "\n", encoding="utf-8")
    args = [
        "--from", tiny_run.name, "--data", str(data), "--text-column", "sentence", "--label-column", "mood",
        "--freeze", "1", "--steps", "40", "--batch-size", "8", "--log-every", "10", "--eval-every", "20",
    ]  # fmt: skip
    out = _cli("classify", "train", *args, "--runs-dir", str(root), "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    return root, json.loads(out.stdout.strip().splitlines()[-1]), tiny_run.name


def test_classify_train_records_scores_lineage_and_curves(classifier_run):
    root, result, parent = classifier_run
    assert result["status"] == "completed" and result["parent"] == parent
    assert 0 <= result["accuracy"] <= 1 and 0 <= result["macro_f1"] <= 1
    assert result["labels"] == ["angry", "happy", "sad"]
    confusion = np.array(result["confusion"])
    assert confusion.shape == (3, 3) and confusion.sum() == result["test_examples"] == 12
    assert result["accuracy"] == pytest.approx(np.trace(confusion) / confusion.sum())
    run_dir = root / result["run_id"]
    config = runs.read_json(run_dir / "config.json")
    assert config["task"] == "classify" and config["parent"] == parent
    assert [
        r["state"] for r in config["finetune"]["plan"] if r["layer"] in ("block_0", "pool", "classifier")
    ] == [
        "frozen",
        "new",
        "new",
    ]
    metrics = runs.read_jsonl(run_dir / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [0, 10, 20, 30, 40]  # 0: the untrained classifier
    assert "val_loss" in metrics[0] and "loss" not in metrics[0]
    assert "val_acc" in metrics[2] and "val_f1" in metrics[-1]
    assert runs.existing_checkpoint(run_dir) is None  # not offered to the Generate page
    summary = runs.summary(run_dir)
    assert summary["task"] == "classify" and summary["parent"] == parent


def test_frozen_body_is_unchanged_by_classifier_training(classifier_run):
    from lmcore.nn import models

    root, result, parent = classifier_run
    before = models.load_model(runs.checkpoint(root / parent, "best"), compile=False)
    after = models.load_model(root / result["run_id"] / "checkpoints" / classify.MODEL_FILE, compile=False)
    body = after.get_layer("body")
    for name in ("wte", "wpe", "block_0"):
        for a, b in zip(
            body.get_layer(name).get_weights(), before.get_layer(name).get_weights(), strict=True
        ):
            np.testing.assert_array_equal(a, b)
    pairs = zip(
        body.get_layer("block_1").get_weights(), before.get_layer("block_1").get_weights(), strict=True
    )
    assert any(not np.array_equal(a, b) for a, b in pairs)


def test_classify_predict_gives_probabilities(classifier_run):
    root, result, _ = classifier_run
    texts = ["--text", "glad day", "--text", "Ünïcode rage"]
    out = _cli("classify", "predict", "--run", result["run_id"], *texts, "--runs-dir", str(root), "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [json.loads(line) for line in out.stdout.strip().splitlines()]
    assert [r["text"] for r in rows] == ["glad day", "Ünïcode rage"]
    for r in rows:
        assert set(r["probabilities"]) == {"angry", "happy", "sad"}
        assert sum(r["probabilities"].values()) == pytest.approx(1, abs=1e-5)
        assert r["label"] == max(r["probabilities"], key=r["probabilities"].get)
    assert "unknown token" in rows[1]["notes"][0]
    bad = _cli("classify", "predict", "--run", "nope", "--text", "x", "--runs-dir", str(root))
    assert bad.returncode == 2 and bad.stderr.startswith("error: no run 'nope'")


def test_classify_train_refuses_a_bad_csv_before_creating_a_run(tiny_run, tmp_path):
    data = _csv(tmp_path, "text,label\ngood,pos\nfine,pos\n")
    root = tiny_run.parent
    before = sorted(p.name for p in root.iterdir())
    out = _cli("classify", "train", "--from", tiny_run.name, "--data", data, "--runs-dir", str(root))
    assert out.returncode == 2 and "only one label" in out.stderr and out.stderr.count("\n") == 1
    assert sorted(p.name for p in root.iterdir()) == before


# ---------------------------------------------------------------------------- the comparison


def test_summary_gives_means_and_per_seed_margins():
    runs_ = [
        {"variant": "from scratch", "seed": 1, "accuracy": 0.50, "macro_f1": 0.4},
        {"variant": "from scratch", "seed": 2, "accuracy": 0.60, "macro_f1": 0.5},
        {"variant": "fine-tuned", "seed": 1, "accuracy": 0.70, "macro_f1": 0.7},
        {"variant": "fine-tuned", "seed": 2, "accuracy": 0.65, "macro_f1": 0.6},
        {"variant": "fine-tuned, body frozen", "seed": 1, "accuracy": 0.55, "macro_f1": 0.5},
    ]
    table = {"kind": "classify", "metric": "accuracy", "better": "higher", "runs": runs_}
    out = compare.summarize(table)
    rows = {r["variant"]: r for r in out["rows"]}
    assert rows["fine-tuned"]["mean"] == pytest.approx(0.675) and rows["fine-tuned"]["std"] == pytest.approx(
        0.025
    )
    assert rows["from scratch"]["macro_f1"] == pytest.approx(0.45)
    # per seed: +0.20 and +0.05 -> mean +0.125, worst +0.05; frozen only has seed 1: +0.05
    assert out["margins"]["fine-tuned vs from scratch"].startswith("+0.1250 mean, +0.0500 worst seed over 2")
    assert out["margins"]["fine-tuned, body frozen vs from scratch"].startswith("+0.0500 mean")
    lm = compare.summarize({**table, "metric": "val_loss", "better": "lower", "kind": "lm", "runs": [
        {"variant": "from scratch", "seed": 1, "val_loss": 2.0},
        {"variant": "fine-tuned", "seed": 1, "val_loss": 1.5},
    ]})  # fmt: skip
    assert lm["margins"]["fine-tuned vs from scratch"].startswith("+0.5000 mean")  # lower loss wins


def test_classify_compare_trains_three_variants_per_seed(classifier_run, tmp_path):
    root, _, parent = classifier_run
    rows = [f"{w} thing {i},{k}" for k, w in (("yes", "glad"), ("no", "grim")) for i in range(10)]
    data = _csv(tmp_path, "text,label\n" + "\n".join(rows) + "\n")
    args = ["--from", parent, "--data", data, "--steps", "10", "--seeds", "1", "--compare-id", "cmp-test"]
    out = _cli("classify", "compare", *args, "--runs-dir", str(root), "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    table = json.loads(out.stdout.strip().splitlines()[-1])
    assert table == runs.read_comparison(root, "cmp-test") and table["status"] == "completed"
    assert [r["variant"] for r in table["runs"]] == list(compare.VARIANTS)
    lineage = [runs.read_json(root / r["run_id"] / "config.json")["parent"] for r in table["runs"]]
    assert lineage == [None, parent, parent]  # from scratch borrows the tokenizer only
    frozen = runs.read_json(root / table["runs"][2]["run_id"] / "results.json")
    assert frozen["trainable_params"] == 2 * 32 + 2  # only the head: (C=32) x 2 labels + 2 biases
    assert set(table["margins"]) == {"fine-tuned vs from scratch", "fine-tuned, body frozen vs from scratch"}
