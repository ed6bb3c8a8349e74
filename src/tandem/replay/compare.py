"""Comparing two answers to the same request: status, content type, headers, body.

JSON bodies are compared structurally with DeepDiff (every difference comes with its path, so a
report can say which row and which class changed and show both values); numbers compare exactly
unless a float tolerance or a number of significant digits is given. Server-sent event streams
(streamed chat completions) are compared event by event, each event's JSON structurally. Any other
body is compared byte for byte.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from deepdiff import DeepDiff

from tandem.observability.recording import is_sensitive_header

#: Response headers not compared unless asked for: they differ legitimately between servers,
#: processes or requests, or describe the connection rather than the answer.
DEFAULT_IGNORED_HEADERS = frozenset(
    {
        "x-drum-version",
        "x-request-id",
        "date",
        "server",
        "content-length",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "x-request-duration",
    }
)
#: JSON fields ignored wherever they appear: DRUM generates a fresh association id per chat
#: completion unless the caller sends one.
DEFAULT_IGNORED_FIELDS = frozenset({"datarobot_association_id"})

_MISSING = "(missing)"


@dataclass(frozen=True)
class CompareOptions:
    """How strictly two answers must agree."""

    float_tolerance: float | None = None
    """Numbers within this absolute difference are equal (None: exact)."""
    significant_digits: int | None = None
    """Numbers that agree to this many significant digits are equal (None: exact).

    Two numbers agree to ``n`` significant digits when they differ by at most half a unit in
    the ``n``-th significant digit of the larger one. With both options, either suffices.
    """
    ignored_headers: frozenset[str] = DEFAULT_IGNORED_HEADERS
    """Lower-case header names not compared (credential headers are never compared)."""
    ignored_fields: frozenset[str] = DEFAULT_IGNORED_FIELDS
    """JSON object keys ignored at any depth."""
    max_differences: int = 50
    """Differences kept per answer pair (the count is always exact)."""


@dataclass(frozen=True)
class Answer:
    """One server's answer (or a recorded one). ``None`` parts are unknown and not compared."""

    status: int
    content_type: str | None = None
    headers: Sequence[tuple[str, str]] | None = None
    body: bytes | None = None


@dataclass(frozen=True)
class Difference:
    """One way in which the candidate's answer differs from the baseline's."""

    kind: str
    """``status``, ``content_type``, ``header`` or ``body``."""
    where: str
    """What differs: ``status``, a header name, a JSON path like ``predictions[3].yes``, or
    ``bytes`` for a byte-for-byte body difference."""
    baseline: Any
    candidate: Any
    row: int | None = None
    """Row (list index) of a prediction that differs, when the path has one."""
    column: str | None = None
    """Class, column or field name that differs, when the path has one."""
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "kind": self.kind,
            "where": self.where,
            "row": self.row,
            "column": self.column,
            "baseline": self.baseline,
            "candidate": self.candidate,
            "note": self.note,
        }


@dataclass
class Comparison:
    """All differences between two answers (at most ``max_differences`` kept)."""

    differences: list[Difference] = field(default_factory=list)
    count: int = 0
    """Total number of differences found."""
    kinds: set[str] = field(default_factory=set)
    body_compared: bool = True
    """False when a body was unknown on one side (a stream, or a body that was not recorded)."""

    @property
    def matched(self) -> bool:
        """Whether the answers agree."""
        return self.count == 0

    def add(self, diff: Difference, limit: int) -> None:
        """Count ``diff`` and keep it when under ``limit``."""
        self.count += 1
        self.kinds.add(diff.kind)
        if len(self.differences) < limit:
            self.differences.append(diff)


# -- numbers ------------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def numbers_equal(
    a: float, b: float, tolerance: float | None = None, significant_digits: int | None = None
) -> bool:
    """Whether two numbers are equal under the options (exact when both are None).

    NaN equals NaN (both sides produced "no value").
    """
    if a == b:
        return True
    fa, fb = float(a), float(b)
    if math.isnan(fa) or math.isnan(fb):
        return math.isnan(fa) and math.isnan(fb)
    if math.isinf(fa) or math.isinf(fb):
        return False
    delta = abs(fa - fb)
    if tolerance is not None and delta <= tolerance:
        return True
    if significant_digits is not None:
        largest = max(abs(fa), abs(fb))
        unit = 10.0 ** (math.floor(math.log10(largest)) - significant_digits + 1)
        # A hair of slack so that e.g. 0.12345 vs 0.12350 at 4 digits is not lost to rounding.
        if delta <= unit / 2 * (1 + 1e-9):
            return True
    return False


class _NumberOperator:
    """DeepDiff operator: numbers compare under the tolerance options."""

    def __init__(self, tolerance: float | None, significant_digits: int | None) -> None:
        self.tolerance = tolerance
        self.significant_digits = significant_digits

    def match(self, level: Any) -> bool:
        return _is_number(level.t1) and _is_number(level.t2)

    def give_up_diffing(self, level: Any, diff_instance: Any) -> bool:
        # True: equal, stop here. False: let DeepDiff report the values as changed.
        return numbers_equal(level.t1, level.t2, self.tolerance, self.significant_digits)

    def normalize_value_for_hashing(self, parent: Any, obj: Any) -> Any:
        return obj


# -- paths ----------------------------------------------------------------------------------------


def render_path(parts: Sequence[Any]) -> str:
    """``['predictions', 3, 'yes']`` -> ``predictions[3].yes``; the root is ``$``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = str(part)
            plain = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text) is not None
            out += (("." if out else "") + text) if plain else f"[{text!r}]"
    return out or "$"


def locate(parts: Sequence[Any], document: Any) -> tuple[int | None, str | None]:
    """The row and the column/class a JSON path points at.

    DRUM's shapes are understood: ``predictions[i]`` (regression) and ``predictions[i].<class>``
    (classification) give row ``i`` and the class; ``extraModelOutput.data[i][j]`` (pandas
    ``split`` orientation) gives row ``i`` and the name in ``extraModelOutput.columns[j]``. For
    other documents the row is the first list index (if any) and the column the last object key.
    """
    if len(parts) >= 4 and list(parts[:2]) == ["extraModelOutput", "data"]:
        row, col = parts[2], parts[3]
        name: str | None = str(col)
        try:
            name = str(document["extraModelOutput"]["columns"][col])
        except (KeyError, IndexError, TypeError):
            pass
        return (row if isinstance(row, int) else None), name
    row_index = next((p for p in parts if isinstance(p, int)), None)
    keys = [p for p in parts if not isinstance(p, int)]
    if not keys or (len(parts) == 2 and parts[0] == "predictions"):
        return row_index, None  # a regression prediction has a row, no column
    return row_index, str(keys[-1])


# -- bodies ---------------------------------------------------------------------------------------


def _mimetype(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _is_json_type(content_type: str | None) -> bool:
    mime = _mimetype(content_type)
    return mime == "application/json" or mime.endswith("+json")


def normalise_content_type(content_type: str | None) -> str | None:
    """Lower-case type and parameter names, no spaces: ``text/csv; charset=UTF-8`` stays
    distinguishable from ``text/csv``, but spacing and case of the type do not matter."""
    if content_type is None:
        return None
    parts = [p.strip() for p in content_type.split(";")]
    head = parts[0].lower()
    params = []
    for param in parts[1:]:
        if not param:
            continue
        key, _, value = param.partition("=")
        params.append(f"{key.strip().lower()}={value.strip()}")
    return ";".join([head, *params])


def _load_json(body: bytes) -> tuple[bool, Any]:
    try:
        return True, orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:  # NaN/Infinity literals, which orjson rejects
        import json

        return True, json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return False, None


def parse_event_stream(body: bytes) -> list[Any]:
    """Server-sent events -> their ``data`` payloads, JSON-decoded where possible."""
    text = body.decode("utf-8", errors="replace").replace("\r\n", "\n")
    events: list[Any] = []
    for block in text.split("\n\n"):
        data = [line[5:].lstrip(" ") for line in block.split("\n") if line.startswith("data:")]
        if not data:
            continue
        payload = "\n".join(data)
        ok, doc = _load_json(payload.encode("utf-8"))
        events.append(doc if ok else payload)
    return events


def _snippet(body: bytes, offset: int, width: int = 40) -> str:
    start = max(0, offset - width // 2)
    piece = body[start : start + width]
    text = piece.decode("utf-8", errors="backslashreplace")
    return ("…" if start else "") + text + ("…" if start + width < len(body) else "")


def _first_difference(a: bytes, b: bytes) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def compare_documents(
    baseline: Any,
    candidate: Any,
    options: CompareOptions,
    out: Comparison,
    prefix: Sequence[Any] = (),
) -> None:
    """Structural comparison of two decoded JSON documents, into ``out``."""
    excluded = [
        re.compile(r"\[" + re.escape(repr(name)) + r"\]$") for name in options.ignored_fields
    ]
    diff = DeepDiff(
        baseline,
        candidate,
        view="tree",
        ignore_numeric_type_changes=True,
        ignore_nan_inequality=True,
        # Lists compare index by index (row i with row i), never as an edit script that would
        # explain every shifted value as an insertion plus a deletion.
        zip_ordered_iterables=True,
        exclude_regex_paths=excluded or None,
        custom_operators=[_NumberOperator(options.float_tolerance, options.significant_digits)],
        verbose_level=2,
    )
    limit = options.max_differences
    for report_type, levels in diff.items():
        for level in levels:
            parts = [*prefix, *level.path(output_format="list")]
            row, column = locate(list(level.path(output_format="list")), baseline)
            t1 = level.t1
            t2 = level.t2
            note = ""
            if report_type in ("dictionary_item_added", "iterable_item_added"):
                t1, note = _MISSING, "only in candidate"
            elif report_type in ("dictionary_item_removed", "iterable_item_removed"):
                t2, note = _MISSING, "only in baseline"
            elif report_type == "type_changes":
                note = f"type changed: {_json_type(t1)} -> {_json_type(t2)}"
            out.add(
                Difference(
                    "body",
                    render_path(parts),
                    _jsonable(t1),
                    _jsonable(t2),
                    row,
                    column,
                    note,
                ),
                limit,
            )


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if _is_number(value):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def compare_bodies(
    baseline: Answer, candidate: Answer, options: CompareOptions, out: Comparison
) -> None:
    """Compare two known bodies: JSON structurally, event streams per event, else bytes."""
    a, b = baseline.body, candidate.body
    assert a is not None and b is not None
    if _is_json_type(baseline.content_type) and _is_json_type(candidate.content_type):
        ok_a, doc_a = _load_json(a)
        ok_b, doc_b = _load_json(b)
        if ok_a and ok_b:
            compare_documents(doc_a, doc_b, options, out)
            return
    if (
        _mimetype(baseline.content_type) == "text/event-stream"
        and _mimetype(candidate.content_type) == "text/event-stream"
    ):
        compare_documents(parse_event_stream(a), parse_event_stream(b), options, out, ["events"])
        return
    if a != b:
        offset = _first_difference(a, b)
        out.add(
            Difference(
                "body",
                "bytes",
                _snippet(a, offset),
                _snippet(b, offset),
                note=f"bodies differ from byte {offset} (lengths {len(a)} and {len(b)})",
            ),
            options.max_differences,
        )


def _header_map(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        out[key] = f"{out[key]},{value}" if key in out else value
    return out


def compare(baseline: Answer, candidate: Answer, options: CompareOptions) -> Comparison:
    """Every difference between the baseline's and the candidate's answer.

    A status mismatch is reported alone: the bodies of different statuses are different answers,
    and listing their fields would only hide the cause.
    """
    out = Comparison()
    limit = options.max_differences
    if baseline.status != candidate.status:
        out.add(Difference("status", "status", baseline.status, candidate.status), limit)
        return out
    ct_a = normalise_content_type(baseline.content_type)
    ct_b = normalise_content_type(candidate.content_type)
    if ct_a != ct_b:
        out.add(
            Difference(
                "content_type", "Content-Type", baseline.content_type, candidate.content_type
            ),
            limit,
        )
    if baseline.headers is not None and candidate.headers is not None:
        ha, hb = _header_map(baseline.headers), _header_map(candidate.headers)
        for name in sorted(set(ha) | set(hb)):
            if name == "content-type" or name in options.ignored_headers:
                continue
            if is_sensitive_header(name):
                continue
            va, vb = ha.get(name, _MISSING), hb.get(name, _MISSING)
            if va != vb:
                out.add(Difference("header", name, va, vb), limit)
    if baseline.body is None or candidate.body is None:
        out.body_compared = False
        return out
    compare_bodies(baseline, candidate, options, out)
    return out
