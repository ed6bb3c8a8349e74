"""Rendering prediction floats byte-for-byte as pandas ``to_json`` does (``double_precision=10``).

pandas' JSON writer (vendored ultrajson) prints a finite double with at most ten decimal places
using modp's fixed-point algorithm: the fraction is scaled by 1e10 in double arithmetic,
truncated, rounded half-to-odd-or-zero on exact ties, and trailing zeros are dropped. Values
above 1e16 - 1 or below 1e-15 in magnitude use C's ``%.10g``. NaN and infinities are ``null``.
DRUM builds prediction bodies with ``to_json``, so matching it keeps Tandem's answers
byte-identical to DRUM's while skipping DataFrame construction on the hot path.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

_THRES_MAX = 1e16 - 1  # as a double this is 1e16
_THRES_MIN = 1e-15
_POW10 = 1e10
_FRAC_DIGITS = 10


def format_float(value: float) -> str:
    """One number exactly as pandas ``to_json(double_precision=10)`` writes it."""
    if not math.isfinite(value):
        return "null"
    neg = value < 0
    mag = -value if neg else value
    if mag > _THRES_MAX or (mag != 0.0 and mag < _THRES_MIN):
        return f"{value:.10g}"
    whole = int(mag)
    tmp = (mag - whole) * _POW10
    frac = int(tmp)
    diff = tmp - frac
    if diff > 0.5 or (diff == 0.5 and (frac == 0 or frac & 1)):
        frac += 1
    if frac >= _POW10:
        frac = 0
        whole += 1
    if frac:
        text = f"{whole}.{frac:0{_FRAC_DIGITS}d}".rstrip("0")
    else:
        text = f"{whole}.0"
    return "-" + text if neg else text


def format_floats(values: Iterable[float]) -> str:
    """A JSON array of numbers, as pandas writes a float Series with ``orient="records"``."""
    return "[" + ",".join(map(format_float, values)) + "]"
