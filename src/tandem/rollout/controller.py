"""The rollout controller: supervises baseline, candidate and router; observes, decides, acts.

Each evaluation (every ``spec.interval`` seconds):

1. take at most one operator command from the store;
2. observe: the router's cumulative per-side counters (windows are differences between
   snapshots), each deployment's ``/stats/`` (RSS, OOM kills, and the candidate's cumulative
   OpenTelemetry span counts, windowed the same way) and the candidate's ``/ping``; or all of
   it from Prometheus;
3. :func:`~tandem.rollout.decide.decide`;
4. save the new status and the decision in one transaction, *then* tell the router the weight;
5. record the observations (status table, dashboard), notify on phase changes and rollbacks,
   and after a rollback verify the baseline.

Killing the controller, even with SIGKILL, leaves the children serving (they run in their own
sessions); starting it again with the same state file adopts them and resumes at the recorded
phase and weight.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from tandem.ops.logscan import extension_failures
from tandem.quantiles import histogram_quantile
from tandem.rollout.alerts import matches, parse_matchers
from tandem.rollout.analysis import SideWindow, TraceWindow, describe_difference
from tandem.rollout.decide import Decision, Observations, decide
from tandem.rollout.nginx import TrafficError
from tandem.rollout.paging import PagerDuty, dedup_key
from tandem.rollout.prometheus import PrometheusSource
from tandem.rollout.spec import RolloutSpec
from tandem.rollout.status import Phase, RolloutStatus
from tandem.rollout.store import RolloutStore
from tandem.tls import TLS_PARAMETERS

logger = logging.getLogger("tandem.rollout")

SIDES = ("baseline", "candidate")


@dataclass
class ChildSpec:
    """A supervised child process: how to start it, where it answers, and which process it is.

    A child is known by its PID *and* its process start time (``started``), never by what
    answers on its port: a PID the kernel has reused, or some other server on the port, is not
    the child.
    """

    name: str
    command: list[str]
    env: dict[str, str]
    url: str
    health_path: str = "/ping"
    pid: int | None = None
    started: float | None = None
    log_path: str | None = None
    health_headers: dict[str, str] = field(default_factory=dict, repr=False)
    """Sent with health checks (the router's admin token); never stored."""
    unset: tuple[str, ...] = ()
    """Variables of the controller's environment this child must not inherit."""

    def identity(self) -> dict[str, Any]:
        """What the store keeps to find this child again: PID and start time."""
        return {"pid": self.pid, "started": self.started}

    def adopt(self, saved: Mapping[str, Any] | None) -> None:
        """Take a stored identity (see :meth:`identity`)."""
        if saved:
            self.pid = saved.get("pid")
            self.started = saved.get("started")


def _process_start(pid: int) -> float | None:
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def _alive(child: ChildSpec) -> bool:
    """Whether ``child.pid`` is still the process that was started for it."""
    if not child.pid or child.started is None:
        return False
    try:
        proc = psutil.Process(child.pid)
        return (
            proc.is_running()
            and proc.status() != psutil.STATUS_ZOMBIE
            and abs(proc.create_time() - child.started) < 0.01
            and proc.cmdline() == list(child.command)
        )
    except psutil.Error:
        return False


def _session_alive(sid: int) -> bool:
    """Whether any process still belongs to session ``sid`` (a child's orphaned workers)."""
    for pid in psutil.pids():
        try:
            if os.getsid(pid) == sid:
                return True
        except OSError:
            continue
    return False


class Supervisor:
    """Starts, adopts and restarts the rollout's child processes.

    ``on_change`` runs after every (re)start, so the store always knows every child that is
    running: a controller killed right after restarting one leaves nothing its successor
    cannot find and stop.
    """

    def __init__(
        self,
        children: list[ChildSpec],
        log_dir: Path,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.children = {c.name: c for c in children}
        self.log_dir = log_dir
        self.on_change = on_change
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    def identities(self) -> dict[str, dict[str, Any]]:
        """Every child's identity, for the store."""
        return {name: child.identity() for name, child in self.children.items()}

    def ensure(self, name: str) -> bool:
        """Start the child unless it is already running; True when it was (re)started."""
        child = self.children[name]
        if child.name in self._procs and self._procs[child.name].poll() is None:
            return False
        if child.name not in self._procs and _alive(child):
            return False  # adopted from a previous controller
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{child.name}.log"
        env = {k: v for k, v in os.environ.items() if k not in child.unset}
        env.update(child.env)
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                child.command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self._procs[child.name] = proc
        child.pid = proc.pid
        child.started = _process_start(proc.pid)
        child.log_path = str(log_path)
        if self.on_change is not None:
            self.on_change()
        logger.info("started %s (pid %d): %s", child.name, proc.pid, " ".join(child.command))
        return True

    def wait_healthy(self, name: str, timeout: float = 120.0) -> None:
        """Block until the child answers its health path (or fail with its log tail).

        Only while the child itself is alive: an answer from the port after the child has
        exited (another server bound there) is not health.
        """
        child = self.children[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running(name):
                proc = self._procs.get(name)
                code = proc.returncode if proc is not None else "?"
                raise RuntimeError(f"{name} exited with {code}:\n{self.log_tail(name)}")
            try:
                resp = httpx.get(
                    child.url + child.health_path, headers=child.health_headers, timeout=1.0
                )
                if resp.status_code == 200 and self.running(name):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{name} did not become healthy in {timeout:g}s:\n{self.log_tail(name)}")

    def supervises(self, name: str) -> bool:
        """Whether ``name`` is one of this rollout's own processes (not an attached one)."""
        return name in self.children

    def log_path(self, name: str) -> Path | None:
        """Where a child's output goes (None for an unknown child)."""
        child = self.children.get(name)
        if child is None:
            return None
        return Path(child.log_path or self.log_dir / f"{name}.log")

    def log_tail(self, name: str, lines: int = 30) -> str:
        """The last lines a child printed."""
        path = self.children[name].log_path or str(self.log_dir / f"{name}.log")
        try:
            return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def running(self, name: str) -> bool:
        """Whether the child process is alive."""
        proc = self._procs.get(name)
        if proc is not None:
            return proc.poll() is None
        return _alive(self.children[name])

    def stop_all(self, timeout: float = 15.0) -> None:
        """SIGTERM every child's process group, then SIGKILL what is left.

        Each child was started as the leader of its own session, so its workers are found by
        that session even when the leader itself died; a reused PID that leads no such session
        is left alone.
        """
        pids = [
            c.pid
            for c in self.children.values()
            if c.pid and (c.name in self._procs or _alive(c) or _session_alive(c.pid))
        ]
        for pid in pids:
            try:
                os.killpg(pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + timeout
        for pid in pids:
            while time.monotonic() < deadline and psutil.pid_exists(pid):
                try:
                    if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                        break
                except psutil.Error:
                    break
                time.sleep(0.05)
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for proc in self._procs.values():
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if self.on_change is not None:
            for child in self.children.values():
                child.pid = child.started = None
            self.on_change()


class RouterClient:
    """The controller's view of the router's admin API."""

    def __init__(self, admin_url: str, token: str | None = None) -> None:
        self.admin_url = admin_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(base_url=self.admin_url, headers=headers, timeout=5.0)

    def stats(self) -> dict[str, Any]:
        """Cumulative statistics since the router started."""
        resp = self._client.get("/api/stats")
        resp.raise_for_status()
        return dict(resp.json())

    def set_routing(self, weight: float, mirror_rate: float) -> dict[str, Any]:
        """Apply a weight (percent) and mirror rate atomically."""
        resp = self._client.post(
            "/api/routing",
            json={"weight_bp": int(round(weight * 100)), "mirror_rate": mirror_rate},
        )
        resp.raise_for_status()
        return dict(resp.json())


@dataclass
class Counters:
    """Cumulative counts for one side, as read from the router."""

    requests: int = 0
    errors: int = 0
    latency: list[int] = field(default_factory=list)

    def minus(self, older: Counters) -> Counters:
        """The traffic between two snapshots (counters reset if the router restarted)."""
        if self.requests < older.requests:
            return self
        lat = (
            [a - b for a, b in zip(self.latency, older.latency, strict=False)]
            if (len(older.latency) == len(self.latency))
            else list(self.latency)
        )
        return Counters(self.requests - older.requests, self.errors - older.errors, lat)


@dataclass
class Snapshot:
    """One reading of the router's counters."""

    at: float
    sides: dict[str, Counters]
    bounds: list[float]
    mirror_compared: int
    mirror_differences: int
    first_difference: str
    mirror_failures: int = 0


def parse_router_stats(doc: Mapping[str, Any], at: float) -> Snapshot:
    """Turn the router's ``/api/stats`` document into per-side counters.

    The candidate side sums served and mirrored traffic: in shadow, mirrored requests are the
    only evidence of how the candidate behaves. Latency bounds become seconds; the overflow
    bucket is given a bound 10 % past the last one.
    """
    bounds_ms = [float(b) for b in doc["latency_bounds_ms"]]
    bounds = [b / 1000.0 for b in bounds_ms] + [bounds_ms[-1] * 1.1 / 1000.0]
    sides: dict[str, Counters] = {}
    for side in SIDES:
        total = Counters()
        kinds = ("served", "mirrored") if side == "candidate" else ("served",)
        for kind in kinds:
            block = doc[kind][side]
            counts = [int(c) for c in block["latency"]["counts"]]
            total.requests += int(block["requests"])
            total.errors += int(block["errors"])
            total.latency = (
                counts
                if not total.latency
                else [a + b for a, b in zip(total.latency, counts, strict=True)]
            )
        sides[side] = total
    mirror = doc.get("mirror", {})
    diffs = mirror.get("differences") or []
    first = describe_difference(diffs[0]) if diffs else ""
    return Snapshot(
        at,
        sides,
        bounds,
        int(mirror.get("compared", 0)),
        int(mirror.get("differing", 0)),
        first,
        # 5xx where the baseline answered. Mirrors that got no answer at all (a timeout on a
        # loaded machine) are the candidate-down and latency rules' evidence, not this one's.
        int(mirror.get("candidate_failed", 0)),
    )


def window(snapshots: Sequence[Snapshot], since: float, side: str) -> SideWindow:
    """Traffic of one side from the first snapshot at or after ``since`` to the latest."""
    if not snapshots:
        return SideWindow()
    latest = snapshots[-1]
    base = next((s for s in snapshots if s.at >= since), snapshots[0])
    if base is latest and len(snapshots) > 1 and since <= snapshots[0].at:
        base = snapshots[0]
    delta = latest.sides[side].minus(base.sides[side]) if base is not latest else Counters()
    p99 = histogram_quantile(delta.latency, 0.99, latest.bounds) if delta.latency else None
    return SideWindow(delta.requests, delta.errors, p99)


@dataclass(frozen=True)
class TraceSample:
    """The candidate's cumulative span counts (``/stats/`` ``otel_info``) at one evaluation."""

    at: float
    spans_ended: int
    spans_exported: int
    export_failures: int

    @classmethod
    def parse(cls, doc: Mapping[str, Any] | None, at: float) -> TraceSample | None:
        """From a ``/stats/`` document; None when the server traces nothing (or is unreadable)."""
        info = (doc or {}).get("otel_info")
        if not isinstance(info, Mapping):
            return None
        try:
            return cls(
                at,
                int(info["spans_ended"]),
                int(info["spans_exported"]),
                int(info["export_failures"]),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def before(self, other: TraceSample) -> bool:
        """Whether ``other`` can follow this sample (no counter went down: no restart between)."""
        return (
            other.spans_ended >= self.spans_ended
            and other.spans_exported >= self.spans_exported
            and other.export_failures >= self.export_failures
        )


def trace_window(
    samples: Sequence[TraceSample], now: float, window_s: float, lag_s: float
) -> TraceWindow | None:
    """The trace-gap rule's counts from cumulative samples (the latest one taken at ``now``).

    Spans ended from the first sample at or after ``now - window_s`` until the last sample at
    or before ``now - lag_s``; spans exported and failed exports from that first sample until
    the latest. None without a sample at ``now`` or without two samples that far apart.
    """
    if not samples or samples[-1].at != now:
        return None
    base = next((s for s in samples if s.at >= now - window_s), None)
    lagged = next((s for s in reversed(samples) if s.at <= now - lag_s), None)
    if base is None or lagged is None or lagged.at <= base.at:
        return None
    latest = samples[-1]
    return TraceWindow(
        lagged.spans_ended - base.spans_ended,
        latest.spans_exported - base.spans_exported,
        latest.export_failures - base.export_failures,
    )


@dataclass
class Deployment:
    """What a rollout runs: the model, the two stacks, the addresses.

    Two ways to get the two sides (the *targets* seam): ``spawn`` starts baseline and candidate
    of ``code_dir`` on loopback ports; ``attach`` (``baseline_url`` and ``candidate_url`` set)
    uses deployments something else runs, which the rollout never starts, stops or restarts.
    """

    code_dir: Path | None
    server_args: list[str]
    baseline_type: str = "flask"
    candidate_type: str = "fastapi"
    baseline_env: dict[str, str] = field(default_factory=dict)
    candidate_env: dict[str, str] = field(default_factory=dict)
    public_host: str = "127.0.0.1"
    public_port: int = 8080
    admin_host: str = "127.0.0.1"
    admin_port: int = 8081
    admin_token: str | None = None
    baseline_port: int = 0
    candidate_port: int = 0
    backend_timeout: float = 60.0
    """Seconds the router waits for a backend before failing over to the baseline."""
    baseline_url: str | None = None
    candidate_url: str | None = None
    traffic: str = "builtin"
    """The *traffic* seam: ``builtin`` (the router serves the public address) or ``nginx``
    (nginx serves it from ``nginx_conf``; the router only compares mirrored requests)."""
    nginx_conf: str | None = None
    nginx_test_cmd: str = "nginx -t"
    nginx_reload_cmd: str = "nginx -s reload"
    nginx_access_log: str | None = None
    compare_port: int = 0

    @property
    def attached(self) -> bool:
        """Whether the sides are deployments run by someone else."""
        return self.baseline_url is not None

    def side_urls(self) -> dict[str, str]:
        """Where each side answers."""
        if self.attached:
            assert self.baseline_url is not None and self.candidate_url is not None
            return {"baseline": self.baseline_url, "candidate": self.candidate_url}
        return {
            "baseline": f"http://127.0.0.1:{self.baseline_port}",
            "candidate": f"http://127.0.0.1:{self.candidate_port}",
        }


def check_attached(side: str, url: str, expected: str, timeout: float = 10.0) -> None:
    """Refuse to start unless the deployment at ``url`` answers ``/info/`` as ``expected``."""
    from tandem.errors import ConfigError
    from tandem.ops import stack_from_info

    try:
        resp = httpx.get(url.rstrip("/") + "/info/", timeout=timeout)
        info = resp.json() if resp.status_code == 200 else None
    except (httpx.HTTPError, ValueError) as exc:
        raise ConfigError(f"--{side}-url {url} does not answer /info/: {exc}") from None
    if not isinstance(info, dict):
        raise ConfigError(f"--{side}-url {url} answered /info/ with {resp.status_code}")
    stack = stack_from_info(info)
    if stack != expected:
        raise ConfigError(
            f"--{side}-url {url} serves {stack or 'an unknown stack'} "
            f"(/info/ drumServer={info.get('drumServer')!r}, processServer="
            f"{info.get('processServer')!r}); the rollout expects {expected} there (--{side})"
        )


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tls_variables() -> tuple[str, ...]:
    """Every spelling of the ``DRUM_SSL_*`` runtime parameters."""
    return TLS_PARAMETERS + tuple(f"MLOPS_RUNTIME_PARAM_{name}" for name in TLS_PARAMETERS)


def build_children(dep: Deployment, state: Path) -> list[ChildSpec]:
    """The child processes of a rollout: baseline, candidate and router, or only the router
    when the sides are attached deployments."""
    python = sys.executable
    children = []
    sides = (
        ("baseline", dep.baseline_type, dep.baseline_port, dep.baseline_env),
        ("candidate", dep.candidate_type, dep.candidate_port, dep.candidate_env),
    )
    for side, stack, port, extra in () if dep.attached else sides:
        env = {"MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE": stack, **extra}
        children.append(
            ChildSpec(
                side,
                [
                    python,
                    "-m",
                    "tandem",
                    "server",
                    "--code-dir",
                    str(dep.code_dir),
                    "--address",
                    f"127.0.0.1:{port}",
                    *dep.server_args,
                ],
                env,
                f"http://127.0.0.1:{port}",
                # The router terminates TLS; the deployments behind it on loopback do not.
                unset=tls_variables(),
            )
        )
    # With nginx in front, the router is the comparison service nginx mirrors to, on loopback.
    listen = (
        f"127.0.0.1:{dep.compare_port}"
        if dep.traffic == "nginx"
        else f"{dep.public_host}:{dep.public_port}"
    )
    router_cmd = [
        python,
        "-m",
        "tandem.rollout.router",
        "--listen",
        listen,
        "--admin",
        f"{dep.admin_host}:{dep.admin_port}",
        "--baseline",
        dep.side_urls()["baseline"],
        "--candidate",
        dep.side_urls()["candidate"],
        "--store",
        str(state),
        "--backend-timeout",
        str(dep.backend_timeout),
    ]
    router_env = {"TANDEM_ROUTER_ADMIN_TOKEN": dep.admin_token} if dep.admin_token else {}
    children.append(
        ChildSpec(
            "router",
            router_cmd,
            router_env,
            f"http://{dep.admin_host}:{dep.admin_port}",
            "/api/health",
            health_headers={"Authorization": f"Bearer {dep.admin_token}"}
            if dep.admin_token
            else {},
        )
    )
    return children


Notifier = Callable[[str, dict[str, Any]], None]
Verifier = Callable[[str], dict[str, Any]]


def http_notifier(url: str | None) -> Notifier:
    """POST ``{"text": ..., "rollout": {...}}`` (Slack-compatible) without blocking the loop."""

    def notify(text: str, details: dict[str, Any]) -> None:
        if not url:
            return

        def send() -> None:
            try:
                httpx.post(url, json={"text": text, "rollout": details}, timeout=5.0)
            except httpx.HTTPError as exc:
                logger.warning("notification to %s failed: %s", url, exc)

        threading.Thread(target=send, name="tandem-notify", daemon=True).start()

    return notify


class Controller:
    """Runs the rollout until it ends and then keeps the winning stack served until stopped."""

    def __init__(
        self,
        spec: RolloutSpec,
        store: RolloutStore,
        supervisor: Supervisor,
        router: RouterClient,
        side_urls: Mapping[str, str],
        notify: Notifier,
        verify: Verifier | None = None,
        metrics: PrometheusSource | None = None,
        traffic: Any = None,
        pager: PagerDuty | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.spec = spec
        self.store = store
        self.supervisor = supervisor
        self.router = router
        self.side_urls = dict(side_urls)
        self.notify = notify
        self.verify = verify
        self.metrics = metrics
        self.traffic = traffic if traffic is not None else router
        """Where weights go: the built-in router, or nginx (the *traffic* seam)."""
        self._apply_error: str | None = None
        self.pager = pager
        self._applied: tuple[float, float] | None = None
        """Where traffic, latency, memory and liveness come from: Prometheus, or (None) the
        built-in router's counters plus each side's /stats/ (the *metrics* seam)."""
        self.clock = clock
        self.snapshots: deque[Snapshot] = deque()
        self.rss_history: deque[tuple[float, float]] = deque()
        self.trace_samples: deque[TraceSample] = deque()
        """The candidate's span counts from its ``/stats/`` (built-in metric source only)."""
        self.last_ping: float | None = None
        self.last_rule: str | None = None
        self.mirror_rate = 0.0
        self.reference_baseline: SideWindow | None = None
        self._scanned_size = 0
        """Bytes of the candidate's log already searched for extension failures."""
        self._stop = threading.Event()
        self._http = httpx.Client(timeout=2.0)
        self._router_restarted = False
        """The supervisor restarted the router since its routing was last set."""

    # -- lifecycle ---------------------------------------------------------------------------

    def initial_status(self) -> RolloutStatus:
        """The saved status, or a new shadow phase."""
        saved = self.store.load_status()
        if saved is not None:
            logger.info("resuming rollout: %s at %g%%", saved.phase.value, saved.weight)
            last = self.store.decisions(limit=100000)
            self.last_rule = last[-1].rule if last else None
            return saved
        now = self.clock()
        status = RolloutStatus(
            phase=Phase.SHADOW,
            started_at=now,
            phase_started_at=now,
            step_started_at=now,
            spec_digest=self.spec.digest(),
            message="shadow: mirroring live traffic to the candidate",
        )
        self.store.save(
            status,
            action="start",
            rule="operator.start",
            reason=f"rollout started (spec {status.spec_digest})",
            numbers={"spec": self.spec.to_dict()},
            at=now,
        )
        self.notify("Tandem rollout started: shadow phase", {"phase": "shadow"})
        return status

    def stop(self) -> None:
        """Ask the loop to end after the current evaluation."""
        self._stop.set()

    def run(self) -> RolloutStatus:
        """Evaluate every interval until stopped; returns the last status."""
        status = self.initial_status()
        self.apply(status)
        while not self._stop.is_set():
            started = self.clock()
            try:
                status = self.tick(status)
            except Exception:
                logger.exception("evaluation failed; retrying next interval")
            self._stop.wait(max(0.0, self.spec.interval - (self.clock() - started)))
        return status

    # -- one evaluation --------------------------------------------------------------------

    def tick(self, status: RolloutStatus) -> RolloutStatus:
        """Observe, decide, record, apply."""
        for name in ("router", "baseline"):
            if self.supervisor.supervises(name) and self.supervisor.ensure(name):
                if name == "router":
                    self._router_restarted = True
                self.supervisor.wait_healthy(name)
        if self._router_restarted and self.traffic is not self.router:
            # Under nginx the router is the comparison service: weight 0, everything nginx
            # mirrors to it compared. Restarted, it took the rollout's weight and canary mirror
            # rate from the store, so it is set back (retried until the router takes it).
            try:
                self.router.set_routing(0.0, 1.0)
                self._router_restarted = False
            except httpx.HTTPError as exc:
                logger.warning("could not reset the comparison service's routing: %s", exc)
        command = None
        pending = self.store.pending_commands()[:1]
        if pending:
            command = pending[0][1]
        obs = self.observe(status)
        if obs is None:
            # An abort needs no observation: it acts even while the router cannot be read
            # (restarting, or the comparison service down while nginx serves), ahead of any
            # command queued before it. Other commands wait for an evaluation that can decide.
            pending = [p for p in self.store.pending_commands() if p[1] == "abort"][:1]
            if not pending:
                return status
            command = "abort"
            obs = Observations(now=self.clock())
        decision = decide(self.spec, status, obs, command)
        self.record(status, decision, obs)
        for seq, _ in pending:
            self.store.mark_handled(seq)
        self.apply(decision.status)
        self.after(status, decision)
        return decision.status

    def observe(self, status: RolloutStatus) -> Observations | None:
        """Collect one evaluation's observations (None when the router cannot be read)."""
        now = self.clock()
        try:
            snap = parse_router_stats(self.router.stats(), now)
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            logger.warning("router statistics unavailable: %s", exc)
            return None
        self.snapshots.append(snap)
        keep = (
            max(
                self.spec.window,
                self.spec.step_hold,
                self.spec.shadow_duration,
                self.spec.reduction_wait,
            )
            + 5 * self.spec.interval
        )
        while len(self.snapshots) > 2 and self.snapshots[1].at < now - keep:
            self.snapshots.popleft()
        step_since = (
            status.step_started_at if status.phase != Phase.SHADOW else (status.phase_started_at)
        )
        snaps = list(self.snapshots)
        if self.metrics is not None:
            readings = {
                side: self.metrics.read(side, now, self.spec.window, step_since, status.started_at)
                for side in SIDES
            }
            rss = {side: readings[side].rss for side in SIDES}
            oom = readings["candidate"].oom_kills
            windows = {side: readings[side].window for side in SIDES}
            steps = {side: readings[side].step for side in SIDES}
            # up=0 is evidence of a dead target; no series is no data, and the probe decides.
            alive = readings["candidate"].up is not False and self._ping("candidate")
            traces = self.metrics.traces(
                "candidate", now, self.spec.window, self.spec.triggers.trace_export_lag
            )
        else:
            docs = {side: self._stats(side) for side in SIDES}
            rss = {side: self._rss(docs[side]) for side in SIDES}
            oom = self._oom_kills(docs["candidate"])
            traces = self._traces(docs["candidate"], now)
            windows = {side: window(snaps, now - self.spec.window, side) for side in SIDES}
            steps = {side: window(snaps, step_since, side) for side in SIDES}
            alive = self._ping("candidate")
        if alive:
            self.last_ping = now
        if rss["candidate"] is not None:
            self.rss_history.append((now, rss["candidate"]))
            horizon = max(2 * self.spec.triggers.leak_min_span, 3600.0)
            while self.rss_history and self.rss_history[0][0] < now - horizon:
                self.rss_history.popleft()
        step_baseline = steps["baseline"]
        if step_baseline.requests >= self.spec.min_samples:
            self.reference_baseline = step_baseline
        elif status.weight >= 100.0 and self.reference_baseline is not None:
            # At 100 % the baseline serves nothing: judge against its last full step.
            step_baseline = self.reference_baseline
        alerts = self._security_alerts(status)
        stored = self.store.events("difference", since=status.started_at)
        return Observations(
            now=now,
            security_alerts=len(alerts),
            first_security_alert=alerts[0] if alerts else "",
            extension_failures=self._extension_failures(now),
            baseline=windows["baseline"],
            candidate=windows["candidate"],
            step_baseline=step_baseline,
            step_candidate=steps["candidate"],
            baseline_rss=rss["baseline"],
            candidate_rss=rss["candidate"],
            candidate_rss_history=tuple(self.rss_history),
            candidate_oom_kills=oom,
            candidate_last_ping=self.last_ping,
            mirror_compared=snap.mirror_compared,
            # The router's counter, or the differences it stored: a router that died before
            # this evaluation read its counter still left them in the store.
            mirror_differences=max(snap.mirror_differences, len(stored)),
            mirror_failures=snap.mirror_failures,
            first_difference=snap.first_difference or (stored[0].text if stored else ""),
            candidate_spans_ended=None if traces is None else traces.spans_ended,
            candidate_spans_exported=None if traces is None else traces.spans_exported,
            candidate_span_export_failures=None if traces is None else traces.export_failures,
        )

    def _security_alerts(self, status: RolloutStatus) -> list[str]:
        """Alerts received since the rollout started whose labels match the security matcher."""
        return security_alerts(self.store, self.spec, status.started_at)

    def _extension_failures(self, now: float) -> int:
        """Extension failures in the window: reports, plus those the candidate's log shows."""
        path = self.supervisor.log_path("candidate")
        if path is not None and path.exists():
            # Only what was appended since the last evaluation (from the start if the log was
            # replaced); the byte offset keys each failure, so none is counted twice.
            start = self._scanned_size if path.stat().st_size >= self._scanned_size else 0
            with path.open("rb") as log:
                log.seek(start)
                new = log.read()
            # Up to the last full line: a line being written is read next time.
            complete = new[: new.rfind(b"\n") + 1]
            self._scanned_size = start + len(complete)
            text = complete.decode("utf-8", "replace")
            for offset, failed in extension_failures(text):
                key = f"log:{path}:{start + len(text[:offset].encode())}"
                self.store.add_event(
                    "extension", "candidate-log", f"failed to load {failed}", key=key
                )
        return len(self.store.events("extension", since=now - self.spec.window))

    def _stats(self, side: str) -> dict[str, Any] | None:
        try:
            resp = self._http.get(self.side_urls[side] + "/stats/")
            return dict(resp.json()) if resp.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    def _rss(self, doc: Mapping[str, Any] | None) -> float | None:
        """Mean RSS of one serving process, in bytes, from a side's ``/stats/``.

        Per worker, not the server total: a Flask development server is one process while
        Gunicorn and Tandem's Uvicorn run a supervisor plus workers, so totals would compare
        process counts, not the stacks' memory use.
        """
        if not doc:
            return None
        try:
            workers = [float(w["rss"]) for w in doc["worker_info"]["workers"] if w.get("rss")]
            mib = sum(workers) / len(workers) if workers else float(doc["mem_info"]["drum_rss"])
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            return None
        return mib * 1024 * 1024

    def _oom_kills(self, doc: Mapping[str, Any] | None) -> int:
        try:
            return int(doc["worker_info"]["oom_kills"]) if doc else 0
        except (KeyError, TypeError, ValueError):
            return 0

    def _traces(self, doc: Mapping[str, Any] | None, now: float) -> TraceWindow | None:
        """The trace-gap rule's counts from the candidate's ``/stats/`` samples.

        A sample with a lower count than the one before means the candidate restarted: the
        history starts again from it.
        """
        sample = TraceSample.parse(doc, now)
        if sample is None:
            return None  # not tracing, or not readable now: not judged
        samples = self.trace_samples
        if samples and not samples[-1].before(sample):
            samples.clear()
        samples.append(sample)
        while len(samples) > 1 and samples[1].at <= now - self.spec.window:
            samples.popleft()
        return trace_window(samples, now, self.spec.window, self.spec.triggers.trace_export_lag)

    def _ping(self, side: str) -> bool:
        try:
            timeout = min(2.0, max(0.2, self.spec.interval))
            resp = self._http.get(self.side_urls[side] + "/ping", timeout=timeout)
            return resp.status_code == 200
        except httpx.HTTPError:
            return False

    def record(self, before: RolloutStatus, decision: Decision, obs: Observations) -> None:
        """Save status (+ the decision when it is news) before anything is applied."""
        self.last_rule = record_decision(
            self.store,
            before,
            decision,
            obs,
            self.last_rule,
            {"mirror_rate": self.mirror_rate_for(decision.status)},
        )

    def mirror_rate_for(self, status: RolloutStatus) -> float:
        """How much baseline traffic is mirrored in a phase."""
        if status.phase == Phase.SHADOW:
            return self.spec.shadow_sample_rate
        if status.phase.is_terminal:
            return 0.0
        return self.spec.canary_mirror_rate

    def apply(self, status: RolloutStatus) -> None:
        """Tell the traffic engine the recorded weight and mirror rate.

        A refused or failed change (a router that does not answer, ``nginx -t`` or a reload
        that fails) is logged, notified once per distinct failure, retried at every evaluation,
        and never recorded as applied: ``applied`` in the state says what really is in force.
        """
        mirror = self.mirror_rate_for(status)
        try:
            self.traffic.set_routing(status.weight, mirror)
        except (httpx.HTTPError, TrafficError) as exc:
            logger.warning("could not apply weight %g%%: %s (retrying)", status.weight, exc)
            if str(exc) != self._apply_error:
                self._apply_error = str(exc)
                self.notify(
                    f":warning: Tandem rollout could not apply {status.weight:g}%: {exc}",
                    {"weight": status.weight, "error": str(exc)},
                )
            return
        if self._apply_error is not None:
            logger.info("weight %g%% applied after earlier failures", status.weight)
        self._apply_error = None
        if self._applied != (status.weight, mirror):
            self._applied = (status.weight, mirror)
            self.store.set_json(
                "applied", {"weight": status.weight, "mirror_rate": mirror, "at": self.clock()}
            )

    def after(self, before: RolloutStatus, decision: Decision) -> None:
        """Notifications and post-rollback verification."""
        new = decision.status
        if not announce(self.notify, self.pager, before, decision):
            return
        if new.phase in (Phase.ROLLED_BACK, Phase.ABORTED) and self.verify is not None:
            self.run_verification(new)

    def run_verification(self, status: RolloutStatus) -> None:
        """Verify the baseline after a rollback and record the result."""
        assert self.verify is not None
        try:
            result = self.verify(self.side_urls["baseline"])
        except Exception as exc:  # a verifier crash is a failed verification, not a crash
            result = {"passed": False, "summary": f"verification crashed: {exc!r}"}
        passed = bool(result.get("passed"))
        summary = str(result.get("summary", ""))
        self.store.save(
            status,
            action="verify",
            rule="post_rollback.verify",
            from_weight=status.weight,
            reason=("baseline verification passed" if passed else "baseline verification FAILED")
            + (f": {summary}" if summary else ""),
            numbers={"verification": result},
        )
        if not passed:
            self.notify(
                f":x: Tandem post-rollback verification failed: {summary}",
                {"phase": status.phase.value, "verification": result},
            )
        elif self.pager is not None and status.phase == Phase.ROLLED_BACK:
            self.pager.resolve(dedup_key(status.started_at))  # recovered: baseline verified


def security_alerts(store: RolloutStore, spec: RolloutSpec, since: float) -> list[str]:
    """Alerts recorded since ``since`` whose labels match the spec's security matcher."""
    matchers = parse_matchers(spec.triggers.security_alert_matcher)
    return [e.text for e in store.events("alert", since=since) if matches(e.labels, matchers)]


def record_decision(
    store: RolloutStore,
    before: RolloutStatus,
    decision: Decision,
    obs: Observations,
    last_rule: str | None,
    extras: Mapping[str, Any] | None = None,
    what: str = "",
) -> str | None:
    """Save the decision's status, and the decision itself when it is news (not a hold by the
    same rule as the last recorded one), then the evaluation's observation row (with
    ``extras``); returns the rule last recorded. Done before anything is applied."""
    news = decision.action != "hold" or decision.rule != last_rule
    store.save(
        decision.status,
        action=decision.action if news else None,
        rule=decision.rule,
        from_weight=before.weight,
        reason=decision.reason,
        numbers=decision.numbers,
        at=obs.now,
    )
    if news:
        last_rule = decision.rule
        log = logger.warning if decision.action == "rollback" else logger.info
        log(
            "%s%s [%s] %g%% -> %g%%: %s",
            what,
            decision.action,
            decision.rule,
            before.weight,
            decision.status.weight,
            decision.reason,
        )
    doc = observation_doc(obs, decision)
    doc.update(extras or {})
    store.add_observation(obs.now, decision.status.weight, doc)
    return last_rule


def announce(
    notify: Notifier,
    pager: PagerDuty | None,
    before: RolloutStatus,
    decision: Decision,
    name: str = "Tandem rollout",
) -> bool:
    """Notify a phase change, a step or a reduction (and page on a rollback); False when the
    decision is none of those."""
    new = decision.status
    if new.phase == before.phase and decision.action not in ("step_up", "reduce"):
        return False
    details = {
        "phase": new.phase.value,
        "weight": new.weight,
        "rule": decision.rule,
        "reason": decision.reason,
    }
    if decision.action == "rollback":
        notify(f":rotating_light: {name} rolled back ({decision.rule}): {decision.reason}", details)
        if pager is not None:
            pager.trigger(
                dedup_key(new.started_at),
                f"{name} rolled back ({decision.rule}): {decision.reason}",
                details,
            )
    else:
        notify(
            f"{name}: {decision.action} -> {new.phase.value} at {new.weight:g}%: {decision.reason}",
            details,
        )
    return True


def observation_doc(obs: Observations, decision: Decision) -> dict[str, Any]:
    """The per-evaluation row the status table and dashboard read.

    ``{"phase", "action", "rule", "reason", "baseline": {...}, "candidate": {...},
    "mirror": {"compared", "differences"}, "tracing": {...} or None}`` where each side has
    ``requests``, ``errors``, ``error_rate``, ``p99_ms`` (trigger window) and ``rss_mb``, and
    ``tracing`` the trace-gap rule's counts (None while the candidate's are not observed).
    """

    def side(win: SideWindow, rss: float | None) -> dict[str, Any]:
        return {
            "requests": win.requests,
            "errors": win.errors,
            "error_rate": win.error_rate,
            "p99_ms": None if win.p99 is None else round(win.p99 * 1000, 3),
            "rss_mb": None if rss is None else round(rss / 1048576, 2),
        }

    return {
        "phase": decision.status.phase.value,
        "action": decision.action,
        "rule": decision.rule,
        "reason": decision.reason,
        "baseline": side(obs.baseline, obs.baseline_rss),
        "candidate": side(obs.candidate, obs.candidate_rss),
        "mirror": {
            "compared": obs.mirror_compared,
            "differences": obs.mirror_differences,
            "failures": obs.mirror_failures,
        },
        "candidate_oom_kills": obs.candidate_oom_kills,
        "tracing": None
        if obs.candidate_spans_ended is None
        else {
            "spans_ended": obs.candidate_spans_ended,
            "spans_exported": obs.candidate_spans_exported,
            "export_failures": obs.candidate_span_export_failures,
        },
        "ping_age_s": None
        if obs.candidate_last_ping is None
        else round(obs.now - obs.candidate_last_ping, 3),
    }
