"""Every command's --help as a user reads it: what each option takes, whole summaries, each
environment variable named once. Commands are found by walking the app, so new ones are covered."""

from __future__ import annotations

import re

import pytest
import typer
from typer.core import TyperCommand, TyperGroup
from typer.testing import CliRunner

from shoal.cli import _register, app

WIDTH = 100  #: columns the help is rendered at
PLACEHOLDER = re.compile(r"<[a-z_]+(\[[^\]>]*\])?>|\{[A-Za-z_.]+\}")  # <str>, <list[str]>, <path>, {project}
ENV_NAME = re.compile(r"\bSHOAL_[A-Z_]+\b")


Command = TyperCommand | TyperGroup


def _walk(command: Command, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Command]]:
    found = [(path, command)]
    for name, sub in getattr(command, "commands", {}).items():  # a group's commands, as click keeps them
        found += _walk(sub, (*path, name))
    return found


_register()
COMMANDS = _walk(typer.main.get_command(app))  # type: ignore[arg-type]


def test_every_command_is_walked() -> None:
    paths = {" ".join(path) for path, _ in COMMANDS}
    assert {"", "run", "jobs", "jobs rm", "jobs prune", "metrics export", "token revoke"} <= paths


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) or "shoal" for p, _ in COMMANDS])
def test_help_names_what_each_option_takes(path: tuple[str, ...], command: Command) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], prog_name="shoal", terminal_width=WIDTH)
    assert result.exit_code == 0, result.output
    assert PLACEHOLDER.search(result.output) is None, result.output
    assert f"Usage: {' '.join(('shoal', *path))} " in result.output
    for param in command.params:
        if getattr(param, "is_flag", False) or getattr(param, "count", False):
            continue  # a flag takes no value
        assert param.metavar, f"{param.name} of `shoal {' '.join(path)}` has no metavar"


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) or "shoal" for p, _ in COMMANDS])
def test_each_environment_variable_is_noted_once(path: tuple[str, ...], command: Command) -> None:
    ctx = typer.Context(command, info_name="shoal")
    for param in command.params:
        record = param.get_help_record(ctx)
        names = ENV_NAME.findall(record[1]) if record else []
        assert len(names) == len(set(names)), f"{param.name}: {record}"


@pytest.mark.parametrize(
    ("path", "group"),
    [(p, c) for p, c in COMMANDS if getattr(c, "commands", None)],
    ids=[" ".join(p) or "shoal" for p, c in COMMANDS if getattr(c, "commands", None)],
)
def test_command_summaries_are_whole(path: tuple[str, ...], group: TyperGroup) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], prog_name="shoal", terminal_width=WIDTH)
    listed = result.output.split("Commands:\n")[1].splitlines()
    assert len(listed) == len(group.commands), result.output  # one line each: none wrapped
    for line in listed:
        assert not line.rstrip().endswith(("...", "…")), line
