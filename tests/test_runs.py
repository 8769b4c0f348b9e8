"""The run store: ids that cannot escape, atomic writes, followable logs, derived states."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

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
