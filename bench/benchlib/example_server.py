"""A Tandem server of examples/regression on a free loopback port, for fuzz.py and soak.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve_example(stack: str, workers: int) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Serve examples/regression on ``stack`` with ``workers``; yields the process and its URL
    once ``/ping`` answers, and stops the server on exit."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE": stack,
        "MLOPS_RUNTIME_PARAM_CUSTOM_MODEL_WORKERS": str(workers),
    }
    server = subprocess.Popen(
        [
            str(BIN / "tandem"),
            "server",
            "--code-dir",
            str(ROOT / "examples" / "regression"),
            "--target-type",
            "regression",
            "--address",
            f"127.0.0.1:{port}",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(url + "/ping", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        yield server, url
    finally:
        server.terminate()
        server.wait(timeout=60)
