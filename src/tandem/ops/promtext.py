"""A small reader for the Prometheus text exposition format (what ``/metrics`` answers)."""

from __future__ import annotations

import math
import re

_SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?[ \t]+(?P<value>\S+)"
)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"')

Sample = tuple[str, dict[str, str], float]


def _unescape(value: str) -> str:
    return value.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")


def parse_samples(text: str) -> list[Sample]:
    """Every sample as ``(name, labels, value)``; comments and malformed lines are skipped."""
    samples: list[Sample] = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        try:
            value = float(match.group("value"))
        except ValueError:
            continue
        labels = {key: _unescape(raw) for key, raw in _LABEL.findall(match.group("labels") or "")}
        samples.append((match.group("name"), labels, value))
    return samples


def total(samples: list[Sample], name: str) -> float:
    """The sum of every sample called ``name`` (NaN samples ignored)."""
    return sum(value for got, _, value in samples if got == name and not math.isnan(value))
