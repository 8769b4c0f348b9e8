"""The command line, ``python -m lmcore``: a contract shared by the app, the tests and benchmarks.

    train     train a model on a corpus (or --resume a run)
    generate  sample text from a run
    runs      list the runs (runs export RUN FILE.zip, runs import FILE.zip: keep a run)
    finetune, classify, compare   adapt a trained run (see the README)
    run       run a job spec: what the dashboard's jobs do
    bench     benchmarks

The training commands parse their options into a job spec and :func:`lmcore.runner.execute`
runs it; ``run SPEC.json`` runs a spec the job layer saved, through the same code. Bad input
ends with one line on stderr (``error: ...``) and exit status 2; a training run that fails
(for example, diverges) ends with status 1. Set ``LMLAB_DEBUG=1`` to see a traceback for
unexpected errors.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

from lmcore import LMError, archive, device, runner, runs, xla_cache
from lmcore.generation import decoding
from lmcore.jobs import specs
from lmcore.nn.config import MODEL_NAMES, OPTIMIZERS, SCHEDULES, DataConfig, make_train_config
from lmcore.text import corpus
from lmcore.training import classify


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        raise LMError(f"{message} (see: {self.prog} --help)")


def _whole(text: str, low: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if low is not None and value < low:
        raise argparse.ArgumentTypeError(f"must be at least {low}, not {value}")
    return value


def _positive_int(text: str) -> int:
    return _whole(text, 1)


def _seed(text: str) -> int:
    value = _whole(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be between 0 and {2**32 - 1}, not {value}")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m lmcore", description="LM Lab's engine: train, generate, runs.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_train_parser(sub)

    g = sub.add_parser("generate", help="sample text from a run")
    g.add_argument("--run", required=True, help="a run id or a run folder")
    g.add_argument("--prompt", default="")
    g.add_argument("--length", type=_positive_int, default=200, help="tokens to generate")
    g.add_argument("--temperature", type=_number, default=0.8, help="0 = greedy")
    g.add_argument("--top-k", type=int, default=0)
    g.add_argument("--top-p", type=_number, default=1.0)
    g.add_argument("--seed", type=_seed)
    g.add_argument("--repetition-penalty", type=_number, default=1.0, help="> 1 discourages repeats")
    g.add_argument("--stop", action="append", default=[], help="end at this text (repeatable)")
    g.add_argument("--checkpoint", choices=("last", "best"), default="last")
    _common(g)

    _add_runs_parser(sub)
    _add_finetune_parsers(sub)

    j = sub.add_parser("run", help="run a job spec (what the dashboard's jobs do)")
    j.add_argument("spec", help="a job spec file (JSON); - waits for one on stdin (the warm trainer)")
    _common(j)

    b = sub.add_parser("bench", help="benchmarks (see BENCHMARKS.md)")
    b.add_argument(
        "what",
        choices=("generate", "train", "train-to-quality", "train-profile", "ablation", "startup", "gpu"),
        help="generate: incremental vs naive decoding; train: tokens/s and MFU; "
        "train-to-quality: seconds to a validation loss on Tiny Shakespeare; "
        "train-profile: where a nano step's time goes; ablation: steps to quality of each modern change; "
        "startup: seconds to the first step; gpu: modern-small, small and seed-lstm on this host's GPU",
    )
    b.add_argument("--tokens", type=_positive_int, default=1000, help="tokens generated per row")
    b.add_argument("--target", type=_number, default=1.8857, help="train-to-quality: the validation loss")
    b.add_argument(
        "--steps",
        type=_positive_int,
        help="train-to-quality, ablation, gpu: steps (default: 700 or the recipe's)",
    )
    b.add_argument("--eval-every", type=_positive_int, default=100, help="train-to-quality: steps")
    b.add_argument("--model", default="nano", help="train-to-quality: the model")
    b.add_argument("--json", action="store_true", help="one JSON object per line")
    return parser


def _common(p):
    p.add_argument("--runs-dir", help="default: $LMLAB_RUNS_DIR or ./runs")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _add_runs_parser(sub) -> None:
    """``runs`` lists the runs; ``runs export`` and ``runs import`` keep one (:mod:`lmcore.archive`)."""
    r = sub.add_parser(
        "runs",
        help="list the runs; export one to a .zip, or import one",
        description="With no action, list the runs: a table, or --json.",
    )
    _common(r)
    rsub = r.add_subparsers(dest="action", parser_class=_Parser)  # none: list the runs
    e = rsub.add_parser("export", help="write a run (not training) to one .zip")
    e.add_argument("run", help="a run id or a run folder")
    e.add_argument("file", help="the .zip to write")
    i = rsub.add_parser("import", help="add the run in a .zip exported by 'runs export'")
    i.add_argument("file", help="the .zip to read")
    i.add_argument(
        "--max-mb",
        type=_number,
        help=f"refuse a run larger, unpacked, in MB (default {archive.MAX_BYTES >> 20})",
    )
    for p in (e, i):  # SUPPRESS: a value given before the action (runs --runs-dir X import) is kept
        p.add_argument("--runs-dir", default=argparse.SUPPRESS, help="default: $LMLAB_RUNS_DIR or ./runs")
        p.add_argument(
            "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
        )


def _add_train_parser(sub) -> None:
    t = sub.add_parser("train", help="train a model, or --resume a run")
    t.add_argument(
        "--corpus",
        default=corpus.DEFAULT_SOURCE,
        help="builtin:python-docs, builtin:tiny-shakespeare, a file path or an http(s) URL",
    )
    t.add_argument("--model", default="nano", help=f"one of {', '.join(MODEL_NAMES)}")
    t.add_argument("--tokenizer", default="char", choices=("char", "word", "bpe"))
    t.add_argument("--vocab-size", type=_positive_int, help="word/BPE vocabulary size")
    t.add_argument("--text-column", help="the text column of a CSV corpus")
    for flag in ("lowercase", "strip-html", "remove-special", "remove-stopwords"):
        t.add_argument(f"--{flag}", action="store_true", help="cleaning step (off by default)")
    _add_training_options(t)
    t.add_argument(
        "--strategy",
        choices=("auto", "default", "mirrored", "multiworker"),
        default="auto",
        help="tf.distribute: auto, one device, all local GPUs, or the TF_CONFIG cluster (docs/training.md)",
    )
    t.add_argument("--name", help="a label for the run id")
    t.add_argument("--run-id", help="the new run's exact id (the dashboard chooses it in advance)")
    t.add_argument("--resume", metavar="RUN", help="continue a stopped or interrupted run")
    _common(t)


def _add_training_options(t) -> None:
    """Length, optimization, model size, logging, augmentation, XLA and the seed."""
    length = t.add_mutually_exclusive_group()
    length.add_argument("--steps", type=_positive_int, help="optimizer steps (default 2000)")
    length.add_argument(
        "--epochs",
        type=_number,
        help="passes over the training tokens (steps = epochs x tokens / (batch x block))",
    )
    t.add_argument("--batch-size", type=_positive_int)
    t.add_argument("--block-size", type=_positive_int, help="tokens per window (context length)")
    t.add_argument("--lr", type=_number, help="peak learning rate")
    t.add_argument("--schedule", choices=SCHEDULES)
    t.add_argument("--optimizer", choices=OPTIMIZERS)
    t.add_argument("--warmup-steps", type=int)
    t.add_argument("--min-lr", type=_number)
    t.add_argument("--clipnorm", type=_number, help="global gradient-norm clip (0 = off)")
    t.add_argument("--dropout", type=_number)
    t.add_argument("--n-layer", type=_positive_int)
    t.add_argument("--n-head", type=_positive_int)
    t.add_argument("--n-embd", type=_positive_int)
    t.add_argument("--log-every", type=_positive_int)
    t.add_argument("--eval-every", type=_positive_int)
    t.add_argument("--eval-batches", type=_positive_int)
    t.add_argument("--sample-length", type=int)
    for kind in ("delete", "substitute", "swap"):
        t.add_argument(
            f"--augment-{kind}",
            type=_number,
            default=0.0,
            help=f"probability per token of random {kind} (training windows only)",
        )
    t.add_argument(
        "--jit",
        dest="jit_compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="XLA compilation (default: on for the GPT)",
    )
    t.add_argument("--seed", type=_seed)


def _add_finetune_parsers(sub) -> None:
    def options(p, steps_help: str) -> None:
        p.add_argument("--from", dest="parent", required=True, metavar="RUN", help="the pre-trained run")
        p.add_argument("--freeze", default="0", help="bottom blocks frozen, with the embeddings (N or 'all')")
        p.add_argument("--drop-top", type=int, default=0, help="remove the parent's top K blocks")
        p.add_argument("--add-layers", type=int, default=0, help="stack K new blocks on top")
        p.add_argument("--lr", type=_number, help="peak learning rate (default: lower than the parent's)")
        p.add_argument("--steps", type=_positive_int, help=steps_help)
        p.add_argument("--batch-size", type=_positive_int)
        p.add_argument("--log-every", type=_positive_int)
        p.add_argument("--eval-every", type=_positive_int)
        p.add_argument("--seed", type=_seed)
        p.add_argument("--name", help="a label for the run id")
        p.add_argument("--run-id", help="the new run's exact id (the dashboard chooses it in advance)")
        _common(p)

    f = sub.add_parser("finetune", help="continue a pre-trained run on another corpus")
    options(f, "optimizer steps (default 500)")
    f.add_argument("--corpus", required=True, help="the new text: builtin:..., a file path or a URL")
    f.add_argument("--text-column", help="the text column of a CSV corpus")
    f.add_argument("--eval-batches", type=_positive_int)
    f.add_argument("--sample-length", type=int)
    f.add_argument("--scratch", action="store_true", help="same network and tokenizer, untrained (baseline)")

    c = sub.add_parser("classify", help="text classification on a pre-trained run's body")
    csub = c.add_subparsers(dest="action", required=True, parser_class=_Parser)
    ct = csub.add_parser("train", help="train a classifier: pre-trained body, pooling, dense head")
    options(ct, "optimizer steps (default 300)")
    _labeled_options(ct)
    ct.add_argument("--scratch", action="store_true", help="same network, untrained body (a baseline)")
    cp = csub.add_parser("predict", help="label texts with a classifier run, with probabilities")
    cp.add_argument("--run", required=True, help="a classifier run id or folder")
    cp.add_argument("--text", action="append", required=True, help="a text to label (repeatable)")
    _common(cp)
    cc = csub.add_parser("compare", help="from scratch vs fine-tuned vs body frozen, over seeds")
    cc.add_argument("--from", dest="parent", required=True, metavar="RUN", help="the pre-trained run")
    _labeled_options(cc)
    cc.add_argument("--steps", type=_positive_int, help="optimizer steps per run (default 300)")
    cc.add_argument("--seeds", type=_positive_int, default=3, help="seeds per variant (default 3)")
    cc.add_argument("--compare-id", help="the comparison's id (the dashboard chooses it in advance)")
    _common(cc)

    lc = sub.add_parser("compare", help="language-model form: scratch vs fine-tuned vs body frozen")
    lc.add_argument("--from", dest="parent", required=True, metavar="RUN", help="the pre-trained run")
    lc.add_argument("--corpus", required=True, help="the new text")
    lc.add_argument("--steps", type=_positive_int, help="optimizer steps per run (default 500)")
    lc.add_argument("--seeds", type=_positive_int, default=1, help="seeds per variant (default 1)")
    lc.add_argument("--eval-every", type=_positive_int)
    lc.add_argument("--compare-id", help="the comparison's id (the dashboard chooses it in advance)")
    _common(lc)


def _labeled_options(p) -> None:
    p.add_argument("--data", required=True, help="builtin:reviews, keras:imdb, or a CSV file")
    p.add_argument("--text-column", default="text", help="the CSV column with the text (default text)")
    p.add_argument("--label-column", default="label", help="the CSV column with the label (default label)")


# ---------------------------------------------------------------------------- options to specs

TRAIN_FIELDS = (
    "steps",
    "batch_size",
    "lr",
    "schedule",
    "optimizer",
    "warmup_steps",
    "min_lr",
    "clipnorm",
    "log_every",
    "eval_every",
    "eval_batches",
    "sample_length",
    "seed",
    "jit_compile",
)
CLEANING = ("lowercase", "strip_html", "remove_special", "remove_stopwords")
RESUME_KEEPS = ("command", "resume", "steps", "runs_dir", "json", "strategy")


def _train_spec(args) -> specs.TrainSpec | specs.ResumeSpec:
    if args.resume:
        defaults = vars(build_parser().parse_args(["train"]))
        changed = [
            k for k, v in vars(args).items() if k not in RESUME_KEEPS and k[0] != "_" and v != defaults.get(k)
        ]
        # A setting typed with its default value (--model nano) is a change too.
        changed += [k for k in getattr(args, "_typed", ()) if k not in RESUME_KEEPS and k not in changed]
        if changed:
            flags = ", ".join("--" + k.replace("_", "-") for k in changed)
            raise LMError(f"--resume continues a run with its own settings; drop {flags}")
        return specs.ResumeSpec(args.resume, args.steps, args.strategy)
    augment = {
        k: getattr(args, f"augment_{k}")
        for k in ("delete", "substitute", "swap")
        if getattr(args, f"augment_{k}")
    }
    train = make_train_config(args.model, augment=augment, **{k: getattr(args, k) for k in TRAIN_FIELDS})
    data = DataConfig(
        args.corpus,
        args.tokenizer,
        args.vocab_size,
        args.text_column,
        {k: True for k in CLEANING if getattr(args, k)},
    )
    overrides = {
        k: getattr(args, k)
        for k in ("dropout", "n_layer", "n_head", "n_embd")
        if getattr(args, k) is not None
    }
    return specs.TrainSpec(
        args.model,
        data,
        train,
        args.block_size,
        overrides,
        args.epochs,
        args.name,
        args.run_id,
        args.strategy,
    )


def _adapt_overrides(args, *names) -> dict:
    return {
        k: getattr(args, k)
        for k in ("lr", "steps", "batch_size", "log_every", "eval_every", "seed", *names)
        if getattr(args, k) is not None
    }


def spec_from_args(args) -> specs.Spec:
    """The job spec of a parsed training command."""
    if args.command == "train":
        return _train_spec(args)
    if args.command == "finetune":
        return specs.FinetuneSpec(
            args.parent,
            args.corpus,
            args.text_column,
            args.freeze,
            args.drop_top,
            args.add_layers,
            _adapt_overrides(args, "eval_batches", "sample_length"),
            args.scratch,
            args.name,
            args.run_id,
        )
    if args.command == "compare" or args.action == "compare":
        if args.command == "compare":
            return specs.CompareSpec(
                "lm",
                args.parent,
                args.corpus,
                steps=args.steps,
                seeds=args.seeds,
                eval_every=args.eval_every,
                compare_id=args.compare_id,
            )
        return specs.CompareSpec(
            "classify",
            args.parent,
            args.data,
            args.text_column,
            args.label_column,
            args.steps,
            args.seeds,
            compare_id=args.compare_id,
        )
    return specs.ClassifySpec(
        args.parent,
        args.data,
        args.text_column,
        args.label_column,
        args.freeze,
        args.drop_top,
        args.add_layers,
        _adapt_overrides(args),
        args.scratch,
        args.name,
        args.run_id,
    )


def spec_from_argv(argv: list[str]) -> specs.Spec:
    """The job spec of a training command line (``["train", "--model", "tiny", ...]``)."""
    args = build_parser().parse_args(argv)
    if args.command not in JOB_COMMANDS or getattr(args, "action", None) == "predict":
        raise LMError(f"{' '.join(argv[:2])} is not a training job")
    if args.command == "train":
        args._typed = _typed_train_options(argv)
    return spec_from_args(args)


# ---------------------------------------------------------------------------- the other commands


def cmd_generate(args) -> int:
    run_dir = runs.resolve(args.run, runs.runs_dir(args.runs_dir))
    opts = decoding.SamplingOptions(
        args.temperature, args.top_k, args.top_p, args.seed, args.repetition_penalty, tuple(args.stop)
    )
    opts.check()
    if args.length > decoding.MAX_LENGTH:
        raise LMError(f"--length can be at most {decoding.MAX_LENGTH}")
    device.import_tensorflow()
    logits_fn, tokenizer, _ = decoding.load_run(run_dir, args.checkpoint)
    out = decoding.generate(logits_fn, tokenizer, args.prompt, args.length, opts)
    for note in out.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps({"prompt": out.prompt, "text": out.text, "notes": out.notes}, ensure_ascii=False))
    else:
        ids, _ = decoding.prompt_ids(tokenizer, args.prompt)
        print(tokenizer.decode(ids) + out.text)  # the prompt as the model saw it
    return 0


def cmd_runs(args) -> int:
    if args.action:
        return _export(args) if args.action == "export" else _import(args)
    rows = runs.list_runs(runs.runs_dir(args.runs_dir))
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
        return 0
    if not rows:
        print(f"no runs in {runs.runs_dir(args.runs_dir)}")
        return 0
    print(f"{'run id':<44} {'model':<10} {'corpus':<26} {'status':<11} {'steps':>11} {'best val':>8}")
    for r in rows:
        best = f"{r['best_val_loss']:.4f}" if r["best_val_loss"] is not None else "-"
        steps = f"{r['step']}/{r['steps']}"
        print(
            f"{r['run_id']:<44} {r['model'] or '?':<10} {str(r['corpus'])[-26:]:<26} "
            f"{r['status']:<11} {steps:>11} {best:>8}"
        )
    return 0


def _export(args) -> int:
    run_dir = runs.resolve(args.run, runs.runs_dir(args.runs_dir))
    archive.export(run_dir, args.file)
    size = os.path.getsize(args.file)
    line = f"exported run {run_dir.name} to {args.file} ({size / 2**20:.1f} MB)"
    print(json.dumps({"run_id": run_dir.name, "file": args.file, "bytes": size}) if args.json else line)
    return 0


def _import(args) -> int:
    if args.max_mb is not None and args.max_mb <= 0:
        raise LMError(f"--max-mb must be positive, not {args.max_mb:g}")
    limit = int(args.max_mb * 2**20) if args.max_mb else archive.MAX_BYTES
    run_id = archive.import_run(runs.runs_dir(args.runs_dir), args.file, max_bytes=limit)
    print(json.dumps({"run_id": run_id}) if args.json else f"imported run {run_id}")
    return 0


def cmd_predict(args) -> int:
    device.import_tensorflow()
    predictor = classify.load_classifier(runs.resolve(args.run, runs.runs_dir(args.runs_dir)))
    for r in predictor.predict(args.text):
        if args.json:
            print(json.dumps(r, ensure_ascii=False))
        else:
            probs = ", ".join(f"{k} {v:.3f}" for k, v in r["probabilities"].items())
            print(f"{r['label']}\t({probs})\t{r['text'][:60]!r}")
    return 0


def cmd_bench(args) -> int:
    from lmcore.bench import decode_speed, train_speed  # TensorFlow: not at every command's start

    xla_cache.enable()  # before TensorFlow starts: what a job would find
    device.import_tensorflow()
    if args.what != "generate":
        for r, line in train_speed.rows(args.what, args.target, args.model, args.eval_every, args.steps):
            print(json.dumps(r) if args.json else line, flush=True)
        return 0
    for r in decode_speed.generate_bench(args.tokens):
        line = (
            f"{r['model']:<13} block {r['block_size']:>3} batch {r['batch']}: cached "
            f"{r['cached_tokens_per_s']:>9,.0f} tok/s, naive {r['naive_tokens_per_s']:>9,.0f} tok/s, "
            f"speedup {r['speedup']:.1f}x, max |logit diff| {r['max_abs_logit_diff']:.1e}"
        )
        print(json.dumps(r) if args.json else line, flush=True)
    return 0


JOB_COMMANDS = ("train", "finetune", "classify", "compare")


def _command(args):
    if args.command == "run":
        return lambda a: runner.execute_file(a.spec, a.runs_dir, a.json)
    if args.command in JOB_COMMANDS and getattr(args, "action", None) != "predict":
        return lambda a: runner.execute(spec_from_args(a), a.runs_dir, a.json)
    return {"generate": cmd_generate, "runs": cmd_runs, "bench": cmd_bench, "classify": cmd_predict}[
        args.command
    ]


def _typed_train_options(argv: list[str]) -> list[str]:
    """The ``train`` options given on the command line (argparse's abbreviations included)."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    options = sub.choices["train"]._option_string_actions
    typed = []
    for arg in argv:
        flag = arg.split("=", 1)[0]
        if not flag.startswith("--"):
            continue
        exact = options.get(flag)
        dests = {exact.dest} if exact else {a.dest for o, a in options.items() if o.startswith(flag)}
        if len(dests) == 1 and dests != {"help"}:
            typed.append(dests.pop())
    return typed


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command == "train":
            args._typed = _typed_train_options(sys.argv[1:] if argv is None else argv)
        return _command(args)(args)
    except LMError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # never a traceback for a user, unless asked for one
        if os.environ.get("LMLAB_DEBUG"):
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        print(
            f"error: unexpected {type(err).__name__}: {first} (LMLAB_DEBUG=1 shows details)", file=sys.stderr
        )
        return 1
