"""Running a job spec: the command line's code for every training command.

``python -m lmcore train ...`` (and ``finetune``, ``classify train``, ``compare``) parse their
options into a :mod:`lmcore.jobs.specs` record and :func:`execute` runs it; a background job
runs the record it saved through the same function (``python -m lmcore run SPEC.json``). The
caps of a shared server arrive here once, from the environment the job layer gave the
process (:meth:`lmcore.jobs.public.Limits.from_env`), and are handed to the trainers.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

from lmcore import LMError, device, runs, xla_cache
from lmcore.experiments import compare
from lmcore.jobs import public, specs
from lmcore.jobs.specs import ClassifySpec, CompareSpec, FinetuneSpec, ResumeSpec, Spec, TrainSpec
from lmcore.text import labeled
from lmcore.training import classify, finetune, lm, lmdata, transfer


class Progress:
    """Reports training on stderr: Keras' progress bar on a terminal, plain lines otherwise."""

    def __init__(self, total: int, stream=sys.stderr):
        self.total, self.stream = total, stream
        self.bar = None
        if stream.isatty():
            import keras

            self.bar = keras.utils.Progbar(total, stateful_metrics=["loss", "val_loss", "speed"])
        self.val = None

    def __call__(self, event: str, record: dict) -> None:
        if event == "start":
            where = record.get("device") or f"resumed at step {record.get('resumed_from')}"
            self._line(f"run {record['run_id']} ({where})")
        elif event == "log":
            self.val = record.get("val_loss", self.val)
            self._progress(record)
        elif event == "sample" and self.bar is None:
            self._line(f"sample at step {record['step']}: {record['text'][:80]!r}")

    def _progress(self, r: dict) -> None:
        if "loss" not in r:  # step 0: the untrained model's validation only
            self._line(
                f"step 0/{self.total} val {r['val_loss']:.3f} (untrained)"
            ) if self.bar is None else None
            return
        speed = r.get("tokens_per_s", r.get("examples_per_s"))
        if self.bar is not None:
            values = [
                ("loss", r["loss"]),
                *([("val_loss", self.val)] if self.val is not None else []),
                ("speed", speed),
            ]
            with contextlib.redirect_stdout(self.stream):  # Keras prints to stdout; ours is for results
                self.bar.update(r["step"], values)
            return
        val = f" val {self.val:.3f}" if self.val is not None else ""
        self._line(f"step {r['step']}/{self.total} loss {r['loss']:.3f}{val} {speed:,.0f}/s")

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()


def _report(result: dict, as_json: bool) -> int:
    val = result.get("val_loss")
    line = f"run {result['run_id']} {result['status']} after {result['steps']} steps"
    line += f": val_loss {val:.4f}" if val is not None else ""
    if result.get("message"):
        line += f" ({result['message']})"
    print(json.dumps(result, ensure_ascii=False) if as_json else line)
    return 1 if result["status"] == "failed" else 0


def _notes(notes) -> None:
    for note in notes:  # what decoding did (an encoding guessed, bad bytes replaced, XLA off)
        print(f"note: {note}", file=sys.stderr)


def _new_id(root, run_id: str | None) -> None:
    if run_id:
        runs.check_run_id(run_id)
        if (root / run_id).exists():
            raise LMError(f"a run named {run_id!r} already exists in {root}")


def phase(what: str) -> None:
    """Say what a job is doing before its run folder exists, in the job's log, where the
    dashboard's live view reads it (``phase: ...`` lines; only inside a job)."""
    if os.environ.get("LMLAB_JOB_PHASES"):
        print(f"phase: {what}", file=sys.stderr, flush=True)


def _start_tensorflow() -> None:
    phase("starting TensorFlow")
    device.import_tensorflow()


def _run_train(spec: TrainSpec, root, limits, as_json: bool) -> int:
    _new_id(root, spec.run_id)
    phase("loading the corpus")
    job = lmdata.prepare(
        spec.model,
        spec.data,
        spec.train,
        spec.block_size,
        spec.model_overrides,
        progress=_download_progress(),
        epochs=spec.epochs,
    )
    _notes(job.notes)
    limits.check_steps(job.train.steps)  # a shared server's cap, once epochs are steps
    _start_tensorflow()
    progress = Progress(job.train.steps)
    result = lm.start(
        job, root, spec.name, progress, run_id=spec.run_id, strategy=spec.strategy, limits=limits
    )
    return _report(result, as_json)


def _run_resume(spec: ResumeSpec, root, limits, as_json: bool) -> int:
    run_dir = runs.resolve(spec.run, root)
    total = spec.steps or runs.read_record(run_dir).train.steps
    limits.check_steps(total)
    _start_tensorflow()
    return _report(lm.resume(run_dir, spec.steps, Progress(total), spec.strategy, limits), as_json)


def _run_finetune(spec: FinetuneSpec, root, limits, as_json: bool) -> int:
    _new_id(root, spec.run_id)
    parent = transfer.load_parent(spec.parent, root)
    s = transfer.surgery(parent.model_config, spec.freeze, spec.drop_top, spec.add_layers)
    train_config = finetune.train_config_for(parent.train_config(), **spec.overrides)
    limits.check_steps(train_config.steps)
    job, record = finetune.prepare(parent, spec.corpus, s, train_config, spec.text_column)
    oov = record["oov"]
    if oov["unknown"]:
        shown = ", ".join(f"{k!r} x{v}" for k, v in oov["examples"][:5])
        _notes(
            [
                f"{oov['unknown']:,} token(s) of the new text ({oov['distinct']} distinct) are not in "
                f"the parent's vocabulary and are {oov['handling']}: {shown}"
            ]
        )
    _start_tensorflow()
    progress = Progress(job.train.steps)
    result = lm.start_child(
        parent, job, record, root, spec.name, progress, spec.run_id, spec.scratch, limits=limits
    )
    return _report(result, as_json)


def _run_classify(spec: ClassifySpec, root, limits, as_json: bool) -> int:
    _new_id(root, spec.run_id)
    parent = transfer.load_parent(spec.parent, root)
    s = transfer.surgery(parent.model_config, spec.freeze, spec.drop_top, spec.add_layers)
    kept = parent.model_config.n_layer - s.drop_top
    config = classify.train_config_for(
        parent.train_config(), spec.scratch, s.freeze == kept and s.add_layers == 0, **spec.overrides
    )
    limits.check_steps(config.steps)
    data = labeled.load_labeled(spec.data, spec.text_column, spec.label_column)
    _start_tensorflow()
    progress = Progress(config.steps)
    result = classify.train(
        parent, data, s, config, root, spec.name, spec.run_id, progress, spec.scratch, limits=limits
    )
    if as_json:
        print(json.dumps(result, ensure_ascii=False))
    elif result.get("accuracy") is not None:
        print(
            f"run {result['run_id']} {result['status']}: held-out accuracy {result['accuracy']:.3f}, "
            f"macro-F1 {result['macro_f1']:.3f} on {result['test_examples']} examples"
        )
    else:
        print(f"run {result['run_id']} {result['status']} ({result.get('message')})")
    return 1 if result["status"] == "failed" else 0


def _run_compare(spec: CompareSpec, root, limits, as_json: bool) -> int:
    parent = transfer.load_parent(spec.parent, root)
    if spec.task == "classify":
        limits.check_steps(spec.steps or classify.DEFAULT_STEPS)
        data = labeled.load_labeled(spec.target, spec.text_column, spec.label_column)
        table = compare.compare_classifiers(
            parent, data, root, spec.steps, spec.seeds, spec.compare_id, _compare_listener, limits
        )
    else:
        limits.check_steps(spec.steps or finetune.DEFAULT_STEPS)
        table = compare.compare_language_models(
            parent,
            spec.target,
            root,
            spec.steps,
            spec.seeds,
            spec.eval_every,
            spec.compare_id,
            _compare_listener,
            limits,
        )
    return _print_comparison(table, as_json)


RUNNERS = {
    "train": _run_train,
    "resume": _run_resume,
    "finetune": _run_finetune,
    "classify": _run_classify,
    "compare": _run_compare,
}


def handed_spec(stream=None) -> Path | None:
    """The warm trainer's wait (``python -m lmcore run -``): TensorFlow and the training code
    imported first, then one line from ``stream`` (stdin) handing over the job: its spec, its
    log (this process's output from then on) and its environment (its caps). None if the
    stream ends first. Its supervisor (:func:`lmcore.jobs.supervisor.spare`) writes the line."""
    xla_cache.enable()  # before TensorFlow starts, as for any job (the imports below start it)
    device.import_tensorflow()
    from lmcore.training import loop  # noqa: F401  # reason: warm = the trainer's imports done before the job

    print(f"waiting for a job (warm trainer, pid {os.getpid()})", file=sys.stderr, flush=True)
    line = (stream or sys.stdin).readline()
    if not line.strip():
        return None
    job = json.loads(line)
    xla_cache.refresh()  # what the server's warm-up compiled while this process waited
    fd = os.open(job["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    for target in (sys.stdout, sys.stderr):
        target.flush()
        os.dup2(fd, target.fileno())
    os.environ.update({str(k): str(v) for k, v in job.get("env", {}).items()})
    return Path(job["spec"])


def execute_file(spec_path: str, runs_dir=None, as_json: bool = False) -> int:
    """``python -m lmcore run SPEC``: run the job spec in file SPEC; ``-`` waits for it
    first, as the dashboard's warm trainer does (:func:`handed_spec`)."""
    path = handed_spec() if spec_path == "-" else Path(spec_path)
    if path is None:
        return 0
    return execute(specs.load(path), runs_dir, as_json)


def execute(spec: Spec, runs_dir=None, as_json: bool = False) -> int:
    """Run a job spec as its command would, within the caps this process was given; prints
    progress on stderr and the result on stdout (the last line: one JSON object with
    ``as_json``). Returns the exit status."""
    xla_cache.enable()  # compiled steps from earlier jobs, before TensorFlow starts
    return RUNNERS[spec.kind](spec, runs.runs_dir(runs_dir), public.Limits.from_env(), as_json)


def _download_progress():
    last = [0.0]

    def report(done: int, total: int | None) -> None:
        now = time.time()
        if now - last[0] < 0.5 and done != total:
            return
        last[0] = now
        of = f" of {total / 2**20:.1f} MB" if total else " MB"
        sys.stderr.write(f"downloading: {done / 2**20:.1f}{of}\n")

    return report


def _compare_listener(event: str, record: dict) -> None:
    if event == "run":
        print(f"{record['variant']} seed {record['seed']}: {record['summary']}", file=sys.stderr, flush=True)


def _print_comparison(table: dict, as_json: bool) -> int:
    if as_json:
        print(json.dumps(table, ensure_ascii=False))
        return 0
    metric = table["metric"]
    print(f"comparison {table['compare_id']} ({metric}, {table['seeds']} seed(s))")
    for row in table["rows"]:
        values = ", ".join(f"{v:.4f}" for v in row["values"])
        print(f"  {row['variant']:<22} mean {row['mean']:.4f} ± {row['std']:.4f}  [{values}]")
    for key, text in table.get("margins", {}).items():
        print(f"  margin {key}: {text}")
    return 0
