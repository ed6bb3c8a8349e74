"""The rollout dashboard for a fleet: ``tandem fleet start --dashboard-address HOST:PORT``.

The same page as ``tandem rollout``'s (:mod:`tandem.rollout.dashboard`: phase, percentage,
charts of each side's error rate, P99 and RSS, the decision log) plus the table of deployments,
served from the fleet's state file by a small thread of the fleet command: ``GET /`` the page,
``GET /api/dashboard`` its JSON. It has no authentication and changes nothing; keep it on
loopback (the default host) or behind something that authenticates.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

logger = logging.getLogger("tandem.fleet")


class DashboardServer:
    """Serves the dashboard of the fleet whose state is ``state`` until :meth:`stop`."""

    def __init__(self, state: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        from tandem.rollout.dashboard import build_dashboard, dashboard_html

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                path = self.path.split("?", 1)[0]
                if path == "/":
                    self._send(200, "text/html; charset=utf-8", dashboard_html())
                elif path == "/api/dashboard":
                    doc = build_dashboard(state)
                    self._send(200, "application/json", json.dumps(doc, default=str).encode())
                else:
                    self._send(404, "text/plain", b"not found\n")

            def _send(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="tandem-fleet-dashboard", daemon=True
        )

    @property
    def url(self) -> str:
        """Where the page is."""
        host, port = self.server.server_address[:2]
        text = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://{text}:{port}/"

    def start(self) -> DashboardServer:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
