"""The generated reference pages match the code they are generated from."""

from __future__ import annotations

import importlib.util

from conftest import ROOT


def test_the_cli_reference_is_regenerated_from_the_parser():
    spec = importlib.util.spec_from_file_location("make_cli", ROOT / "docs" / "make_cli.py")
    make_cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_cli)

    on_disk = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert make_cli.cli_reference() == on_disk, (
        "docs/cli.md is out of date with lmcore/cli.py: run `python docs/make_cli.py > docs/cli.md`"
    )
