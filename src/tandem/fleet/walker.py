"""Moving a fleet to a percentage: write it everywhere, restart only the deployments that change
side, at most ``max_unavailable`` at a time, and verify each one on its new side.

:meth:`Walker.move` does one percentage change:

1. probe every deployment (``/ping`` and ``/info/``) for the side it runs now;
2. write the percentage to every deployment whose side does not change (no restart: a restart for
   another reason later picks the same side);
3. restart the others in batches of ``max_unavailable``, moves towards Flask first: each is
   drained from service discovery, gets the percentage, restarts, must be ready on its new side
   (``/readyz``, ``/ping``, ``/info/``) and pass ``tandem verify --expect-server <side>``;
4. a deployment that fails on FastAPI is put back: its old percentage is written again, it
   restarts on Flask and is verified there, and it stays *held* at this percentage (not tried
   again until the fleet moves elsewhere or an operator resumes). Once a batch had a failure, the
   remaining moves to FastAPI of this change are not attempted (held as well). A deployment that
   fails on Flask (a rollback) is reported and left there: Flask is where it must end up.

Everything the walker touches goes through seams (the places, the probe, readiness, verification),
so the step logic runs in process against fakes, tick by tick.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from tandem.errors import ConfigError
from tandem.fleet.inventory import Member
from tandem.fleet.places import Place, RestartError
from tandem.fleet.plan import BASELINE, CANDIDATE, batches, bucket, format_percent, side_for

logger = logging.getLogger("tandem.fleet")


@dataclass
class Probe:
    """One look at a deployment."""

    up: bool
    """``/ping`` answered 200."""
    side: str | None
    """``fastapi`` or ``flask`` from ``/info/`` (None: unknown)."""
    detail: str = ""


@dataclass
class MemberState:
    """What the fleet knows about one deployment (kept in the state file)."""

    id: str
    bucket: float
    percent: str | None = None
    """The percentage its parameter store holds (what it starts with)."""
    side: str | None = None
    """The side it was last seen on (``/info/``), or, while it does not answer, the side its
    percentage gives."""
    health: str = "unknown"
    """``up`` or ``down`` (``/ping``), ``restarting`` while the fleet moves it, ``failed`` after a
    failed move until it is probed again (the verification keeps the failure)."""
    detail: str = ""
    held_at: float | None = None
    """The percentage at which its move to FastAPI failed (or was not attempted): it keeps its old
    percentage and side while the fleet stays there."""
    verification: dict[str, Any] | None = None
    """The last verification: ``at``, ``expect``, ``passed``, ``summary``."""
    restarted_at: float | None = None
    restarts: int = 0
    requests: int | None = None
    """Scoring requests in the trigger window (Prometheus)."""
    share: float | None = None
    """Its fraction of the fleet's scoring requests in the trigger window."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> MemberState:
        """Inverse of :meth:`to_dict` (unknown keys ignored)."""
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in doc.items() if k in known})


@dataclass
class MoveReport:
    """What one :meth:`Walker.move` did."""

    percent: float
    moved: list[str] = field(default_factory=list)
    """Deployments restarted onto their new side and verified there."""
    failed: list[str] = field(default_factory=list)
    """One line per deployment that failed (restart, readiness or verification)."""
    put_back: list[str] = field(default_factory=list)
    """Deployments that failed on FastAPI and were put back on Flask."""
    deferred: list[str] = field(default_factory=list)
    """Moves to FastAPI not attempted because an earlier batch of this change failed."""
    written: list[str] = field(default_factory=list)
    """Deployments that got the percentage without a restart (their side does not change)."""
    held: list[str] = field(default_factory=list)
    """Deployments left as they were: held at this percentage by an earlier failure."""
    batches: list[list[str]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (for the decision log)."""
        return asdict(self)

    @property
    def changed(self) -> bool:
        """Whether anything was restarted or written."""
        return bool(self.moved or self.failed or self.written or self.put_back)


ProbeFn = Callable[[Member], Probe]
ReadyFn = Callable[[Member, str], tuple[bool, str]]
VerifyFn = Callable[[Member, str], dict[str, Any]]


def _side_of_percent(member_id: str, percent: str | None) -> str | None:
    if percent is None:
        return None
    try:
        return side_for(member_id, float(percent))
    except (ValueError, ConfigError):  # not a number, or outside 0..100: no side of its own
        return None


class Walker:
    """Moves the fleet's deployments between sides; see the module docstring."""

    def __init__(
        self,
        members: Sequence[Member],
        places: Mapping[str, Place],
        states: dict[str, MemberState],
        probe: ProbeFn,
        wait_ready: ReadyFn,
        verify: VerifyFn,
        max_unavailable: int = 1,
        on_change: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.members = list(members)
        self.places = dict(places)
        self.states = states
        for member in self.members:
            self.states.setdefault(member.id, MemberState(member.id, bucket(member.id)))
        self.probe = probe
        self.wait_ready = wait_ready
        self.verify = verify
        self.max_unavailable = max(1, max_unavailable)
        self.on_change = on_change or (lambda: None)
        self.clock = clock
        self._lock = threading.Lock()

    # -- looking ----------------------------------------------------------------------------

    def observe(self) -> None:
        """Probe every deployment (concurrently) and record its health and side."""
        with ThreadPoolExecutor(max_workers=min(16, len(self.members) or 1)) as pool:
            probes = list(pool.map(self._probe, self.members))
        for member, probe in zip(self.members, probes, strict=True):
            st = self.states[member.id]
            if probe.up and probe.side is not None:
                st.side = probe.side
            elif st.side is None:
                st.side = _side_of_percent(member.id, st.percent)
            st.health = "up" if probe.up else "down"
            if probe.detail:
                st.detail = probe.detail

    def _probe(self, member: Member) -> Probe:
        try:
            return self.probe(member)
        except Exception as exc:  # a probe never stops the fleet
            return Probe(False, None, f"probe failed: {exc!r}")

    def read_percentages(self) -> None:
        """Read every deployment's percentage from its parameter store."""
        for member in self.members:
            try:
                self.states[member.id].percent = self.places[member.id].read()
            except RestartError as exc:
                self.states[member.id].detail = str(exc)

    def expected(self, state: MemberState) -> str | None:
        """The side a deployment's stored percentage gives it."""
        return _side_of_percent(state.id, state.percent)

    def candidates(self) -> list[Member]:
        """The deployments on FastAPI now."""
        return [m for m in self.members if self.states[m.id].side == CANDIDATE]

    # -- moving -----------------------------------------------------------------------------

    def move(
        self, percent: float, previous: float | None = None, retry: bool = False
    ) -> MoveReport:
        """Put the fleet at ``percent`` (see the module docstring); ``previous`` is the fleet's
        percentage before (what a deployment that fails on FastAPI is put back to); ``retry``
        also moves the deployments held at ``percent``."""
        started = time.monotonic()
        report = MoveReport(percent)
        text = format_percent(percent)
        self.observe()
        up: list[Member] = []
        down: list[Member] = []
        unfinished: list[Member] = []
        for member in self.members:
            st = self.states[member.id]
            if retry or (st.held_at is not None and st.held_at != percent):
                st.held_at = None
            if st.held_at is not None:
                if st.side == CANDIDATE and side_for(member.id, percent) == CANDIDATE:
                    # Held, yet still on the side it failed on: the controller stopped during
                    # its put-back. Finish it before anything else moves.
                    unfinished.append(member)
                report.held.append(member.id)
                continue
            want = side_for(member.id, percent)
            current = st.side if st.side is not None else self.expected(st)
            if current == want:
                if st.percent != text:
                    try:
                        self.places[member.id].write(text)
                        st.percent = text
                        report.written.append(member.id)
                    except RestartError as exc:
                        report.failed.append(f"{member.id}: {exc}")
                continue
            (up if want == CANDIDATE else down).append(member)
        self.on_change()
        for batch in batches([m.id for m in unfinished], self.max_unavailable):
            self._put_back_batch(batch, percent, previous, report)
        # Off FastAPI first, and never held back by a failure: Flask is the safe side.
        for batch in batches([m.id for m in down], self.max_unavailable):
            self._batch(batch, percent, previous, report)
        for batch in batches([m.id for m in up], self.max_unavailable):
            if report.put_back or report.deferred:
                for member_id in batch:
                    self.states[member_id].held_at = percent
                    report.deferred.append(member_id)
                continue
            self._batch(batch, percent, previous, report)
        self.on_change()
        report.seconds = round(time.monotonic() - started, 3)
        return report

    def _batch(
        self, ids: list[str], percent: float, previous: float | None, report: MoveReport
    ) -> None:
        report.batches.append(ids)
        by_id = {m.id: m for m in self.members}
        with ThreadPoolExecutor(max_workers=len(ids)) as pool:
            outcomes = list(pool.map(lambda i: self._move_one(by_id[i], percent, previous), ids))
        for member_id, (ok, line, put_back) in zip(ids, outcomes, strict=True):
            if ok:
                report.moved.append(member_id)
            else:
                report.failed.append(line)
                if put_back:
                    report.put_back.append(member_id)

    def _restart_onto(self, member: Member, percent: str, side: str) -> dict[str, Any]:
        """Write, restart, wait for readiness on ``side``, verify; the verification result."""
        place = self.places[member.id]
        st = self.states[member.id]
        try:
            place.write(percent)
            st.percent = percent
            place.restart(side)
        except RestartError as exc:
            return {"passed": False, "summary": f"restart failed: {exc}"}
        finally:
            st.restarts += 1
            st.restarted_at = self.clock()
        ready, seen = self.wait_ready(member, side)
        if not ready:
            return {"passed": False, "summary": f"not ready on {side}: {seen}"}
        try:
            return dict(self.verify(member, side))
        except Exception as exc:  # a verifier crash is a failed verification
            return {"passed": False, "summary": f"verification crashed: {exc!r}"}

    def _record(self, st: MemberState, side: str, result: Mapping[str, Any]) -> bool:
        passed = bool(result.get("passed"))
        st.verification = {
            "at": self.clock(),
            "expect": side,
            "passed": passed,
            "summary": str(result.get("summary", "")),
        }
        if passed:
            st.side = side
            st.health = "up"
        else:
            st.health = "failed"
        return passed

    def _move_one(
        self, member: Member, percent: float, previous: float | None
    ) -> tuple[bool, str, bool]:
        """One deployment onto its side at ``percent``: (verified, failure line, put back)."""
        st = self.states[member.id]
        want = side_for(member.id, percent)
        before = st.percent
        with self._lock:
            st.health = "restarting"
            self.on_change()  # drained from service discovery while it restarts
        result = self._restart_onto(member, format_percent(percent), want)
        with self._lock:
            ok = self._record(st, want, result)
            if ok:
                self.on_change()
                logger.info("%s: on %s and verified", member.id, want)
                return True, "", False
        summary = str(result.get("summary", ""))
        line = f"{member.id}: failed on {want}: {summary}"
        logger.warning("%s", line)
        if want != CANDIDATE:
            with self._lock:
                st.detail = line
                self.on_change()
            return False, line, False
        return False, self._put_back(member, percent, previous, before, line), True

    def _put_back(
        self, member: Member, percent: float, previous: float | None, before: str | None, line: str
    ) -> str:
        """Put a deployment that failed on FastAPI at ``percent`` back on Flask, held there: the
        percentage it had (or the fleet's previous one, else 0) gives it Flask. The hold is
        saved before the restart, so a controller stopped meanwhile finishes it on resume."""
        st = self.states[member.id]
        back = next(
            (
                p
                for p in (before, None if previous is None else format_percent(previous), "0")
                if p is not None and _side_of_percent(member.id, p) == BASELINE
            ),
            "0",
        )
        with self._lock:
            st.held_at = percent
            st.health = "restarting"
            self.on_change()
        again = self._restart_onto(member, back, BASELINE)
        with self._lock:
            restored = self._record(st, BASELINE, again)
            if restored:
                line += f"; put back on {BASELINE} ({back}%) and verified there"
            else:
                line += f"; putting it back on {BASELINE} FAILED too: {again.get('summary', '')}"
            st.detail = line
            self.on_change()
        return line

    def _put_back_batch(
        self, ids: list[str], percent: float, previous: float | None, report: MoveReport
    ) -> None:
        """Finish the put-backs a stopped controller left undone (held, still on FastAPI)."""
        report.batches.append(ids)
        by_id = {m.id: m for m in self.members}

        def finish(member_id: str) -> str:
            line = f"{member_id}: failed on {CANDIDATE} before the controller stopped"
            before = self.states[member_id].percent
            return self._put_back(by_id[member_id], percent, previous, before, line)

        with ThreadPoolExecutor(max_workers=len(ids)) as pool:
            lines = list(pool.map(finish, ids))
        for member_id, line in zip(ids, lines, strict=True):
            report.failed.append(line)
            report.put_back.append(member_id)

    def verify_all(self, side: str, since: float) -> list[str]:
        """Verify on ``side`` every deployment not verified there since ``since`` (after a
        rollback: every deployment must end verified on Flask); the failures, one line each."""
        todo = [
            m
            for m in self.members
            if not (
                (v := self.states[m.id].verification)
                and v.get("expect") == side
                and v.get("passed")
                and float(v.get("at", 0)) >= since
            )
        ]
        failures: list[str] = []

        def check(member: Member) -> tuple[Member, dict[str, Any]]:
            try:
                return member, dict(self.verify(member, side))
            except Exception as exc:
                return member, {"passed": False, "summary": f"verification crashed: {exc!r}"}

        with ThreadPoolExecutor(max_workers=min(8, len(todo) or 1)) as pool:
            results = list(pool.map(check, todo))
        for member, result in results:
            st = self.states[member.id]
            if not self._record(st, side, result):
                failures.append(f"{member.id}: {result.get('summary', '')}")
        self.on_change()
        return failures
