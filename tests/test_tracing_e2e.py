"""OpenTelemetry traces from real Flask-dev, Gunicorn and Uvicorn processes, over OTLP/HTTP.

Every server exports to a local receiver (``tests/otlp_receiver.py``) on 127.0.0.1; nothing about
OpenTelemetry is mocked.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conformance_cases import MODELS
from tests.otlp_receiver import (
    KIND_INTERNAL,
    KIND_SERVER,
    STATUS_ERROR,
    STATUS_UNSET,
    OtlpReceiver,
    ReceivedSpan,
)
from tests.support import SERVER_TYPES, ServerProcess

pytestmark = pytest.mark.e2e

CSV = b"a,b\n1,2\n3,4\n"
HEALTH_PATHS = (
    "/",
    "/ping",
    "/health/",
    "/livez",
    "/readyz",
    "/startupz",
    "/metrics",
    "/info/",
    "/stats/",
    "/capabilities/",
)
#: Worker processes per server type (the Flask development server is always one process).
WORKERS = {"flask": 1, "gunicorn": 2, "fastapi": 2}
FRAMEWORK = {"flask": "flask", "gunicorn": "flask", "fastapi": "fastapi"}


def traceparent() -> tuple[str, str, str]:
    """A sampled W3C ``traceparent`` and its trace and span ids (hex)."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def otel_env(receiver: OtlpReceiver, server_type: str, **extra: str) -> dict[str, str]:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_SDK_DISABLED": "",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_SERVICE_NAME": "",
        "OTEL_RESOURCE_ATTRIBUTES": "",
        "MLOPS_RUNTIME_PARAM_CUSTOM_MODEL_WORKERS": str(WORKERS[server_type]),
    }
    env.update(extra)
    return env


def start_all(servers: list[ServerProcess]) -> None:
    with ThreadPoolExecutor(len(servers)) as pool:
        list(pool.map(ServerProcess.start, servers))


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as r:
        yield r


@pytest.fixture(scope="module")
def servers(
    receiver: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ServerProcess]]:
    """One regression server per server type, all exporting to ``receiver``."""
    spec = MODELS["regression"]
    code_dir = spec.build(tmp_path_factory.mktemp("tracing"))
    running = {
        st: ServerProcess(code_dir, st, args=list(spec.args), env=otel_env(receiver, st))
        for st in SERVER_TYPES
    }
    start_all(list(running.values()))
    try:
        yield running
    finally:
        for server in running.values():
            server.stop()


def send(
    server: ServerProcess,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> tuple[httpx.Response, str, str]:
    """One request on a fresh connection, with a new sampled ``traceparent``."""
    header, trace_id, span_id = traceparent()
    all_headers = {"traceparent": header, "User-Agent": "tracing-e2e", **(headers or {})}
    resp = httpx.request(method, server.url + path, content=body, headers=all_headers, timeout=30)
    return resp, trace_id, span_id


def predict(server: ServerProcess, path: str = "/predict/", **headers: str) -> Any:
    return send(server, "POST", path, CSV, {"Content-Type": "text/csv", **headers})


def server_span(receiver: OtlpReceiver, trace_id: str, timeout: float = 20.0) -> ReceivedSpan:
    """Wait for the server span of a trace (its children end first, so they are here too)."""
    spans = receiver.wait_for(
        lambda got: any(s.trace_id == trace_id and s.kind == KIND_SERVER for s in got), timeout
    )
    found = [s for s in spans if s.trace_id == trace_id and s.kind == KIND_SERVER]
    assert len(found) == 1, "\n".join(map(repr, found))
    return found[0]


@pytest.mark.parametrize("server_type", SERVER_TYPES)
def test_prediction_traces(
    receiver: OtlpReceiver, servers: dict[str, ServerProcess], server_type: str
) -> None:
    server = servers[server_type]
    pids = set()
    for path, route in (
        ("/predict/", "/predict/"),
        ("/predictions", "/predictions/"),
        ("/invocations", "/invocations"),
        ("/predict/", "/predict/"),
    ):
        resp, trace_id, caller = predict(
            server,
            path,
            **{
                "X-Request-ID": "rid-e2e",
                "X-DataRobot-Consumer-Id": "consumer-1",
                "X-DataRobot-Consumer-Type": "user",
            },
        )
        assert resp.status_code == 200, resp.text
        span = server_span(receiver, trace_id)
        assert span.name == "drum.invocations"
        assert span.trace_id == trace_id
        assert span.parent_span_id == caller
        assert span.status_code == STATUS_UNSET
        assert span.scope == "tandem"
        assert span.attributes == {
            "http.request.method": "POST",
            "url.scheme": "http",
            "url.path": path,
            "http.route": route,
            "server.address": "127.0.0.1",
            "server.port": server.port,
            "client.address": "127.0.0.1",
            "user_agent.original": "tracing-e2e",
            "http.request.body.size": len(CSV),
            "http.response.status_code": 200,
            "http.response.body.size": len(resp.content),
            "drum.target_type": "regression",
            "drum.server_type": FRAMEWORK[server_type],
            "drum.request_id": "rid-e2e",
            "gen_ai.request.consumer_id": "consumer-1",
            "gen_ai.request.consumer_type": "user",
        }
        children = [s for s in receiver.trace(trace_id) if s is not span]
        assert {"parse", "score", "serialise"} <= {c.name for c in children}
        for child in children:
            assert child.kind == KIND_INTERNAL
            assert child.parent_span_id == span.span_id
            assert child.status_code == STATUS_UNSET
        assert span.resource["service.name"] == "drum"
        pids.add(span.resource["process.pid"])
    if WORKERS[server_type] > 1:
        # The tracer provider lives in the workers, never in the master that forked them.
        assert server.proc is not None and server.proc.pid not in pids
    else:
        assert server.proc is not None and pids == {server.proc.pid}


@pytest.mark.parametrize("server_type", SERVER_TYPES)
def test_health_routes_are_not_traced(
    receiver: OtlpReceiver, servers: dict[str, ServerProcess], server_type: str
) -> None:
    server = servers[server_type]
    health_traces = set()
    for path in HEALTH_PATHS:
        resp, trace_id, _ = send(server, "GET", path)
        assert resp.status_code == 200, (path, resp.status_code)
        health_traces.add(trace_id)
    # A traced request after them, once per worker (connections spread over the workers).
    for _ in range(2 * WORKERS[server_type]):
        _, barrier, _ = predict(server)
        server_span(receiver, barrier)
    time.sleep(0.5)
    spans = receiver.snapshot()
    assert not [s for s in spans if s.trace_id in health_traces]
    paths = {s.attributes.get("url.path") for s in spans}
    assert paths.isdisjoint(HEALTH_PATHS)


#: Requests whose spans must be the same on every stack: success, client error, other routes.
COMPARED: tuple[tuple[str, str, bytes, dict[str, str]], ...] = (
    ("POST", "/predict/", CSV, {"Content-Type": "text/csv"}),
    ("POST", "/invocations", CSV, {"Content-Type": "text/csv"}),
    ("POST", "/predict/", b"", {}),
    ("GET", "/directAccess/v1/x", b"", {}),
    ("POST", "/predictUnstructured/", b"hi", {"Content-Type": "text/plain"}),
)


def _shape(receiver: OtlpReceiver, trace_id: str) -> tuple[Any, ...]:
    top = server_span(receiver, trace_id)
    spans = receiver.trace(trace_id)
    names = {s.span_id: s.name for s in spans}
    out = []
    for s in spans:
        attrs = dict(s.attributes)
        attrs.pop("drum.server_type", None)
        attrs.pop("server.port", None)  # each server listens on its own port
        out.append((s.name, s.kind, s.status_code, names.get(s.parent_span_id), attrs))
    return top.attributes["drum.server_type"], sorted(out, key=repr)


def test_every_stack_produces_the_same_spans(
    receiver: OtlpReceiver, servers: dict[str, ServerProcess]
) -> None:
    for method, path, body, headers in COMPARED:
        shapes = {}
        for st, server in servers.items():
            _, trace_id, _ = send(server, method, path, body, {"X-Request-ID": "same", **headers})
            shapes[st] = _shape(receiver, trace_id)
        assert {st: shape[0] for st, shape in shapes.items()} == FRAMEWORK
        first = shapes["flask"][1]
        for st, (_, spans) in shapes.items():
            assert spans == first, f"{method} {path}: flask vs {st}"
    # Spot-check names and statuses of the non-prediction routes.
    _, trace_id, _ = send(servers["fastapi"], "GET", "/directAccess/v1/x")
    direct = server_span(receiver, trace_id)
    assert (direct.name, direct.status_code) == ("drum.directAccess", STATUS_ERROR)


def _metric(server: ServerProcess, name: str) -> float:
    text = httpx.get(server.url + "/metrics", timeout=10).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                total += sample.value
    return total


def _wait_metric(server: ServerProcess, name: str, minimum: float, timeout: float = 15.0) -> float:
    deadline = time.monotonic() + timeout
    while True:
        value = _metric(server, name)
        if value >= minimum or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


@pytest.mark.parametrize("server_type", SERVER_TYPES)
def test_exported_spans_are_counted_in_metrics(
    receiver: OtlpReceiver, servers: dict[str, ServerProcess], server_type: str
) -> None:
    server = servers[server_type]
    for _ in range(3):
        _, trace_id, _ = predict(server)
        server_span(receiver, trace_id)
    assert _wait_metric(server, "drum_otel_spans_exported_total", 12) >= 12
    assert _metric(server, "drum_otel_export_failures_total") == 0
    # Every span that ended is exported once the batch has gone (50 ms here); /stats/ shows the
    # same totals over every worker (the rollout controller's built-in source reads them there).
    deadline = time.monotonic() + 15
    while True:
        ended = _metric(server, "drum_otel_spans_ended_total")
        exported = _metric(server, "drum_otel_spans_exported_total")
        info = httpx.get(server.url + "/stats/", timeout=10).json()["otel_info"]
        if ended == exported or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert ended == exported >= 12
    assert info == {"spans_ended": ended, "spans_exported": exported, "export_failures": 0}


@pytest.mark.parametrize("server_type", SERVER_TYPES)
def test_each_worker_sets_tracing_up_before_its_first_request(
    receiver: OtlpReceiver, tmp_path: Path, server_type: str
) -> None:
    """The span counters (created with each worker's tracer) are there before any traced
    request: the first prediction does not pay for setting OpenTelemetry up."""
    spec = MODELS["regression"]
    code_dir = spec.build(tmp_path)
    env = {**otel_env(receiver, server_type), "MLOPS_RUNTIME_PARAM_CUSTOM_MODEL_WORKERS": "2"}
    with ServerProcess(code_dir, server_type, args=list(spec.args), env=env) as server:
        text = httpx.get(server.url + "/metrics", timeout=10).text  # an untraced route
        names = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
        assert {"drum_otel_spans_ended_total", "drum_otel_spans_exported_total"} <= names
        assert _metric(server, "drum_otel_spans_ended_total") == 0
        resp, trace_id, _ = predict(server)
        assert resp.status_code == 200
        server_span(receiver, trace_id)


def test_export_failures_are_counted_and_never_fail_requests(tmp_path: Path) -> None:
    spec = MODELS["regression"]
    code_dir = spec.build(tmp_path)
    with OtlpReceiver(fail_status=400) as failing:
        server = ServerProcess(
            code_dir, "fastapi", args=list(spec.args), env=otel_env(failing, "flask")
        )
        with server:
            resp, _, _ = predict(server)
            assert resp.status_code == 200
            assert _wait_metric(server, "drum_otel_export_failures_total", 1) >= 1
            assert _metric(server, "drum_otel_spans_exported_total") == 0
            assert _metric(server, "drum_otel_spans_ended_total") >= 4
            info = httpx.get(server.url + "/stats/", timeout=10).json()["otel_info"]
            assert info["spans_exported"] == 0 and info["export_failures"] >= 1
        assert failing.requests >= 1


@pytest.mark.parametrize("server_type", SERVER_TYPES)
def test_queued_spans_are_flushed_on_shutdown(
    receiver: OtlpReceiver, tmp_path: Path, server_type: str
) -> None:
    spec = MODELS["regression"]
    code_dir = spec.build(tmp_path)
    env = otel_env(receiver, server_type, OTEL_BSP_SCHEDULE_DELAY="600000")
    server = ServerProcess(code_dir, server_type, args=list(spec.args), env=env).start()
    try:
        traces = []
        for _ in range(2 * WORKERS[server_type]):
            resp, trace_id, _ = predict(server)
            assert resp.status_code == 200
            traces.append(trace_id)
        time.sleep(0.5)
        assert not [s for s in receiver.snapshot() if s.trace_id in traces]
    finally:
        server.stop()
    assert server.proc is not None and server.proc.returncode is not None
    for trace_id in traces:
        server_span(receiver, trace_id, timeout=5)


def test_otel_sdk_disabled_runtime_parameter_turns_tracing_off(
    receiver: OtlpReceiver, tmp_path: Path
) -> None:
    spec = MODELS["regression"]
    code_dir = spec.build(tmp_path)
    env = otel_env(
        receiver,
        "flask",
        MLOPS_RUNTIME_PARAM_OTEL_SDK_DISABLED='{"type": "boolean", "payload": true}',
    )
    with ServerProcess(code_dir, "flask", args=list(spec.args), env=env) as server:
        resp, trace_id, _ = predict(server)
        assert resp.status_code == 200
        time.sleep(1.0)
        # Tracing off: no drum_otel_* series, and /stats/ says so (the trace-gap trigger of a
        # rollout is then not judged).
        assert httpx.get(server.url + "/stats/", timeout=10).json()["otel_info"] is None
        assert "drum_otel_spans_ended_total" not in httpx.get(server.url + "/metrics").text
    assert receiver.trace(trace_id) == []
