"""Scanning a server log, since its last start, for errors of the other stack and tracebacks.

After a rollback to Flask the seed asks for "no FastAPI or Uvicorn errors in logs", and "Starting
Flask server" in the log; after moving to FastAPI the same holds the other way round. Only the
part of the log after the last ``Starting <Framework> server`` line (Tandem's start-up line) is
looked at, so errors of the server that ran before the restart are ignored.

An error line is one logged at ERROR/CRITICAL/FATAL (plain, Gunicorn's ``[ERROR]`` and JSON
``"level": "error"`` formats); a traceback is a ``Traceback (most recent call last):`` block. Both
are attributed to the other stack when they mention it (``fastapi``, ``uvicorn``, ``starlette``
for a Flask server; ``flask``, ``gunicorn``, ``werkzeug`` for a FastAPI one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

#: Read at most this much from the end of a log.
MAX_BYTES = 64 * 1024 * 1024

START_LINE = re.compile(r"Starting (?P<framework>\w+) server\b(?: \((?P<process>\w+))?")
_LEVEL_UPPER = re.compile(r"\b(?:ERROR|CRITICAL|FATAL)\b")
_LEVEL_OTHER = re.compile(
    r"\[(?:error|critical|fatal)\]"
    r"|\"(?:level|levelname|severity)\"\s*:\s*\"(?:error|critical|fatal)\"",
    re.IGNORECASE,
)
_TRACEBACK = "Traceback (most recent call last):"
_OTHER_STACK = {
    "flask": re.compile(r"fastapi|uvicorn|starlette", re.IGNORECASE),
    "fastapi": re.compile(r"flask|gunicorn|werkzeug", re.IGNORECASE),
}
_EXTENSION_LOADED = re.compile(r"Loaded extensions from (?P<path>\S+)")
_EXTENSION_FAILED = re.compile(r"Failed to extend the app from \[(?P<path>[^\]]+)\]")


@dataclass(frozen=True)
class Finding:
    """One offending line or traceback."""

    line_no: int
    kind: str
    """``other-stack error``, ``traceback`` or ``error``."""
    text: str


@dataclass
class LogScan:
    """What the log shows since the last start."""

    path: Path
    start_line_no: int | None
    start_text: str | None
    start_framework: str | None
    """``flask`` or ``fastapi`` from the start line."""
    start_process: str | None
    lines_scanned: int
    other_stack_errors: list[Finding] = field(default_factory=list)
    tracebacks: list[Finding] = field(default_factory=list)
    errors: list[Finding] = field(default_factory=list)
    """Error lines that are neither other-stack errors nor part of a traceback (not failing)."""
    extensions_loaded: list[str] = field(default_factory=list)
    extension_failures: list[str] = field(default_factory=list)

    @property
    def failing(self) -> list[Finding]:
        """Findings that fail verification, in line order."""
        return sorted(self.other_stack_errors + self.tracebacks, key=lambda f: f.line_no)


def _is_error(line: str) -> bool:
    return bool(_LEVEL_UPPER.search(line) or _LEVEL_OTHER.search(line))


def read_tail(path: Path, limit: int = MAX_BYTES) -> str:
    """The last ``limit`` bytes of a file, decoded leniently."""
    with path.open("rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - limit))
        data = handle.read()
    return data.decode("utf-8", errors="replace")


def scan_log(path: Path, framework: str | None) -> LogScan:
    """Scan ``path`` since its last start line; ``framework`` is the stack that should serve."""
    lines = read_tail(path).splitlines()
    start_index = None
    for index in range(len(lines) - 1, -1, -1):
        if START_LINE.search(lines[index]):
            start_index = index
            break
    start_match = START_LINE.search(lines[start_index]) if start_index is not None else None
    begin = 0 if start_index is None else start_index
    scan = LogScan(
        path=path,
        start_line_no=None if start_index is None else start_index + 1,
        start_text=None if start_index is None else lines[start_index].strip(),
        start_framework=start_match.group("framework").lower() if start_match else None,
        start_process=((start_match.group("process") or "").lower() or None)
        if start_match
        else None,
        lines_scanned=len(lines) - begin,
    )
    # Extensions are loaded just before the start line of the same run: look back to the
    # previous run's start line.
    previous = None
    for index in range(begin - 1, -1, -1):
        if START_LINE.search(lines[index]):
            previous = index
            break
    for line in lines[(0 if previous is None else previous + 1) : begin]:
        _note_extension(scan, line)
    other = _OTHER_STACK.get(framework or "")
    index = begin
    while index < len(lines):
        line = lines[index]
        if _TRACEBACK in line and not line.lstrip().startswith(_TRACEBACK):
            # A traceback inside one record (JSON logs): the line is the whole block.
            bucket = scan.tracebacks
            if other is not None and other.search(line):
                bucket = scan.other_stack_errors
            kind = "traceback" if bucket is scan.tracebacks else "other-stack error"
            bucket.append(Finding(index + 1, kind, _shorten(line.strip())))
            index += 1
            continue
        if _TRACEBACK in line:
            block = [line]
            cursor = index + 1
            while cursor < len(lines) and (
                lines[cursor].startswith((" ", "\t")) or not lines[cursor].strip()
            ):
                block.append(lines[cursor])
                cursor += 1
            if cursor < len(lines):
                block.append(lines[cursor])
                cursor += 1
            summary = _shorten(block[-1].strip())
            text = "\n".join(block)
            if other is not None and other.search(text):
                scan.other_stack_errors.append(Finding(index + 1, "other-stack error", summary))
            else:
                scan.tracebacks.append(Finding(index + 1, "traceback", summary))
            index = cursor
            continue
        if _is_error(line):
            if other is not None and other.search(line):
                scan.other_stack_errors.append(
                    Finding(index + 1, "other-stack error", _shorten(line.strip()))
                )
            else:
                scan.errors.append(Finding(index + 1, "error", _shorten(line.strip())))
        _note_extension(scan, line)
        index += 1
    return scan


def _note_extension(scan: LogScan, line: str) -> None:
    loaded = _EXTENSION_LOADED.search(line)
    if loaded:
        scan.extensions_loaded.append(loaded.group("path"))
    failed = _EXTENSION_FAILED.search(line)
    if failed:
        scan.extension_failures.append(failed.group("path"))


def extension_failures(text: str) -> list[tuple[int, str]]:
    """(character offset, extension path) of each "Failed to extend the app" line in ``text``."""
    return [(m.start(), m.group("path")) for m in _EXTENSION_FAILED.finditer(text)]


def _shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
