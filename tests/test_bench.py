"""Training benchmarks: the FLOP formula against a hand count, and real (tiny) timed runs.

Speeds are measurements (BENCHMARKS.md), never asserted: these tests check that the
benchmark measures what it says, not how fast this machine is.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT
from lmcore.bench import train_speed
from lmcore.nn import models


def test_flops_per_token_counts_the_matmul_weights_and_attention_by_hand():
    c = models.make_config("nano", vocab_size=65)
    model = models.build_model(c)
    C, L, T, V = c.n_embd, c.n_layer, c.block_size, c.vocab_size
    # per block: qkv (3C^2) + proj (C^2) + fc (4C^2) + fc_proj (4C^2); the tied head (V C)
    matmul_weights = L * 12 * C * C + V * C
    norms = (2 * L + 1) * C  # LayerNorm scales: counted in N, as nanoGPT does
    want = 6 * (matmul_weights + norms) + 12 * L * T * C
    assert train_speed.flops_per_token(model, c) == want
    assert 5.1e6 < want < 5.2e6  # nano: about 5.17 MFLOP per token

    m = models.make_config("modern-nano", vocab_size=65)  # rotary: no positions to leave out
    modern = models.build_model(m)
    assert train_speed.flops_per_token(modern, m) == 6 * modern.count_params() + 12 * L * T * C

    r = models.make_config("seed-lstm", vocab_size=65)
    lstm = models.build_model(r)
    E, H = r.n_embd, r.n_hidden
    weights = 4 * (E * H + H * H + H) + 4 * (H * H + H * H + H) + H * V + V  # 2 layers + head
    assert train_speed.flops_per_token(lstm, r) == 6 * weights


def test_the_roof_is_a_real_measurement():
    roof = train_speed.matmul_roof(n=256, reps=2, trials=1)
    assert 0.1 < roof < 1e5  # GFLOP/s: positive and physically plausible for a CPU or GPU


@pytest.mark.slow  # trains for real
def test_bench_train_times_a_tiny_model_and_reports_mfu(monkeypatch):
    from lmcore import device

    device.import_tensorflow()
    monkeypatch.setattr(train_speed, "matmul_roof", lambda: 100.0)
    (r,) = train_speed.train_bench(configs=(("tiny", "tiny", 4),), intervals=1, reference=None)
    assert r["model"] == "tiny" and r["batch"] == 4 and r["block_size"] == 32
    assert r["tokens_per_s"] > 0 and r["steps_per_execution"] == 50  # the recipe logs every 50
    assert abs(r["gflops"] - r["tokens_per_s"] * r["flops_per_token"] / 1e9) < 0.01
    assert r["roof_gflops"] == 100.0 and abs(r["mfu"] - r["gflops"] / 100.0) < 1e-3


def test_bench_rejects_an_unknown_benchmark_in_one_line():
    out = subprocess.run(
        [sys.executable, "-m", "lmcore", "bench", "speed"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 2
    assert out.stderr.startswith("error: ") and len(out.stderr.strip().splitlines()) == 1
    assert "train-to-quality" in out.stderr


@pytest.mark.slow  # trains for real
def test_time_to_quality_reports_the_first_validation_under_the_target(small_file, monkeypatch):
    # "within 68 s" counts from the process's start, and this process is pytest's, minutes old:
    # the command's clock is set here so that both sides of the 68 s line are checked, not the CI's speed
    monkeypatch.setattr(train_speed, "process_seconds", lambda: 5.0)
    r = train_speed.time_to_quality(
        target=10.0, model_name="tiny", source=str(small_file), eval_every=10, steps=20, batch_size=4
    )
    assert r["status"] == "completed" and [p["step"] for p in r["curve"]] == [10, 20]
    assert r["step_at_target"] == 10 and r["seconds_to_target"] == r["curve"][0]["wall_s"] > 0
    assert r["command_seconds_to_target"] == 5.0
    assert r["best_val_within_68s"] == min(p["val_loss"] for p in r["curve"])
    monkeypatch.setattr(train_speed, "process_seconds", lambda: 68.5)
    missed = train_speed.time_to_quality(
        target=0.01, model_name="tiny", source=str(small_file), eval_every=10, steps=10, batch_size=4
    )
    assert missed["seconds_to_target"] is None and missed["step_at_target"] is None
    assert missed["best_val_within_68s"] is None and missed["final_val_loss"] is not None
    json.dumps(r)  # the --json line


@pytest.mark.slow  # trains for real
def test_the_plain_keras_reference_trains_the_same_shape_without_xla():
    r = train_speed.plain_keras(batch=2, preset="tiny", intervals=1, steps=2)
    assert r["jit"] is False and r["tokens_per_s"] > 0 and r["block_size"] == 32
    ours = models.build_model(models.make_config("tiny", vocab_size=train_speed.VOCAB)).count_params()
    assert abs(r["parameters"] - ours) / ours < 0.2  # biases and an untied head aside, the same size


@pytest.mark.slow  # trains for real
def test_the_gpu_bench_trains_each_model_and_reports_speed_mfu_and_loss(monkeypatch, small_file):
    """``bench gpu`` on this CPU: the same rows a GPU host records, in float32 here."""
    monkeypatch.setattr(train_speed, "matmul_roof", lambda **kw: 100.0)
    rows = list(train_speed.gpu_bench(steps=8, names=("tiny", "seed-lstm"), source=str(small_file)))
    assert [r["model"] for r in rows] == ["tiny", "seed-lstm"]
    for r in rows:
        assert r["device"] == "CPU" and r["precision"] == "float32" and r["steps"] == 8
        assert r["tokens_per_s"] > 0 and 0 < r["val_loss"] < 10
        assert abs(r["mfu"] - r["gflops"] / 100.0) < 1e-3
        json.dumps(r)
