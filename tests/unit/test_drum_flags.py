"""`drum server --help` and `drum score --help` list every flag DRUM 1.18.1 lists (issue 10)."""

from __future__ import annotations

import argparse
import json

import pytest

from tandem.cli import build_parser
from tests.support import FIXTURES

DRUM_FLAGS: dict[str, list[str]] = json.loads(
    (FIXTURES.parent / "drum_answers" / "drum_flags.json").read_text()
)["flags"]


def tandem_flags(command: str) -> set[str]:
    parser = build_parser("drum")
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {s for action in sub.choices[command]._actions for s in action.option_strings}


@pytest.mark.parametrize("command", ["server", "score"])
def test_every_drum_flag_is_accepted(command: str) -> None:
    missing = sorted(set(DRUM_FLAGS[command]) - tandem_flags(command))
    assert missing == [], f"drum {command} lacks DRUM's {missing}"


@pytest.mark.parametrize("command", ["server", "score"])
def test_help_lists_them(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser("drum").parse_args([command, "--help"])
    text = capsys.readouterr().out
    assert [f for f in DRUM_FLAGS[command] if f not in text] == []
