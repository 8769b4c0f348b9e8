"""Job specs: what a training command runs, as typed records the command line, the job layer
and the pages share.

The command line parses its options into one of these (:func:`lmcore.cli.spec_from_argv`); a
page builds one from its widgets; the job layer keeps it as JSON beside the job, and the
job's child rebuilds it and runs it with the command line's own code
(``python -m lmcore run SPEC.json``, :func:`lmcore.runner.execute`). So a page never
writes a command line, and a job runs exactly what the command would. These are records
only: nothing here imports training, so what needs a record imports only the record.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from lmcore import LMError, runs
from lmcore.nn.config import DataConfig, TrainConfig, train_config_from_dict


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


def fingerprint(spec: Spec) -> str | None:
    """What makes two new training runs the same run: the corpus, the model and every setting,
    the seed included, but not the run's name or id. An upload counts by its content (its
    folder is named by a hash of it: ``.uploads/<hash>/<name>``). None for other kinds of job."""
    if not isinstance(spec, TrainSpec):
        return None
    source = Path(spec.data.source)
    if "://" not in spec.data.source and source.parent.parent.name == runs.uploads_dir(Path()).name:
        spec = replace(spec, data=replace(spec.data, source=f"upload:{source.parent.name}"))
    same = to_json(replace(spec, name=None, run_id=None))
    return hashlib.sha256(json.dumps(same, sort_keys=True).encode()).hexdigest()


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
