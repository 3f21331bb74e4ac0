"""Every CLI command has help text and a README section."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from conduit.cli import cli

README = (Path(__file__).parents[2] / "README.md").read_text()


def commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, cmd in group.commands.items():
        out.append((*prefix, name))
        if isinstance(cmd, click.Group):
            out += commands(cmd, (*prefix, name))
    return out


@pytest.mark.parametrize("command", commands(cli), ids=" ".join)
def test_help_works_and_is_documented(command: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output
    assert f"conduit {' '.join(command)}" in README
