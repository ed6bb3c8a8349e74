"""Worker supervision shared by the Gunicorn hooks and Tandem's pre-fork Uvicorn supervisor.

A worker writes a heartbeat file (pid, RSS) while it lives and removes it on a clean exit. When
a worker dies the supervisor classifies the exit, logs it with the last RSS, counts it, and
either replaces the worker or, with ``DRUM_EXIT_ON_OOM``, stops the whole server non-zero so an
orchestrator sees the OOM.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from tandem.observability.metrics import mark_worker_dead
from tandem.observability.oom import witness
from tandem.observability.state import Events, Heartbeat, WorkerExit, last_rss, state_dir
from tandem.servers.connections import ConnectionBoard, take_seat

logger = logging.getLogger("tandem.supervisor")

#: Exit status of a server stopped because a worker was OOM-killed (as if SIGKILLed itself).
OOM_EXIT_STATUS = 137
#: Exit status of a worker that took itself out of service because a model call outran
#: ``DRUM_CLIENT_REQUEST_TIMEOUT`` (its thread stays stuck in the hook): replaced and counted.
RECYCLE_STATUS = 75


def start_heartbeat() -> Heartbeat | None:
    """Start this worker's heartbeat (worker side)."""
    root = state_dir()
    if root is None:
        return None
    beat = Heartbeat(root)
    beat.start()
    return beat


def classify_exit(pid: int, status: int | None) -> WorkerExit:
    """Describe a worker's exit from its wait status (None when unknown, as under Gunicorn).

    A SIGKILL is an OOM kill only on the kernel's evidence (:mod:`tandem.observability.oom`).
    """
    root = state_dir()
    rss = last_rss(root, pid)
    if status is not None and os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        killed = sig == signal.SIGKILL
        oom = killed and witness().was_oom(pid)
        detail = "OOM-killed by the kernel" if oom else f"killed by {name}"
        return WorkerExit(pid, killed, rss, detail, oom=oom)
    if status is not None and os.WIFEXITED(status):
        code = os.WEXITSTATUS(status)
        if code == RECYCLE_STATUS:
            detail = "was replaced: a model call outran DRUM_CLIENT_REQUEST_TIMEOUT"
            return WorkerExit(pid, False, rss, detail)
        return WorkerExit(pid, False, rss, f"exited with status {code}", clean=code == 0)
    # Under Gunicorn the status is not available: a heartbeat file left behind means the worker
    # did not shut down cleanly, which for a sync worker means it was SIGKILLed.
    killed = rss is not None
    if killed:
        if witness().was_oom(pid):
            return WorkerExit(pid, True, rss, "OOM-killed by the kernel", oom=True)
        return WorkerExit(pid, True, rss, "killed (no clean shutdown)")
    return WorkerExit(pid, False, rss, "exited", clean=True)


def report_exit(exit_: WorkerExit, restarting: bool) -> bool:
    """Log and count a worker exit. Returns True when the server must stop (exit on OOM)."""
    mark_worker_dead(exit_.pid)
    if exit_.clean:
        return False
    counts = Events(state_dir()).record(exit_, restarted=restarting)
    rss_mb = f"{exit_.last_rss / 1048576:.1f} MiB" if exit_.last_rss is not None else "unknown"
    if exit_.oom:
        logger.error(
            "Worker %d was %s (out of memory); last RSS %s; OOM kills so far: %d",
            exit_.pid,
            exit_.detail,
            rss_mb,
            counts["oom_kills"],
        )
        from tandem.runtime_params import Params

        if Params().bool("DRUM_EXIT_ON_OOM", False):
            logger.error(
                "DRUM_EXIT_ON_OOM is set: stopping the server with status %d", OOM_EXIT_STATUS
            )
            return True
    elif exit_.killed:
        logger.error(
            "Worker %d was %s, with no sign of the OOM killer (counted as a kill, not an OOM "
            "kill); last RSS %s; kills so far: %d",
            exit_.pid,
            exit_.detail,
            rss_mb,
            counts["worker_kills"],
        )
    else:
        logger.error("Worker %d %s; last RSS %s", exit_.pid, exit_.detail, rss_mb)
    return False


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


@dataclass
class PreforkSupervisor:
    """Fork ``workers`` children that serve one listening socket; replace any that die.

    The app (and so the model) is built before fork, so workers share its memory copy-on-write.
    """

    workers: int
    sock: socket.socket
    run_worker: Callable[[socket.socket], None]
    graceful_timeout: float = 30.0
    board: ConnectionBoard | None = None
    """Shared open-connection counts, one slot per worker, so new connections go to the idlest."""

    def __post_init__(self) -> None:
        self.children: dict[int, tuple[float, int]] = {}
        self._stopping = False
        self._exit_status = 0

    def _spawn(self, slot: int) -> None:
        pid = os.fork()
        if pid == 0:
            status = 0
            beat = None
            try:
                if self.board is not None:
                    take_seat(self.board, slot)
                # Uvicorn re-raises SIGTERM after its graceful shutdown: turn it into SystemExit
                # so this worker still flushes spans and removes its heartbeat (a clean exit).
                signal.signal(signal.SIGTERM, _exit_cleanly)
                signal.signal(signal.SIGINT, _exit_cleanly)
                beat = start_heartbeat()
                self.run_worker(self.sock)
            except SystemExit as exc:
                status = exc.code if isinstance(exc.code, int) else 0
            except BaseException:  # noqa: BLE001 - the child must never return into the parent
                logger.exception("worker %d crashed", os.getpid())
                status = 1
            finally:
                if beat is not None and status == 0:
                    beat.stop(clean=True)
                from tandem.observability.tracing import shutdown_tracing

                shutdown_tracing()
                recording = sys.modules.get("tandem.observability.recording")
                if recording is not None:
                    recording.flush_all(5.0)
                mlops = sys.modules.get("tandem.observability.mlops")
                if mlops is not None:
                    mlops.flush_all(5.0)
                logging.shutdown()
                os._exit(status)
        self.children[pid] = (time.monotonic(), slot)

    def _on_signal(self, signum: int, frame: object) -> None:
        self._stopping = True

    def run(self) -> int:
        """Supervise until SIGTERM/SIGINT; returns the server's exit status."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        for slot in range(self.workers):
            self._spawn(slot)
        while not self._stopping:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pid, status = 0, 0
            if pid == 0:
                time.sleep(0.1)
                continue
            child = self.children.pop(pid, None)
            if child is None:
                continue
            started, slot = child
            if self.board is not None:
                self.board.vacate(slot)
            exit_ = classify_exit(pid, status)
            if report_exit(exit_, restarting=True):
                self._exit_status = OOM_EXIT_STATUS
                break
            if time.monotonic() - started < 1.0:
                time.sleep(1.0)  # a worker that dies at once must not spin the CPU
            self._spawn(slot)
        self._shutdown()
        return self._exit_status

    def _shutdown(self) -> None:
        for pid in self.children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + self.graceful_timeout
        while self.children and time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.05)
                continue
            self.children.pop(pid, None)
            mark_worker_dead(pid)
        if self.children:
            logger.error(
                "%d worker(s) were still serving when DRUM_UVICORN_GRACEFUL_TIMEOUT (%gs) ran "
                "out: in-flight requests were cut off",
                len(self.children),
                self.graceful_timeout,
            )
            if self._exit_status == 0:
                self._exit_status = 1
        for pid in self.children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.children.clear()
        sys.stdout.flush()
