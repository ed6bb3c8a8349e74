"""Helpers shared by the test tiers: model dirs, in-process clients, real server processes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

FIXTURES = Path(__file__).parent / "fixtures" / "models"
REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
SERVER_TYPES = ("flask", "gunicorn", "fastapi")
FRAMEWORKS = ("flask", "fastapi")


def fixture_dir(name: str, dest: Path) -> Path:
    """Copy fixture model ``name`` into ``dest`` (a fresh code dir) and return it."""
    target = dest / name
    shutil.copytree(FIXTURES / name, target)
    return target


def build_sklearn_artifact(dest: Path, kind: str) -> Path:
    """Train a small deterministic scikit-learn model and pickle it into ``dest``."""
    import pickle

    import numpy as np
    from sklearn.linear_model import LogisticRegression, Ridge

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    dest.mkdir(parents=True, exist_ok=True)
    if kind == "regression":
        model: Any = Ridge().fit(x, x @ np.array([1.5, -2.0, 0.5]) + 3)
    elif kind == "binary":
        model = LogisticRegression().fit(x, np.where(x[:, 0] > 0, "yes", "no"))
    elif kind == "multiclass":
        y = np.select([x[:, 0] > 0.5, x[:, 0] < -0.5], ["a", "c"], "b")
        model = LogisticRegression().fit(x, y)
    else:
        raise ValueError(kind)
    with (dest / "model.pkl").open("wb") as fh:
        pickle.dump(model, fh)
    return dest


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process_group(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM a child's process group (it runs in its own session), SIGKILL after ``grace``."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace)
    except ProcessLookupError:
        pass


class ServerProcess:
    """A real ``tandem server`` process on 127.0.0.1 for end-to-end tests."""

    def __init__(
        self,
        code_dir: Path,
        server_type: str | None,
        args: list[str] | None = None,
        env: Mapping[str, str] | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self.port = free_port()
        self.extra_env = dict(env or {})
        scheme = "https" if self.extra_env.get("DRUM_SSL_CERTFILE") else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.code_dir = code_dir
        self.server_type = server_type
        self.args = args or []
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = code_dir.parent / f"server-{server_type}-{self.port}.log"

    def command(self) -> list[str]:
        """The command line that starts the server."""
        return [
            sys.executable,
            "-m",
            "tandem",
            "server",
            "--code-dir",
            str(self.code_dir),
            "--address",
            f"127.0.0.1:{self.port}",
            "--logging-level",
            "info",
            *self.args,
        ]

    def start(self) -> ServerProcess:
        """Start and wait until ``/ping`` answers (200 or the error server's 513)."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("MLOPS_RUNTIME_PARAM_")
            and k not in ("TANDEM_STATE_DIR", "PROMETHEUS_MULTIPROC_DIR", "TANDEM_MASTER_PID")
        }
        env.pop("DRUM_SERVER_TYPE", None)
        if self.server_type is not None:
            env["MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE"] = self.server_type
        env.update(self.extra_env)
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.command(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.proc.returncode} during start-up:\n{self.logs()}"
                )
            try:
                prefix = self.extra_env.get("URL_PREFIX", "").strip("/")
                ping = f"/{prefix}/ping" if prefix else "/ping"
                r = httpx.get(self.url + ping, timeout=1.0, verify=False)
                if r.status_code in (200, 513):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"server did not answer /ping in {self.startup_timeout}s:\n{self.logs()}"
        )

    def logs(self) -> str:
        """Everything the server printed so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM the process group, then SIGKILL after 10 s."""
        if self.proc is None:
            return
        stop_process_group(self.proc)
        self._log.close()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def running(code_dir: Path, server_type: str | None, **kwargs: Any) -> Iterator[ServerProcess]:
    """Context manager form of :class:`ServerProcess`."""
    server = ServerProcess(code_dir, server_type, **kwargs).start()
    try:
        yield server
    finally:
        server.stop()


def in_process_client(framework: str, settings: Any) -> httpx.Client:
    """An httpx client bound in-process to the Flask or FastAPI app for ``settings``."""
    from tandem.core.service import PredictionService

    service = PredictionService.load(settings)
    if framework == "flask":
        from tandem.servers.flask_app import create_app as create_flask

        return httpx.Client(
            transport=httpx.WSGITransport(app=create_flask(service)), base_url="http://testserver"
        )
    from starlette.testclient import TestClient

    from tandem.servers.fastapi_app import create_app as create_fastapi

    return TestClient(create_fastapi(service), base_url="http://testserver")
