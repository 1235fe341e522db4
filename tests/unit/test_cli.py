"""The CLI's table of subcommands: every subcommand the parser knows has one handler."""

from __future__ import annotations

import argparse

import pytest

from prescore.cli import COMMANDS, build_parser
from prescore.flow import STAGES

pytestmark = pytest.mark.unit


def subcommands(parser: argparse.ArgumentParser) -> set[str]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return set(action.choices)


def test_every_subcommand_has_a_handler_and_every_handler_a_subcommand() -> None:
    assert subcommands(build_parser()) == set(COMMANDS)


def test_each_stage_and_run_go_through_the_flow() -> None:
    assert {COMMANDS[stage] for stage in (*STAGES, "run")} == {COMMANDS["run"]}
    assert COMMANDS["promote"] is COMMANDS["rollback-model"]
