"""Job specs: what a training command runs, as typed records the command line, the job layer
and the pages share.

The command line parses its options into one of these (:func:`lmcore.cli.spec_from_argv`); a
page builds one from its widgets; the job layer keeps it as JSON beside the job, and the
job's child rebuilds it and runs it with the command line's own code
(``python -m lmcore run SPEC.json``). So a page never writes a command line, and a job runs
exactly what the command would. :func:`execute` is that code. Importing this module loads no
TensorFlow; running a spec does.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from lmcore import LMError, public, runs
from lmcore.config import DataConfig, TrainConfig, train_config_from_dict


@dataclass
class TrainSpec:
    """``python -m lmcore train``: a new language-model run."""

    model: str  # a preset name
    data: DataConfig
    train: TrainConfig  # the preset's recipe with the user's changes
    block_size: int | None = None  # None = the preset's
    model_overrides: dict = field(default_factory=dict)  # dropout, n_layer, n_head, n_embd
    epochs: float | None = None  # when given, the steps come from the training tokens
    name: str | None = None  # a label for the run id
    run_id: str | None = None  # the exact id (the job layer chooses it in advance)
    strategy: str = "auto"

    kind = "train"

    def label(self) -> str:
        return self.name or self.model

    @property
    def steps(self) -> int | None:
        return None if self.epochs is not None else self.train.steps


@dataclass
class ResumeSpec:
    """``python -m lmcore train --resume RUN [--steps N]``."""

    run: str  # a run id or folder
    steps: int | None = None  # a new total, to extend a finished run
    strategy: str = "auto"

    kind = "resume"

    @property
    def run_id(self) -> str:
        return self.run


@dataclass
class FinetuneSpec:
    """``python -m lmcore finetune``: a child language model of a trained run on new text."""

    parent: str
    corpus: str
    text_column: str | None = None
    freeze: int | str = 0  # bottom blocks frozen with the embeddings, or "all"
    drop_top: int = 0
    add_layers: int = 0
    overrides: dict = field(default_factory=dict)  # TrainConfig fields (lr, steps, seed, ...)
    scratch: bool = False  # the same network and tokenizer, untrained (a baseline)
    name: str | None = None
    run_id: str | None = None

    kind = "finetune"

    def label(self) -> str:
        return self.name or "ft"

    @property
    def steps(self) -> int | None:
        return self.overrides.get("steps")


@dataclass
class ClassifySpec:
    """``python -m lmcore classify train``: a classifier on a trained run's body."""

    parent: str
    data: str  # builtin:reviews, keras:imdb or a CSV file
    text_column: str = "text"
    label_column: str = "label"
    freeze: int | str = 0
    drop_top: int = 0
    add_layers: int = 0
    overrides: dict = field(default_factory=dict)  # TrainConfig fields (lr, steps, seed, ...)
    scratch: bool = False
    name: str | None = None
    run_id: str | None = None

    kind = "classify"

    def label(self) -> str:
        return self.name or "classify"

    @property
    def steps(self) -> int | None:
        return self.overrides.get("steps")


@dataclass
class CompareSpec:
    """``python -m lmcore classify compare`` (``task="classify"``) or ``compare`` (``"lm"``)."""

    task: str  # "classify" or "lm"
    parent: str
    target: str  # labeled data (classify) or the new text (lm)
    text_column: str = "text"
    label_column: str = "label"
    steps: int | None = None  # per run (None = the task's default)
    seeds: int = 3
    eval_every: int | None = None
    compare_id: str | None = None

    kind = "compare"

    def label(self) -> str:
        return "compare"

    @property
    def run_id(self) -> str | None:
        return self.compare_id


Spec = TrainSpec | ResumeSpec | FinetuneSpec | ClassifySpec | CompareSpec
KINDS = {cls.kind: cls for cls in (TrainSpec, ResumeSpec, FinetuneSpec, ClassifySpec, CompareSpec)}


def with_id(spec: Spec, job_id: str) -> Spec:
    """``spec`` naming ``job_id`` as the run (or comparison) it makes."""
    if isinstance(spec, ResumeSpec):
        return replace(spec, run=job_id)
    if isinstance(spec, CompareSpec):
        return replace(spec, compare_id=job_id)
    return replace(spec, run_id=job_id)


def to_json(spec: Spec) -> dict:
    return {"kind": spec.kind, **asdict(spec)}


def from_json(data: dict) -> Spec:
    """The spec a job saved (unknown fields are refused: a spec comes from this version)."""
    data = dict(data)
    cls = KINDS.get(data.pop("kind", None))
    if cls is None:
        raise LMError(f"not a job spec: {sorted(data)}")
    known = {f.name for f in fields(cls)}
    if set(data) - known:
        raise LMError(f"unknown {cls.kind} job settings: {', '.join(sorted(set(data) - known))}")
    if cls is TrainSpec:
        data["data"] = DataConfig(**data["data"])
        data["train"] = train_config_from_dict(data["train"])
    return cls(**data)


def save(spec: Spec, path: Path) -> None:
    runs.write_json(path, to_json(spec))


def load(path: Path) -> Spec:
    try:
        return from_json(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise LMError(f"cannot read the job spec {path}: {err}") from None


# ------------------------------------------------------------------ running a spec: the command line's code


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


def _run_train(spec: TrainSpec, root, limits, as_json: bool) -> int:
    from lmcore import device, train

    _new_id(root, spec.run_id)
    job = train.prepare(
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
    device.import_tensorflow()
    result = train.start(
        job, root, spec.name, Progress(job.train.steps), run_id=spec.run_id, strategy=spec.strategy
    )
    return _report(result, as_json)


def _run_resume(spec: ResumeSpec, root, limits, as_json: bool) -> int:
    from lmcore import device, train

    run_dir = runs.resolve(spec.run, root)
    total = spec.steps or runs.read_record(run_dir).train.steps
    limits.check_steps(total)
    device.import_tensorflow()
    return _report(train.resume(run_dir, spec.steps, Progress(total), spec.strategy), as_json)


def _run_finetune(spec: FinetuneSpec, root, limits, as_json: bool) -> int:
    from lmcore import device, finetune

    _new_id(root, spec.run_id)
    parent = finetune.load_parent(spec.parent, root)
    s = finetune.surgery(parent.model_config, spec.freeze, spec.drop_top, spec.add_layers)
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
    device.import_tensorflow()
    result = finetune.start(
        parent, job, record, root, spec.name, Progress(job.train.steps), spec.run_id, spec.scratch
    )
    return _report(result, as_json)


def _run_classify(spec: ClassifySpec, root, limits, as_json: bool) -> int:
    from lmcore import classify, device, finetune, labeled

    _new_id(root, spec.run_id)
    parent = finetune.load_parent(spec.parent, root)
    s = finetune.surgery(parent.model_config, spec.freeze, spec.drop_top, spec.add_layers)
    kept = parent.model_config.n_layer - s.drop_top
    config = classify.train_config_for(
        parent.train_config(), spec.scratch, s.freeze == kept and s.add_layers == 0, **spec.overrides
    )
    limits.check_steps(config.steps)
    data = labeled.load_labeled(spec.data, spec.text_column, spec.label_column)
    device.import_tensorflow()
    result = classify.train(
        parent, data, s, config, root, spec.name, spec.run_id, Progress(config.steps), spec.scratch
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
    from lmcore import classify, compare, finetune, labeled

    parent = finetune.load_parent(spec.parent, root)
    if spec.task == "classify":
        limits.check_steps(spec.steps or classify.DEFAULT_STEPS)
        data = labeled.load_labeled(spec.target, spec.text_column, spec.label_column)
        table = compare.compare_classifiers(
            parent, data, root, spec.steps, spec.seeds, spec.compare_id, _compare_listener
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
        )
    return _print_comparison(table, as_json)


RUNNERS = {
    "train": _run_train,
    "resume": _run_resume,
    "finetune": _run_finetune,
    "classify": _run_classify,
    "compare": _run_compare,
}


def execute(spec: Spec, runs_dir=None, as_json: bool = False) -> int:
    """Run a job spec as its command would, within the caps this process was given; prints
    progress on stderr and the result on stdout (the last line: one JSON object with
    ``as_json``). Returns the exit status."""
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
