"""The full ``corridor`` parser: help on every command and flag, ``--state-dir`` wherever a
command talks to a stack, ``--json`` wherever it prints data, one table of exit codes."""

from __future__ import annotations

import argparse
import ast
import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.cli import exit_codes
from services.cli.parser import PLUGINS, build_parser

REPO = Path(__file__).resolve().parents[2]


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser, str | None]]:
    """Every leaf command: its words, its parser, and the help its parent lists it with."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, child in action.choices.items():
                words = (*path, name)
                children = list(_commands(child, words))
                if children:
                    assert helps.get(name), f"`corridor {' '.join(words)}` has no help"
                    yield from children
                else:
                    yield words, child, helps.get(name)


COMMANDS = {" ".join(words): (parser, help_text) for words, parser, help_text in
            _commands(build_parser())}  # fmt: skip

# Commands that find a running stack (or simulator) and so take --state-dir.
TALK_TO_A_STACK = {"up", "submit", "get", "approve", "reject", "cancel", "watch", "replay",
                   "exceptions list", "exceptions show", "exceptions resolve",
                   "exceptions reprocess", "corridors", "policy show", "policy propose",
                   "policy approve",
                   "sim up", "sim nodes", "sim invoice", "sim payments", "executor",
                   "audit export", "pilot report"}  # fmt: skip
# Commands whose output is data a script may want; watch and replay print JSON lines already.
PRINT_DATA = {"submit", "get", "approve", "reject", "cancel", "exceptions list",
              "exceptions show", "exceptions resolve", "exceptions reprocess", "corridors",
              "policy show", "policy propose", "policy approve", "policy check",
              "sim nodes", "sim invoice", "sim payments", "audit export",
              "audit verify", "pilot report"}  # fmt: skip


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}


def test_the_tree_has_every_command() -> None:
    assert set(COMMANDS) >= TALK_TO_A_STACK | PRINT_DATA
    assert any(name.startswith("sim fault ") for name in COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_and_flag_has_help(name: str) -> None:
    parser, help_text = COMMANDS[name]
    assert help_text, f"`corridor {name}` has no help line"
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        flag = "/".join(action.option_strings) or action.dest
        assert action.help and action.help.strip(), f"`corridor {name}` {flag} has no help"


@pytest.mark.parametrize("name", sorted(TALK_TO_A_STACK))
def test_commands_that_talk_to_a_stack_take_state_dir(name: str) -> None:
    assert "--state-dir" in _options(COMMANDS[name][0])


@pytest.mark.parametrize("name", sorted(PRINT_DATA | {n for n in COMMANDS if "fault " in n}))
def test_commands_that_print_data_take_json(name: str) -> None:
    parser = COMMANDS[name][0]
    json_actions = [a for a in parser._actions if "--json" in a.option_strings]
    assert json_actions and json_actions[0].nargs == 0, f"`corridor {name} --json` is a flag"


def test_plugin_help_in_the_listing_is_the_plugin_s_own() -> None:
    full = build_parser()
    listed = {name: help_text for name, _, help_text in PLUGINS}
    sub = next(a for a in full._actions if isinstance(a, argparse._SubParsersAction))
    registered = {a.dest: a.help for a in sub._choices_actions}
    for name, help_text in listed.items():
        assert registered[name] == help_text, name


def test_only_the_named_plugin_is_registered() -> None:
    parser = build_parser(["policy", "check", "x"])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert sub.choices["policy"]._subparsers is not None  # the real group
    assert sub.choices["sim"]._subparsers is None  # a stand-in for the listing


def test_exit_codes_are_defined_once() -> None:
    assert [code for code, _ in exit_codes.TABLE] == [0, 1, 2, 3, 4, 130]
    assert len({code for code, _ in exit_codes.TABLE}) == len(exit_codes.TABLE)
    # The simulator keeps a copy (it must not import services.cli); the others import it.
    assert importlib.import_module("services.sim.cli").EXIT_ERROR == exit_codes.USAGE
    assert importlib.import_module("services.sim.cli").EXIT_NOT_PAID == exit_codes.REFUSED
    assert importlib.import_module("services.executor.cli").EXIT_USAGE == exit_codes.USAGE
    assert importlib.import_module("services.policy.cli").EXIT_INVALID == exit_codes.REFUSED
    epilog = exit_codes.epilog()
    for code, meaning in exit_codes.TABLE:
        assert f"{code:<4} {meaning}" in epilog


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    return names


def test_the_simulator_does_not_import_the_cli_package() -> None:
    """The cycle ADR 0020 broke: the CLI loads ``services.sim.cli`` by name (and ``up`` uses the
    simulator's runner), but nothing in ``services/sim`` imports ``services.cli``."""
    sim_dir = REPO / "services" / "sim"
    for path in sim_dir.glob("*.py"):
        imported = _imported_modules(path)
        assert not {m for m in imported if m.startswith("services.cli")}, path.name
