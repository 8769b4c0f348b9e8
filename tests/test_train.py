"""Training: real (tiny) Keras runs that learn, stop, resume, fail cleanly; the LR schedules."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY
from lmcore import LMError, device, runs
from lmcore.nn import models
from lmcore.nn.config import DataConfig, make_train_config
from lmcore.nn.schedule import keras_schedule, lr_curve
from lmcore.training import lm, lmdata


def prepare(small_file, **overrides):
    return lmdata.prepare(
        "tiny",
        DataConfig(source=str(small_file)),
        make_train_config("tiny", **{**TINY, **overrides}),
    )


def test_a_short_run_learns_and_records_everything(tiny_run):
    metrics = runs.read_jsonl(tiny_run / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [0, 10, 20, 30]  # 0: the untrained model, before a step
    vocab = runs.read_json(tiny_run / "config.json")["model"]["vocab_size"]
    untrained, first, last = metrics[0], metrics[1], metrics[-1]
    assert untrained["time"] == 0.0 and "loss" not in untrained and "step_losses" not in untrained
    assert abs(untrained["val_loss"] - math.log(vocab)) < 0.5  # about a uniform guess
    assert last["val_loss"] < first["loss"] < math.log(vocab) + 0.5
    assert last["val_loss"] < math.log(vocab) - 0.5  # far better than guessing uniformly
    for m in metrics[1:]:
        assert math.isclose(m["bits"], m["loss"] / math.log(2))
        assert math.isclose(m["ppl"], math.exp(m["loss"]), rel_tol=1e-6)
        assert 0 <= m["acc"] <= 1 and m["lr"] > 0 and m["tokens_per_s"] > 0
    status = runs.read_status(tiny_run)
    assert status["status"] == "completed" and status["step"] == 30
    assert status["best_val_loss"] == min(m["val_loss"] for m in metrics if "val_loss" in m)
    assert len(runs.read_jsonl(tiny_run / "samples.jsonl")) == 2  # at steps 20 and 30
    assert runs.checkpoint(tiny_run, "last").is_file() and runs.checkpoint(tiny_run, "best").is_file()
    assert any((tiny_run / "tb").iterdir())  # TensorBoard events
    assert (tiny_run / "corpus.txt").is_file()  # a file source is kept with the run


def test_the_checkpoint_reproduces_the_recorded_validation_loss(tiny_run):
    """An independent check: reload the checkpoint and score the same windows by hand."""
    from lmcore.text import tokenizers, windows

    config = runs.read_json(tiny_run / "config.json")
    tok = tokenizers.load(tiny_run / "tokenizer.json")
    _, val = windows.split(tok.encode((tiny_run / "corpus.txt").read_text(encoding="utf-8")))
    T, B, nb = config["model"]["block_size"], config["train"]["batch_size"], config["train"]["eval_batches"]
    x, y = windows.pairs(val, T, windows.val_starts(len(val), T, nb * B))
    model = models.load_model(runs.checkpoint(tiny_run), compile=False)
    logits = model(x).numpy().astype(np.float64)
    logz = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    nll = logz - np.take_along_axis(logits, y[..., None], -1)[..., 0]
    recorded = runs.read_status(tiny_run)["val_loss"]
    assert math.isclose(nll.mean(), recorded, rel_tol=1e-4)


@pytest.mark.slow  # trains for real
def test_stop_request_is_honoured_within_one_step_then_resume_continues(small_file, tmp_path):
    job = prepare(small_file)

    def stop_after_first_log(event, record):
        if event == "log" and record["step"] == 10:
            runs.request_stop(run_dir[0])

    run_dir = []
    listener = lambda e, r: run_dir.append(Path(r["run_dir"])) if e == "start" else stop_after_first_log(e, r)  # noqa: E731
    result = lm.start(job, tmp_path, listener=listener)
    assert result["status"] == "stopped"
    assert result["steps"] == 11  # the step already begun finishes, no more
    run = run_dir[0]
    assert not runs.stop_requested(run)
    ckpt_model = models.load_model(runs.checkpoint(run))
    assert int(ckpt_model.optimizer.iterations.numpy()) == 11

    resumed = lm.resume(run)
    assert resumed["status"] == "completed" and resumed["steps"] == 30
    steps = [m["step"] for m in runs.read_jsonl(run / "metrics.jsonl")]
    assert steps == [0, 10, 11, 21, 30]  # one continuous curve, its step 0 logged once
    times = [m["time"] for m in runs.read_jsonl(run / "metrics.jsonl")]
    assert times == sorted(times)

    with pytest.raises(LMError, match="already trained 30 steps"):
        lm.resume(run)
    longer = lm.resume(run, steps=40)
    assert longer["status"] == "completed" and longer["steps"] == 40
    assert runs.read_json(run / "config.json")["train"]["steps"] == 40


@pytest.mark.slow  # trains for real
def test_a_diverging_run_fails_with_the_reason(small_file, tmp_path):
    job = prepare(small_file, optimizer="sgd", lr=1e12, clipnorm=0.0, schedule="constant")
    result = lm.start(job, tmp_path)
    assert result["status"] == "failed"
    assert "loss became" in result["message"] and "learning rate" in result["message"]
    run = Path(result["run_dir"])
    assert runs.read_status(run)["status"] == "failed"
    assert not runs.checkpoint(run).exists()  # nothing non-finite was saved as a checkpoint


def test_bad_settings_fail_before_a_run_exists(small_file, tmp_path):
    for overrides in (dict(steps=0), dict(lr=-1.0), dict(optimizer="adagrad"), dict(schedule="step")):
        with pytest.raises(LMError):
            make_train_config("tiny", **{**TINY, **overrides})
    with pytest.raises(LMError, match="too short"):
        lmdata.prepare(
            "nano",
            DataConfig(source=str(small_file)),
            make_train_config("nano"),
            block_size=10_000,
        )


@pytest.mark.parametrize("schedule", ["constant", "exponential", "cosine"])
def test_the_schedule_preview_matches_keras(schedule):
    c = replace(
        make_train_config("nano"),
        schedule=schedule,
        steps=1000,
        warmup_steps=100,
        decay_steps=300,
        lr=0.01,
    )
    steps, preview = lr_curve(c)
    keras_lr = keras_schedule(c)
    expected = [keras_lr(int(s)).numpy() if callable(keras_lr) else keras_lr for s in steps]
    np.testing.assert_allclose(preview, expected, rtol=1e-5, atol=1e-9)


def test_the_tutorials_exponential_decay():
    c = replace(make_train_config("seed-lstm"), schedule="exponential", lr=0.01)
    lr = keras_schedule(c)
    assert (c.decay_steps, c.decay_rate, c.staircase) == (100_000, 0.96, True)
    assert math.isclose(float(lr(99_999)), 0.01, rel_tol=1e-6)
    assert math.isclose(float(lr(100_000)), 0.0096, rel_tol=1e-6)


@pytest.mark.slow  # trains for real
@pytest.mark.parametrize("tokenizer", ["char", "bpe"])
def test_chinese_and_emoji_text_trains_and_generates_end_to_end(tokenizer, tmp_path):
    from lmcore.generation import decoding

    lines = [
        "语言模型预测下一个词。",
        "The model predicts the next token 🙂.",
        "你好，世界！Hello, world 👋🏽",
        "Ünïcödé — naïve café, 東京 and 北京.",
    ]
    source = tmp_path / "mixed.txt"
    source.write_text("\n".join(lines * 60), encoding="utf-8")
    job = lmdata.prepare(
        "tiny",
        DataConfig(source=str(source), tokenizer=tokenizer),
        make_train_config("tiny", **{**TINY, "steps": 20}),
    )
    assert job.tokenizer.decode(job.tokenizer.encode(job.text)) == job.text
    result = lm.start(job, tmp_path / "runs")
    assert result["status"] == "completed"
    fn, tok, _ = decoding.load_run(Path(result["run_dir"]))
    out = decoding.generate(fn, tok, "你好", 12, decoding.SamplingOptions(0.8, seed=1))
    assert len(out.steps) == 12 and not out.notes


def test_a_host_with_room_only_without_xla_trains_without_it_and_says_so(small_file, monkeypatch):
    """Issue 13: XLA's compilation costs ~300 MB on a CPU; a small host drops it instead of refusing."""
    from lmcore.nn.config import make_config

    c = make_train_config("tiny", **TINY)
    m = make_config("tiny", vocab_size=80)
    need = device.estimate_memory(m, c)["total_bytes"]
    data_config = DataConfig(source=str(small_file))
    monkeypatch.setattr(
        device, "available_memory", lambda: (need + device.XLA_BYTES // 2, "memory available")
    )
    job = lmdata.prepare("tiny", data_config, make_train_config("tiny", **TINY))
    assert job.train.jit_compile is False
    assert any(n.startswith("XLA compilation is off for this run") for n in job.notes)

    monkeypatch.setattr(device, "available_memory", lambda: (need + 2 * device.XLA_BYTES, "memory available"))
    job = lmdata.prepare("tiny", data_config, make_train_config("tiny", **TINY))
    assert job.train.jit_compile is None and not job.notes  # room for XLA: the default stays
    with_jit = make_train_config("tiny", **TINY, jit_compile=True)
    monkeypatch.setattr(
        device, "available_memory", lambda: (need + device.XLA_BYTES // 2, "memory available")
    )
    with pytest.raises(LMError, match="needs about"):
        lmdata.prepare("tiny", data_config, with_jit)  # asked for XLA: refused, not silently changed


def test_every_step_is_on_the_curve_recorded_inside_the_compiled_call(tiny_run):
    """Issue 15: with several steps per call into the graph, each interval's record still
    carries every step's loss (their mean is the interval's loss Keras reports) and the rate
    each step trained at (the schedule's, and at the interval's end the optimizer's own)."""
    from lmcore.nn.schedule import lr_at

    record = runs.read_record(tiny_run)
    metrics = runs.read_jsonl(tiny_run / "metrics.jsonl")
    metrics = [m for m in metrics if m["step"]]  # not step 0, which is the untrained model's validation
    assert metrics and all(len(m["step_losses"]) == record.train.log_every for m in metrics)
    for m in metrics:
        assert math.isclose(np.mean(m["step_losses"]), m["loss"], rel_tol=1e-4)
        assert math.isclose(m["step_lr"][-1], float(lr_at(record.train, m["step"] - 1)), rel_tol=1e-5)
    steps = runs.per_step(metrics)
    assert [s["step"] for s in steps] == list(range(1, metrics[-1]["step"] + 1))
    assert len({s["loss"] for s in steps}) > len(metrics)  # not the interval means repeated


@pytest.mark.slow  # trains for real
def test_a_modern_preset_trains_generates_resumes_and_fine_tunes(small_file, tmp_path):
    """Issue 15: modern-nano's changes (rotary, QK-norm, zero-init; with a ReLU² MLP, an untied
    head and a soft-cap too, as the ablation tries them) and Muon go through every path a
    classic GPT does; its shape is cut down for the test."""
    from lmcore.generation import decoding
    from lmcore.training import finetune, lm, transfer

    c = make_train_config("modern-nano", **{**TINY, "steps": 20})
    assert c.optimizer == "muon"
    small = dict(n_layer=2, n_head=2, n_embd=32, mlp="relu2", tied_head=False, softcap=15.0)
    job = lmdata.prepare(
        "modern-nano", DataConfig(source=str(small_file)), c, block_size=16, model_overrides=small
    )
    assert job.model_config.rotary and job.model_config.qk_norm and job.model_config.zero_init
    result = lm.start(job, tmp_path / "runs")
    assert result["status"] == "completed", result
    run = Path(result["run_dir"])
    fn, tok, record = decoding.load_run(run)
    text = decoding.generate(fn, tok, "The ", 40, decoding.SamplingOptions(0.8, seed=3)).text  # past block 16
    assert len(text) > 0 and record.model.qk_norm
    assert lm.resume(run, steps=30)["steps"] == 30
    parent = transfer.load_parent(str(run), run.parent)
    s = transfer.Surgery(freeze=1, add_layers=1)
    config = finetune.train_config_for(
        parent.train_config(), steps=10, log_every=5, eval_every=10, sample_length=0
    )
    child_job, lineage = finetune.prepare(parent, str(small_file), s, config)
    child = lm.start_child(parent, child_job, lineage, tmp_path / "runs")
    assert child["status"] == "completed" and child["parent"] == run.name
