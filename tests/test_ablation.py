"""The ablation (issue 15): its variants change one thing each, and its table counts steps and
tokens to each validation loss from the runs' own records."""

from __future__ import annotations

from lmcore import runs
from lmcore.experiments import ablation
from lmcore.nn.config import make_config
from lmcore.runs import RunRecord


def test_each_variant_changes_one_thing_on_the_same_schedule():
    specs = ablation.variant_specs("builtin:tiny-shakespeare", steps=300)
    assert len(specs) == len(ablation.VARIANTS) == 10
    schedules = {(s.train.steps, s.train.schedule, s.train.warmup_steps, s.train.eval_every) for s in specs}
    assert schedules == {(300, "cosine", 50, 50)}  # what differs is the variant, not the schedule
    assert [s.train.optimizer for s in specs[:2]] == ["adam", "muon"] and specs[0].model_overrides == {}
    assert all(len(s.model_overrides) == 1 for s in specs[2:-2])  # one change each
    for s in specs:
        make_config(s.model, **s.model_overrides)  # every variant is a valid GPT
    assert make_config("nano", **specs[-1].model_overrides) == make_config("modern-nano")


def _run(root, name, model, optimizer, curve):
    from dataclasses import replace

    from lmcore.nn.config import make_train_config

    run = runs.create(root, name)
    record = RunRecord("nano", model, replace(make_train_config("nano"), optimizer=optimizer, batch_size=4))
    runs.write_record(run, record)
    for step, val in curve:
        runs.append_jsonl(
            run / "metrics.jsonl", {"step": step, "time": step / 10, "loss": val, "val_loss": val}
        )
    return run


def test_the_table_counts_steps_and_tokens_to_each_target(tmp_path):
    nano = make_config("nano", vocab_size=65)
    base = _run(tmp_path, "a", nano, "adam", [(100, 2.3), (200, 1.9), (300, 1.88), (400, 1.7)])
    modern = _run(tmp_path, "b", make_config("modern-nano", vocab_size=65), "muon", [(100, 1.95), (200, 1.6)])
    rows = {r["run"]: r for r in ablation.table([base, modern])}
    assert rows["a"]["variant"] == "nano, adam"
    assert rows["b"]["variant"] == "nano, muon, rotary + qk_norm + zero_init"
    assert rows["a"]["steps to 1.8857"] == 300 and rows["a"]["tokens to 1.8857"] == 300 * 4 * 64
    assert rows["a"]["steps to 1.62"] is None and rows["a"]["best val loss"] == 1.7
    assert rows["b"]["steps to 1.8857"] == rows["b"]["steps to 1.62"] == 200
    assert rows["b"]["seconds to 1.62"] == 20.0
