"""Request payloads for verification, and comparison of predictions with expected output.

Payloads come from a file the user names (``--payload``) or from a model's code dir: its
``data.csv`` (else another ``*.csv``) for structured models, an ``input.*``/``data.*``/``*.txt``
file for unstructured ones. A CSV yields a single-row request (header and first row) and a batch
request (header and up to ``batch_rows`` rows, at least two).
"""

from __future__ import annotations

import csv
import io
import json
import math
import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Target types whose requests go to ``/predictUnstructured/`` and ``/transform/``.
UNSTRUCTURED = "unstructured"
TRANSFORM = "transform"

_NOT_SAMPLES = {".py", ".pyc", ".yaml", ".yml", ".md", ".pkl", ".joblib", ".onnx", ".pth", ".h5"}
_NOT_INPUT = re.compile(r"target|expected|output|label|predictions?", re.IGNORECASE)
#: Text sent to unstructured models when no sample file exists.
DEFAULT_UNSTRUCTURED = b"tandem verify: post-rollback smoke test\n"


class SampleError(Exception):
    """No usable sample payload (the message says what to pass instead)."""


@dataclass(frozen=True)
class Sample:
    """A single-row and a batch request body for one model."""

    source: str
    """Where the payload came from, for reports."""
    content_type: str
    single: bytes
    batch: bytes
    single_rows: int | None
    """Rows in ``single`` (None for unstructured bodies)."""
    batch_rows: int | None


def route_for(target_type: str | None) -> str:
    """The route a model of ``target_type`` is scored on."""
    if target_type == UNSTRUCTURED:
        return "/predictUnstructured/"
    if target_type == TRANSFORM:
        return "/transform/"
    return "/predict/"


def content_type_for(path: Path) -> str:
    """A request content type for a payload file, from its extension."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "text/csv"
    if suffix == ".mtx":
        return "text/mtx"
    if suffix == ".json":
        return "application/json"
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed or "application/octet-stream"


def csv_sample(data: bytes, source: str, batch_rows: int = 100) -> Sample:
    """Single-row and batch CSV bodies from a CSV file's bytes."""
    text = data.decode("utf-8-sig", errors="surrogateescape")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    rows = [row for row in rows if row]
    if len(rows) < 2:
        raise SampleError(f"{source} has no data rows under its header")
    header, body = rows[0], rows[1:]
    batch = body[: max(batch_rows, 2)]
    if len(batch) < 2:
        batch = batch * 10

    def render(selected: list[list[str]]) -> bytes:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(selected)
        return out.getvalue().encode("utf-8", errors="surrogateescape")

    return Sample(source, "text/csv", render(body[:1]), render(batch), 1, len(batch))


def file_sample(path: Path, target_type: str | None, batch_rows: int = 100) -> Sample:
    """The sample for a payload file: CSV is split into single/batch, anything else sent whole."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SampleError(f"cannot read {path}: {exc.strerror or exc}") from None
    content_type = content_type_for(path)
    if content_type == "text/csv" and target_type != UNSTRUCTURED:
        return csv_sample(data, str(path), batch_rows)
    return Sample(str(path), content_type, data, data, None, None)


def find_sample_file(code_dir: Path, target_type: str | None) -> Path | None:
    """The example input in a code dir: ``data.csv`` or another CSV; for unstructured, a text."""
    if not code_dir.is_dir():
        return None
    files = sorted(p for p in code_dir.iterdir() if p.is_file() and not p.name.startswith("."))
    if target_type == UNSTRUCTURED:
        candidates = [
            p
            for p in files
            if p.suffix.lower() not in _NOT_SAMPLES and not p.name.startswith("custom")
        ]
        for stem in ("input", "data", "sample", "example"):
            for path in candidates:
                if path.stem.lower() == stem:
                    return path
        for suffix in (".txt", ".json", ".csv"):
            for path in candidates:
                if path.suffix.lower() == suffix and not _NOT_INPUT.search(path.stem):
                    return path
        return None
    data = code_dir / "data.csv"
    if data.is_file():
        return data
    csvs = [p for p in files if p.suffix.lower() == ".csv"]
    preferred = [p for p in csvs if not _NOT_INPUT.search(p.stem)]
    chosen = preferred or csvs
    return chosen[0] if chosen else None


def default_unstructured_sample(reason: str) -> Sample:
    """A short text for unstructured models when no sample file exists."""
    return Sample(
        f"built-in text ({reason})",
        "text/plain; charset=utf-8",
        DEFAULT_UNSTRUCTURED,
        DEFAULT_UNSTRUCTURED,
        None,
        None,
    )


def code_dir_sample(code_dir: Path, target_type: str | None, batch_rows: int = 100) -> Sample:
    """The sample for a code dir; unstructured models fall back to a short text."""
    path = find_sample_file(code_dir, target_type)
    if path is not None:
        return file_sample(path, target_type, batch_rows)
    if target_type == UNSTRUCTURED:
        return default_unstructured_sample(f"no input file in {code_dir}")
    if not code_dir.is_dir():
        raise SampleError(f"code dir {code_dir} is not a readable directory")
    raise SampleError(
        f"no sample data in {code_dir} (no data.csv or other *.csv); pass --payload FILE"
    )


# -- comparison with expected output ------------------------------------------------------------

#: DRUM renders predictions with 10 decimals; CSV expectations are compared at that precision.
DECIMALS = 10


@dataclass(frozen=True)
class Comparison:
    """Outcome of comparing a response with ``--expected``."""

    ok: bool
    detail: str


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _same(expected: Any, got: Any, tolerance: float, rounded: bool) -> bool:
    if isinstance(expected, str) and isinstance(got, str):
        return expected == got
    left, right = _number(expected), _number(got)
    if left is not None and right is not None:
        if math.isnan(left) or math.isnan(right):
            return math.isnan(left) and math.isnan(right)
        if rounded:
            left, right = round(left, DECIMALS), round(right, DECIMALS)
        return abs(left - right) <= tolerance
    return bool(expected == got)


def _first_difference(
    expected: Any, got: Any, tolerance: float, rounded: bool, where: str = ""
) -> str | None:
    if isinstance(expected, dict) and isinstance(got, dict):
        for key in expected:
            if key not in got:
                return f"{where or 'body'}: missing {key!r}"
            found = _first_difference(expected[key], got[key], tolerance, rounded, f"{where}{key}")
            if found:
                return found
        extra = [key for key in got if key not in expected]
        return f"{where or 'body'}: unexpected {extra[0]!r}" if extra else None
    if isinstance(expected, list) and isinstance(got, list):
        if len(expected) != len(got):
            return f"{where or 'predictions'}: expected {len(expected)} rows, got {len(got)}"
        for index, (left, right) in enumerate(zip(expected, got, strict=True)):
            found = _first_difference(left, right, tolerance, rounded, f"row {index} ")
            if found:
                return found
        return None
    if _same(expected, got, tolerance, rounded):
        return None
    return f"{where.strip() or 'value'}: expected {expected!r}, got {got!r}"


def _csv_expectation(data: bytes) -> list[Any]:
    reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline=""))
    rows = list(reader)
    columns = reader.fieldnames or []
    if len(columns) == 1:
        return [row[columns[0]] for row in rows]
    return [dict(row) for row in rows]


def compare_expected(
    expected_path: Path, body: bytes, structured: bool, tolerance: float = 0.0
) -> Comparison:
    """Compare a response body with an expected-output file.

    Structured models: a JSON file is the whole response body (``{"predictions": ...}``) or just
    its predictions list; a CSV file is what ``tandem score --output x.csv`` writes, compared at
    DRUM's 10 decimals. Unstructured and transform models: a JSON file is compared structurally,
    anything else byte-for-byte. ``tolerance`` is an absolute tolerance on numbers.
    """
    try:
        expected_bytes = expected_path.read_bytes()
    except OSError as exc:
        return Comparison(False, f"cannot read --expected {expected_path}: {exc.strerror or exc}")
    is_json = expected_path.suffix.lower() == ".json"
    is_csv = expected_path.suffix.lower() == ".csv"
    if not structured and not is_json:
        if expected_bytes == body:
            return Comparison(True, f"body matches {expected_path.name} ({len(body)} bytes)")
        sizes = f"{len(body)} bytes, expected {len(expected_bytes)}"
        return Comparison(False, f"body differs from {expected_path.name} ({sizes})")
    try:
        got: Any = json.loads(body)
    except ValueError:
        return Comparison(False, "the response is not JSON")
    try:
        expected: Any = _csv_expectation(expected_bytes) if is_csv else json.loads(expected_bytes)
    except (ValueError, UnicodeDecodeError) as exc:
        return Comparison(False, f"cannot parse --expected {expected_path.name}: {exc}")
    if structured and isinstance(got, dict) and not isinstance(expected, dict):
        got = got.get("predictions")
    difference = _first_difference(expected, got, tolerance, rounded=is_csv)
    if difference is None:
        rows = len(expected) if isinstance(expected, list) else None
        what = f"{rows} rows" if rows is not None else "body"
        return Comparison(True, f"{what} match {expected_path.name}")
    return Comparison(False, f"{difference} ({expected_path.name})")


def expected_rows(expected_path: Path) -> int | None:
    """How many prediction rows an expected-output file holds (None when unknown)."""
    try:
        data = expected_path.read_bytes()
        if expected_path.suffix.lower() == ".csv":
            return len(_csv_expectation(data))
        if expected_path.suffix.lower() == ".json":
            doc = json.loads(data)
            rows = doc.get("predictions") if isinstance(doc, dict) else doc
            return len(rows) if isinstance(rows, list) else None
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return None
