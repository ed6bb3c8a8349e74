"""nginx as the traffic engine: a real nginx, real Tandem servers, the controller's include file.

- The split is exactly the built-in router's: every request goes to the side
  ``tandem.rollout.split`` predicts, with and without ``X-Request-ID``.
- 50 weight changes (each checked with ``nginx -t`` and applied by a graceful reload) under
  steady client load lose no request.
- A change nginx refuses is not applied: the previous file is back and nginx keeps serving.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tandem.rollout.nginx import NginxTraffic, TrafficError
from tandem.rollout.split import request_key, to_candidate
from tests.engines import Nginx, nginx
from tests.support import ServerProcess, fixture_dir, free_port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    code_dir = fixture_dir("regression_hooks", tmp_path_factory.mktemp("model"))
    args = ["--target-type", "regression"]
    with (
        ServerProcess(code_dir, "flask", args=args) as base,
        ServerProcess(code_dir, "fastapi", args=args) as cand,
    ):
        yield base.url, cand.url


def engine(tmp_path: Path, backends: tuple[str, str], port: int) -> NginxTraffic:
    return NginxTraffic(
        conf_path=tmp_path / "nginx" / "tandem.conf",
        listen=f"127.0.0.1:{port}",
        baseline_url=backends[0],
        candidate_url=backends[1],
        access_log=tmp_path / "nginx" / "split.log",
    )


@contextmanager
def started(tmp_path: Path, traffic: NginxTraffic, weight_bp: int) -> Iterator[Nginx]:
    with nginx(tmp_path / "nginx", traffic.render(weight_bp)) as server:
        traffic.test_cmd, traffic.reload_cmd = server.test_cmd, server.reload_cmd
        yield server


def predict(client: httpx.Client, url: str, request_id: str | None, path: str) -> httpx.Response:
    headers = {"Content-Type": "text/csv"}
    if request_id is not None:
        headers["X-Request-ID"] = request_id
    return client.post(url + path, content=b"a,b\n1,2\n", headers=headers)


def test_nginx_splits_exactly_like_the_builtin_router(
    tmp_path: Path, backends: tuple[str, str]
) -> None:
    port = free_port()
    traffic = engine(tmp_path, backends, port)
    weight_bp = 3000
    with started(tmp_path, traffic, weight_bp):
        url = f"http://127.0.0.1:{port}"
        seen = {"candidate": 0, "baseline": 0}
        with httpx.Client(timeout=10) as client:
            for i in range(1200):
                rid = str(uuid.uuid4()) if i % 10 else None  # every tenth without an id
                path = "/predict/" if i % 2 else "/predictions/"
                r = predict(client, url, rid, path)
                assert r.status_code == 200, r.text
                side = r.headers["x-tandem-backend"]
                key = request_key(rid, "127.0.0.1", path)
                assert side == ("candidate" if to_candidate(key, weight_bp) else "baseline"), key
                seen[side] += 1
        # Requests with ids: about 30 % on the candidate (5 standard deviations).
        n = 1080
        assert abs(seen["candidate"] - 0.3 * n) < 5 * math.sqrt(n * 0.21) + 120
        log = tmp_path / "nginx" / "split.log"
        # nginx writes a request's log line after its response has gone out.
        deadline = time.monotonic() + 10
        while len(log.read_text().splitlines()) < 1200 and time.monotonic() < deadline:
            time.sleep(0.05)
        logged = log.read_text().splitlines()
        assert len(logged) == 1200
        assert sum(line.startswith("candidate ") for line in logged) == seen["candidate"]


def test_fifty_weight_changes_under_load_lose_no_request(
    tmp_path: Path, backends: tuple[str, str]
) -> None:
    port = free_port()
    traffic = engine(tmp_path, backends, port)
    with started(tmp_path, traffic, 0):
        url = f"http://127.0.0.1:{port}"
        stop = threading.Event()
        outcomes: list[int] = []
        errors: list[str] = []

        def load(
            url: str = url, stop: threading.Event = stop, outcomes: list[int] = outcomes
        ) -> None:
            with httpx.Client(timeout=10) as client:
                deadline = time.monotonic() + 120
                while not stop.is_set() and time.monotonic() < deadline and len(outcomes) < 20000:
                    try:
                        outcomes.append(
                            predict(client, url, str(uuid.uuid4()), "/predict/").status_code
                        )
                    except httpx.HTTPError as exc:
                        outcomes.append(0)
                        errors.append(repr(exc))

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            weights = [((i * 3571) % 10001) for i in range(49)] + [0]
            for weight_bp in weights:
                traffic.apply(weight_bp)
                time.sleep(0.05)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
        assert len(outcomes) > 200
        assert outcomes.count(200) == len(outcomes), (
            errors,
            {s: outcomes.count(s) for s in set(outcomes)},
        )
        assert traffic.applied_bp == 0


def test_a_change_nginx_refuses_is_not_applied(tmp_path: Path, backends: tuple[str, str]) -> None:
    port = free_port()
    traffic = engine(tmp_path, backends, port)
    with started(tmp_path, traffic, 2500) as server:
        good = server.include.read_text()
        broken = engine(tmp_path, backends, port)
        broken.test_cmd, broken.reload_cmd = server.test_cmd, server.reload_cmd
        broken.max_body_size = "not-a-size"
        with pytest.raises(TrafficError, match=r"nginx -t .* failed with 1: .*\[emerg\]"):
            broken.apply(5000)
        assert server.include.read_text() == good  # the last good split is back
        assert broken.applied_bp is None
        r = predict(httpx.Client(), f"http://127.0.0.1:{port}", "k-1", "/predict/")
        assert r.status_code == 200
