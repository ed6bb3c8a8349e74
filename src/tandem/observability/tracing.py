"""OpenTelemetry tracing of requests, identical on every stack.

Tracing lives in the framework-free core (:meth:`PredictionService.handle` opens the server span,
the route handlers open child spans), so Flask, Gunicorn and Uvicorn produce the same spans with
the same names and attributes; only ``drum.server_type`` tells them apart.

As in DRUM, tracing is on only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set and
``OTEL_SDK_DISABLED`` (runtime parameter or plain environment variable) is not truthy. Spans are
exported with OTLP over HTTP/protobuf; every other standard ``OTEL_*`` variable (service name,
resource attributes, sampler, ``OTEL_BSP_*``, exporter headers, timeout, compression) keeps its
usual meaning. ``OTEL_TRACES_EXPORTER=none`` turns tracing off.

Fork safety: the tracer provider, its batch processor (a background thread) and the exporter (an
HTTP session) are created in each process: by :meth:`Tracing.warm` as a worker starts (after
Gunicorn's fork; before serving on the development server), else on its first traced request.
Gunicorn's master builds the app before it forks, so nothing OTel owns is ever shared between
processes. Spans still queued are exported when the process exits cleanly: through ``atexit``,
and also when :func:`logging.shutdown` runs, because a worker replaced after a request timeout
ends with ``logging.shutdown()`` then ``os._exit()``, which skips ``atexit``.
:func:`shutdown_tracing` (flush and stop) and :func:`flush_tracing` do it explicitly.

Which requests are traced: every route except the health and information routes
(:data:`UNTRACED_ROUTES`, decided by route name, never by URL pattern).
``OTEL_PYTHON_EXCLUDED_URLS`` adds comma-separated patterns; unlike OpenTelemetry's contrib
instrumentations, which *search* the URL for each pattern (so ``/`` would exclude everything),
each pattern here must match the whole request path (:func:`re.fullmatch`).

Spans ended, spans exported and failed exports are counted in the Prometheus metrics
(``drum_otel_spans_ended_total``, ``drum_otel_spans_exported_total``,
``drum_otel_export_failures_total``) and in ``/stats/`` (``otel_info``). Every sampled span that
ends is counted as ended just before the batch processor takes it, and as exported once the
collector has accepted it: the exported count trails the ended one by the batch delay, and a
lasting difference is spans lost on the way (the rollout's trace-gap trigger reads exactly that).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tandem.core.http import REQUEST_ID_HEADER, Request, Response
from tandem.core.routes import Route
from tandem.observability.redact import configured_names, redacted_pairs
from tandem.settings import ServeSettings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
    from opentelemetry.trace import Span, Tracer

logger = logging.getLogger("tandem.tracing")

#: Routes that never get a span: probes and descriptive routes (matched by route name).
UNTRACED_ROUTES = frozenset(
    {
        "ping",
        "health",
        "livez",
        "readyz",
        "startupz",
        "metrics",
        "info",
        "stats",
        "capabilities",
        # DRUM traces no model list (drum_contract.md §7.2).
        "get_supported_llm_models",
    }
)

#: DRUM's server span names, by route name. Other traced routes are named ``METHOD /template``.
SPAN_NAMES: Mapping[str, str] = {
    "predict": "drum.invocations",
    "transform": "drum.transform",
    "predict_unstructured": "drum.predictUnstructured",
    "chat": "drum.chat.completions",
    "forward_request": "drum.directAccess",
}

#: Request headers copied onto the server span (DRUM's consumer attributes).
CONSUMER_HEADERS: Mapping[str, str] = {
    "X-DataRobot-Consumer-Id": "gen_ai.request.consumer_id",
    "X-DataRobot-Consumer-Type": "gen_ai.request.consumer_type",
}

#: Instrumentation scope name of Tandem's spans.
TRACER_NAME = "tandem"

#: Instrumentation scopes muted in the global provider: FastAPI's native telemetry (FastAPI
#: 0.1xx traces every request once a global provider is configured) would add a second server
#: span per request on the FastAPI stack only.
MUTED_SCOPES = frozenset({"fastapi"})

EXCLUDED_URLS_ENV = "OTEL_PYTHON_EXCLUDED_URLS"

_TRUE = frozenset({"1", "true", "yes", "y", "t", "on"})
_FALSE = frozenset({"", "0", "false", "no", "n", "f", "off"})

SpanProcessorFactory = Callable[[], "SpanProcessor"]
"""Builds the span processor of one process (called lazily, once per process)."""


# -- configuration -------------------------------------------------------------------------------


def _disabled_flag(environ: Mapping[str, str]) -> bool:
    """``OTEL_SDK_DISABLED`` as runtime parameter (prefixed wins) or plain variable."""
    from tandem.runtime_params import Params

    try:
        got = Params(environ).raw("OTEL_SDK_DISABLED")
    except Exception as exc:  # a malformed envelope: the user meant to say something
        logger.warning("OTEL_SDK_DISABLED is not valid (%s); tracing stays off", exc)
        return True
    if got is None or got[0] is None:
        return False
    value, source = got
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text not in _FALSE:
        logger.warning("%s has value %r; expected true or false, tracing stays off", source, value)
        return True
    return False


def tracing_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for OTLP tracing (DRUM's rule, plus the standard switches)."""
    env = os.environ if environ is None else environ
    if not env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip():
        return False
    if _disabled_flag(env):
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    if exporter == "none":
        return False
    if exporter not in ("", "otlp"):
        logger.warning("OTEL_TRACES_EXPORTER=%s is not supported; exporting with OTLP", exporter)
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", ""
    )
    protocol = protocol.strip()
    if protocol not in ("", "http/protobuf"):
        logger.warning("OTLP protocol %r is not supported; exporting with http/protobuf", protocol)
    return True


def compile_exclusions(text: str) -> tuple[re.Pattern[str], ...]:
    """Comma-separated path patterns, each anchored at both ends (matched with ``fullmatch``).

    A pattern that is not a valid regular expression is taken literally.
    """
    patterns: list[re.Pattern[str]] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        try:
            patterns.append(re.compile(item))
        except re.error:
            logger.warning(
                "%s entry %r is not a regular expression; matching it literally",
                EXCLUDED_URLS_ENV,
                item,
            )
            patterns.append(re.compile(re.escape(item)))
    return tuple(patterns)


def _missing_packages() -> list[str]:
    import importlib.util

    needed = {
        "opentelemetry-sdk": "opentelemetry.sdk.trace",
        "opentelemetry-exporter-otlp-proto-http": (
            "opentelemetry.exporter.otlp.proto.http.trace_exporter"
        ),
    }
    missing = []
    for package, module in needed.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(package)
    return missing


# -- exporter with Prometheus counters -----------------------------------------------------------


def _counting_exporter_class() -> type[SpanExporter]:
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class CountingSpanExporter(SpanExporter):
        """Wraps an exporter and counts exported spans and failed exports in Prometheus."""

        def __init__(self, inner: SpanExporter, server_type: str) -> None:
            from tandem.observability.metrics import OTEL_EXPORT_FAILURES, OTEL_SPANS_EXPORTED

            self.inner = inner
            self._exported = OTEL_SPANS_EXPORTED.labels(server_type)
            self._failures = OTEL_EXPORT_FAILURES.labels(server_type)

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            try:
                result = self.inner.export(spans)
            except Exception:
                self._failures.inc()
                raise
            if result is SpanExportResult.SUCCESS:
                self._exported.inc(len(spans))
            else:
                self._failures.inc()
            return result

        def shutdown(self) -> None:
            self.inner.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return bool(self.inner.force_flush(timeout_millis))

    return CountingSpanExporter


def _ended_counter_class() -> type[SpanProcessor]:
    from opentelemetry.sdk.trace import SpanProcessor

    class EndedSpanCounter(SpanProcessor):
        """Counts every span that ends in ``drum_otel_spans_ended_total`` (exports nothing).

        Added to the provider ahead of the exporting processor, so a span is counted as ended
        before it can be counted as exported.
        """

        def __init__(self, server_type: str) -> None:
            from tandem.observability.metrics import OTEL_SPANS_ENDED

            self._ended = OTEL_SPANS_ENDED.labels(server_type)

        def on_end(self, span: ReadableSpan) -> None:
            self._ended.inc()

    return EndedSpanCounter


def ended_span_counter(server_type: str) -> SpanProcessor:
    """A span processor that only counts ended spans (``drum_otel_spans_ended_total``)."""
    return _ended_counter_class()(server_type)  # type: ignore[call-arg]


def counting_exporter(inner: SpanExporter, server_type: str) -> SpanExporter:
    """``inner`` wrapped so that its results feed the ``drum_otel_*`` Prometheus counters."""
    return _counting_exporter_class()(inner, server_type)  # type: ignore[call-arg]


def otlp_processor(server_type: str) -> SpanProcessor:
    """A batch processor over the OTLP/HTTP exporter configured from ``OTEL_*`` variables."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    return BatchSpanProcessor(counting_exporter(OTLPSpanExporter(), server_type))


# -- per-process pipeline ------------------------------------------------------------------------


@dataclass(eq=False)
class _Pipeline:
    """The OTel objects of one process."""

    pid: int
    provider: TracerProvider
    tracer: Tracer
    closed: bool = False

    def shutdown(self) -> None:
        """Flush and stop, once, and only in the process that created it."""
        if self.closed or self.pid != os.getpid():
            return
        self.closed = True
        try:
            self.provider.shutdown()
        except Exception:  # noqa: BLE001 - never fail an exiting process over telemetry
            logger.debug("tracer provider shutdown failed", exc_info=True)
        with contextlib.suppress(ValueError):
            _pipelines.remove(self)


_lock = threading.Lock()
#: Live pipelines, held strongly so that they are still there to flush at exit (the service
#: that owns a Tracing may already be garbage when atexit runs).
_pipelines: list[_Pipeline] = []


def _reset_lock_in_child() -> None:
    # A lock held by another thread at fork time would stay held forever in the child.
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_lock_in_child)


def shutdown_tracing() -> None:
    """Flush and stop every tracer provider this process created (idempotent).

    Runs at exit on its own; call it before ending a process with ``os._exit``.
    """
    for pipeline in list(_pipelines):
        pipeline.shutdown()


def flush_tracing() -> None:
    """Export every span this process has queued, and keep tracing."""
    pid = os.getpid()
    for pipeline in list(_pipelines):
        if pipeline.pid == pid and not pipeline.closed:
            try:
                pipeline.provider.force_flush()
            except Exception:  # noqa: BLE001 - never fail an exiting process over telemetry
                logger.debug("tracer provider flush failed", exc_info=True)


class _FlushOnLoggingShutdown(logging.Handler):
    """Never handles records; exports queued spans when :func:`logging.shutdown` closes it.

    Tandem's Uvicorn workers exit with ``logging.shutdown()`` then ``os._exit()``, which skips
    ``atexit``; this is the hook that still runs there. It only flushes (never stops tracing),
    because ``logging.config.dictConfig`` closes every handler too.
    """

    closed = False
    pid = 0

    def emit(self, record: logging.LogRecord) -> None:
        """Ignore records (the handler is attached to no logger)."""

    def close(self) -> None:
        """Export this process's queued spans."""
        self.closed = True
        flush_tracing()
        super().close()


_sentinel: _FlushOnLoggingShutdown | None = None
_atexit_pid = 0


def _install_exit_hooks() -> None:
    """Make sure this process has its atexit hook and a live logging-shutdown sentinel."""
    global _sentinel, _atexit_pid
    pid = os.getpid()
    if _atexit_pid != pid:
        _atexit_pid = pid
        atexit.register(_shutdown_in, pid)
    if _sentinel is None or _sentinel.closed or _sentinel.pid != pid:
        _sentinel = _FlushOnLoggingShutdown()
        _sentinel.pid = pid


def _shutdown_in(pid: int) -> None:
    if os.getpid() == pid:
        shutdown_tracing()


def _global_provider(provider: TracerProvider) -> Any:
    """``provider`` as the process-global provider, minus the :data:`MUTED_SCOPES`."""
    from opentelemetry import trace
    from opentelemetry.util.types import Attributes

    class GlobalTracerProvider(trace.TracerProvider):
        """Delegates to Tandem's SDK provider; muted scopes get a no-op tracer."""

        def __init__(self, sdk: TracerProvider) -> None:
            self.sdk = sdk

        def get_tracer(
            self,
            instrumenting_module_name: str,
            instrumenting_library_version: str | None = None,
            schema_url: str | None = None,
            attributes: Attributes = None,
        ) -> Tracer:
            if instrumenting_module_name in MUTED_SCOPES:
                return trace.NoOpTracer()
            return self.sdk.get_tracer(
                instrumenting_module_name, instrumenting_library_version, schema_url, attributes
            )

        def __getattr__(self, name: str) -> Any:
            # add_span_processor, force_flush, shutdown, resource... of the SDK provider.
            return getattr(self.sdk, name)

    return GlobalTracerProvider(provider)


def _resource() -> Any:
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    # process.pid tells the worker processes of one server apart.
    resource = Resource.create({"process.pid": os.getpid()})
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "drum"}))
    return resource


# -- spans ---------------------------------------------------------------------------------------


class RequestSpan:
    """Handle on the server span of one request (a no-op when the request is not traced)."""

    def __init__(self, span: Span | None = None, route: Route | None = None) -> None:
        self.span = span
        self.route = route

    @property
    def recording(self) -> bool:
        """Whether a real, sampled span is behind this handle."""
        return self.span is not None and self.span.is_recording()

    def finish(self, response: Response) -> None:
        """Record the response on the span (status, body size)."""
        span = self.span
        if span is None or not span.is_recording():
            return
        from opentelemetry.trace import StatusCode

        span.set_attribute("http.response.status_code", response.status)
        if isinstance(response.body, bytes):
            span.set_attribute("http.response.body.size", len(response.body))
        if response.status >= 500:
            span.set_attribute("error.type", str(response.status))
            span.set_status(StatusCode.ERROR)
        elif response.status >= 400 and self.route is not None:
            if self.route.name == "forward_request":
                # DRUM marks drum.directAccess ERROR when the predictor does not support it.
                span.set_attribute("error.type", str(response.status))
                span.set_status(StatusCode.ERROR)


_NO_SPAN = RequestSpan()


def _host_and_port(request: Request, settings: ServeSettings) -> tuple[str, int | None]:
    host = request.headers.get("Host")
    if host:
        parsed = urllib.parse.urlsplit("//" + host)
        try:
            port = parsed.port
        except ValueError:
            port = None
        if parsed.hostname:
            return parsed.hostname, port
    return settings.host, settings.port


def _query_string(request: Request, redact: frozenset[str]) -> str:
    pairs = [(name, value) for name in request.query for value in request.query.getlist(name)]
    return urllib.parse.urlencode(redacted_pairs(pairs, redact))


class Tracing:
    """Creates one server span per request and child spans for its stages.

    Without a processor factory (tracing not configured) every method is a cheap no-op. With
    one, the tracer provider is built on the first traced request of each process (so it is
    never shared across a fork) and shut down, flushing queued spans, when the process exits.

    Tests inject their own processing with :meth:`with_exporter` (for example the SDK's
    ``InMemorySpanExporter``) or by passing ``processor_factory``.
    """

    def __init__(
        self,
        settings: ServeSettings,
        processor_factory: SpanProcessorFactory | None = None,
        *,
        install_global: bool = False,
        excluded_paths: Sequence[re.Pattern[str]] = (),
    ) -> None:
        self.settings = settings
        self.processor_factory = processor_factory
        self.install_global = install_global
        self.excluded_paths = tuple(excluded_paths)
        self.redact_query = configured_names() if processor_factory is not None else frozenset()
        self._pipeline: _Pipeline | None = None

    @property
    def enabled(self) -> bool:
        """Whether requests are traced at all."""
        return self.processor_factory is not None

    @classmethod
    def from_env(cls, settings: ServeSettings, environ: Mapping[str, str] | None = None) -> Tracing:
        """Tracing configured from the standard ``OTEL_*`` environment variables."""
        env = os.environ if environ is None else environ
        if not tracing_enabled(env):
            return cls(settings)
        missing = _missing_packages()
        if missing:
            logger.warning(
                "OTEL_EXPORTER_OTLP_ENDPOINT is set but %s is not installed; tracing is off "
                "(pip install 'tandem[otel]')",
                ", ".join(missing),
            )
            return cls(settings)
        server_type = settings.server.framework

        def factory() -> SpanProcessor:
            return otlp_processor(server_type)

        return cls(
            settings,
            factory,
            install_global=True,
            excluded_paths=compile_exclusions(env.get(EXCLUDED_URLS_ENV, "")),
        )

    @classmethod
    def with_exporter(
        cls, settings: ServeSettings, exporter: SpanExporter, *, batch: bool = False
    ) -> Tracing:
        """Tracing that sends spans to ``exporter`` (counted like the OTLP exporter).

        ``batch=False`` uses the SDK's ``SimpleSpanProcessor``, so a span is exported as soon as
        it ends, which is what in-process tests want.
        """
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        wrapped = counting_exporter(exporter, settings.server.framework)

        def factory() -> SpanProcessor:
            return BatchSpanProcessor(wrapped) if batch else SimpleSpanProcessor(wrapped)

        return cls(settings, factory)

    # -- process-local provider ------------------------------------------------------------------

    def _tracer(self) -> Tracer | None:
        pipeline = self._pipeline
        pid = os.getpid()
        if pipeline is not None and pipeline.pid == pid:
            if pipeline.closed:
                return None
            if _sentinel is None or _sentinel.closed:
                _install_exit_hooks()  # logging was reconfigured (dictConfig closes handlers)
            return pipeline.tracer
        factory = self.processor_factory
        if factory is None:
            return None
        with _lock:
            pipeline = self._pipeline
            if pipeline is None or pipeline.pid != pid:
                try:
                    pipeline = self._build(factory, pid)
                except Exception:
                    # Tracing must never fail a request: turn it off in this process.
                    logger.exception("Cannot set up OpenTelemetry tracing; tracing is off")
                    self.processor_factory = None
                    return None
                self._pipeline = pipeline
        return None if pipeline.closed else pipeline.tracer

    def _build(self, factory: SpanProcessorFactory, pid: int) -> _Pipeline:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider

        from tandem.version import __version__

        provider = TracerProvider(resource=_resource(), shutdown_on_exit=False)
        processor = factory()
        # The ended count first (the processors run in order at span end), then the export;
        # both counters' series appear together, before any span has ended.
        provider.add_span_processor(ended_span_counter(self.settings.server.framework))
        provider.add_span_processor(processor)
        tracer = provider.get_tracer(TRACER_NAME, __version__)
        if self.install_global and isinstance(
            trace.get_tracer_provider(), trace.ProxyTracerProvider
        ):
            # As DRUM does: user code calling trace.get_tracer() nests its spans under the
            # request's and they are exported with Tandem's.
            trace.set_tracer_provider(_global_provider(provider))
        _install_exit_hooks()
        pipeline = _Pipeline(pid, provider, tracer)
        _pipelines.append(pipeline)
        logger.debug("OpenTelemetry tracer provider created in process %d", pid)
        return pipeline

    def warm(self) -> None:
        """Build this process's tracer now (a worker just after its fork), so that its first
        traced request does not pay for the SDK's imports, the exporter and the batch thread
        (seen as a P99 many times the baseline's and a step in RSS early in a canary)."""
        if self.enabled:
            self._tracer()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export every span this process has queued; True when it finished in time."""
        pipeline = self._pipeline
        if pipeline is None or pipeline.pid != os.getpid() or pipeline.closed:
            return True
        return bool(pipeline.provider.force_flush(timeout_millis))

    def shutdown(self) -> None:
        """Flush and stop this process's provider; later requests are not traced."""
        pipeline = self._pipeline
        if pipeline is not None:
            pipeline.shutdown()

    # -- spans -----------------------------------------------------------------------------------

    def traced(self, request: Request, route: Route) -> bool:
        """Whether this request gets a span (route not a health route, path not excluded)."""
        if not self.enabled or route.name in UNTRACED_ROUTES:
            return False
        return not any(p.fullmatch(request.path) for p in self.excluded_paths)

    def span_name(self, request: Request, route: Route, template: str) -> str:
        """DRUM's span name for the route, else ``METHOD /route-template``."""
        return SPAN_NAMES.get(route.name) or f"{request.method} {self._route_path(template)}"

    def _route_path(self, template: str) -> str:
        return self.settings.url_prefix + template

    def request_attributes(self, request: Request, template: str) -> dict[str, Any]:
        """The server span's attributes known when the request arrives."""
        settings = self.settings
        host, port = _host_and_port(request, settings)
        attributes: dict[str, Any] = {
            "http.request.method": request.method,
            "url.scheme": "http",
            "url.path": request.path,
            "http.route": self._route_path(template),
            "server.address": host,
            "http.request.body.size": len(request.body),
            "drum.target_type": settings.target_type,
            "drum.server_type": settings.server.framework,
        }
        if port is not None:
            attributes["server.port"] = port
        query = _query_string(request, self.redact_query)
        if query:
            attributes["url.query"] = query
        if request.client and request.client != "-":
            attributes["client.address"] = request.client
        agent = request.headers.get("User-Agent")
        if agent:
            attributes["user_agent.original"] = agent
        request_id = request.headers.get(REQUEST_ID_HEADER)
        if request_id:
            attributes["drum.request_id"] = request_id
        for header, key in CONSUMER_HEADERS.items():
            value = request.headers.get(header)
            if value:
                attributes[key] = value
        return attributes

    @contextlib.contextmanager
    def request_span(self, request: Request, route: Route, template: str) -> Iterator[RequestSpan]:
        """The server span of one request (health routes are not traced).

        The caller's W3C ``traceparent``/``tracestate`` (and baggage) become the span's parent.
        """
        if not self.traced(request, route):
            yield _NO_SPAN
            return
        tracer = self._tracer()
        if tracer is None:
            yield _NO_SPAN
            return
        from opentelemetry import context, propagate, trace

        parent = propagate.extract(request.headers)
        span = tracer.start_span(
            self.span_name(request, route, template),
            context=parent,
            kind=trace.SpanKind.SERVER,
            attributes=self.request_attributes(request, template),
        )
        token = context.attach(trace.set_span_in_context(span, parent))
        try:
            yield RequestSpan(span, route)
        except BaseException as exc:
            if span.is_recording():
                span.record_exception(exc)
                span.set_attribute("error.type", type(exc).__qualname__)
                span.set_status(trace.StatusCode.ERROR, str(exc))
            raise
        finally:
            context.detach(token)
            span.end()

    @contextlib.contextmanager
    def child(self, name: str, **attributes: Any) -> Iterator[None]:
        """A child span (``parse``, ``score``, ``serialise``) of the current request span.

        Keyword attributes without a dot are recorded under ``drum.`` (``size`` becomes
        ``drum.size``). Outside a traced request this does nothing.
        """
        if not self.enabled:
            yield
            return
        from opentelemetry import trace

        pipeline = self._pipeline
        if (
            pipeline is None
            or pipeline.pid != os.getpid()
            or pipeline.closed
            or not trace.get_current_span().is_recording()
        ):
            yield
            return
        attrs = {(key if "." in key else f"drum.{key}"): value for key, value in attributes.items()}
        with pipeline.tracer.start_as_current_span(name, attributes=attrs):
            yield
