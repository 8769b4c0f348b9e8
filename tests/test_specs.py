"""Job specs (issue 14): the command line and the pages build the same typed record, the job
layer saves it, and ``python -m lmcore run`` runs it with the command line's own code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest

from conftest import ROOT
from lmcore import LMError, cli
from lmcore.jobs import specs
from lmcore.nn.config import DataConfig, make_train_config


def test_the_command_line_and_a_page_build_the_same_spec():
    argv = ["train", "--corpus", "x.txt", "--model", "tiny", "--steps", "30", "--batch-size", "4"]
    argv += ["--lr", "0.002", "--lowercase", "--block-size", "16", "--name", "mine"]
    from_cli = cli.spec_from_argv(argv)
    from_page = specs.TrainSpec(  # as pages/train.py builds it from its widgets
        "tiny",
        DataConfig("x.txt", "char", clean={"lowercase": True}),
        replace(make_train_config("tiny"), steps=30, batch_size=4, lr=0.002),
        block_size=16,
        name="mine",
    )
    assert from_cli == from_page


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--model", "tiny", "--epochs", "2", "--augment-swap", "0.1", "--n-embd", "64"],
        ["train", "--resume", "some-run", "--steps", "90"],
        ["finetune", "--from", "p", "--corpus", "builtin:markov", "--freeze", "all", "--steps", "20"],
        ["classify", "train", "--from", "p", "--data", "builtin:reviews", "--drop-top", "1", "--lr", "0.01"],
        ["classify", "compare", "--from", "p", "--data", "d.csv", "--seeds", "2"],
        ["compare", "--from", "p", "--corpus", "builtin:markov", "--steps", "30"],
    ],
)
def test_every_training_command_round_trips_through_its_saved_spec(argv, tmp_path):
    spec = cli.spec_from_argv(argv)
    specs.save(spec, tmp_path / "spec.json")
    assert specs.load(tmp_path / "spec.json") == spec
    assert spec.kind == json.loads((tmp_path / "spec.json").read_text())["kind"]


def test_a_spec_from_elsewhere_is_refused_in_one_line(tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps({"kind": "train", "model": "tiny", "rm_rf": True}))
    with pytest.raises(LMError, match="unknown train job settings: rm_rf"):
        specs.load(tmp_path / "bad.json")
    with pytest.raises(LMError, match="not a training job"):
        cli.spec_from_argv(["runs"])


@pytest.mark.slow  # trains for real
def test_run_executes_a_saved_spec_as_the_command_would(small_file, tmp_path):
    spec = cli.spec_from_argv(
        ["train", "--corpus", str(small_file), "--model", "tiny", "--steps", "20", "--batch-size", "8"]
        + ["--log-every", "10", "--eval-every", "20", "--eval-batches", "1", "--sample-length", "0"]
        + ["--run-id", "from-a-spec"]
    )
    specs.save(spec, tmp_path / "spec.json")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "lmcore",
            "run",
            str(tmp_path / "spec.json"),
            "--runs-dir",
            str(tmp_path),
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert out.returncode == 0 and result["status"] == "completed" and result["steps"] == 20, out.stderr
    assert result["run_id"] == "from-a-spec"
