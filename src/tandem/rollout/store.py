"""Durable rollout state in one SQLite file.

Tables (schema version 1):

- ``meta(key, value)``: ``schema_version``, ``spec`` (JSON), ``deployment`` (JSON: the child
  processes' pids, ports and URLs, so a restarted controller can adopt them, and the targets
  and traffic seams), ``metrics`` (JSON: the metric seam, credentials redacted; see
  :mod:`tandem.rollout.seams`), ``children``, ``applied``.
- ``status(id=1, doc, updated_at)``: the current :class:`RolloutStatus` as JSON.
- ``decisions(seq, at, phase, action, rule, from_weight, to_weight, reason, numbers)``: every
  decision with the observations and numbers that made it.
- ``observations(seq, at, weight, doc)``: one row per evaluation (per-side error rate, P99, RSS,
  request counts) for the status table and the dashboard's charts.
- ``commands(seq, at, command, handled_at)``: ``pause``/``resume``/``abort``/``promote`` from the
  companion commands, consumed by the controller at its next evaluation.
- ``events(seq, at, kind, source, text, labels, key)``: what the rollback triggers count besides
  traffic: ``extension`` failure reports (``tandem rollout report``, the admin API, the
  candidate's log) and ``alert`` (Alertmanager webhooks, labels kept for the security matcher).
  ``key`` makes a re-delivered event (the same alert, the same log line) count once.

A decision and the status it produces are written in one transaction *before* the router is
told the new weight, so a weight is never applied without first being recorded.

The file is created readable by its owner only (SQLite gives its WAL files the same mode), and
one controller at a time holds :class:`StateLock` on it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tandem.rollout.status import RolloutStatus

SCHEMA_VERSION = "1"
COMMANDS = ("pause", "resume", "abort", "promote")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS status (
    id INTEGER PRIMARY KEY CHECK (id = 1), doc TEXT NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS decisions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, phase TEXT NOT NULL,
    action TEXT NOT NULL, rule TEXT NOT NULL, from_weight REAL NOT NULL,
    to_weight REAL NOT NULL, reason TEXT NOT NULL, numbers TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS observations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, weight REAL NOT NULL,
    doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS commands (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, command TEXT NOT NULL,
    handled_at REAL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, kind TEXT NOT NULL,
    source TEXT NOT NULL, text TEXT NOT NULL, labels TEXT NOT NULL, key TEXT UNIQUE);
"""
EVENT_KINDS = ("extension", "alert", "difference")


@dataclass(frozen=True)
class DecisionRow:
    """One recorded decision."""

    seq: int
    at: float
    phase: str
    action: str
    rule: str
    from_weight: float
    to_weight: float
    reason: str
    numbers: dict[str, Any]


class RolloutStore:
    """Reads and writes the rollout's SQLite file. Safe for several processes (WAL mode)."""

    def __init__(self, path: Path, any_thread: bool = False) -> None:
        """``any_thread``: the connection may be used from other threads than its creator's
        (one at a time: the caller serialises)."""
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # Created 0600 before SQLite opens it: the state holds deployment details and commands.
        # Only when it does not exist: closing any descriptor of a file drops every POSIX lock
        # this process holds on it, so opening and closing the database beside a connection
        # this process already has (a second store, a dashboard, a walk's thread) would drop
        # that connection's SQLite locks, and other processes would stop seeing its writes.
        if not path.exists():
            try:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
            except FileExistsError:
                pass  # created meanwhile by another process
        self._conn = sqlite3.connect(
            str(path), timeout=30.0, isolation_level=None, check_same_thread=not any_thread
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(_SCHEMA)
        current = self.get_meta("schema_version")
        if current is None:
            self.set_meta("schema_version", SCHEMA_VERSION)
        elif current != SCHEMA_VERSION:
            raise ValueError(f"{path}: rollout store schema {current}, expected {SCHEMA_VERSION}")

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # -- meta ----------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        """A meta value, or None."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Set a meta value."""
        self._conn.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def get_json(self, key: str) -> Any:
        """A JSON meta value, or None."""
        value = self.get_meta(key)
        return None if value is None else json.loads(value)

    def set_json(self, key: str, value: Any) -> None:
        """Set a JSON meta value."""
        self.set_meta(key, json.dumps(value, sort_keys=True))

    # -- status and decisions --------------------------------------------------------------------

    def load_status(self) -> RolloutStatus | None:
        """The saved status, or None for a new rollout."""
        row = self._conn.execute("SELECT doc FROM status WHERE id = 1").fetchone()
        return None if row is None else RolloutStatus.from_dict(json.loads(row[0]))

    def save(
        self,
        status: RolloutStatus,
        *,
        action: str | None = None,
        rule: str = "",
        from_weight: float = 0.0,
        reason: str = "",
        numbers: dict[str, Any] | None = None,
        at: float | None = None,
    ) -> None:
        """Save a status and, when ``action`` is given, its decision — in one transaction."""
        now = time.time() if at is None else at
        doc = json.dumps(status.to_dict(), sort_keys=True)
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO status(id, doc, updated_at) VALUES (1, ?, ?) ON CONFLICT(id) "
                "DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at",
                (doc, now),
            )
            if action is not None:
                conn.execute(
                    "INSERT INTO decisions(at, phase, action, rule, from_weight, to_weight, "
                    "reason, numbers) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        now,
                        status.phase.value,
                        action,
                        rule,
                        from_weight,
                        status.weight,
                        reason,
                        json.dumps(numbers or {}, sort_keys=True, default=str),
                    ),
                )

    def decisions(self, since: int = 0, limit: int = 1000) -> list[DecisionRow]:
        """Recorded decisions after ``since``, oldest first."""
        rows = self._conn.execute(
            "SELECT seq, at, phase, action, rule, from_weight, to_weight, reason, numbers "
            "FROM decisions WHERE seq > ? ORDER BY seq LIMIT ?",
            (since, limit),
        ).fetchall()
        return [
            DecisionRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], json.loads(r[8]))
            for r in rows
        ]

    # -- observations ----------------------------------------------------------------------------

    def add_observation(self, at: float, weight: float, doc: dict[str, Any]) -> None:
        """Record one evaluation's observations."""
        self._conn.execute(
            "INSERT INTO observations(at, weight, doc) VALUES (?, ?, ?)",
            (at, weight, json.dumps(doc, sort_keys=True, default=str)),
        )

    def observations(self, since: float = 0.0, limit: int = 5000) -> list[dict[str, Any]]:
        """Observations recorded at or after ``since`` (each with ``at`` and ``weight``)."""
        rows = self._conn.execute(
            "SELECT at, weight, doc FROM observations WHERE at >= ? ORDER BY seq DESC LIMIT ?",
            (since, limit),
        ).fetchall()
        out = []
        for at, weight, doc in reversed(rows):
            item = json.loads(doc)
            item["at"] = at
            item["weight"] = weight
            out.append(item)
        return out

    # -- commands --------------------------------------------------------------------------------

    def add_command(self, command: str) -> int:
        """Queue an operator command for the controller."""
        if command not in COMMANDS:
            raise ValueError(f"unknown command {command!r}; expected one of {COMMANDS}")
        cur = self._conn.execute(
            "INSERT INTO commands(at, command) VALUES (?, ?)", (time.time(), command)
        )
        return int(cur.lastrowid or 0)

    def pending_commands(self) -> list[tuple[int, str]]:
        """Commands not yet handled, oldest first."""
        return [
            (int(r[0]), str(r[1]))
            for r in self._conn.execute(
                "SELECT seq, command FROM commands WHERE handled_at IS NULL ORDER BY seq"
            ).fetchall()
        ]

    def mark_handled(self, seq: int) -> None:
        """Mark a command as handled."""
        self._conn.execute("UPDATE commands SET handled_at = ? WHERE seq = ?", (time.time(), seq))

    # -- events ----------------------------------------------------------------------------------

    def add_event(
        self,
        kind: str,
        source: str,
        text: str,
        labels: dict[str, str] | None = None,
        key: str | None = None,
        at: float | None = None,
    ) -> bool:
        """Record one event; False when ``key`` was recorded before (a re-delivery)."""
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {kind!r}; expected one of {EVENT_KINDS}")
        cur = self._conn.execute(
            "INSERT OR IGNORE INTO events(at, kind, source, text, labels, key) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                time.time() if at is None else at,
                kind,
                source,
                text[:2000],
                json.dumps(labels or {}, sort_keys=True),
                key,
            ),
        )
        return cur.rowcount == 1

    def events(self, kind: str, since: float = 0.0) -> list[Event]:
        """Events of one kind at or after ``since``, oldest first."""
        return [
            Event(int(r[0]), float(r[1]), str(r[2]), str(r[3]), str(r[4]), json.loads(r[5]))
            for r in self._conn.execute(
                "SELECT seq, at, kind, source, text, labels FROM events "
                "WHERE kind = ? AND at >= ? ORDER BY seq",
                (kind, since),
            ).fetchall()
        ]


def add_events(path: Path, events: list[tuple[str, str, str, dict[str, str], str | None]]) -> int:
    """Record ``(kind, source, text, labels, key)`` events in the store at ``path`` on a
    connection of their own (the router's admin API and mirror, from a worker thread); how many
    were new."""
    store = RolloutStore(path)
    try:
        return sum(
            store.add_event(k, src, text, labels, key) for k, src, text, labels, key in events
        )
    finally:
        store.close()


@dataclass(frozen=True)
class Event:
    """One recorded event."""

    seq: int
    at: float
    kind: str
    source: str
    text: str
    labels: dict[str, str]


class StateLocked(Exception):
    """Another live controller holds the state file."""


class StateLock:
    """An exclusive, advisory lock on a rollout's state, held for a controller's lifetime.

    ``flock`` on ``<state>.lock``: the kernel drops it when the holder exits, however it exits
    (SIGKILL included), so a stale lock never blocks a restart. The holder's PID is written
    into the file so a refused start can name it.
    """

    def __init__(self, state: Path, command: str = "tandem rollout") -> None:
        self.state = state
        self.command = command
        """The command whose companions talk to the holder (named when a start is refused)."""
        self.path = state.with_name(state.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`StateLocked` naming the holder's PID."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise StateLocked(
                    f"another controller (PID {holder}) is running the rollout in "
                    f"{self.state}; stop it first, or use `{self.command} "
                    "status|pause|resume|abort|promote` to talk to it"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def held(self) -> bool:
        """Whether a live controller holds the lock now (a probe: the lock is not taken)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            return exc.errno in (errno.EWOULDBLOCK, errno.EACCES)
        finally:
            os.close(fd)  # closing drops a probe lock that was granted
        return False

    def release(self) -> None:
        """Give the lock up (also done by the kernel when the process exits)."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
