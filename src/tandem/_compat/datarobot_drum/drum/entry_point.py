"""``drum``'s entry point where DataRobot's DRUM is not installed: Tandem's ``drum`` command."""

import sys

from tandem.cli import drum_main


def run_drum_server() -> int:
    """``drum server`` and ``drum score`` run Tandem; other subcommands say what to install."""
    return drum_main(sys.argv[1:])


__all__ = ["run_drum_server"]
