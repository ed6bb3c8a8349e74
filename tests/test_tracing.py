"""OpenTelemetry tracing in-process (fast tier): spans through the SDK's InMemorySpanExporter."""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tandem.core.http import Headers, QueryDict, Request
from tandem.core.routes import ROUTES
from tandem.core.service import PredictionService
from tandem.observability import metrics
from tandem.observability.tracing import (
    UNTRACED_ROUTES,
    Tracing,
    compile_exclusions,
    shutdown_tracing,
    tracing_enabled,
)
from tandem.settings import ServeSettings
from tests.conformance import settings_for
from tests.conformance_cases import MODELS
from tests.support import FRAMEWORKS

CSV = b"a,b\n1,2\n3,4\n"
HEALTH_PATHS = (
    "/",
    "/ping",
    "/ping/",
    "/health/",
    "/livez",
    "/readyz",
    "/startupz",
    "/metrics",
    "/info/",
    "/stats/",
    "/capabilities/",
)


def traceparent() -> tuple[str, str, str]:
    """A sampled W3C ``traceparent`` and its trace and span ids (hex)."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def hex_trace(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.trace_id:032x}"


def hex_span(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.span_id:016x}"


def hex_parent(span: ReadableSpan) -> str | None:
    return None if span.parent is None else f"{span.parent.span_id:016x}"


class Traced:
    """A service whose tracing goes to an in-memory exporter, and an in-process client."""

    def __init__(self, framework: str, settings: ServeSettings) -> None:
        self.framework = framework
        self.exporter = InMemorySpanExporter()
        self.service = PredictionService.load(settings)
        self.service.tracing = Tracing.with_exporter(settings, self.exporter)
        if framework == "flask":
            from tandem.servers.flask_app import create_app as create_flask

            self.client: httpx.Client = httpx.Client(
                transport=httpx.WSGITransport(app=create_flask(self.service)),
                base_url="http://testserver",
            )
        else:
            from starlette.testclient import TestClient

            from tandem.servers.fastapi_app import create_app as create_fastapi

            self.client = TestClient(create_fastapi(self.service), base_url="http://testserver")

    def spans(self, trace_id: str | None = None) -> list[ReadableSpan]:
        spans = list(self.exporter.get_finished_spans())
        return spans if trace_id is None else [s for s in spans if hex_trace(s) == trace_id]


def _build(root: Path, model: str, framework: str, monkeypatch: pytest.MonkeyPatch) -> Traced:
    spec = MODELS[model]
    code_dir = root / model
    if not code_dir.exists():
        code_dir = spec.build(root)
    for name, value in spec.env:
        monkeypatch.setenv(name, value)
    return Traced(framework, settings_for(spec, code_dir, framework))


@pytest.fixture
def traced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[Any]:
    """``traced(model, framework)`` builds a :class:`Traced` (closed after the test)."""
    made: list[Traced] = []

    def make(model: str = "regression", framework: str = "flask") -> Traced:
        t = _build(tmp_path, model, framework, monkeypatch)
        made.append(t)
        return t

    yield make
    for t in made:
        t.client.close()
        t.service.tracing.shutdown()


def _post_predict(
    t: Traced, path: str = "/predict/", **headers: str
) -> tuple[httpx.Response, str, str]:
    header, trace_id, span_id = traceparent()
    resp = t.client.post(
        path,
        content=CSV,
        headers={"Content-Type": "text/csv", "traceparent": header, **headers},
    )
    return resp, trace_id, span_id


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_predict_server_span_and_children(traced: Any, framework: str) -> None:
    t = traced("regression", framework)
    resp, trace_id, caller = _post_predict(
        t,
        **{
            "X-DataRobot-Consumer-Id": "consumer-7",
            "X-DataRobot-Consumer-Type": "deployment",
            "X-Request-ID": "rid-1",
            "User-Agent": "tracing-test",
        },
    )
    assert resp.status_code == 200, resp.text
    spans = t.spans(trace_id)
    by_name = {s.name: s for s in spans}
    assert sorted(by_name) == ["drum.invocations", "parse", "score", "serialise"]
    assert [s.name for s in spans].count("drum.invocations") == 1
    server = by_name["drum.invocations"]
    assert server.kind is SpanKind.SERVER
    assert hex_parent(server) == caller
    assert server.parent is not None and server.parent.is_remote
    attrs = dict(server.attributes or {})
    assert attrs == {
        "http.request.method": "POST",
        "url.scheme": "http",
        "url.path": "/predict/",
        "http.route": "/predict/",
        "server.address": "testserver",
        "http.request.body.size": len(CSV),
        "http.response.status_code": 200,
        "http.response.body.size": len(resp.content),
        "drum.target_type": "regression",
        "drum.server_type": framework,
        "drum.request_id": "rid-1",
        "client.address": attrs["client.address"],
        "user_agent.original": "tracing-test",
        "gen_ai.request.consumer_id": "consumer-7",
        "gen_ai.request.consumer_type": "deployment",
    }
    assert server.status.status_code is StatusCode.UNSET
    children = [s for s in spans if s is not server]
    for child in children:
        assert child.kind is SpanKind.INTERNAL
        assert hex_parent(child) == hex_span(server)
        assert child.status.status_code is StatusCode.UNSET
        assert server.end_time is not None and child.end_time is not None
        assert child.end_time <= server.end_time
        if child.name == "parse":
            assert dict(child.attributes or {}) == {"drum.size": len(CSV)}


@pytest.mark.parametrize("path", ["/predict/", "/predictions/", "/invocations", "/predict"])
def test_every_structured_route_is_drum_invocations(traced: Any, path: str) -> None:
    t = traced()
    resp, trace_id, _ = _post_predict(t, path)
    assert resp.status_code == 200
    server = [s for s in t.spans(trace_id) if s.kind is SpanKind.SERVER]
    assert [s.name for s in server] == ["drum.invocations"]
    declared = "/invocations" if path == "/invocations" else path.rstrip("/") + "/"
    assert server[0].attributes is not None
    assert server[0].attributes["http.route"] == declared
    assert server[0].attributes["url.path"] == path


def test_without_traceparent_the_server_span_is_a_root(traced: Any) -> None:
    t = traced()
    assert t.client.post("/predict/", content=CSV, headers={"Content-Type": "text/csv"})
    server = [s for s in t.spans() if s.kind is SpanKind.SERVER]
    assert len(server) == 1 and server[0].parent is None


def test_unsampled_caller_means_no_spans(traced: Any) -> None:
    t = traced()
    header = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-00"
    resp = t.client.post(
        "/predict/", content=CSV, headers={"Content-Type": "text/csv", "traceparent": header}
    )
    assert resp.status_code == 200
    assert t.spans() == []


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_health_routes_are_not_traced(traced: Any, framework: str) -> None:
    t = traced("regression", framework)
    for path in HEALTH_PATHS:
        header, _, _ = traceparent()
        resp = t.client.get(path, headers={"traceparent": header})
        assert resp.status_code < 500, (path, resp.status_code)
    assert t.spans() == []


def test_untraced_routes_are_the_health_and_info_routes() -> None:
    names = {r.name for r in ROUTES}
    assert UNTRACED_ROUTES <= names
    assert {"predict", "transform", "predict_unstructured", "chat", "forward_request"}.isdisjoint(
        UNTRACED_ROUTES
    )


def test_model_list_is_not_traced_as_in_drum(traced: Any) -> None:
    t = traced()
    for path in ("/models", "/v1/models/"):
        header, trace_id, _ = traceparent()
        t.client.get(path, headers={"traceparent": header})
        assert t.spans(trace_id) == []


def test_direct_access_span_is_an_error(traced: Any) -> None:
    t = traced()
    header, trace_id, _ = traceparent()
    resp = t.client.get("/directAccess/v1/things", headers={"traceparent": header})
    assert resp.status_code == 400
    (server,) = t.spans(trace_id)
    assert server.name == "drum.directAccess"
    assert server.status.status_code is StatusCode.ERROR
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/directAccess/{path:path}"
    assert server.attributes["url.path"] == "/directAccess/v1/things"
    assert server.attributes["error.type"] == "400"


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_model_failure_marks_score_and_server_span(traced: Any, framework: str) -> None:
    t = traced("raising", framework)
    resp, trace_id, _ = _post_predict(t)
    assert resp.status_code == 500
    by_name = {s.name: s for s in t.spans(trace_id)}
    assert sorted(by_name) == ["drum.invocations", "parse", "score"]
    score = by_name["score"]
    assert score.status.status_code is StatusCode.ERROR
    assert [e.name for e in score.events] == ["exception"]
    server = by_name["drum.invocations"]
    assert server.status.status_code is StatusCode.ERROR
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 500
    assert server.attributes["error.type"] == "500"


def test_client_error_leaves_the_server_span_unset(traced: Any) -> None:
    t = traced()
    header, trace_id, _ = traceparent()
    resp = t.client.post("/predict/", content=b"", headers={"traceparent": header})
    assert resp.status_code == 422
    by_name = {s.name: s for s in t.spans(trace_id)}
    assert by_name["drum.invocations"].status.status_code is StatusCode.UNSET
    assert by_name["parse"].status.status_code is StatusCode.ERROR


def test_url_prefix_is_part_of_the_route(traced: Any) -> None:
    t = traced("prefixed")
    resp, trace_id, _ = _post_predict(t, "/pfx/predict/")
    assert resp.status_code == 200
    server = [s for s in t.spans(trace_id) if s.kind is SpanKind.SERVER][0]
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/pfx/predict/"
    assert server.attributes["url.path"] == "/pfx/predict/"
    before = len(t.spans())
    t.client.get("/pfx/ping")
    assert len(t.spans()) == before


def test_query_string_is_recorded(traced: Any) -> None:
    t = traced("unstructured")
    header, trace_id, _ = traceparent()
    resp = t.client.post(
        "/predictUnstructured/?a=1&b=x%20y",
        content=b"hello",
        headers={"Content-Type": "text/plain", "traceparent": header},
    )
    assert resp.status_code == 200
    (server,) = t.spans(trace_id)
    assert server.name == "drum.predictUnstructured"
    assert server.attributes is not None
    assert server.attributes["url.query"] == "a=1&b=x+y"
    assert server.attributes["http.response.body.size"] == len(resp.content)


def _shape(spans: Sequence[ReadableSpan]) -> list[tuple[str, str | None, dict[str, Any]]]:
    names = {hex_span(s): s.name for s in spans}
    out = []
    for s in spans:
        attrs = dict(s.attributes or {})
        attrs.pop("drum.server_type", None)
        # The in-process test clients name the client differently (testclient / 127.0.0.1);
        # the end-to-end tier compares it between real servers.
        attrs.pop("client.address", None)
        out.append((s.name, names.get(hex_parent(s) or ""), attrs))
    return sorted(out, key=lambda x: x[0])


def test_flask_and_fastapi_produce_the_same_spans(traced: Any) -> None:
    shapes = {}
    server_types = {}
    for framework in FRAMEWORKS:
        t = traced("regression", framework)
        resp, trace_id, _ = _post_predict(t, **{"X-Request-ID": "same", "User-Agent": "same"})
        assert resp.status_code == 200
        spans = t.spans(trace_id)
        shapes[framework] = _shape(spans)
        server_types[framework] = {
            (s.attributes or {}).get("drum.server_type") for s in spans if s.kind is SpanKind.SERVER
        }
    assert shapes["flask"] == shapes["fastapi"]
    assert server_types == {"flask": {"flask"}, "fastapi": {"fastapi"}}


# -- configuration -------------------------------------------------------------------------------

ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}


@pytest.mark.parametrize(
    ("env", "enabled"),
    [
        ({}, False),
        (ENDPOINT, True),
        ({**ENDPOINT, "OTEL_SDK_DISABLED": "true"}, False),
        ({**ENDPOINT, "OTEL_SDK_DISABLED": "false"}, True),
        ({**ENDPOINT, "MLOPS_RUNTIME_PARAM_OTEL_SDK_DISABLED": "true"}, False),
        (
            {
                **ENDPOINT,
                "MLOPS_RUNTIME_PARAM_OTEL_SDK_DISABLED": '{"type":"boolean","payload":true}',
            },
            False,
        ),
        (
            {
                **ENDPOINT,
                "OTEL_SDK_DISABLED": "true",
                "MLOPS_RUNTIME_PARAM_OTEL_SDK_DISABLED": '{"type":"boolean","payload":false}',
            },
            True,
        ),
        ({**ENDPOINT, "OTEL_TRACES_EXPORTER": "none"}, False),
        ({**ENDPOINT, "OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, False),
    ],
)
def test_tracing_is_configured_as_drum_configures_it(env: dict[str, str], enabled: bool) -> None:
    assert tracing_enabled(env) is enabled


def test_from_env_creates_nothing_before_the_first_traced_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The master (gunicorn preload, uvicorn supervisor) must fork without any OTel state."""
    code_dir = MODELS["regression"].build(tmp_path)
    settings = settings_for(MODELS["regression"], code_dir, "flask")
    tracing = Tracing.from_env(settings, ENDPOINT)
    assert tracing.enabled
    route = next(r for r in ROUTES if r.name == "ping")
    with tracing.request_span(_request("/ping"), route, "/ping/") as span:
        assert not span.recording
    assert tracing._pipeline is None


def test_excluded_urls_are_anchored() -> None:
    patterns = compile_exclusions("/, /predictions/ ,predict, /nim/.*, [bad")
    assert [p.pattern for p in patterns][:4] == ["/", "/predictions/", "predict", "/nim/.*"]

    def excluded(path: str) -> bool:
        return any(p.fullmatch(path) for p in patterns)

    assert excluded("/")
    assert not excluded("/predict/")  # "/" and "predict" are not substring matches
    assert excluded("/predictions/")
    assert excluded("/nim/v1/x")
    assert excluded("[bad")  # an invalid regex is matched literally


def test_excluded_urls_skip_tracing(traced: Any) -> None:
    t = traced()
    t.service.tracing.excluded_paths = compile_exclusions("/predictions/")
    _, excluded_trace, _ = _post_predict(t, "/predictions/")
    _, kept_trace, _ = _post_predict(t, "/predict/")
    assert t.spans(excluded_trace) == []
    assert [s.name for s in t.spans(kept_trace) if s.kind is SpanKind.SERVER] == [
        "drum.invocations"
    ]


# -- exporter counters ---------------------------------------------------------------------------


def _sample(name: str, server_type: str) -> float:
    value = metrics._registry.get_sample_value(name, {"server_type": server_type})
    return float(value or 0.0)


class _Failing(SpanExporter):
    def __init__(self, raises: bool) -> None:
        self.raises = raises

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.raises:
            raise ConnectionError("collector down")
        return SpanExportResult.FAILURE


def test_exported_spans_are_counted(traced: Any) -> None:
    before = _sample("drum_otel_spans_exported_total", "flask")
    t = traced("regression", "flask")
    _post_predict(t)
    assert len(t.spans()) >= 4
    assert _sample("drum_otel_spans_exported_total", "flask") - before == len(t.spans())


def test_ended_spans_are_counted_before_they_are_exported(traced: Any) -> None:
    ended = _sample("drum_otel_spans_ended_total", "flask")
    exported = _sample("drum_otel_spans_exported_total", "flask")
    t = traced("regression", "flask")
    _post_predict(t)
    t.client.get("/ping")  # not traced: no span, nothing counted
    # Every span of the request (server span and children), each once.
    assert _sample("drum_otel_spans_ended_total", "flask") - ended == len(t.spans()) >= 4
    assert _sample("drum_otel_spans_exported_total", "flask") - exported == len(t.spans())
    info = t.client.get("/stats/").json()["otel_info"]
    assert info["spans_ended"] == _sample("drum_otel_spans_ended_total", "flask") + _sample(
        "drum_otel_spans_ended_total", "fastapi"
    )
    assert info["spans_ended"] >= info["spans_exported"]


def test_ended_spans_wait_for_the_batch_before_they_count_as_exported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")
    code_dir = MODELS["regression"].build(tmp_path)
    settings = settings_for(MODELS["regression"], code_dir, "fastapi")
    tracing = Tracing.with_exporter(settings, InMemorySpanExporter(), batch=True)
    ended = _sample("drum_otel_spans_ended_total", "fastapi")
    exported = _sample("drum_otel_spans_exported_total", "fastapi")
    route = next(r for r in ROUTES if r.name == "predict")
    with tracing.request_span(_request("/predict/", "POST"), route, "/predict/"):
        with tracing.child("score"):
            pass
    assert _sample("drum_otel_spans_ended_total", "fastapi") - ended == 2
    assert _sample("drum_otel_spans_exported_total", "fastapi") == exported  # still queued
    assert tracing.force_flush()
    assert _sample("drum_otel_spans_exported_total", "fastapi") - exported == 2
    tracing.shutdown()


_OTEL_TOTALS_SCRIPT = """
import os
from tandem.observability import metrics
print(metrics.otel_totals())
for n in range(2):  # two workers: one still running, one gone
    pid = os.fork()
    if pid == 0:
        metrics.OTEL_SPANS_ENDED.labels("fastapi").inc(5 + n)
        metrics.OTEL_SPANS_EXPORTED.labels("fastapi").inc(4)
        metrics.OTEL_EXPORT_FAILURES.labels("fastapi").inc(n)
        os._exit(0)
    os.waitpid(pid, 0)
print(metrics.otel_totals())
"""


@pytest.mark.parametrize("multiprocess", [False, True])
def test_otel_totals_cover_every_worker_and_are_none_before_any_span(
    tmp_path: Path, multiprocess: bool
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    if multiprocess:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", _OTEL_TOTALS_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    before, after = proc.stdout.splitlines()
    assert before == "None"  # no process has set tracing up: what /stats/ says as otel_info
    if multiprocess:  # /stats/ answered by any worker sums them all, as /metrics does
        expected = {"spans_ended": 11, "spans_exported": 8, "export_failures": 1}
    else:  # one process: the forks' counts stay in the forks
        expected = None
    assert after == str(expected)


@pytest.mark.parametrize("raises", [False, True])
def test_export_failures_are_counted(
    tmp_path: Path, raises: bool, caplog: pytest.LogCaptureFixture
) -> None:
    code_dir = MODELS["regression"].build(tmp_path)
    settings = settings_for(MODELS["regression"], code_dir, "fastapi")
    tracing = Tracing.with_exporter(settings, _Failing(raises))
    before = _sample("drum_otel_export_failures_total", "fastapi")
    exported = _sample("drum_otel_spans_exported_total", "fastapi")
    route = next(r for r in ROUTES if r.name == "predict")
    with caplog.at_level(logging.CRITICAL):
        with tracing.request_span(_request("/predict/", "POST"), route, "/predict/") as span:
            assert span.recording
    assert _sample("drum_otel_export_failures_total", "fastapi") - before == 1
    assert _sample("drum_otel_spans_exported_total", "fastapi") == exported
    tracing.shutdown()


# -- process lifecycle ---------------------------------------------------------------------------


def _request(path: str, method: str = "GET") -> Request:
    header, _, _ = traceparent()
    return Request(method, path, Headers({"Traceparent": header}), QueryDict(), b"")


def test_batched_spans_are_flushed_on_shutdown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")
    code_dir = MODELS["regression"].build(tmp_path)
    settings = settings_for(MODELS["regression"], code_dir, "flask")
    exporter = InMemorySpanExporter()
    tracing = Tracing.with_exporter(settings, exporter, batch=True)
    route = next(r for r in ROUTES if r.name == "predict")
    with tracing.request_span(_request("/predict/", "POST"), route, "/predict/"):
        with tracing.child("score"):
            pass
    assert exporter.get_finished_spans() == ()
    shutdown_tracing()
    assert sorted(s.name for s in exporter.get_finished_spans()) == ["drum.invocations", "score"]
    # After shutdown requests are no longer traced (and nothing fails).
    with tracing.request_span(_request("/predict/", "POST"), route, "/predict/") as span:
        assert not span.recording


def _in_child(body: Any) -> str:
    """Run ``body()`` in a forked child; return what it wrote (its result or the error)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read_fd)
        try:
            out = str(body())
        except BaseException as exc:  # noqa: BLE001
            out = f"error: {exc!r}"
        os.write(write_fd, out.encode())
        os.close(write_fd)
        os._exit(0)
    os.close(write_fd)
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    os.close(read_fd)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_each_process_gets_its_own_provider(tmp_path: Path) -> None:
    code_dir = MODELS["regression"].build(tmp_path)
    settings = settings_for(MODELS["regression"], code_dir, "flask")
    exporters: dict[int, InMemorySpanExporter] = {}

    def factory() -> Any:
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        exporters[os.getpid()] = InMemorySpanExporter()
        return SimpleSpanProcessor(exporters[os.getpid()])

    tracing = Tracing(settings, factory)
    route = next(r for r in ROUTES if r.name == "predict")
    with tracing.request_span(_request("/predict/", "POST"), route, "/predict/"):
        pass
    parent_pipeline = tracing._pipeline
    assert parent_pipeline is not None and parent_pipeline.pid == os.getpid()

    def child() -> str:
        with tracing.request_span(_request("/predict/", "POST"), route, "/predict/") as span:
            assert span.recording
        pipeline = tracing._pipeline
        assert pipeline is not None and pipeline is not parent_pipeline
        assert pipeline.pid == os.getpid()
        spans = exporters[os.getpid()].get_finished_spans()
        return f"{len(spans)} {spans[0].resource.attributes['process.pid'] == os.getpid()}"

    assert _in_child(child) == "1 True"
    assert len(exporters[os.getpid()].get_finished_spans()) == 1
    tracing.shutdown()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_logging_shutdown_flushes_a_worker_that_exits_with_os_exit(tmp_path: Path) -> None:
    """Tandem's Uvicorn workers end with logging.shutdown() and os._exit(), skipping atexit."""
    code_dir = MODELS["regression"].build(tmp_path)
    settings = settings_for(MODELS["regression"], code_dir, "fastapi")

    def child() -> str:
        os.environ["OTEL_BSP_SCHEDULE_DELAY"] = "600000"
        exporter = InMemorySpanExporter()
        tracing = Tracing.with_exporter(settings, exporter, batch=True)
        route = next(r for r in ROUTES if r.name == "predict")
        with tracing.request_span(_request("/predict/", "POST"), route, "/predict/"):
            pass
        before = len(exporter.get_finished_spans())
        logging.shutdown()
        return f"{before} {len(exporter.get_finished_spans())}"

    assert _in_child(child) == "0 1"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_reconfiguring_logging_keeps_tracing_and_the_exit_flush(tmp_path: Path) -> None:
    """dictConfig closes every handler (so the flush sentinel too): tracing must go on."""
    code_dir = MODELS["regression"].build(tmp_path)
    settings = settings_for(MODELS["regression"], code_dir, "fastapi")

    def child() -> str:
        import logging.config

        os.environ["OTEL_BSP_SCHEDULE_DELAY"] = "600000"
        exporter = InMemorySpanExporter()
        tracing = Tracing.with_exporter(settings, exporter, batch=True)
        route = next(r for r in ROUTES if r.name == "predict")
        with tracing.request_span(_request("/predict/", "POST"), route, "/predict/"):
            pass
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
        flushed = len(exporter.get_finished_spans())
        with tracing.request_span(_request("/predict/", "POST"), route, "/predict/") as span:
            recording = span.recording
        logging.shutdown()
        return f"{flushed} {recording} {len(exporter.get_finished_spans())}"

    assert _in_child(child) == "1 True 2"


def test_sensitive_query_values_are_redacted(traced: Any) -> None:
    t = traced("unstructured")
    header, trace_id, _ = traceparent()
    t.client.post(
        "/predictUnstructured/?sig=secret&X-Amz-Signature=s2&keep=1",
        content=b"x",
        headers={"Content-Type": "text/plain", "traceparent": header},
    )
    (server,) = t.spans(trace_id)
    assert server.attributes is not None
    assert server.attributes["url.query"] == "sig=REDACTED&X-Amz-Signature=REDACTED&keep=1"


def test_warm_builds_the_pipeline_before_any_request(tmp_path: Path) -> None:
    """A worker warms its tracer as it starts: the provider exists before the first traced
    request, which then does not pay for it. Without tracing, warming does nothing."""
    code_dir = MODELS["regression"].build(tmp_path)
    settings = settings_for(MODELS["regression"], code_dir, "flask")
    built: list[int] = []

    def factory() -> Any:
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        built.append(os.getpid())
        return SimpleSpanProcessor(InMemorySpanExporter())

    tracing = Tracing(settings, factory)
    assert tracing._pipeline is None
    tracing.warm()
    pipeline = tracing._pipeline
    assert pipeline is not None and pipeline.pid == os.getpid() and built == [os.getpid()]
    route = next(r for r in ROUTES if r.name == "predict")
    with tracing.request_span(_request("/predict/", "POST"), route, "/predict/") as span:
        assert span.recording
    assert tracing._pipeline is pipeline and built == [os.getpid()]  # not built again
    tracing.shutdown()
    off = Tracing(settings)
    off.warm()
    assert off._pipeline is None
