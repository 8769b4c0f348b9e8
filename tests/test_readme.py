"""The README's promises: CI runs its test command, and its figures match the code."""

from __future__ import annotations

import re

from conftest import ROOT


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## Start")
    blocks = re.findall(r"```bash\n(.*?)```", text[start:], flags=re.S)
    return [b.strip() for b in blocks[:2]]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    _, test_command = readme_commands()
    assert test_command in ci.splitlines()


def test_the_model_table_matches_the_parameter_counts():
    from lmcore.nn import models

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in ("seed-lstm", "gru", "tiny", "nano"):
        count = models.build_model(models.make_config(name, vocab_size=65)).count_params()
        row = next(line for line in text.splitlines() if line.startswith(f"| `{name}` |"))
        assert f"{count:,}" in row, (name, count, row)
