"""Observability signals on real server processes of every stack: metrics, /stats/, OOM, logs."""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.cgroups import memory_cgroup, remove
from tests.conformance_cases import MODELS
from tests.support import SERVER_TYPES, ServerProcess, fixture_dir

pytestmark = pytest.mark.e2e

CSV = b"a,b,c\n1,2,3\n4,5,6\n"


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items()))
            out[(sample.name, labels)] = sample.value
    return out


def _without_server_type(samples: dict) -> dict:
    return {
        (name, tuple((k, v) for k, v in labels if k != "server_type")): value
        for (name, labels), value in samples.items()
    }


def _traffic(url: str) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(5):
            assert (
                client.post(
                    "/predict/", content=CSV, headers={"Content-Type": "text/csv"}
                ).status_code
                == 200
            )
        for _ in range(2):
            assert client.post("/predict/", content=b"").status_code == 422
        assert client.get("/nope").status_code == 404
        assert client.get("/info/").status_code == 200


def _start_all(tmp_path: Path, env: dict[str, str] | None = None) -> dict[str, ServerProcess]:
    spec = MODELS["regression"]
    code_dir = spec.build(tmp_path)
    servers = {
        st: ServerProcess(code_dir, st, args=list(spec.args), env=env) for st in SERVER_TYPES
    }
    with ThreadPoolExecutor(len(servers)) as pool:
        list(pool.map(ServerProcess.start, servers.values()))
    return servers


def test_same_metrics_for_the_same_traffic_on_every_stack(tmp_path: Path) -> None:
    servers = _start_all(tmp_path, {"MLOPS_RUNTIME_PARAM_CUSTOM_MODEL_WORKERS": "2"})
    try:
        counted = {}
        for st, server in servers.items():
            _traffic(server.url)
            text = httpx.get(server.url + "/metrics", timeout=10).text
            samples = _samples(text)
            framework = "fastapi" if st == "fastapi" else "flask"
            key = (
                "drum_requests_total",
                (
                    ("endpoint", "/predict/"),
                    ("method", "POST"),
                    ("server_type", framework),
                    ("status", "200"),
                ),
            )
            assert samples[key] == 5, (st, text)
            key422 = (key[0], tuple((k, "422" if k == "status" else v) for k, v in key[1]))
            assert samples[key422] == 2
            assert (
                samples[
                    (
                        "drum_requests_total",
                        (
                            ("endpoint", "unmatched"),
                            ("method", "GET"),
                            ("server_type", framework),
                            ("status", "404"),
                        ),
                    )
                ]
                == 1
            )
            buckets = [
                labels
                for (name, labels) in samples
                if name == "drum_request_duration_seconds_bucket"
                and ("endpoint", "/predict/") in labels
            ]
            les = sorted(float(dict(lb)["le"]) for lb in buckets)
            assert les[0] == 0.001 and 60.0 in les
            assert samples[("drum_oom_kills_total", (("server_type", framework),))] == 0
            rss = samples[("drum_memory_bytes", (("server_type", framework), ("type", "rss")))]
            assert rss > 50 * 1024 * 1024
            # Per worker: the master (Gunicorn's arbiter) is not counted, so one supervised
            # worker is well under the whole server, and a lone process is all of it.
            labels = (("server_type", framework), ("type", "rss"))
            worker_rss = samples[("drum_worker_memory_bytes", labels)]
            workers = samples[("drum_workers", (("server_type", framework),))]
            if st == "flask":
                assert worker_rss == rss
            else:
                assert 30 * 1024 * 1024 < worker_rss / workers < rss
            counted[st] = {
                k: v
                for k, v in _without_server_type(samples).items()
                if k[0] in ("drum_requests_total", "drum_request_duration_seconds_count")
            }
        # Same names, labels and counts on every stack (except server_type).
        assert counted["flask"] == counted["gunicorn"] == counted["fastapi"]
    finally:
        for server in servers.values():
            server.stop()


def test_stats_keys_are_the_same_on_every_stack(tmp_path: Path) -> None:
    servers = _start_all(tmp_path)
    try:
        keys = {}
        for st, server in servers.items():
            doc = httpx.get(server.url + "/stats/", timeout=10).json()
            keys[st] = (sorted(doc), sorted(doc["mem_info"]), sorted(doc["worker_info"]))
            assert doc["mem_info"]["drum_rss"] > 0
            assert doc["worker_info"]["workers"][0]["rss"] > 0
        assert keys["flask"] == keys["gunicorn"] == keys["fastapi"]
    finally:
        for server in servers.values():
            server.stop()


def _workers(server: ServerProcess) -> list[int]:
    assert server.proc is not None
    return sorted(p.pid for p in psutil.Process(server.proc.pid).children())


def _wait(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def _counter(server: ServerProcess, name: str, framework: str) -> float | None:
    text = httpx.get(server.url + "/metrics", timeout=10).text
    return _samples(text).get((name, (("server_type", framework),)))


@pytest.mark.parametrize("server_type", ["gunicorn", "fastapi"])
def test_sigkilled_worker_is_a_kill_not_an_oom_kill(tmp_path: Path, server_type: str) -> None:
    """A ``kill -9`` with no sign of the OOM killer is counted as a kill, and with
    ``DRUM_EXIT_ON_OOM`` set the server keeps serving (issue 13, defect 8)."""
    spec = MODELS["regression"]
    code_dir = spec.build(tmp_path)
    env = {"MLOPS_RUNTIME_PARAM_CUSTOM_MODEL_WORKERS": "2", "DRUM_EXIT_ON_OOM": "true"}
    with ServerProcess(code_dir, server_type, args=list(spec.args), env=env) as server:
        _wait(lambda: len(_workers(server)) == 2)
        _traffic(server.url)
        victim = _workers(server)[0]
        time.sleep(1.5)  # let the victim's heartbeat record its RSS
        os.kill(victim, signal.SIGKILL)
        _wait(lambda: len(_workers(server)) == 2 and victim not in _workers(server))
        framework = "fastapi" if server_type == "fastapi" else "flask"
        _wait(lambda: _counter(server, "drum_worker_kills_total", framework) == 1)
        assert _counter(server, "drum_oom_kills_total", framework) == 0
        stats = httpx.get(server.url + "/stats/", timeout=10).json()
        assert stats["worker_info"]["oom_kills"] == 0
        assert stats["worker_info"]["worker_kills"] == 1
        assert stats["worker_info"]["worker_restarts"] == 1
        assert victim not in [w["pid"] for w in stats["worker_info"]["workers"]]
        line = next(ln for ln in server.logs().splitlines() if f"Worker {victim}" in ln)
        assert "no sign of the OOM killer" in line and "last RSS" in line and "MiB" in line
        assert server.proc is not None and server.proc.poll() is None
        # The replacement serves.
        for _ in range(6):
            r = httpx.post(
                server.url + "/predict/",
                content=CSV,
                headers={"Content-Type": "text/csv"},
                timeout=10,
            )
            assert r.status_code == 200


def _oom_server(tmp_path: Path, server_type: str, group: Path, **env: str) -> ServerProcess:
    code_dir = fixture_dir("oom_on_demand", tmp_path)
    full_env = {
        "MLOPS_RUNTIME_PARAM_CUSTOM_MODEL_WORKERS": "2",
        "TANDEM_TEST_OOM_CGROUP": str(group),
        **env,
    }
    return ServerProcess(code_dir, server_type, args=["--target-type", "regression"], env=full_env)


def _boom(server: ServerProcess) -> None:
    try:
        httpx.post(
            server.url + "/predict/",
            content=b"a,boom\n1,2\n",
            headers={"Content-Type": "text/csv"},
            timeout=30,
        )
    except httpx.HTTPError:
        pass  # the worker died under the request


@pytest.mark.parametrize("server_type", ["gunicorn", "fastapi"])
def test_real_oom_kill_is_counted_replaced_and_exit_on_oom_stops(
    tmp_path: Path, server_type: str
) -> None:
    group = memory_cgroup(64 * 1024 * 1024)
    try:
        with _oom_server(tmp_path / "count", server_type, group) as server:
            _wait(lambda: len(_workers(server)) == 2)
            time.sleep(1.5)
            _boom(server)
            framework = "fastapi" if server_type == "fastapi" else "flask"
            _wait(lambda: _counter(server, "drum_oom_kills_total", framework) == 1)
            assert _counter(server, "drum_worker_kills_total", framework) == 0
            _wait(lambda: len(_workers(server)) == 2)
            assert "out of memory" in server.logs()
            r = httpx.post(
                server.url + "/predict/", content=CSV, headers={"Content-Type": "text/csv"}
            )
            assert r.status_code == 200
        server = _oom_server(tmp_path / "exit", server_type, group, DRUM_EXIT_ON_OOM="true")
        server.start()
        try:
            _wait(lambda: len(_workers(server)) == 2)
            _boom(server)
            assert server.proc is not None
            code = server.proc.wait(timeout=60)
            assert code == 137, server.logs()
            assert "DRUM_EXIT_ON_OOM" in server.logs()
        finally:
            server.stop()
    finally:
        remove(group)


def test_access_log_has_one_format_on_every_stack(tmp_path: Path) -> None:
    servers = _start_all(tmp_path)
    try:
        for server in servers.values():
            httpx.post(
                server.url + "/predict/?x=1",
                content=CSV,
                headers={"Content-Type": "text/csv", "X-Request-ID": "rid-42"},
                timeout=10,
            )
        time.sleep(0.5)
        shapes = {}
        for st, server in servers.items():
            line = next(ln for ln in server.logs().splitlines() if "rid-42" in ln)
            message = line.split("tandem.access: ", 1)[1]
            # client "METHOD path" status bytes duration request_id=...
            parts = message.split()
            assert parts[0] == "127.0.0.1" and parts[1] == '"POST' and parts[2] == '/predict/"'
            assert parts[3] == "200" and parts[4] == "26" and parts[5].endswith("ms")
            assert parts[6] == "request_id=rid-42"
            shapes[st] = [parts[i] for i in (0, 1, 2, 3, 4, 6)]
        assert shapes["flask"] == shapes["gunicorn"] == shapes["fastapi"]
    finally:
        for server in servers.values():
            server.stop()


def test_json_logging_makes_every_line_json(tmp_path: Path) -> None:
    servers = _start_all(tmp_path, {"DRUM_JSON_LOGGING": "true"})
    try:
        for server in servers.values():
            httpx.post(
                server.url + "/predict/",
                content=CSV,
                headers={"Content-Type": "text/csv", "X-Request-ID": "rid-json"},
                timeout=10,
            )
        time.sleep(0.5)
        for st, server in servers.items():
            lines = [ln for ln in server.logs().splitlines() if ln.strip()]
            assert lines, st
            docs = [json.loads(ln) for ln in lines]
            assert any(d["logger"] == "tandem.start" for d in docs), st
            access = next(d for d in docs if d.get("request_id") == "rid-json")
            assert access["status"] == 200 and access["method"] == "POST", st
            assert {"time", "level", "logger", "message"} <= access.keys()
    finally:
        for server in servers.values():
            server.stop()


@pytest.mark.parametrize("server_type", ["gunicorn", "fastapi"])
def test_a_hook_exiting_with_status_3_fails_one_worker_not_the_server(
    tmp_path: Path, server_type: str
) -> None:
    """Gunicorn read a booted worker's exit status 3 as "failed to boot" and stopped the whole
    server (issue 13, defect 7)."""
    code_dir = fixture_dir("exit_on_demand", tmp_path)
    env = {"MLOPS_RUNTIME_PARAM_CUSTOM_MODEL_WORKERS": "2"}
    with ServerProcess(code_dir, server_type, args=["--target-type", "regression"], env=env) as srv:
        _wait(lambda: len(_workers(srv)) == 2)
        for column in ("hard_exit", "exit", "hard_exit"):
            try:
                httpx.post(
                    srv.url + "/predict/",
                    content=f"a,{column}\n1,2\n".encode(),
                    headers={"Content-Type": "text/csv"},
                    timeout=30,
                )
            except httpx.HTTPError:
                pass  # the worker ended under the request
            time.sleep(0.5)
            assert srv.proc is not None and srv.proc.poll() is None, srv.logs()
            _wait(lambda: len(_workers(srv)) == 2)
        framework = "fastapi" if server_type == "fastapi" else "flask"
        _wait(lambda: (_counter(srv, "drum_worker_restarts_total", framework) or 0) >= 2)
        assert _counter(srv, "drum_oom_kills_total", framework) == 0
        assert _counter(srv, "drum_worker_kills_total", framework) == 0
        assert "exited with status 3" in srv.logs()
        r = httpx.post(srv.url + "/predict/", content=CSV, headers={"Content-Type": "text/csv"})
        assert r.status_code == 200
