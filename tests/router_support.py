"""A real rollout router process on 127.0.0.1 for the end-to-end tests."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support import free_port, stop_process_group


class RouterProcess:
    """``python -m tandem.rollout.router --config-json ...`` with free ports."""

    def __init__(
        self,
        log_dir: Path,
        baseline_url: str,
        candidate_url: str,
        startup_timeout: float = 30.0,
        **config: Any,
    ) -> None:
        self.port = free_port()
        self.admin_port = free_port()
        while self.admin_port == self.port:
            self.admin_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"
        self.config: dict[str, Any] = {
            "baseline_url": baseline_url,
            "candidate_url": candidate_url,
            "listen_host": "127.0.0.1",
            "listen_port": self.port,
            "admin_host": "127.0.0.1",
            "admin_port": self.admin_port,
            **config,
        }
        self.token = config.get("admin_token")
        self.startup_timeout = startup_timeout
        self.log_path = log_dir / f"router-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def admin_headers(self) -> dict[str, str]:
        """Headers the admin API needs."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def start(self) -> RouterProcess:
        """Start and wait until both listeners answer."""
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tandem.rollout.router",
                "--config-json",
                json.dumps(self.config),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"router exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                r = httpx.get(
                    self.admin_url + "/api/health", headers=self.admin_headers, timeout=1.0
                )
                if r.status_code == 200 and r.json()["ready"]:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"router did not start in {self.startup_timeout}s:\n{self.logs()}")

    def logs(self) -> str:
        """What the router printed so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.proc is None:
            return
        stop_process_group(self.proc)
        self._log.close()

    def stats(self) -> dict[str, Any]:
        """``GET /api/stats``."""
        r = httpx.get(self.admin_url + "/api/stats", headers=self.admin_headers, timeout=10)
        r.raise_for_status()
        return dict(r.json())

    def set_routing(self, **doc: Any) -> dict[str, Any]:
        """``POST /api/routing``."""
        r = httpx.post(
            self.admin_url + "/api/routing", json=doc, headers=self.admin_headers, timeout=10
        )
        r.raise_for_status()
        return dict(r.json())

    def wait_for(self, predicate: Any, timeout: float = 20.0) -> dict[str, Any]:
        """Poll ``/api/stats`` until ``predicate(stats)`` holds; the last stats."""
        deadline = time.monotonic() + timeout
        stats = self.stats()
        while not predicate(stats):
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met in {timeout}s; stats: {stats}")
            time.sleep(0.05)
            stats = self.stats()
        return stats

    def __enter__(self) -> RouterProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
