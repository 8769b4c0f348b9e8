"""Reliability and security (issue 6): bad input, faults, the job queue, and untrusted files.

Each test names the issue's case it covers. The command line runs in subprocesses as a user
types it; the app's side runs under Streamlit's AppTest (the browser-level cases are in
``test_browser_reliability.py``). Training is real and tiny (``TINY`` from conftest).
"""

from __future__ import annotations

import ast
import json
import os
import re
import resource
import signal
import subprocess
import sys
import textwrap
import threading
import time
import tomllib
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from test_cli import assert_one_line_error, lmcore

from conftest import ROOT, TINY
from lmcore import LMError, cli, device, runs
from lmcore.jobs import queue
from lmcore.nn.config import DataConfig, make_train_config
from lmcore.text import corpus, tokenizers, windows
from lmcore.training import lm, lmdata

FAST = ["--model", "tiny", "--batch-size", "8", "--log-every", "10", "--eval-batches", "1"]
FAST += ["--sample-length", "0", "--seed", "3"]


def prepare(source, **overrides):
    return lmdata.prepare(
        "tiny", DataConfig(source=str(source)), make_train_config("tiny", **{**TINY, **overrides})
    )


def open_page(page: str, runs_dir: Path, state: dict | None = None, timeout: float = 120) -> AppTest:
    """A page of the app under AppTest, with ``runs_dir`` as its runs directory."""
    os.environ["LMLAB_RUNS_DIR"] = str(runs_dir)  # the autouse fixture restores it
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)
    for key, value in (state or {}).items():
        at.session_state[key] = value
    at.run()
    at.switch_page(f"pages/{page}.py")
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def widget(items, label):
    return next(w for w in items if w.label == label)


# ---------------------------------------------------------------------------- 1. empty or short text


@pytest.mark.parametrize(
    "content, words",
    [
        (b"", ["no text"]),
        (b" \n\t\r\n ", ["no text"]),
        ("\u3000\u00a0\n\u2028".encode(), ["no text"]),  # Unicode spaces and line breaks only
        (b"a short text, shorter than one window", ["too short"]),
    ],
)
def test_case1_empty_or_short_text_is_refused_and_creates_no_run(tmp_path, content, words):
    source = tmp_path / "input.txt"
    source.write_bytes(content)
    with pytest.raises(LMError):
        prepare(source)
    runs_dir = tmp_path / "runs"
    proc = lmcore("train", "--corpus", str(source), "--steps", "2", *FAST, runs_dir=runs_dir)
    assert_one_line_error(proc, *words)
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


def test_case1_the_train_page_refuses_a_too_short_text_before_starting(tmp_path):
    source = tmp_path / "short.txt"
    source.write_text("only a few words here", encoding="utf-8")
    at = open_page("train", tmp_path / "runs", {"corpus_source": str(source)})
    assert any("too short" in e.value for e in at.error), [e.value for e in at.error]
    assert widget(at.button, "Start training").disabled
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


# ---------------------------------------------------------------------------- 2. binary files


@pytest.fixture(scope="module")
def keras_file(tiny_run) -> bytes:
    return runs.checkpoint(tiny_run).read_bytes()


@pytest.mark.parametrize("kind", ["png", "zip", "keras", "nul", "elf"])
def test_case2_binary_files_are_refused_as_not_text(tmp_path, keras_file, kind):
    content = {
        "png": b"\x89PNG\r\n\x1a\n" + os.urandom(300),
        "zip": b"PK\x03\x04" + os.urandom(300),
        "keras": keras_file,  # a real checkpoint renamed to .txt
        "nul": ("plain text " * 50).encode() + b"\x00" + b"more text" * 50,
        "elf": b"\x7fELF" + bytes(200),
    }[kind]
    with pytest.raises(LMError, match="not text"):
        corpus.load_bytes(content, "upload.txt")
    source = tmp_path / "upload.txt"
    source.write_bytes(content)
    runs_dir = tmp_path / "runs"
    assert_one_line_error(lmcore("train", "--corpus", str(source), *FAST, runs_dir=runs_dir), "not text")
    assert not runs_dir.exists()


# ---------------------------------------------------------------------------- 3. encodings


def test_case3_a_byte_order_mark_never_enters_the_vocabulary(small_text, tmp_path):
    joined = b"\xef\xbb\xbf" + small_text[:5000].encode() + b"\xef\xbb\xbf" + small_text[5000:].encode()
    source = tmp_path / "joined.txt"
    source.write_bytes(joined)  # two UTF-8 files with BOMs, concatenated
    for kind in ("char", "word", "bpe"):
        job = lmdata.prepare(
            "tiny", DataConfig(source=str(source), tokenizer=kind), make_train_config("tiny")
        )
        assert "\ufeff" not in job.text
        pieces = [job.tokenizer.token(i) for i in range(job.tokenizer.vocab_size)]
        assert not any("\ufeff" in p for p in pieces), kind


@pytest.mark.parametrize(
    "data, text, encoding",
    [
        (
            "UTF-16 with its mark: 中文 and é\n".encode("utf-16"),
            "UTF-16 with its mark: 中文 and é\n",
            "utf-16",
        ),
        ("语言模型预测下一个词。".encode("gbk"), "语言模型预测下一个词。", "gbk"),
        # GBK words inside mostly English text: Chinese, not four U+FFFD
        (("English text. " * 300 + "中文").encode("gbk"), "English text. " * 300 + "中文", "gbk"),
        # short cp1252 texts: always this result
        ("Café".encode("cp1252"), "Café", "cp1252"),
        ("naïve façade – 5 €".encode("cp1252"), "naïve façade – 5 €", "cp1252"),
        ("été".encode("cp1252"), "été", "cp1252"),
        (b"caf\xe9 " * 2000, "café " * 2000, "cp1252"),  # an accent among much ASCII
    ],
)
def test_case3_encodings_are_decoded_the_same_way_every_time(data, text, encoding):
    for _ in range(2):
        decoded, enc, notes = corpus.decode_bytes(data)
        assert (decoded, enc) == (text, encoding)
        assert "\ufffd" not in decoded
        if encoding != "utf-8":
            assert notes  # the user is told which encoding was assumed


def test_case3_text_in_no_accepted_encoding_is_refused_naming_them():
    # cp1252 leaves 0x81, 0x8D, 0x8F, 0x90 and 0x9D undefined; GBK rejects these pairs too
    with pytest.raises(LMError, match="not UTF-8, GBK or cp1252"):
        corpus.decode_bytes(b"abc \x81\x7f\x8d\x90 def" * 3)


# ---------------------------------------------------------------------------- 4. one invalid byte


def test_case4_one_invalid_byte_in_a_large_utf8_file_is_replaced_and_reported(tmp_path, small_text):
    good = (small_text + " Ünïcödé 中文\n").encode() * 40  # about 1.2 MB of UTF-8
    bad = good[:600_000] + b"\xff" + good[600_000:]
    results = [corpus.load_bytes(bad, "big.txt") for _ in range(2)]
    for c in results:
        assert c.text.count("\ufffd") == 1
        assert c.notes == ["1 invalid UTF-8 byte replaced by U+FFFD"]
    assert results[0].text == results[1].text


@pytest.mark.slow  # trains for real
def test_case3_4_5_the_cli_decodes_normalizes_and_reports(tmp_path, small_text):
    """One CLI run: a BOM, CRLF, lone CR, U+2028, decomposed accents and one invalid byte."""
    body = small_text[:20_000].replace("\n", "\r\n", 50).replace("\n", "\r", 50) + "\u2028"
    body += unicodedata.normalize("NFD", " café naïve") * 30 + "\n"
    raw = b"\xef\xbb\xbf" + body.encode()
    raw = raw[:9000] + b"\xfe" + raw[9000:]
    source = tmp_path / "messy.txt"
    source.write_bytes(raw)
    runs_dir = tmp_path / "runs"
    proc = lmcore("train", "--corpus", str(source), "--steps", "2", *FAST, "--json", runs_dir=runs_dir)
    assert proc.returncode == 0, proc.stderr
    assert "note: 1 invalid UTF-8 byte replaced by U+FFFD" in proc.stderr
    run_dir = runs_dir / json.loads(proc.stdout.splitlines()[-1])["run_id"]
    chars = json.loads((run_dir / "tokenizer.json").read_text(encoding="utf-8"))["chars"]
    for bad in ("\ufeff", "\r", "\u2028", "\u0301"):  # U+0301: a combining accent (NFD)
        assert bad not in chars
    assert "é" in chars and "\n" in chars


# ---------------------------------------------------------------------------- 5. line endings, NFC


def test_case5_line_endings_and_unicode_forms_give_one_vocabulary(tmp_path, small_text):
    text = small_text[:8000] + " Crème brûlée, naïve café, Ångström.\n" * 10
    variants = {
        "lf": text,
        "crlf": text.replace("\n", "\r\n"),
        "cr": text.replace("\n", "\r"),
        "mixed": "".join(
            line + ["\r\n", "\r", "\u2028", "\n"][i % 4] for i, line in enumerate(text.split("\n"))
        ),
        "nfd": unicodedata.normalize("NFD", text),
        "nfd-crlf": unicodedata.normalize("NFD", text).replace("\n", "\r\n"),
    }
    jobs_by_name = {}
    for name, variant in variants.items():
        path = tmp_path / f"{name}.txt"
        path.write_bytes(variant.encode())
        jobs_by_name[name] = prepare(path)
    reference = jobs_by_name["lf"]
    for name, job in jobs_by_name.items():
        assert job.tokenizer.chars == reference.tokenizer.chars, name
        if name != "mixed":  # the mixed file has one more line ending at its end
            assert (job.train_ids == reference.train_ids).all(), name


# ---------------------------------------------------------------------------- 6. large files


def test_case6_a_50_mb_single_line_file_loads_and_tokenizes_in_bounded_memory(tmp_path, small_text):
    line = small_text.replace("\n", " ").encode()
    path = tmp_path / "one-line.txt"
    with open(path, "wb") as f:
        for _ in range(50 * 2**20 // len(line) + 1):
            f.write(line)
    size = path.stat().st_size
    script = textwrap.dedent(f"""
        import json
        from lmcore.text import corpus, tokenizers
        c = corpus.load({str(path)!r})
        ids = tokenizers.train("char", c.text).encode(c.text)
        # VmHWM, this process's own peak: getrusage's maxrss would include the peak of the
        # (large) test process this one was forked from, which Linux carries across exec
        hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
        print(json.dumps({{"chars": len(c.text), "tokens": len(ids), "peak": int(hwm) * 1024}}))
    """)
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["chars"] == result["tokens"] and size / 1.1 < result["chars"] <= size
    # bytes, the text, its normalized copy and 4-byte ids: about 8x; never the 30-200x of
    # holding every piece of the line as a Python object
    assert result["peak"] < 14 * size, (
        f"peak {result['peak'] / 2**20:.0f} MB for a {size / 2**20:.0f} MB file"
    )


def test_case6_bpe_works_on_a_long_line_in_pieces_with_the_same_result():
    text = "word " * 200_000 + "中文字符" * 50_000  # 1.2 M characters, one line
    pieces = list(tokenizers._pieces(text))
    assert "".join(pieces) == text
    assert len(pieces) > 1 and max(len(p) for p in pieces) <= tokenizers.PIECE_CHARS
    tok = tokenizers.train("bpe", text[:300_000] + text[-100_000:])
    whole = tok._tok.encode(text).ids  # the library on the whole line at once
    assert tok.encode(text).tolist() == whole
    assert tok.decode(tok.encode(text)) == text


def test_case6_files_over_the_limit_are_refused_before_they_are_read(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "MAX_BYTES", 1000)
    path = tmp_path / "big.txt"
    path.write_bytes(b"a" * 1001)
    read = []
    monkeypatch.setattr(Path, "read_bytes", lambda self: read.append(self) or b"")
    with pytest.raises(LMError, match="the limit is"):
        corpus.load(str(path))
    assert not read  # refused from its size alone
    with pytest.raises(LMError, match="the limit is"):
        corpus.decode_bytes(b"a" * 1001)


def test_case6_the_upload_limit_is_set_in_the_server_config():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    limit = config["server"]["maxUploadSize"]
    assert isinstance(limit, int) and 1 <= limit <= corpus.MAX_BYTES // 2**20


# ---------------------------------------------------------------------------- 7. generation input


def test_case7_generation_input_is_validated_or_reported(tiny_run):
    runs_dir = tiny_run.parent
    gen = lambda *a: lmcore("generate", "--run", tiny_run.name, *a, runs_dir=runs_dir)  # noqa: E731
    # One generation (each loads TensorFlow): an empty prompt, greedy, a fallback said on stderr.
    empty = gen("--prompt", "", "--temperature", "0", "--length", "5")
    assert empty.returncode == 0 and "note: empty prompt" in empty.stderr, empty.stderr
    # Refused before anything loads: one line each.
    assert_one_line_error(gen("--prompt", "x", "--temperature", "-1"), "temperature")
    assert_one_line_error(gen("--prompt", "x", "--temperature", "inf"), "finite")
    assert_one_line_error(gen("--prompt", "x", "--top-p", "1.5"), "top-p")
    assert_one_line_error(gen("--prompt", "x", "--length", "10000000"), "length")
    assert_one_line_error(gen("--prompt", "x", "--length", "0"), "at least 1")


def generate_on_the_page(at: AppTest, prompt: str) -> AppTest:
    widget(at.text_area, "Prompt").set_value(prompt)
    widget(at.button, "Generate").click().run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_case7_the_generate_page_bounds_its_inputs_and_survives_odd_prompts(tiny_run):
    at = open_page("generate", tiny_run.parent)
    assert widget(at.slider, "Temperature").min == 0  # 0 = greedy; below it cannot be chosen
    assert widget(at.number_input, "Length (tokens)").max <= 100_000
    for prompt in ("", "\u2603\u2604 unknown to the vocabulary"):
        generate_on_the_page(at, prompt)
        assert any(c.value.startswith("Sampled:") for c in at.caption), prompt


def test_case7_the_generate_page_says_what_it_did_with_the_prompt(tiny_run):
    at = generate_on_the_page(open_page("generate", tiny_run.parent), "")
    assert any("empty prompt" in i.value for i in at.info), [i.value for i in at.info]
    generate_on_the_page(at, "\u2603 snow")
    assert any("not in the vocabulary were dropped" in i.value for i in at.info), [i.value for i in at.info]


# ---------------------------------------------------------------------------- 8. divergence


@pytest.mark.slow  # trains for real
def test_case8_a_loss_that_becomes_nan_fails_the_run_and_keeps_the_last_good_checkpoint(small_file, tmp_path):
    from lmcore.nn import models

    # A sane rate for 20 steps (a checkpoint at step 20), then 1e12 times larger.
    job = prepare(
        small_file,
        steps=60,
        optimizer="sgd",
        lr=0.05,
        clipnorm=0.0,
        schedule="exponential",
        decay_steps=20,
        decay_rate=1e12,
        staircase=True,
    )
    result = lm.start(job, tmp_path)
    run_dir = Path(result["run_dir"])
    assert result["status"] == "failed"
    assert "loss became" in result["message"] and "lower the learning rate" in result["message"]
    status = runs.read_status(run_dir)
    assert status["status"] == "failed" and status["message"] == result["message"]
    steps = [m["step"] for m in runs.read_jsonl(run_dir / "metrics.jsonl")]
    assert steps == [0, 10, 20]  # it stopped in the first interval that went bad
    model = models.load_model(runs.checkpoint(run_dir))
    assert int(model.optimizer.iterations.numpy()) == 20
    assert all(np.isfinite(w).all() for w in model.get_weights())
    proc = lmcore("generate", "--run", run_dir.name, "--length", "5", "--seed", "1", runs_dir=tmp_path)
    assert proc.returncode == 0, proc.stderr  # the last good checkpoint still generates


@pytest.mark.slow  # trains for real
def test_case8_the_cli_reports_a_diverging_run_as_failed(small_file, tmp_path):
    args = ["--steps", "20", *FAST, "--optimizer", "sgd", "--lr", "1e12", "--clipnorm", "0", "--json"]
    proc = lmcore("train", "--corpus", str(small_file), *args, runs_dir=tmp_path / "runs")
    assert proc.returncode == 1
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["status"] == "failed" and "loss became" in result["message"]


# ---------------------------------------------------------------------------- 9. killed mid-write

# Runs the CLI with runs.atomic_write slowed for the second last.keras: the file is written,
# cut to half its size as if the write were still going, and the process then waits to be
# killed. Without the temporary name, the final name would now hold half a checkpoint.
KILL_DURING_CHECKPOINT = """
import sys, time
from pathlib import Path
from lmcore import runs

original, seen = runs.atomic_write, []

def slow(path, write):
    if path.name != "last.keras":
        return original(path, write)
    if not seen:  # the first checkpoint is written whole
        seen.append(path)
        return original(path, write)

    def half_written(tmp):
        write(tmp)
        with open(tmp, "r+b") as f:
            f.truncate(tmp.stat().st_size // 2)
        Path(sys.argv[1]).write_text(str(tmp))
        time.sleep(600)

    return original(path, half_written)

runs.atomic_write = slow
from lmcore.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow  # trains for real
def test_case9_sigkill_during_a_checkpoint_write_loses_nothing(small_file, tmp_path):
    from lmcore.nn import models

    runs_dir, marker = tmp_path / "runs", tmp_path / "writing"
    args = ["train", "--corpus", str(small_file), "--steps", "60", *FAST, "--eval-every", "20"]
    child = subprocess.Popen(
        [sys.executable, "-c", KILL_DURING_CHECKPOINT, str(marker), *args, "--run-id", "victim"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 240
    while not marker.exists() and child.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert marker.exists(), child.stderr.read() if child.poll() is not None else "no checkpoint write"
    child.send_signal(signal.SIGKILL)
    child.wait()
    run_dir = runs_dir / "victim"
    partial = Path(marker.read_text())

    assert partial.exists() and partial.name != "last.keras" and partial.name.startswith(".")
    model = models.load_model(runs.checkpoint(run_dir))  # the previous checkpoint, whole
    assert int(model.optimizer.iterations.numpy()) == 20
    assert runs.read_status(run_dir)["status"] == "interrupted"
    assert [m["step"] for m in runs.read_jsonl(run_dir / "metrics.jsonl")] == [0, 10, 20, 30]

    before = (run_dir / "config.json").read_text()
    for flag, value in (("--lr", "0.5"), ("--batch-size", "64"), ("--model", "nano")):
        proc = lmcore("train", "--resume", "victim", flag, value, runs_dir=runs_dir)
        assert_one_line_error(proc, f"drop {flag}")
    assert (run_dir / "config.json").read_text() == before
    at = open_page("runs", runs_dir)
    assert at.dataframe[0].value.set_index("run").loc["victim", "status"] == "interrupted"

    proc = lmcore("train", "--resume", "victim", "--json", runs_dir=runs_dir)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["status"] == "completed"
    metrics = runs.read_jsonl(run_dir / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [0, 10, 20, 30, 40, 50, 60]  # one continuous curve
    times = [m["time"] for m in metrics]
    assert times == sorted(times)
    assert not partial.exists()  # the half-written file is cleared on resume
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.keras", "last.keras"]


# ---------------------------------------------------------------------------- 11. out of memory


def test_case11_the_estimate_counts_parameters_exactly():
    import keras

    from lmcore.nn import models
    from lmcore.nn.config import MODEL_NAMES, make_config

    for name in MODEL_NAMES:
        config = make_config(name, vocab_size=97)
        model = models.build_model(config)
        assert device.parameter_count(config) == model.count_params(), name
        keras.backend.clear_session()


@pytest.mark.parametrize(
    "args",
    [
        ["--model", "nano", "--batch-size", "10000000"],
        ["--model", "tiny", "--n-embd", "400000", "--n-head", "2"],
        ["--model", "small", "--batch-size", "4096", "--block-size", "1024"],
    ],
)
def test_case11_absurd_sizes_are_refused_up_front_with_an_estimate(small_file, tmp_path, args):
    runs_dir = tmp_path / "runs"
    proc = lmcore("train", "--corpus", str(small_file), "--steps", "2", *args, runs_dir=runs_dir, timeout=120)
    assert_one_line_error(proc, "needs about", "GB", "more than the")
    assert not runs_dir.exists()


def test_case11_the_train_page_refuses_an_absurd_batch_and_stays_usable(tmp_path):
    at = open_page("train", tmp_path / "runs")
    widget(at.selectbox, "Model").set_value("small").run()
    widget(at.number_input, "Batch size").set_value(1024).run()
    widget(at.number_input, "Block size").set_value(1024).run()
    assert not at.exception
    assert any("needs about" in e.value and "lower the batch size" in e.value for e in at.error)
    assert widget(at.button, "Start training").disabled
    widget(at.number_input, "Batch size").set_value(8).run()
    widget(at.number_input, "Block size").set_value(64).run()
    assert not at.error and not widget(at.button, "Start training").disabled
    assert any("Training needs about" in c.value for c in at.caption)


@pytest.mark.slow  # trains for real
def test_case11_running_out_of_memory_anyway_is_caught_and_explained(small_file, tmp_path):
    """The estimate passes; a 3 GB address-space limit then makes TensorFlow's allocation fail."""
    args = ["--steps", "2", "--model", "tiny", "--batch-size", "500", "--block-size", "256"]
    args += ["--log-every", "1", "--eval-batches", "1", "--sample-length", "0", "--json"]
    m = make_train_config("tiny", batch_size=500)
    from lmcore.nn.config import make_config

    need = device.estimate_memory(make_config("tiny", vocab_size=100, block_size=256), m)["total_bytes"]
    if need > device.available_memory()[0]:
        pytest.skip("this machine has too little memory for the estimate to let the run start")
    limit = 3 * 2**30
    assert need > limit  # so the allocation must fail under the limit
    proc = subprocess.run(
        [sys.executable, "-m", "lmcore", "train", "--corpus", str(small_file), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT), "LMLAB_RUNS_DIR": str(tmp_path / "runs")},
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)),
    )
    assert "Traceback" not in proc.stderr
    assert proc.returncode != 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    status = runs.read_status(run_dir)
    assert status["status"] == "failed"
    assert status["message"].startswith("out of memory") and "lower the batch size" in status["message"]


# ---------------------------------------------------------------------------- 12. the job queue


def test_case12_the_job_limit_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("LMLAB_MAX_JOBS", "3")
    assert queue.max_jobs() == 3
    monkeypatch.delenv("LMLAB_MAX_JOBS")
    assert queue.max_jobs() == max(1, len(os.sched_getaffinity(0)) // 2)
    for bad in ("0", "-2", "many"):
        monkeypatch.setenv("LMLAB_MAX_JOBS", bad)
        with pytest.raises(LMError, match="LMLAB_MAX_JOBS"):
            queue.max_jobs()


@pytest.mark.slow  # trains for real
def test_case12_jobs_beyond_the_limit_queue_and_start_when_a_slot_frees(small_file, tmp_path, monkeypatch):
    monkeypatch.setenv("LMLAB_MAX_JOBS", "1")
    root = tmp_path / "runs"
    args = ["--corpus", str(small_file), "--steps", "10", *FAST]
    first = queue.launch(root, cli.spec_from_argv(["train", *args]), "first", "tiny")
    second = queue.launch(root, cli.spec_from_argv(["train", *args, "--batch-size", "4"]), "second", "tiny")
    assert queue.active(root) == [first] and queue.queued(root) == [second]
    # The finishing job starts the next one itself: nobody polls jobs.state here.
    deadline = time.time() + 240
    while not (root / second / "status.json").is_file() and time.time() < deadline:
        time.sleep(0.2)
    assert runs.read_status(root / first)["status"] == "completed", queue.log_tail(root, first)
    assert queue.queued(root) == []
    while queue.active(root) and time.time() < deadline:
        time.sleep(0.2)
    assert queue.state(root, second)["status"] == "completed", queue.log_tail(root, second)
    configs = [runs.read_json(root / r / "config.json")["train"]["batch_size"] for r in (first, second)]
    assert configs == [8, 4]  # each job kept its own settings


def test_case12_simultaneous_submissions_respect_the_limit_and_can_be_cancelled(tmp_path, monkeypatch):
    monkeypatch.setenv("LMLAB_MAX_JOBS", "1")
    root = tmp_path / "runs"
    args = ["--corpus", "builtin:markov", "--steps", "100000", *FAST]
    ids = []
    threads = [
        threading.Thread(
            target=lambda n=n: ids.append(
                queue.launch(root, cli.spec_from_argv(["train", *args]), f"job{n}", "tiny")
            )
        )
        for n in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(queue.active(root)) == 1 and len(queue.queued(root)) == 3
    running, *waiting = queue.active(root) + queue.queued(root)
    states = [queue.state(root, w) for w in waiting]
    assert [s["status"] for s in states] == ["queued"] * 3
    assert [s["position"] for s in states] == [1, 2, 3] and states[0]["slots"] == 1
    queue.stop(root, waiting[0])  # cancel one in the queue
    assert queue.queued(root) == waiting[1:]
    assert queue.state(root, waiting[0])["message"] == "cancelled while waiting in the queue"
    for w in waiting[1:]:
        queue.stop(root, w)
    queue.stop(root, running)
    deadline = time.time() + 120
    while queue.active(root) and time.time() < deadline:
        time.sleep(0.2)
    assert queue.active(root) == [] and queue.queued(root) == []
    assert not any((root / w).exists() for w in waiting)


# ---------------------------------------------------------------------------- 15. paths and models


@pytest.mark.parametrize("bad", ["../../x", "/etc/passwd", "a\x00b", "..", "x/../../y", ".jobs"])
def test_case15_run_ids_cannot_leave_the_runs_directory(tmp_path, bad):
    for call in (
        lambda: runs.check_run_id(bad),
        lambda: runs.create(tmp_path, bad),
        lambda: queue.state(tmp_path, bad),
        lambda: queue.stop(tmp_path, bad),
        lambda: queue.log_path(tmp_path, bad),
        lambda: queue.submit(tmp_path, bad, ["runs"]),
    ):
        with pytest.raises(LMError):
            call()
    assert not (tmp_path / ".." / "x").exists() and list(tmp_path.iterdir()) in ([], [tmp_path / ".jobs"])


def test_case15_the_cli_validates_run_ids_and_names(tiny_run, tmp_path):
    runs_dir = tmp_path / "runs"
    for flag in ("--run-id", "--resume"):
        proc = lmcore("train", flag, "../../escaped", "--steps", "2", *FAST, runs_dir=runs_dir)
        assert_one_line_error(proc)
    assert_one_line_error(lmcore("generate", "--run", "../../etc", runs_dir=runs_dir), "no run")
    assert_one_line_error(lmcore("generate", "--run", "/etc", runs_dir=runs_dir), "no run")
    proc = lmcore(
        "train", "--corpus", "builtin:markov", "--steps", "1", *FAST, "--name", "../../../evil/x", "--json",
        runs_dir=runs_dir,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    run_id = json.loads(proc.stdout.splitlines()[-1])["run_id"]
    assert (runs_dir / run_id).is_dir() and "/" not in run_id and ".." not in run_id
    assert not (tmp_path / "evil").exists()


def test_case15_uploads_are_saved_inside_the_runs_directory_under_a_safe_name(tmp_path, monkeypatch):
    monkeypatch.setenv("LMLAB_RUNS_DIR", str(tmp_path / "runs"))
    from dashboard import sources

    uploads = (tmp_path / "runs").resolve() / ".uploads"
    for name in ("../../../etc/passwd", "/abs/name.txt", "a\x00b.txt", "..", "<script>.md", "x.keras"):
        path = sources.upload_path(name.encode(), name)
        assert path.parent.parent == uploads, (name, path)
        assert path.suffix in (".txt", ".md") and "\x00" not in path.name and not path.name.startswith(".")


def test_case15_checkpoints_load_in_safe_mode_so_a_planted_lambda_never_runs(tmp_path, monkeypatch):
    import keras

    from lmcore.nn import models

    ran = tmp_path / "code-ran"
    monkeypatch.setenv("LMLAB_TEST_MARKER", str(ran))
    # A layer that writes a file whenever Keras builds or calls it: code inside a "checkpoint".
    planted = lambda x: x + len(open(__import__("os").environ["LMLAB_TEST_MARKER"], "w").name) * 0  # noqa: E731
    path = tmp_path / "last.keras"
    keras.Sequential([keras.Input((1,)), keras.layers.Lambda(planted)]).save(path)
    ran.unlink()  # building the model ran it once, here
    with pytest.raises(LMError, match="(?i)cannot load the checkpoint .*(lambda|unsafe|safe_mode)"):
        models.load_model(path)
    assert not ran.exists()
    keras.models.load_model(path, safe_mode=False)  # the control: without safe mode, it runs
    assert ran.exists()


def test_case15_no_page_accepts_a_model_file():
    for page in (ROOT / "pages").glob("*.py"):
        for node in ast.walk(ast.parse(page.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "file_uploader":
                kinds = next(k.value for k in node.keywords if k.arg == "type")
                accepted = {elt.value for elt in kinds.elts}
                assert accepted <= {"txt", "md", "csv"}, (page.name, accepted)


# ---------------------------------------------------------------------------- 16-17. no code from users

UNSAFE = (
    "unsafe_allow_html",
    "eval(",
    "exec(",
    "pickle",
    "marshal",
    "safe_mode=False",
    "allow_pickle=True",
    "shell=True",
    "__import__",
    "yaml.load(",
    "os.system",
)


def test_case16_17_no_unsafe_html_and_no_user_code_is_ever_executed():
    files = [ROOT / "app.py", *(ROOT / "pages").glob("*.py"), *(ROOT / "lmcore").glob("*.py")]
    for path in files:
        source = path.read_text(encoding="utf-8")
        for bad in UNSAFE:
            assert bad not in source, f"{bad} in {path.relative_to(ROOT)}"


def test_case17_xsrf_protection_stays_on():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert config["server"]["enableXsrfProtection"] is True
    assert config["server"].get("enableCORS", True) is True


def test_case16_text_shown_by_the_app_is_escaped_for_markdown():
    from dashboard import fmt

    shown = fmt.plain("<img src=x onerror=alert(1)> [a](javascript:alert(1)) ![i](http://x/i.png) $x$")
    # every character Markdown or HTML would act on is escaped: none stands without a backslash
    assert not re.search(r"(?<!\\)[<>\[\]()!$:]", shown), shown
    assert (
        shown.replace("\\", "")
        == "<img src=x onerror=alert(1)> [a](javascript:alert(1)) ![i](http://x/i.png) $x$"
    )


def test_case1_the_train_pages_length_check_splits_like_the_trainer():
    # the Train page's early length check uses data.split on a range: same sizes as on ids
    for n in (100, 1000, 1234):
        a, b = windows.split(range(n))
        x, y = windows.split(np.arange(n))
        assert (len(a), len(b)) == (len(x), len(y))


# ---------------------------------------------------------------------------- 14. memory over cycles


def test_case14_loading_and_generating_again_and_again_keeps_the_servers_memory_level(tiny_run):
    """The dashboard's model loader, as a server uses it: a new checkpoint each time (the
    cache keeps four), a generation from each. XLA-compiled decoding loops stayed in
    TensorFlow's cache for good (+20 MB per nano load); the server decodes without XLA."""
    import gc

    from dashboard import loaders
    from lmcore.generation import decoding

    def rss_mb() -> float:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    sizes = []
    for i in range(12):
        logits_fn, tok, _ = loaders.generator(str(tiny_run), "last", float(i))  # as if rewritten
        list(decoding.stream(logits_fn, tok, "The ", 40, decoding.SamplingOptions(0.8, seed=i)))
        del logits_fn
        gc.collect()
        sizes.append(rss_mb())
    growth = sizes[-1] - sizes[3]  # after the cache has filled
    print(f"\nRSS after each load and generation (MB): {[round(s) for s in sizes]}")
    assert growth < 25, f"memory grew {growth:.0f} MB over 8 loads: {[round(s) for s in sizes]}"
