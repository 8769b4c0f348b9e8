"""The run store: ids that cannot escape, atomic writes, followable logs, derived states."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from lmcore import LMError, runs


@pytest.mark.parametrize(
    "bad", ["../x", "../../etc", "/abs/path", "a/b", "a\x00b", "", ".hidden", "x" * 200, "..", "a..b"]
)
def test_run_ids_that_could_leave_the_runs_dir_are_refused(bad):
    with pytest.raises(LMError):
        runs.check_run_id(bad)


def test_new_ids_are_valid_and_unique():
    ids = {runs.new_run_id("nano", "my run/../x") for _ in range(20)}
    assert len(ids) == 20
    for i in ids:
        runs.check_run_id(i)
        assert "/" not in i


def test_create_refuses_an_existing_id(tmp_path):
    runs.create(tmp_path, "r1")
    with pytest.raises(LMError, match="already exists"):
        runs.create(tmp_path, "r1")


def test_resolve_by_id_and_by_path(tmp_path):
    run = runs.create(tmp_path, "r1")
    runs.write_json(run / "config.json", {})
    assert runs.resolve("r1", tmp_path) == run
    assert runs.resolve(str(run), tmp_path) == run
    with pytest.raises(LMError, match="no run"):
        runs.resolve("r2", tmp_path)
    with pytest.raises(LMError, match="no run at"):
        runs.resolve(str(tmp_path / "not-a-run"), tmp_path)  # a path must hold a run's config


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "last.keras"
    target.write_text("old checkpoint")

    def crash(tmp):
        tmp.write_text("half of a new chec")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        runs.atomic_write(target, crash)
    assert target.read_text() == "old checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == ["last.keras"]  # no temporary left behind
    runs.atomic_write(target, lambda tmp: tmp.write_text("new"))
    assert target.read_text() == "new"


def test_reader_ignores_a_line_still_being_written(tmp_path):
    log = tmp_path / "metrics.jsonl"
    runs.append_jsonl(log, {"step": 1})
    with open(log, "a") as f:
        f.write('{"step": 2, "lo')  # the writer is mid-line
    assert runs.read_jsonl(log) == [{"step": 1}]
    with open(log, "a") as f:
        f.write('ss": 1.5}\n')
    assert runs.read_jsonl(log) == [{"step": 1}, {"step": 2, "loss": 1.5}]


def test_a_running_status_whose_process_is_gone_reads_as_interrupted(tmp_path):
    run = runs.create(tmp_path, "r1")
    runs.write_status(run, "running", step=5)
    assert runs.read_status(run)["status"] == "running"  # this process is alive
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    data = json.loads((run / "status.json").read_text())
    data["pid"] = child.pid
    (run / "status.json").write_text(json.dumps(data))
    status = runs.read_status(run)
    assert status["status"] == "interrupted" and "resume" in status["message"]


def test_stop_requests(tmp_path):
    run = runs.create(tmp_path, "r1")
    assert not runs.stop_requested(run)
    runs.request_stop(run)
    assert runs.stop_requested(run)
    runs.clear_stop(run)
    assert not runs.stop_requested(run)


def test_list_and_delete(tmp_path):
    for name in ("a", "b"):
        run = runs.create(tmp_path, name)
        runs.write_json(run / "config.json", {"model_name": "tiny", "data": {"source": "x"}})
        runs.write_status(run, "completed", step=3)
    assert [r["run_id"] for r in runs.list_runs(tmp_path)] == ["b", "a"]
    runs.delete(tmp_path / "a")
    assert [r["run_id"] for r in runs.list_runs(tmp_path)] == ["b"]
    assert runs.list_runs(tmp_path / "nothing-here") == []
    assert os.path.isdir(tmp_path / "b")


def test_a_damaged_run_folder_does_not_break_the_listing(tmp_path):
    good = runs.create(tmp_path, "good")
    runs.write_json(good / "config.json", {"model_name": "tiny", "data": {"source": "x"}})
    bad = runs.create(tmp_path, "bad")
    (bad / "config.json").write_bytes(b"\xff\xfe not json")
    listed = runs.create(tmp_path, "listy")
    (listed / "config.json").write_text('["a list"]')
    assert runs.read_json(listed / "config.json", {}) == {}
    ids = [r["run_id"] for r in runs.list_runs(tmp_path)]
    assert ids == ["good"]  # folders without a readable config are not runs


def test_the_training_lock_admits_one_trainer(tmp_path):
    run = runs.create(tmp_path, "r1")
    with runs.training_lock(run):
        with pytest.raises(LMError, match="already being trained"):
            with runs.training_lock(run):
                pass
    with runs.training_lock(run):  # released again
        pass


def test_jsonl_lines_cut_inside_a_character_are_skipped(tmp_path):
    log = tmp_path / "samples.jsonl"
    runs.append_jsonl(log, {"text": "语言"})
    with open(log, "ab") as f:
        f.write('{"text": "模'.encode()[:-1])  # a write cut in the middle of a UTF-8 sequence
    assert runs.read_jsonl(log) == [{"text": "语言"}]


# ---------------------------------------------------------------------------- the typed record

FIXTURE = Path(__file__).parent / "fixtures" / "fixture-v0.1-tiny"  # made by lmcore 0.1.0 before issue 14
# Made by the code before lmcore was split into subpackages (commit 44abd20): modern-nano's
# switches (rotary, QK-norm, zero-init) and Muon's state in its checkpoint, 40 steps logged every 10.
MODERN_FIXTURE = Path(__file__).parent / "fixtures" / "fixture-44abd20-modern"


def test_the_record_reads_a_run_made_before_it_and_writes_the_same_format(tmp_path):
    from lmcore.nn.config import GPTConfig, TrainConfig

    record = runs.read_record(FIXTURE)
    assert isinstance(record.model, GPTConfig) and isinstance(record.train, TrainConfig)
    assert (record.model.n_embd, record.model.block_size, record.train.steps) == (16, 16, 40)
    assert record.data.sha256 and record.data.train_tokens > 0 and record.parent is None
    old = json.loads((FIXTURE / "config.json").read_text())
    written = record.to_json()
    new_model_keys = set(written["model"]) - set(old["model"])  # the modern switches, added since
    assert new_model_keys == {"rotary", "qk_norm", "mlp", "zero_init", "tied_head", "softcap"}
    assert {k: written["model"][k] for k in new_model_keys} == {  # all off: the same classic GPT
        "rotary": False,
        "qk_norm": False,
        "mlp": "gelu",
        "zero_init": False,
        "tied_head": True,
        "softcap": 0.0,
    }
    written["model"] = {k: v for k, v in written["model"].items() if k not in new_model_keys}
    assert {k: v for k, v in written.items() if k != "task"} == old  # otherwise the same keys and values
    run = tmp_path / "r"
    run.mkdir()
    runs.write_record(run, record)
    assert runs.read_record(run) == record  # one writer, one reader: a round trip


def _cli(root: Path, *args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "lmcore", *args, "--runs-dir", str(root)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )


@pytest.mark.slow  # trains for real
@pytest.mark.parametrize("FIXTURE", [FIXTURE, MODERN_FIXTURE], ids=["v0.1", "44abd20"])
def test_a_run_made_before_the_record_lists_generates_and_resumes(tmp_path, FIXTURE):
    root = tmp_path / "runs"
    shutil.copytree(FIXTURE, root / FIXTURE.name)
    assert [r["run_id"] for r in runs.list_runs(root)] == [FIXTURE.name]

    def lmcore(*args):
        return _cli(root, *args)

    out = lmcore("generate", "--run", FIXTURE.name, "--prompt", "the ", "--length", "20", "--seed", "1")
    assert out.returncode == 0 and out.stdout.startswith("the "), out.stderr
    out = lmcore("train", "--resume", FIXTURE.name, "--steps", "60", "--json")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert out.returncode == 0 and result["status"] == "completed" and result["steps"] == 60, out.stderr
    steps = [m["step"] for m in runs.read_jsonl(root / FIXTURE.name / "metrics.jsonl")]
    assert steps == [10, 20, 30, 40, 50, 60]  # one continuous curve across the versions
    assert runs.read_record(root / FIXTURE.name).train.schedule_steps == 40  # the old span kept


@pytest.mark.slow  # trains for real
@pytest.mark.parametrize("fixture", [FIXTURE, MODERN_FIXTURE], ids=["v0.1", "44abd20"])
def test_a_run_made_by_an_earlier_version_fine_tunes(tmp_path, fixture):
    root = tmp_path / "runs"
    shutil.copytree(fixture, root / fixture.name)
    new_text = tmp_path / "new.txt"
    new_text.write_text((fixture / "corpus.txt").read_text(encoding="utf-8")[::-1], encoding="utf-8")
    args = ["--from", fixture.name, "--corpus", str(new_text), "--freeze", "1", "--steps", "10"]
    out = _cli(root, "finetune", *args, "--log-every", "5", "--eval-every", "10", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == "completed" and result["parent"] == fixture.name
    assert runs.read_record(Path(result["run_dir"])).parent == fixture.name


def test_per_step_reads_a_tables_rows_with_step_0s_validation_only_record():
    """The live chart hands per_step a DataFrame's rows: step 0 (the untrained model's
    validation) has NaN where the interval records have their lists and losses."""
    nan = float("nan")
    rows = [
        {"step": 0, "time": 0.0, "loss": nan, "step_losses": nan, "step_lr": nan, "lr": nan, "val_loss": 4.2},
        {"step": 2, "time": 1.0, "loss": 3.5, "step_losses": [3.6, 3.4], "step_lr": [0.1, 0.2], "lr": 0.2},
    ]
    assert runs.per_step(rows) == [
        {"step": 1, "time": 0.5, "loss": 3.6, "lr": 0.1},
        {"step": 2, "time": 1.0, "loss": 3.4, "lr": 0.2},
    ]


def test_read_appended_reads_only_what_was_appended_and_notices_a_rewrite(tmp_path):
    path = tmp_path / "metrics.jsonl"
    assert runs.read_appended(path) == []  # not there yet
    path.write_text('{"step": 1}\n{"step": 2}\n{"st')  # the last line is still being written
    assert runs.read_appended(path) == [{"step": 1}, {"step": 2}]
    with path.open("a") as f:
        f.write('ep": 3}\n')
    got = runs.read_appended(path)
    assert got == [{"step": 1}, {"step": 2}, {"step": 3}] == runs.read_jsonl(path)
    got.append({"step": 99})  # the caller's list: the cache is not changed through it
    assert runs.read_appended(path) == runs.read_jsonl(path)
    path.write_text('{"step": 7}\n{"step": 8}\n{"step": 9}\n')  # rewritten, same inode, as long
    assert runs.read_appended(path) == [{"step": 7}, {"step": 8}, {"step": 9}]
    path.write_text('{"step": 5}\n')  # shortened
    assert runs.read_appended(path) == [{"step": 5}]
    replaced = tmp_path / "new.jsonl"
    replaced.write_text('{"step": 6}\n{"step": 7}\n')
    os.replace(replaced, path)  # a new file under the same name
    assert runs.read_appended(path) == [{"step": 6}, {"step": 7}]


def test_to_target_is_the_first_validation_at_or_under_it(tiny_run):
    vals = [m for m in runs.read_jsonl(tiny_run / runs.METRICS) if m.get("val_loss") is not None]
    record = runs.read_record(tiny_run)
    first = runs.to_target(tiny_run, 100.0)
    assert first["step"] == vals[0]["step"] and first["seconds"] == vals[0]["time"]
    assert first["tokens"] == vals[0]["step"] * record.train.batch_size * record.model.block_size
    best = min(v["val_loss"] for v in vals)
    assert runs.to_target(tiny_run, best)["step"] == next(v["step"] for v in vals if v["val_loss"] <= best)
    assert runs.to_target(tiny_run, best - 1e-6) is None
