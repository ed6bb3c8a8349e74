"""Fleet tests call ``tandem.cli.main`` in process: its logging set-up is undone after each."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

_LOGGERS = ("", "tandem.fleet", "tandem.rollout", "tandem.start", "tandem.access", "httpx")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """A handler main() put on a stream pytest captured must not outlive the test."""
    saved = {}
    for name in _LOGGERS:
        lg = logging.getLogger(name)
        saved[name] = (lg.handlers[:], lg.level, lg.propagate)
    yield
    for name, (handlers, level, propagate) in saved.items():
        lg = logging.getLogger(name)
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate
