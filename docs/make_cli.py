"""Write the command-line reference, docs/cli.md, from lmcore's own parser.

    python docs/make_cli.py > docs/cli.md

Every command and subcommand of ``python -m lmcore`` gets a heading, its one-line help and
argparse's own ``--help`` text, formatted at a fixed width so that the output does not depend
on the terminal. ``tests/test_docs.py`` checks that docs/cli.md is what this prints.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmcore.cli import build_parser  # noqa: E402

WIDTH = 100
COMMAND = "python docs/make_cli.py > docs/cli.md"

INTRO = f"""\
# The command line: `python -m lmcore`

Generated from the parser in `lmcore/cli.py` by `{COMMAND}`;
do not edit this page by hand: `tests/test_docs.py` fails when an option changes and the page
was not regenerated. Each block is what `python -m lmcore COMMAND --help` prints (here at a
width of {WIDTH} columns). How training runs behave (progress, `--json`, stopping, resuming,
errors and exit statuses) is in [training.md](training.md); the corpora and tokenizers are in
[data.md](data.md).
"""


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) for each subcommand of ``parser``, in the order they were added."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            return [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return []


def _help(parser: argparse.ArgumentParser) -> str:
    """argparse's own help text for ``parser``, at a fixed width and without colour."""
    formatter_class = parser.formatter_class
    parser.formatter_class = functools.partial(formatter_class, width=WIDTH)
    color = getattr(parser, "color", None)
    if color is not None:
        parser.color = False
    try:
        return parser.format_help().rstrip() + "\n"
    finally:
        parser.formatter_class = formatter_class
        if color is not None:
            parser.color = color


def _section(level: int, path: list[str], line: str, parser: argparse.ArgumentParser) -> list[str]:
    out = [f"{'#' * level} `{' '.join(path)}`", ""]
    if line:
        out += [line[0].upper() + line[1:] + ".", ""]
    out += ["```text", _help(parser).rstrip(), "```", ""]
    for name, sub_line, sub in _subcommands(parser):
        out += _section(level + 1, [*path, name], sub_line, sub)
    return out


def cli_reference() -> str:
    """The Markdown text of docs/cli.md."""
    parser = build_parser()
    lines = [INTRO, "## Commands", ""]
    for name, line, sub in _subcommands(parser):
        lines.append(f"- `{name}`: {line}")
        for sub_name, sub_line, _ in _subcommands(sub):
            lines.append(f"  - `{name} {sub_name}`: {sub_line}")
    lines += ["", "```text", _help(parser).rstrip(), "```", ""]
    for name, line, sub in _subcommands(parser):
        lines += _section(2, ["python -m lmcore", name], line, sub)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(cli_reference())
