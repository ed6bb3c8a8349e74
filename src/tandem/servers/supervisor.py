"""Worker supervision: what Gunicorn's hooks do when a worker starts and when it dies.

A worker writes a heartbeat file (pid, RSS) while it lives and removes it on a clean exit. When
a worker dies the supervisor classifies the exit, logs it with the last RSS, counts it, and
either replaces the worker or, with ``DRUM_EXIT_ON_OOM``, stops the whole server non-zero so an
orchestrator sees the OOM.
"""

from __future__ import annotations

import logging
import os
import signal

from tandem.observability.metrics import mark_worker_dead
from tandem.observability.oom import witness
from tandem.observability.state import Events, Heartbeat, WorkerExit, last_rss, state_dir

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
