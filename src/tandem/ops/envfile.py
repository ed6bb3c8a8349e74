"""Reading and rewriting a runtime parameter in an env file, byte-for-byte everywhere else.

An env file here is what ``set -a; . FILE``, ``env $(cat FILE)``, systemd's ``EnvironmentFile=``
or ``docker run --env-file`` read: ``KEY=value`` lines, optional ``export``, comments and blank
lines. Tandem reads the stack from ``MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE`` (DRUM's JSON form
``{"type": "string", "payload": "flask"}`` or a plain value) and falls back to a bare
``DRUM_SERVER_TYPE``; the prefixed variable wins and, as in a shell, the last assignment of a
variable wins.

:func:`rewrite_server_type` changes the value of every assignment of either variable, keeping the
line's indentation, ``export``, quoting, JSON form and trailing comment; every other line is kept
byte-for-byte. When neither variable is assigned it appends
``MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE=<stack>``. :func:`apply_server_type` writes the result
atomically (temporary file in the same directory, then ``os.replace``) after saving a
timestamped backup of the original.

The same functions take any runtime parameter by name (``DRUM_FASTAPI_CANARY_PERCENT`` for
``tandem fleet``): :func:`rewrite_param`, :func:`read_param` and :func:`apply_param` handle
``MLOPS_RUNTIME_PARAM_<NAME>`` and a bare ``<NAME>`` alike, a JSON form's string or numeric
``payload`` included.

Text is handled as UTF-8 with ``surrogateescape`` so that any byte sequence round-trips exactly.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PREFIXED_KEY = "MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE"
BARE_KEY = "DRUM_SERVER_TYPE"
KEYS = (PREFIXED_KEY, BARE_KEY)

_ENCODING = "utf-8"
_ERRORS = "surrogateescape"

PARAM_PREFIX = "MLOPS_RUNTIME_PARAM_"


def param_keys(name: str) -> tuple[str, str]:
    """The two variables that set runtime parameter ``name``: prefixed (wins) and bare."""
    return PARAM_PREFIX + name, name


@functools.cache
def _assignment(name: str) -> re.Pattern[str]:
    prefixed, bare = (re.escape(key) for key in param_keys(name))
    return re.compile(
        r"^(?P<lead>[ \t]*(?:export[ \t]+)?)"
        rf"(?P<key>{prefixed}|{bare})"
        r"(?P<sep>[ \t]*=[ \t]*)(?P<value>.*)$"
    )


_ASSIGNMENT = _assignment(BARE_KEY)
_EXPORT = re.compile(r"^[ \t]*export[ \t]+[A-Za-z_][A-Za-z0-9_]*=")
#: DRUM's JSON form, also with shell-escaped quotes (``\"payload\":\"flask\"``).
_PAYLOAD = re.compile(r'(\\?"payload\\?"[ \t]*:[ \t]*\\?")([^"\\]*)(\\?")')
#: A ``numeric`` runtime parameter's JSON form: ``{"type": "numeric", "payload": 25}``.
_NUMBER_PAYLOAD = re.compile(r'(\\?"payload\\?"[ \t]*:[ \t]*)(-?[0-9][0-9.eE+-]*)')
_COMMENT = re.compile(r"[ \t]+#")


@dataclass(frozen=True)
class Assignment:
    """One assignment of ``DRUM_SERVER_TYPE`` or its prefixed form in an env file."""

    line_no: int
    """1-based line number."""
    key: str
    value: str
    """The value as Tandem reads it (the JSON form's ``payload``), without quotes or comment."""
    text: str
    """The whole line, without its line ending."""


@dataclass(frozen=True)
class EnvChange:
    """The result of rewriting an env file (nothing is written yet)."""

    old_text: str
    new_text: str
    changed_lines: tuple[int, ...]
    """1-based line numbers of rewritten lines (in the new text)."""
    appended: bool
    """The variable was absent and a line was appended."""

    @property
    def changed(self) -> bool:
        """Whether the new text differs from the old one."""
        return self.old_text != self.new_text


def decode(data: bytes) -> str:
    """Bytes of an env file as text that encodes back to exactly the same bytes."""
    return data.decode(_ENCODING, _ERRORS)


def encode(text: str) -> bytes:
    """The inverse of :func:`decode`."""
    return text.encode(_ENCODING, _ERRORS)


def split_lines(text: str) -> list[str]:
    """Lines with their endings (``\\n`` or ``\\r\\n``); only ``\\n`` ends a line."""
    return re.findall(r"[^\n]*\n|[^\n]+$", text)


def _body(line: str) -> tuple[str, str]:
    """A line split into its content and its ending."""
    if line.endswith("\r\n"):
        return line[:-2], "\r\n"
    if line.endswith("\n"):
        return line[:-1], "\n"
    return line, ""


def _split_value(raw: str) -> tuple[str, str, str]:
    """``(quote, inner, rest)`` of a raw value: its quote character, the quoted text, the tail."""
    if raw[:1] in ("'", '"'):
        quote = raw[0]
        index = 1
        while index < len(raw):
            char = raw[index]
            if char == "\\" and quote == '"':
                index += 2
                continue
            if char == quote:
                return quote, raw[1:index], raw[index + 1 :]
            index += 1
    comment = _COMMENT.search(raw)
    inner, rest = (raw[: comment.start()], raw[comment.start() :]) if comment else (raw, "")
    stripped = inner.rstrip(" \t")
    return "", stripped, inner[len(stripped) :] + rest


def _parse_value(inner: str) -> str:
    match = _PAYLOAD.search(inner) or _NUMBER_PAYLOAD.search(inner)
    return match.group(2).strip() if match else inner.strip()


def find_assignments(text: str, name: str = BARE_KEY) -> list[Assignment]:
    """Every assignment of either variable of parameter ``name``, in file order."""
    pattern = _assignment(name)
    found = []
    for number, line in enumerate(split_lines(text), start=1):
        body, _ = _body(line)
        match = pattern.match(body)
        if match is None:
            continue
        _, inner, _ = _split_value(match.group("value"))
        found.append(Assignment(number, match.group("key"), _parse_value(inner), body))
    return found


def effective_assignment(text: str, name: str = BARE_KEY) -> Assignment | None:
    """The assignment Tandem acts on: the last prefixed one, else the last bare one."""
    assignments = find_assignments(text, name)
    for key in param_keys(name):
        matching = [a for a in assignments if a.key == key]
        if matching:
            return matching[-1]
    return None


def read_server_type(text: str) -> str | None:
    """The ``DRUM_SERVER_TYPE`` value the file sets (as written, lower-cased), or None."""
    found = effective_assignment(text)
    return found.value.lower() if found is not None and found.value else None


def read_param(text: str, name: str) -> str | None:
    """The value the file gives runtime parameter ``name`` (a JSON form's payload), or None."""
    found = effective_assignment(text, name)
    return found.value if found is not None and found.value else None


def _rewrite_line(body: str, value: str, pattern: re.Pattern[str]) -> str:
    match = pattern.match(body)
    assert match is not None
    quote, inner, rest = _split_value(match.group("value"))
    payload = _PAYLOAD.search(inner) or _NUMBER_PAYLOAD.search(inner)
    if payload is not None:
        new_inner = inner[: payload.start(2)] + value + inner[payload.end(2) :]
    else:
        stripped = inner.strip()
        start = inner.index(stripped) if stripped else 0
        new_inner = inner[:start] + value + inner[start + len(stripped) :]
    text = f"{quote}{new_inner}{quote}" if quote else new_inner
    return match.group("lead") + match.group("key") + match.group("sep") + text + rest


def rewrite_param(text: str, name: str, value: str) -> EnvChange:
    """``text`` with every assignment of parameter ``name`` set to ``value``; when there is none,
    ``MLOPS_RUNTIME_PARAM_<name>=<value>`` is appended. A JSON form keeps its form (a numeric
    ``payload`` takes ``value`` unquoted, so ``value`` must then be a number)."""
    pattern = _assignment(name)
    lines = split_lines(text)
    changed: list[int] = []
    out: list[str] = []
    for number, line in enumerate(lines, start=1):
        body, ending = _body(line)
        if pattern.match(body) is None:
            out.append(line)
            continue
        new_body = _rewrite_line(body, value, pattern)
        if new_body != body:
            changed.append(number)
        out.append(new_body + ending)
    appended = False
    if not find_assignments(text, name):
        newline = "\r\n" if "\r\n" in text else "\n"
        if out and not out[-1].endswith("\n"):
            out[-1] += newline
        export = any(_EXPORT.match(_body(line)[0]) for line in lines)
        out.append(f"{'export ' if export else ''}{param_keys(name)[0]}={value}{newline}")
        changed.append(len(out))
        appended = True
    return EnvChange(text, "".join(out), tuple(changed), appended)


def rewrite_server_type(text: str, stack: str) -> EnvChange:
    """``text`` with every ``DRUM_SERVER_TYPE`` assignment set to ``stack`` (appended if absent)."""
    return rewrite_param(text, BARE_KEY, stack)


def unified_diff(old_text: str, new_text: str, path: str) -> str:
    """A unified diff (one line of context) between two versions of ``path``."""
    old = [_body(line)[0] for line in split_lines(old_text)]
    new = [_body(line)[0] for line in split_lines(new_text)]
    lines = difflib.unified_diff(old, new, fromfile=path, tofile=path, n=1, lineterm="")
    return "\n".join(lines)


def backup_path(path: Path, now: float | None = None) -> Path:
    """A fresh ``<name>.bak-YYYYmmddTHHMMSSZ`` next to ``path`` (``-1``, ``-2`` ... if taken)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    candidate = path.with_name(f"{path.name}.bak-{stamp}")
    counter = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.name}.bak-{stamp}-{counter}")
        counter += 1
    return candidate


def write_atomic(path: Path, data: bytes, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` atomically: a temporary file in its directory, then rename."""
    directory = path.parent
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


@dataclass(frozen=True)
class AppliedChange:
    """What :func:`apply_server_type` (or :func:`apply_param`) did."""

    path: Path
    """The file written (symbolic links resolved)."""
    backup: Path | None
    """The original's copy (None when :func:`apply_param` was asked for none)."""
    change: EnvChange


def apply_server_type(path: Path, stack: str, now: float | None = None) -> AppliedChange:
    """Set ``DRUM_SERVER_TYPE`` to ``stack`` in ``path``, keeping a timestamped backup.

    Symbolic links are followed (the link stays, its target is replaced). The backup holds the
    original bytes and permissions; the new file keeps the original permissions and, where the
    process may, its owner.
    """
    return apply_param(path, BARE_KEY, stack, now)


def apply_param(
    path: Path, name: str, value: str, now: float | None = None, backup: bool = True
) -> AppliedChange:
    """Set runtime parameter ``name`` to ``value`` in ``path`` atomically, as
    :func:`apply_server_type` does; with ``backup=False`` no copy of the original is kept, and a
    file that already says so is left alone (not even rewritten)."""
    real = Path(os.path.realpath(path))
    original = real.read_bytes()
    stat = real.stat()
    change = rewrite_param(decode(original), name, value)
    if not backup and not change.changed:
        return AppliedChange(real, None, change)
    copy = None
    if backup:
        copy = backup_path(real, now)
        # Created owner-only (an env file may hold secrets), then given the original's mode.
        fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(original)
        os.chmod(copy, stat.st_mode & 0o7777)
    write_atomic(real, encode(change.new_text), stat.st_mode & 0o7777)
    try:
        os.chown(real, stat.st_uid, stat.st_gid)
    except (PermissionError, AttributeError):
        pass
    return AppliedChange(real, copy, change)
