"""Keep a run (lmcore/archive.py): export to one .zip, import it back, and refuse hostile archives.

The fast tests use a run folder written with lmcore's own writers and a checkpoint-shaped zip
(what the import checks is the file's form, not its weights); the slow ones a trained run.
"""

from __future__ import annotations

import io
import json
import stat
import zipfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_cli import assert_one_line_error, lmcore

from conftest import ROOT
from lmcore import LMError, archive, runs
from lmcore.jobs import public, queue
from lmcore.nn.config import GPTConfig, TrainConfig
from lmcore.text import tokenizers

RUN_ID = "20260101-120000-tiny-0badc0de"
KERAS_CONFIG = {
    "module": "keras.src.models.functional",
    "class_name": "Functional",
    "registered_name": "Functional",
    "config": {"layers": [{"module": "keras.layers", "class_name": "InputLayer", "config": {}}]},
}


def keras_file(config: dict = KERAS_CONFIG, extra: dict | None = None) -> bytes:
    """A zip shaped like Keras' .keras file (its weights are filler)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("metadata.json", json.dumps({"keras_version": "3"}))
        zf.writestr("config.json", json.dumps(config))
        zf.writestr("model.weights.h5", b"\x89HDF" + bytes(2000))
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buffer.getvalue()


def make_run(root: Path, run_id: str = RUN_ID, status: str = "completed") -> Path:
    run_dir = runs.create(root, run_id)
    model = GPTConfig(vocab_size=5, block_size=8, n_layer=1, n_head=2, n_embd=8)
    runs.write_record(run_dir, runs.RunRecord("tiny", model, TrainConfig(steps=10)))
    runs.write_status(run_dir, status, step=10, best_val_loss=1.5)
    runs.append_jsonl(run_dir / runs.METRICS, {"step": 10, "loss": 1.6, "val_loss": 1.5})
    runs.append_jsonl(run_dir / runs.SAMPLES, {"step": 10, "text": "abba"})
    tokenizers.save(tokenizers.train("char", "abcd\n"), run_dir / runs.TOKENIZER)
    (run_dir / runs.CORPUS).write_text("abcd\n" * 10, encoding="utf-8")
    for which in ("last", "best"):
        runs.checkpoint(run_dir, which).write_bytes(keras_file())
    return run_dir


def members(data: bytes) -> list[tuple[zipfile.ZipInfo, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(info, zf.read(info)) for info in zf.infolist()]


def rezip(entries) -> bytes:
    """A zip of (name or ZipInfo, bytes, compression) entries, exactly as given."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for info, data, *kind in entries:
            zf.writestr(info, data, compress_type=kind[0] if kind else zipfile.ZIP_STORED)
    return buffer.getvalue()


def tree(root: Path) -> dict[str, bytes]:
    """Every file and folder under ``root``, hidden ones included."""
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"/" for p in root.rglob("*")}


@pytest.fixture
def exported(tmp_path) -> bytes:
    return archive.export_bytes(make_run(tmp_path / "source"))


# ---------------------------------------------------------------------------- export and import


def test_export_keeps_a_runs_files_and_leaves_out_events_stop_lock_and_temporary_files(tmp_path):
    run_dir = make_run(tmp_path / "runs")
    (run_dir / runs.EVENTS).mkdir()
    (run_dir / runs.EVENTS / "events.out").write_bytes(b"x")
    for name in (runs.STOP, "LOCK", f"{runs.CHECKPOINTS}/.last-abc.keras"):
        (run_dir / name).write_bytes(b"x")
    archive.export(run_dir, tmp_path / "run.zip")
    names = sorted(info.filename for info, _ in members((tmp_path / "run.zip").read_bytes()))
    inside = sorted(
        ["config.json", "status.json", "metrics.jsonl", "samples.jsonl", "tokenizer.json", "corpus.txt"]
        + ["checkpoints/best.keras", "checkpoints/last.keras"]
    )
    assert names == [f"{RUN_ID}/{n}" for n in inside]
    assert archive.export_bytes(run_dir) == (tmp_path / "run.zip").read_bytes()  # one writer


def test_export_refuses_a_run_still_training(tmp_path):
    run_dir = make_run(tmp_path / "runs", status="running")  # this process: alive, so training
    with pytest.raises(LMError, match="still training"):
        archive.export(run_dir, tmp_path / "run.zip")
    assert not (tmp_path / "run.zip").exists()


def test_import_adds_the_run_under_its_own_id_with_the_same_files(tmp_path, exported):
    root = tmp_path / "runs"
    assert archive.import_run(root, exported) == RUN_ID
    assert [r["run_id"] for r in runs.list_runs(root)] == [RUN_ID]
    source = tmp_path / "source" / RUN_ID
    for name in archive._member_names(source):
        if name != runs.STATUS:
            assert (root / RUN_ID / name).read_bytes() == (source / name).read_bytes(), name
    assert runs.read_status(root / RUN_ID)["status"] == "completed"
    assert sorted(p.name for p in root.iterdir()) == [RUN_ID]  # no scratch folder left


def test_a_colliding_id_gets_a_new_one_and_the_original_is_untouched(tmp_path, exported):
    root = tmp_path / "runs"
    original = make_run(root)
    (original / runs.CORPUS).write_text("the original's own text", encoding="utf-8")
    before = tree(original)
    assert archive.import_run(root, io.BytesIO(exported)) == f"{RUN_ID}-2"
    assert archive.import_run(root, exported) == f"{RUN_ID}-3"
    assert tree(original) == before
    assert (root / f"{RUN_ID}-2" / runs.CORPUS).read_text(encoding="utf-8") == "abcd\n" * 10


def test_an_id_a_queued_job_holds_is_not_taken(tmp_path, exported):
    root = tmp_path / "runs"
    runs.jobs_dir(root).mkdir(parents=True)
    queue.job_file(root, RUN_ID, "spec.json").write_text("{}")  # the trainer will create this run
    assert archive.import_run(root, exported) == f"{RUN_ID}-2"


def test_a_running_run_imports_as_interrupted_and_public_mode_records_its_owner(tmp_path, exported):
    running = {"status": "running", "step": 5, "pid": 1, "host": "elsewhere"}  # made by hand
    data = rezip(_replace(runs.STATUS, json.dumps(running).encode())(members(exported)))
    root = tmp_path / "runs"
    run_id = archive.import_run(root, data, owner_id="abc123")
    status = runs.read_status(root / run_id)
    assert status["status"] == "interrupted" and "pid" not in status and "host" not in status
    assert queue.owner(root, run_id) == "abc123"


def test_a_metrics_line_cut_short_by_an_interrupted_run_is_no_reason_to_refuse(tmp_path, exported):
    cut = _replace(runs.METRICS, b'{"step": 10, "loss": 1.6}\n{"step": 20, "lo')(members(exported))
    run_id = archive.import_run(tmp_path / "runs", rezip(cut))
    assert [m["step"] for m in runs.read_jsonl(tmp_path / "runs" / run_id / runs.METRICS)] == [10]


def test_an_archive_whose_folder_is_not_a_run_id_gets_a_new_id(tmp_path, exported):
    entries = [(info.filename.replace(RUN_ID, "my run"), data) for info, data in members(exported)]
    run_id = archive.import_run(tmp_path / "runs", rezip(entries))
    assert runs.RUN_ID.match(run_id) and "-tiny-imported-" in run_id


# ---------------------------------------------------------------------------- hostile archives


def _add(name: str, data: bytes = b"x"):
    return lambda entries: [*entries, (name, data)]


def _replace(name: str, data: bytes):
    return lambda entries: [(i, data if i.filename == f"{RUN_ID}/{name}" else d) for i, d in entries]


def _symlink(entries):
    link = zipfile.ZipInfo(f"{RUN_ID}/{runs.CORPUS}")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    return [(i, d) for i, d in entries if i.filename != link.filename] + [(link, b"/etc/passwd")]


def _folder(entries):
    return [*entries, (zipfile.ZipInfo(f"{RUN_ID}/{runs.CHECKPOINTS}/"), b"")]


def _bomb(entries):
    kept = [(i, d) for i, d in entries if not i.filename.endswith(runs.CORPUS)]
    return [*kept, (f"{RUN_ID}/{runs.CORPUS}", bytes(50 * 2**20), zipfile.ZIP_DEFLATED)]


def _server_file(entries):
    """A record that names a file of the server's as its corpus, and no text of its own."""
    out = []
    for info, data in entries:
        if info.filename == f"{RUN_ID}/{runs.CONFIG}":
            record = json.loads(data)
            record["data"] = {**record.get("data", {}), "source": "/etc/passwd"}
            data = json.dumps(record).encode()
        if not info.filename.endswith(runs.CORPUS):
            out.append((info, data))
    return out


LAMBDA = {**KERAS_CONFIG, "config": {"layers": [{"module": "keras.layers", "class_name": "Lambda"}]}}
FOREIGN = {**KERAS_CONFIG, "config": {"layers": [{"module": "os", "class_name": "Dense"}]}}
STATUS_OK = {"status": "completed", "step": 1}
HOSTILE = {
    "parent folder": (_add(f"{RUN_ID}/../evil.txt"), "unsafe file name"),
    "absolute": (_add("/tmp/evil.txt"), "unsafe file name"),
    "backslash": (_add(f"{RUN_ID}\\..\\evil.txt"), "unsafe file name"),
    "drive letter": (_add("C:/evil.txt"), "unsafe file name"),
    "symlink": (_symlink, "symbolic link"),
    "folder entry": (_folder, "not a plain file"),
    "duplicate": (_add(f"{RUN_ID}/{runs.CONFIG}", b"{}"), "2 times"),
    "unknown member": (_add(f"{RUN_ID}/tb/events.out"), "not a file of a run"),
    "second folder": (_add(f"other/{runs.CONFIG}"), "one run's folder"),
    "too many members": (lambda e: e + [(f"{RUN_ID}/x{i}", b"") for i in range(20)], "a run has fewer than"),
    "zip bomb": (_bomb, "zip bomb"),
    "lambda layer": (_replace("checkpoints/last.keras", keras_file(LAMBDA)), "'Lambda'"),
    "foreign module": (_replace("checkpoints/last.keras", keras_file(FOREIGN)), "module 'os'"),
    "corrupt checkpoint": (_replace("checkpoints/best.keras", b"PK\x03\x04 not a zip"), "not a Keras model"),
    "checkpoint's own name": (
        _replace("checkpoints/best.keras", keras_file(extra={"../../evil.py": "x"})),
        "unsafe file name",
    ),
    "bad record": (
        _replace(runs.CONFIG, b'{"model": {"family": "gpt", "n_embd": 30}}'),
        "not a run's record",
    ),
    "record not json": (_replace(runs.CONFIG, b"model = gpt"), "not a JSON object"),
    "unknown status": (_replace(runs.STATUS, json.dumps({"status": "exploded"}).encode()), "statuses"),
    "metrics line": (_replace(runs.METRICS, b'{"step": 1}\n[1, 2]\n'), "line 2 of metrics.jsonl"),
    "bad tokenizer": (_replace(runs.TOKENIZER, b'{"kind": "magic"}'), "not a tokenizer"),
    "a server's file as corpus": (_server_file, "must carry its text"),
    "no status": (lambda e: [(i, d) for i, d in e if not i.filename.endswith(runs.STATUS)], "no status.json"),
}


@pytest.mark.filterwarnings("ignore:Duplicate name")
@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_archive_is_refused_with_one_message_and_nothing_left_behind(tmp_path, exported, case):
    change, message = HOSTILE[case]
    root = tmp_path / "runs"
    make_run(root, "20250101-000000-nano-11111111")
    before = tree(root)
    with pytest.raises(LMError, match=message):
        archive.import_run(root, rezip(change(members(exported))))
    assert tree(root) == before


def test_sizes_over_the_callers_cap_are_refused(tmp_path, exported):
    root = tmp_path / "runs"
    kept = [(i, d) for i, d in members(exported) if not i.filename.endswith(runs.CORPUS)]
    big = [*kept, (f"{RUN_ID}/{runs.CORPUS}", bytes(3 * 2**20), zipfile.ZIP_DEFLATED)]
    with pytest.raises(LMError, match="corpus.txt' in the archive unpacks to 3.0 MB; too large"):
        archive.import_run(root, rezip(big), max_bytes=2 * 2**20)
    with pytest.raises(LMError, match="the archive is .* MB; the limit is 0.0 MB"):
        archive.import_run(root, exported, max_bytes=1000)
    halves = [(f"{RUN_ID}/{n}", bytes(2**20), zipfile.ZIP_DEFLATED) for n in (runs.CORPUS, runs.SAMPLES)]
    with pytest.raises(LMError, match="the archive unpacks to 2.0 MB; the limit is 1.5 MB"):
        archive.import_run(root, rezip(halves), max_bytes=3 * 2**19)
    with pytest.raises(LMError, match="not a zip archive"):
        archive.import_run(root, b"plain text")
    assert not root.exists() or list(root.iterdir()) == []


# ---------------------------------------------------------------------------- the command line


def test_the_command_line_exports_and_imports_and_refuses_in_one_line(tmp_path, exported):
    source = make_run(tmp_path / "source-runs")
    zip_path = tmp_path / "run.zip"
    lmcore("runs", "export", RUN_ID, str(zip_path), runs_dir=source.parent, check=True)
    root = tmp_path / "runs"
    proc = lmcore("runs", "import", str(zip_path), "--json", runs_dir=root, check=True)
    assert json.loads(proc.stdout) == {"run_id": RUN_ID}
    listed = json.loads(lmcore("runs", "--json", runs_dir=root, check=True).stdout)
    assert [r["run_id"] for r in listed] == [RUN_ID]
    hostile = tmp_path / "hostile.zip"
    hostile.write_bytes(rezip(_add(f"{RUN_ID}/../../evil.txt")(members(exported))))
    assert_one_line_error(lmcore("runs", "import", str(hostile), runs_dir=root), "unsafe file name")
    assert_one_line_error(lmcore("runs", "export", "nosuchrun", str(zip_path), runs_dir=root), "no run")
    assert sorted(p.name for p in root.iterdir()) == [RUN_ID]


# ---------------------------------------------------------------------------- the Runs page


def runs_page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("pages/runs.py")
    at.run()
    return at


def test_the_runs_page_imports_a_good_upload_once_and_refuses_a_hostile_one(tmp_path, exported):
    root = runs.runs_dir()
    at = runs_page()
    hostile = rezip(_add("/etc/evil.txt")(members(exported)))
    at.file_uploader(key="runs-upload").upload("evil.zip", hostile, "application/zip").run()
    assert not at.exception and "unsafe file name" in at.error[0].value
    assert not root.exists() or list(root.iterdir()) == []
    at.file_uploader(key="runs-upload").set_value(("run.zip", exported, "application/zip")).run()
    assert not at.exception and not at.error and RUN_ID in at.success[0].value
    assert at.dataframe[0].value["run"].tolist() == [RUN_ID]
    at.run()  # Streamlit hands the same upload to every rerun: it is imported once
    assert [r["run_id"] for r in runs.list_runs(root)] == [RUN_ID]


def test_in_public_mode_the_upload_cap_holds_and_the_run_belongs_to_the_session(exported, monkeypatch):
    from dashboard import access

    rules = public.Policy(public=True, upload_mb=0.001)  # 1 kB: less than the archive
    monkeypatch.setattr(access, "policy", lambda: rules)
    at = runs_page()
    at.file_uploader(key="runs-upload").upload("run.zip", exported, "application/zip").run()
    assert not at.exception and "accepts uploads up to 0.001 MB" in at.error[0].value
    rules = public.Policy(public=True, upload_mb=1)
    at.file_uploader(key="runs-upload").set_value(("again.zip", exported, "application/zip")).run()
    assert not at.exception and not at.error and RUN_ID in at.success[0].value
    owner = public.Actor(at.session_state["session_token"]).owner_id
    assert queue.owner(runs.runs_dir(), RUN_ID) == owner


def test_the_runs_page_offers_a_selected_run_as_a_zip(tmp_path):
    make_run(runs.runs_dir())
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("pages/runs.py")
    at.query_params["runs"] = RUN_ID  # a link selects the run
    at.run()
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Download run (.zip)" in labels


# ---------------------------------------------------------------------------- a trained run


def test_a_trained_run_round_trips_generates_the_same_text_and_resumes(tiny_run, tmp_path):
    from lmcore.generation import decoding

    root = tmp_path / "runs"
    run_id = archive.import_run(root, archive.export_bytes(tiny_run))
    assert run_id == tiny_run.name and [r["run_id"] for r in runs.list_runs(root)] == [run_id]
    opts = decoding.SamplingOptions(temperature=0.9, seed=5)
    texts = []
    for run_dir in (tiny_run, root / run_id):
        logits_fn, tokenizer, _ = decoding.load_run(run_dir, jit=False)
        texts.append(decoding.generate(logits_fn, tokenizer, "The ", 30, opts).text)
    assert texts[0] == texts[1] and len(texts[0]) > 0
    proc = lmcore("train", "--resume", run_id, "--steps", "40", "--json", runs_dir=root, check=True)
    assert json.loads(proc.stdout.strip().splitlines()[-1])["status"] == "completed"
    assert runs.read_status(root / run_id)["step"] == 40
    assert runs.read_status(tiny_run)["step"] == 30  # the original is its own run


@pytest.mark.slow  # builds a Keras model
def test_a_real_keras_file_with_a_lambda_layer_is_refused(tmp_path, exported):
    import keras

    inputs = keras.Input(shape=(3,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    model.save(tmp_path / "lambda.keras")
    with pytest.raises(LMError, match="'Lambda'"):
        archive.check_checkpoint(tmp_path / "lambda.keras")
    change = _replace("checkpoints/last.keras", (tmp_path / "lambda.keras").read_bytes())
    with pytest.raises(LMError, match="checkpoints/last.keras uses the Keras class 'Lambda'"):
        archive.import_run(tmp_path / "runs", rezip(change(members(exported))))
    assert not (tmp_path / "runs").exists() or list((tmp_path / "runs").iterdir()) == []
