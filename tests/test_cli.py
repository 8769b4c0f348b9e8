"""The command line end to end, in subprocesses, as a user (or the dashboard) runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from lmcore import runs

TINY_ARGS = [
    "--model",
    "tiny",
    "--steps",
    "20",
    "--batch-size",
    "8",
    "--log-every",
    "10",
    "--eval-every",
    "10",
    "--eval-batches",
    "2",
    "--sample-length",
    "10",
    "--seed",
    "3",
]


def lmcore(*args, runs_dir: Path, check: bool = False, timeout: int = 300):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "lmcore", *args, "--runs-dir", str(runs_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=runs_dir.parent,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def assert_one_line_error(proc, *words):
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.slow  # trains for real
def test_train_runs_and_generate_end_to_end(small_file, tmp_path):
    runs_dir = tmp_path / "runs"
    proc = lmcore(
        "train",
        "--corpus",
        str(small_file),
        *TINY_ARGS,
        "--name",
        "cli",
        "--json",
        runs_dir=runs_dir,
        check=True,
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["status"] == "completed" and result["steps"] == 20
    assert result["val_loss"] > 0
    assert runs.RUN_ID.match(result["run_id"]) and "-cli-" in result["run_id"]
    assert "step 20/20" in proc.stderr  # plain progress lines when not on a terminal

    listed = json.loads(lmcore("runs", "--json", runs_dir=runs_dir, check=True).stdout)
    assert [(r["run_id"], r["status"]) for r in listed] == [(result["run_id"], "completed")]
    table = lmcore("runs", runs_dir=runs_dir, check=True).stdout
    assert result["run_id"] in table and "completed" in table

    gen = lambda *extra: (
        lmcore(
            "generate",
            "--run",
            result["run_id"],
            "--prompt",
            "The ",  # noqa: E731
            "--length",
            "25",
            *extra,
            runs_dir=runs_dir,
            check=True,
        ).stdout
    )
    a, b = gen("--seed", "1"), gen("--seed", "1")
    assert a == b and a.startswith("The ") and len(a) > len("The ") + 5
    by_path = lmcore(
        "generate",
        "--run",
        str(runs_dir / result["run_id"]),
        "--prompt",
        "The ",
        "--length",
        "25",
        "--seed",
        "1",
        runs_dir=runs_dir,
        check=True,
    ).stdout
    assert by_path == a


@pytest.mark.slow  # trains for real
def test_epochs_become_steps(small_file, tmp_path):
    # 30,000 chars -> 27,000 training tokens; 0.01 epochs of 8 x 32 tokens = ceil(1.05) = 2 steps
    proc = lmcore(
        "train",
        "--corpus",
        str(small_file),
        "--model",
        "tiny",
        "--epochs",
        "0.01",
        "--batch-size",
        "8",
        "--eval-batches",
        "1",
        "--sample-length",
        "0",
        "--json",
        runs_dir=tmp_path / "runs",
        check=True,
    )
    assert json.loads(proc.stdout.splitlines()[-1])["steps"] == 2


@pytest.fixture
def bad_files(tmp_path):
    files = {
        "empty.txt": b"",
        "blank.txt": b"   \n\n\t ",
        "short.txt": b"just a few words",
        "image.txt": b"\x89PNG\r\n\x1a\n" + os.urandom(200),
        "nul.txt": b"text\x00with\x00nuls" * 10,
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return tmp_path


@pytest.mark.parametrize(
    "args, words",
    [
        (["--corpus", "{d}/missing.txt"], ["no such file"]),
        (["--corpus", "{d}/empty.txt"], ["no text"]),
        (["--corpus", "{d}/blank.txt"], ["no text"]),
        (["--corpus", "{d}/short.txt"], ["too short"]),
        (["--corpus", "{d}/image.txt"], ["not text", "PNG"]),
        (["--corpus", "{d}/nul.txt"], ["not text"]),
        (["--corpus", "builtin:nothing"], ["unknown built-in corpus"]),
        (["--model", "gpt-17"], ["unknown model"]),
        (["--lr", "-1"], ["learning rate"]),
        (["--lr", "nan"], ["not a finite number"]),
        (["--batch-size", "0"], ["at least 1"]),
        (["--steps", "ten"], ["not a whole number"]),
        (["--tokenizer", "morse"], ["invalid choice"]),
        (["--block-size", "100000"], ["too short"]),
        (["--n-head", "3"], ["multiple of n_head"]),
        (["--remove-stopwords"], ["word tokenizer only"]),
        (["--steps", "5", "--epochs", "1"], ["not allowed with"]),
        (["--seed", "-1"], ["must be between 0"]),
        (["--augment-delete", "1.5"], ["augmentation probabilities"]),
    ],
)
def test_bad_training_input_gives_one_line_and_creates_no_run(bad_files, args, words):
    runs_dir = bad_files / "runs"
    args = [a.format(d=bad_files) for a in args]
    length = [] if {"--steps", "--epochs"} & set(args) else ["--steps", "2"]
    proc = lmcore("train", *length, *args, runs_dir=runs_dir)
    assert_one_line_error(proc, *words)
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


def test_bad_generate_and_resume_input(tiny_run, tmp_path):
    runs_dir = tiny_run.parent
    cases = [
        (["generate", "--run", "no-such-run"], ["no run"]),
        (["generate", "--run", "../../etc"], ["no run"]),
        (["generate", "--run", tiny_run.name, "--temperature", "-0.5"], ["temperature"]),
        (["generate", "--run", tiny_run.name, "--top-p", "0"], ["top-p"]),
        (["generate", "--run", tiny_run.name, "--length", "99999999"], ["length"]),
        (["train", "--resume", tiny_run.name], ["already trained"]),
        (["train", "--resume", "nope"], ["no run"]),
        (["train", "--resume", tiny_run.name, "--lr", "0.1"], ["drop --lr"]),
        (["generate", "--run", tiny_run.name, "--seed", "-3"], ["must be between 0"]),
        (["frobnicate"], ["invalid choice"]),
    ]
    for args, words in cases:
        assert_one_line_error(lmcore(*args, runs_dir=runs_dir), *words)


def test_unknown_prompt_characters_are_reported_not_fatal(tiny_run):
    proc = lmcore(
        "generate",
        "--run",
        tiny_run.name,
        "--prompt",
        "中文🙂",
        "--length",
        "5",
        runs_dir=tiny_run.parent,
        check=True,
    )
    assert "not in the vocabulary" in proc.stderr
    assert "中文" not in proc.stdout  # the prompt is echoed as the model saw it
