"""Tandem's bridge to the ``datarobot_drum`` name, loaded at start-up by ``tandem-drum.pth``.

Both of its jobs are import hooks; no file of DataRobot's ``datarobot-drum`` is written or replaced,
so either package can be installed or uninstalled without breaking the other:

* **Models.** When ``datarobot_drum`` cannot be imported any other way, Tandem's compatibility
  package answers to that name, so ``custom.py`` files written for DRUM import it unchanged. When
  DataRobot's package is installed it always wins, whatever the order of installation.
* **The ``drum`` command.** When DataRobot's ``drum`` script runs ``drum server`` or ``drum score``,
  Tandem serves; every other subcommand (``fit``, ``perf-test``, ``validation``, ``new``, ``push``)
  stays DRUM's. ``TANDEM_DRUM_PASSTHROUGH=1`` leaves DRUM's script entirely alone.

This module imports nothing of Tandem at start-up: it runs in every Python process of the
environment, so it only registers two finders, which act when one of two module names is imported.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import Any

PACKAGE = "datarobot_drum"
#: The module DataRobot's ``drum`` console script imports its ``run_drum_server`` from.
ENTRY_MODULE = "datarobot_drum.drum.entry_point"
ENTRY_FUNCTION = "run_drum_server"
#: Subcommands Tandem runs itself; the rest belong to DataRobot's DRUM.
TANDEM_SUBCOMMANDS = ("server", "score")
PASSTHROUGH_ENV = "TANDEM_DRUM_PASSTHROUGH"

COMPAT_DIR = Path(__file__).resolve().parent / "tandem" / "_compat"


def is_compat(origin: str | None) -> bool:
    """Whether a module file is part of Tandem's stand-in package."""
    return origin is not None and Path(origin).resolve().is_relative_to(COMPAT_DIR)


def subcommand(argv: Sequence[str]) -> str | None:
    """The first argument of ``argv[1:]`` that is not an option (DRUM's subcommand)."""
    return next((a for a in argv[1:] if not a.startswith("-")), None)


class CompatFinder(importlib.abc.MetaPathFinder):
    """Last on ``sys.meta_path``: supplies ``datarobot_drum`` only when nothing else can."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        """Tandem's compatibility package, for the top-level name only (its submodules follow)."""
        if fullname != PACKAGE:
            return None
        # Finders registered after this one (an editable install's, say) get their turn first.
        later = sys.meta_path[sys.meta_path.index(self) + 1 :] if self in sys.meta_path else []
        for finder in later:
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                return spec
        init = COMPAT_DIR / PACKAGE / "__init__.py"
        if not init.is_file():
            return None
        return importlib.util.spec_from_file_location(
            PACKAGE, init, submodule_search_locations=[str(init.parent)]
        )


class _EntryLoader(importlib.abc.Loader):
    """Runs DataRobot's entry-point module as is, then routes ``server``/``score`` to Tandem."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        original = getattr(module, ENTRY_FUNCTION, None)
        if not callable(original):
            raise ImportError(
                f"Tandem cannot find {ENTRY_FUNCTION}() in {ENTRY_MODULE} of the installed "
                f"datarobot-drum ({_drum_version()}); run 'tandem server' instead of 'drum "
                f"server', or set {PASSTHROUGH_ENV}=1 to run DataRobot's drum unchanged."
            )
        setattr(module, ENTRY_FUNCTION, dispatcher(original))


def dispatcher(original: Callable[[], Any]) -> Callable[[], Any]:
    """``drum``'s entry function: Tandem for ``server`` and ``score``, DRUM for the rest."""

    def run_drum_server() -> Any:
        if subcommand(sys.argv) in TANDEM_SUBCOMMANDS:
            from tandem.cli import main

            return main(prog="drum")
        return original()

    run_drum_server.__doc__ = original.__doc__
    run_drum_server.__wrapped__ = original  # type: ignore[attr-defined]
    return run_drum_server


class EntryFinder(importlib.abc.MetaPathFinder):
    """First on ``sys.meta_path``, for one name: the module of DataRobot's ``drum`` script."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        """DataRobot's entry-point module with a loader that routes two subcommands to Tandem."""
        if fullname != ENTRY_MODULE or os.environ.get(PASSTHROUGH_ENV, "") not in ("", "0"):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or is_compat(spec.origin):
            return None
        spec.loader = _EntryLoader(spec.loader)  # type: ignore[arg-type]
        return spec


def _drum_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("datarobot-drum")
    except PackageNotFoundError:
        return "version unknown"


def install() -> None:
    """Register both finders once per process."""
    if not any(isinstance(f, EntryFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, EntryFinder())
    if not any(isinstance(f, CompatFinder) for f in sys.meta_path):
        sys.meta_path.append(CompatFinder())


install()
