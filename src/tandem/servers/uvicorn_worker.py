"""The FastAPI stack's Gunicorn worker: ``uvicorn-worker``'s UvicornWorker, configured as Tandem
serves.

What it adds to the maintained worker, each kept because a test or a measurement needs it:

- the whole Uvicorn configuration comes from Tandem (its HTTP protocol with the header timeout,
  the limit table and one send per response; the balancing event loop; keep-alive, recycling,
  backlog and TLS from the runtime parameters), where the base class would take Gunicorn's;
- SIGTERM ends the worker with a clean exit: Uvicorn drains, then re-raises the signal, which
  would otherwise kill the worker before Gunicorn's ``worker_exit`` hook (heartbeat, flushes);
- :meth:`tandem_stop` stops serving from any thread, with a watchdog, for a worker whose model
  thread is stuck past ``DRUM_CLIENT_REQUEST_TIMEOUT``;
- a server that fails to start exits with the arbiter's boot-error status, which Tandem's
  arbiter moved away from statuses a model's ``sys.exit`` could use.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from typing import Any

import uvicorn
from uvicorn_worker import UvicornWorker

from tandem.servers.supervisor import RECYCLE_STATUS


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def worker_class(boot_error_status: int, **config: Any) -> type[UvicornWorker]:
    """A worker class serving with ``uvicorn.Config(**config)`` (the app is Gunicorn's)."""

    class TandemUvicornWorker(UvicornWorker):  # type: ignore[misc]
        """See the module docstring."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.config = uvicorn.Config(
                app=None,  # type: ignore[arg-type]  # Gunicorn loads it: see run()
                log_config=None,
                access_log=False,
                server_header=False,
                timeout_notify=self.timeout,
                callback_notify=self.callback_notify,
                **config,
            )
            self.tandem_server: uvicorn.Server | None = None

        def init_signals(self) -> None:
            super().init_signals()
            signal.signal(signal.SIGTERM, _exit_cleanly)
            signal.signal(signal.SIGINT, _exit_cleanly)

        def tandem_stop(self, watchdog_s: float) -> None:
            """Stop taking connections and exit once the answers in flight are out; after
            ``watchdog_s`` seconds exit anyway (a stuck model thread never finishes)."""
            if self.tandem_server is not None:
                self.tandem_server.should_exit = True
            timer = threading.Timer(watchdog_s, os._exit, (RECYCLE_STATUS,))
            timer.daemon = True
            timer.start()

        def run(self) -> None:
            self.config.app = self.wsgi
            self.tandem_server = uvicorn.Server(config=self.config)
            with asyncio.Runner(loop_factory=self.config.get_loop_factory()) as runner:
                runner.run(self._tandem_serve(self.tandem_server))

        async def _tandem_serve(self, server: uvicorn.Server) -> None:
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGQUIT, self.handle_exit, signal.SIGQUIT, None)
            await server.serve(sockets=self.sockets)
            if not server.started:
                sys.exit(boot_error_status)

    return TandemUvicornWorker
