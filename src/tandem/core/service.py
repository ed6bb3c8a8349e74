"""The prediction service: every DRUM route's behaviour, independent of any web framework."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd

from tandem import lazy_loading
from tandem.core import deployment_config, payload
from tandem.core.http import (
    JSON,
    Request,
    Response,
    error_response,
    json_response,
    message,
    standard_headers,
)
from tandem.core.marshal import PRED_COLUMN
from tandem.core.model import LoadedModel, StructuredResult, TargetType
from tandem.core.routes import Route
from tandem.core.stats import stats_document
from tandem.errors import (
    BadRequest,
    ModelError,
    NotSupported,
    PayloadTooLarge,
    PlainBadRequest,
    RequestError,
    RequestTimeout,
    UnprocessableInput,
)
from tandem.metadata import read_metadata
from tandem.observability.logs import ACCESS_LOGGER, access_line
from tandem.observability.mlops import MLOpsReporter
from tandem.settings import ServeSettings
from tandem.version import DRUM_COMPAT_VERSION, __version__

logger = logging.getLogger("tandem.server")
access_logger = logging.getLogger(ACCESS_LOGGER)

SAMPLES_MESSAGE = (
    "Samples should be provided as:   - a csv or mtx under `{}` form-data param key.  - binary data"
)
STRUCTURED_MIMETYPES = frozenset({None, "", "text/csv", "text/plain", payload.MTX_MIMETYPE})
FORM_MIMETYPES = frozenset({"multipart/form-data", "application/x-www-form-urlencoded"})
TEXT_DEFAULT = "text/plain"
BINARY_DEFAULT = "application/octet-stream"


class Timings:
    """Min/max/avg/total of model request durations since the last read (``/stats/``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: list[float] = []

    def add(self, seconds: float) -> None:
        """Record one request's duration."""
        with self._lock:
            self._values.append(seconds)

    def drain(self) -> dict[str, float | None]:
        """Summarise and reset, as DRUM's ``/stats/`` does."""
        with self._lock:
            values, self._values = self._values, []
        if not values:
            return {"avg": None, "max": None, "min": None, "total": None}
        total = sum(values)
        return {
            "avg": round(total / len(values), 3),
            "max": round(max(values), 3),
            "min": round(min(values), 3),
            "total": round(total, 3),
        }


class PredictionService:
    """Answers every route of the DRUM API. The HTTP adapters call only :meth:`handle`."""

    def __init__(
        self,
        settings: ServeSettings,
        model: LoadedModel | None,
        load_error: str | None = None,
        monitor: MLOpsReporter | None = None,
    ) -> None:
        self.settings = settings
        self.model = model
        self.load_error = load_error
        self.monitor = monitor
        """``--monitor``: reports predictions to DataRobot MLOps, off the request path."""
        self.timings = Timings()
        from tandem.observability.metrics import IN_PROGRESS, Metrics

        self.metric_set = Metrics(
            settings.server.framework,
            {
                "target_type": settings.target_type,
                "code_dir": str(settings.code_dir),
                "predictor": (model.predictor_name if model else None) or "hooks",
                "process_server": settings.server.process_server,
                "loaded": "true" if model is not None else "false",
            },
        )
        self._in_progress = IN_PROGRESS
        from tandem.observability.recording import RECORDED_ROUTES, Recorder
        from tandem.observability.tracing import Tracing

        self.tracing = Tracing.from_env(settings)
        self.recorder = Recorder.from_env(settings)
        self._recorded_routes = RECORDED_ROUTES
        # Model calls in flight: thread id -> monotonic start. Read by /readyz, so a worker
        # whose every model thread is stuck says so instead of answering "ready".
        self._calls: dict[int, float] = {}
        self._calls_lock = threading.Lock()
        self.cors = settings.cors
        self.recycling = False
        """True once this worker is being replaced (a model call outran the request timeout):
        it takes no new work, and ``/readyz`` says so."""
        self.on_retire: Callable[[], None] | None = None
        """Installed by the launcher in a supervised worker: take it out of service."""

    @classmethod
    def load(cls, settings: ServeSettings) -> PredictionService:
        """Load the model; with ``--with-error-server`` a failure becomes an error service."""
        try:
            if settings.api_access is not None:
                settings.api_access.apply()
            lazy_loading.fetch()
            # Before the model, as DRUM opens the MLOps channel before it loads the model.
            monitor = MLOpsReporter.start_up(settings.monitor) if settings.monitor else None
            return cls(settings, LoadedModel(settings), monitor=monitor)
        except Exception as exc:
            if not settings.with_error_server:
                raise
            logger.exception("Model failed to load; serving the error server")
            return cls(settings, None, load_error=str(exc))

    def cheap(self, route: Route, request: Request) -> bool:
        """Whether this request may run on the caller's thread (an event loop) without a hop.

        True only for a small prediction on the pandas-free path of a model that has proven
        fast (see :meth:`tandem.core.fastpath.FastPlan.cheap`); hooks never qualify.
        """
        fast = self.model.fast if self.model is not None else None
        return route.name == "predict" and fast is not None and fast.cheap(len(request.body))

    @property
    def ready(self) -> bool:
        """Whether a model is loaded and can score."""
        return self.model is not None

    # -- dispatch ----------------------------------------------------------------------------

    def handle(
        self, route: Route, request: Request, template: str | None = None, **params: str
    ) -> Response:
        """Run one route's handler and turn any exception into the matching response.

        ``template`` is the declared path that matched (the metrics' ``endpoint`` label).
        """
        started = time.perf_counter()
        template = template or route.paths[0]
        if route.blocking:
            self._in_progress.inc()
            with self._calls_lock:
                self._calls[threading.get_ident()] = time.monotonic()
        with self.tracing.request_span(request, route, template) as span:
            try:
                if self.load_error is not None and route.error_server:
                    response = self._error_server(route)
                else:
                    response = getattr(self, route.handler)(request, **params)
            except Exception as exc:
                response = error_response(exc)
                if not isinstance(exc, (ModelError, UnprocessableInput, NotSupported, BadRequest)):
                    logger.exception("Request %s %s failed", request.method, request.path)
                elif response.status >= 500:
                    # The model failed: worth a log line even at DRUM's default level.
                    logger.warning(
                        "Request %s %s failed (%d): %s",
                        request.method,
                        request.path,
                        response.status,
                        exc,
                    )
            finally:
                if route.blocking:
                    self._in_progress.dec()
                    with self._calls_lock:
                        self._calls.pop(threading.get_ident(), None)
            span.finish(response)
        elapsed = time.perf_counter() - started
        if route.blocking and self.settings.show_perf:
            self.timings.add(elapsed)
        response = self.finish(request, response, elapsed, template)
        if self.recorder is not None and route.name in self._recorded_routes:
            self.recorder.record(route, request, response, elapsed)
        return response

    def finish(
        self, request: Request, response: Response, elapsed: float, endpoint: str
    ) -> Response:
        """Add the headers every response carries; count, and log, the request."""
        response.headers.extend(standard_headers(request.request_id))
        if self.cors is not None and not (request.method == "OPTIONS" and response.status == 403):
            # (A refused preflight grants nothing, whatever its origin.)
            response.headers.extend(self.cors.headers_for(request.headers.get("Origin")))
        self.metric_set.observe(request.method, endpoint, response.status, elapsed)
        size = len(response.body) if isinstance(response.body, bytes) else None
        text, fields = access_line(
            request.client,
            request.method,
            request.path,
            response.status,
            size,
            elapsed,
            request.request_id,
        )
        access_logger.info(text, extra=fields)
        if response.status >= 400:
            logger.info(
                "API [%s %s] request time: %.3f sec, request_id: %s",
                request.method,
                request.path,
                elapsed,
                request.request_id,
            )
        return response

    def not_found(self, request: Request) -> Response:
        """Answer an unknown path."""
        return self.finish(request, message("ERROR: Not Found", 404), 0.0, "unmatched")

    def method_not_allowed(
        self, request: Request, allowed: list[str], endpoint: str = "unmatched"
    ) -> Response:
        """Answer a known path called with the wrong method (or a CORS preflight, when on)."""
        if request.method == "OPTIONS" and self.cors is not None:
            return self.finish(request, self.cors.preflight(request), 0.0, endpoint)
        response = message("ERROR: Method Not Allowed", 405)
        response.headers.append(("Allow", ", ".join(allowed)))
        return self.finish(request, response, 0.0, endpoint)

    def too_large(self, request: Request, endpoint: str = "unmatched") -> Response:
        """Answer a body over the size limit."""
        return self.body_error(request, self.body_too_large(), endpoint)

    def body_too_large(self) -> PayloadTooLarge:
        """The error for a body over ``DRUM_MAX_BODY_SIZE`` (one message on every stack)."""
        return PayloadTooLarge(
            f"Request body is larger than the limit of {self.settings.max_body_size} bytes."
        )

    def timed_out(self, request: Request, endpoint: str = "unmatched") -> Response:
        """Answer a request whose model call outran ``DRUM_CLIENT_REQUEST_TIMEOUT`` (504)."""
        exc = RequestTimeout(
            f"The model did not answer within {self.settings.request_timeout:g}s "
            "(DRUM_CLIENT_REQUEST_TIMEOUT)."
        )
        logger.error("Request %s %s: %s", request.method, request.path, exc.message)
        return self.finish(request, error_response(exc), self.settings.request_timeout, endpoint)

    def overloaded(self, request: Request, endpoint: str, queue_full: bool) -> Response:
        """Answer 503 with ``Retry-After``: the worker's queue is full, or no model thread
        became free within ``DRUM_BACKPRESSURE_TIMEOUT`` (the migration plan's texts)."""
        if queue_full:
            text, retry = "Service temporarily unavailable due to high load", "5"
        else:
            text, retry = "Service temporarily unavailable: request queue timeout", "10"
        response = message(f"ERROR: {text}", 503)
        response.headers.append(("Retry-After", retry))
        return self.finish(request, response, 0.0, endpoint)

    def retire(self) -> None:
        """A model call outran the request timeout: replace this worker (once).

        The launcher's ``on_retire`` stops the worker taking work; without a supervisor (the
        Flask development server, in-process tests) nothing more happens.
        """
        if self.recycling or self.on_retire is None:
            return
        self.recycling = True
        self.on_retire()

    def stuck_calls(self) -> int:
        """Model calls running longer than the request timeout (0 when there is none)."""
        limit = self.settings.request_timeout
        if limit <= 0:
            return 0
        now = time.monotonic()
        with self._calls_lock:
            return sum(1 for started in self._calls.values() if now - started > limit)

    def body_error(
        self, request: Request, exc: RequestError, endpoint: str = "unmatched"
    ) -> Response:
        """Answer a request whose body could not be read whole (413, or 400 when cut short).

        Nothing is scored: a body is either read to its end within the limit, or refused.
        """
        return self.finish(request, error_response(exc), 0.0, endpoint)

    def _error_server(self, route: Route) -> Response:
        text = f"ERROR: {self.load_error}"
        if route.name == "ping":
            return message(text, 200)
        return message(text, 513)

    # -- liveness, info --------------------------------------------------------------------

    def ping(self, request: Request) -> Response:
        """``/`` and ``/ping``."""
        return message("OK", 200)

    def health(self, request: Request) -> Response:
        """``/health/``."""
        return message("OK", 200)

    def livez(self, request: Request) -> Response:
        """``/livez``: the process answers (Kubernetes liveness)."""
        return json_response({"status": "alive"})

    def readyz(self, request: Request) -> Response:
        """``/readyz``: 200 only when a model is loaded and requests can be scored.

        503 too while this worker is being replaced, or while every thread that runs the
        model is stuck in a call older than ``DRUM_CLIENT_REQUEST_TIMEOUT``.
        """
        if self.model is None:
            reason = f"model failed to load: {self.load_error}"
        elif self.recycling:
            reason = "a model call outran DRUM_CLIENT_REQUEST_TIMEOUT; the worker is replaced"
        elif self.stuck_calls() >= self.settings.executor_workers:
            reason = (
                f"every model thread is in a call older than {self.settings.request_timeout:g}s "
                "(DRUM_CLIENT_REQUEST_TIMEOUT)"
            )
        else:
            return json_response({"status": "ready"})
        return json_response({"reason": reason, "status": "not ready"}, 503)

    def startupz(self, request: Request) -> Response:
        """``/startupz``: start-up finished (the model is loaded)."""
        if self.model is None:
            return json_response({"model_loaded": False, "status": "failed"}, 503)
        return json_response({"model_loaded": True, "status": "started"})

    def metrics(self, request: Request) -> Response:
        """``/metrics``: Prometheus text format for the whole server."""
        from tandem.observability.metrics import CONTENT_TYPE

        return Response(200, self.metric_set.render(), CONTENT_TYPE)

    def info(self, request: Request) -> Response:
        """``/info/``: model and server description."""
        s = self.settings
        body: dict[str, Any] = {
            "codeDir": str(s.code_dir),
            "drumServer": s.server.framework,
            "drum_server": s.server.framework,
            "processServer": s.server.process_server,
            "drumVersion": DRUM_COMPAT_VERSION,
            "tandemVersion": __version__,
            "language": "python",
            "modelMetadata": read_metadata(s.code_dir),
            "predictor": self.model.predictor_name if self.model else None,
            "targetType": s.target_type,
        }
        if s.target_type == "binary":
            body["positiveClassLabel"] = s.positive_class_label
            body["negativeClassLabel"] = s.negative_class_label
        elif s.target_type == "multiclass":
            body["classLabels"] = list(s.class_labels or ())
        return json_response(body)

    def capabilities(self, request: Request) -> Response:
        """``/capabilities/``."""
        return json_response(
            {
                "supported_methods": {"chat": bool(self.model and self.model.supports_chat)},
                "supported_payload_formats": {"csv": None, "mtx": None},
            }
        )

    def stats(self, request: Request) -> Response:
        """``/stats/``: memory and timing in DRUM's shape (always valid JSON)."""
        timing = (
            self.timings.drain()
            if self.settings.show_perf
            else {"avg": None, "max": None, "min": None, "total": None}
        )
        return json_response(stats_document(timing))

    # -- structured predictions ------------------------------------------------------------

    def _fetch(
        self, request: Request, key: str
    ) -> tuple[bytes, str | None, str | None, list[str] | None, payload.Form | None]:
        mimetype: str | None
        charset: str | None
        mimetype, charset = payload.parse_content_type(request.content_type)
        lowered = mimetype.lower()
        form = None
        if lowered == "multipart/form-data":
            form = payload.parse_multipart(request.body, request.content_type or "")
        part = form.files.get(key) if form else None
        if part is not None:
            data = part.data
            mimetype, charset = payload.mimetype_for_filename(part.filename or ""), None
        elif (
            request.body
            and key == "X"
            and not (form is not None or lowered == "application/x-www-form-urlencoded")
        ):
            # Werkzeug leaves the body alone only when it is not a parseable form.
            data = request.body
        else:
            raise UnprocessableInput(SAMPLES_MESSAGE.format(key))
        colnames_part = form.files.get("X.colnames") if form else None
        colnames = payload.read_sparse_colnames(colnames_part.data) if colnames_part else None
        if mimetype not in STRUCTURED_MIMETYPES and not self._model.has_read_input_data:
            raise UnprocessableInput(
                f"payload format `{mimetype}` is not supported by predictor/transformer. Make "
                "DRUM support the format or implement `read_input_data` hook to read the data. "
            )
        return data, mimetype, charset, colnames, form

    @property
    def _model(self) -> LoadedModel:
        assert self.model is not None
        return self.model

    def predict(self, request: Request) -> Response:
        """``/predict/``, ``/predictions/``, ``/invocations``."""
        target = self.settings.target_type
        if target == "transform":
            raise UnprocessableInput(
                "This model has target type 'transform', use the /transform/ endpoint."
            )
        if target == "unstructured":
            raise UnprocessableInput(
                "This model has target type 'unstructured', use the /predictUnstructured/ or "
                "/predictionsUnstructured/ endpoint."
            )
        model = self._model
        started = time.perf_counter()
        if model.fast is not None and self.settings.deployment_config is None:
            # One step that parses, scores and renders without pandas; None means "not here".
            with self.tracing.child("score", size=len(request.body), fast_path=True):
                data, mimetype, charset, colnames, _ = self._fetch(request, "X")
                fast = model.fast.predict(data, mimetype) if colnames is None else None
            if fast is not None:
                if self.monitor is not None:
                    self.monitor.report(data, mimetype, colnames, fast, started)
                return Response(200, fast, JSON)
        with self.tracing.child("parse", size=len(request.body)):
            data, mimetype, charset, colnames, _ = self._fetch(request, "X")
            frame = model.read_input(data, mimetype, colnames)
        with self.tracing.child("score"):
            result = model.predict_frame(frame, data, mimetype, charset, colnames)
        if self.monitor is not None:
            self.monitor.report(data, mimetype, colnames, result.predictions, started)
        with self.tracing.child("serialise"):
            config = self.settings.deployment_config
            if config is None:
                body = render_predictions(result)
            else:
                body = deployment_config.render(result.predictions, result.extra, config, target)
        return Response(200, body, JSON)

    # -- transform ---------------------------------------------------------------------------

    def transform(self, request: Request) -> Response:
        """``/transform/`` for the transform target type."""
        target = self.settings.target_type
        if target != "transform":
            endpoint = "predictUnstructured" if target == "unstructured" else "predict"
            raise UnprocessableInput(
                f"This model has target type {TargetType(target)}, use the /{endpoint}/ endpoint."
            )
        data, mimetype, _charset, colnames, form = self._fetch(request, "X")
        y_part = form.files.get("y") if form else None
        y_mimetype = payload.mimetype_for_filename(y_part.filename or "") if y_part else None
        out, y = self._model.transform(
            data, mimetype, colnames, y_part.data if y_part else None, y_mimetype
        )
        fields: list[tuple[str, bytes, bool]] = []
        if hasattr(out, "sparse"):
            matrix, names = _mtx_payload(out)
            fields += [
                ("X.format", b"sparse", False),
                ("X.transformed", matrix, True),
                ("X.colnames", names, True),
            ]
        else:
            fields += [("X.format", b"csv", False), ("X.transformed", _csv_payload(out), True)]
        if y is not None:
            fields += [("y.format", b"csv", False), ("y.transformed", _csv_payload(y), True)]
        body, content_type = _encode_multipart(fields)
        return Response(200, body, content_type)

    # -- unstructured ------------------------------------------------------------------------

    def predict_unstructured(self, request: Request) -> Response:
        """``/predictUnstructured/`` and ``/predictionsUnstructured/``."""
        target = self.settings.target_type
        if target not in ("unstructured", "textgeneration"):
            raise UnprocessableInput(
                f"This model has target type {TargetType(target)}, use either /predict/ or "
                "/predictions/ endpoint."
            )
        return self.run_unstructured(
            request.body, request.content_type, request.query, dict(request.headers)
        )

    def run_unstructured(
        self,
        body: bytes,
        content_type: str | None,
        query: dict[str, str],
        headers: dict[str, str] | None,
    ) -> Response:
        """``score_unstructured`` on raw bytes: the HTTP route and ``tandem score`` share it.

        Text (and JSON) bodies reach the hook decoded with their charset, others as bytes;
        ``headers`` is None where there is no HTTP request (DRUM's ``score`` passes none).
        """
        mimetype, charset = payload.parse_content_type(content_type)
        mimetype = mimetype or TEXT_DEFAULT
        data: str | bytes = body
        kwargs: dict[str, Any] = {"mimetype": mimetype}
        if mimetype.startswith("text/") or mimetype == "application/json":
            charset = charset or "utf-8"
            try:
                data = body.decode(charset)
            except (LookupError, UnicodeDecodeError) as exc:
                raise ModelError(str(exc)) from None
        if charset is not None:
            kwargs["charset"] = charset
        kwargs["query"] = query
        if headers is not None:
            kwargs["headers"] = headers
        mlops = self.monitor.model_mlops() if self.monitor is not None else None
        if mlops is not None:
            kwargs["mlops"] = mlops  # --monitor-embedded: the model reports (DRUM's keyword)
        result = self._model.score_unstructured(data, **kwargs)
        return _unstructured_response(result)

    # -- chat ----------------------------------------------------------------------------------

    def chat(self, request: Request) -> Response:
        """``/chat/completions`` and ``/v1/chat/completions`` (OpenAI, optionally streamed)."""
        model = self._model
        if not model.supports_chat:
            if self.settings.target_type in ("textgeneration", "agenticworkflow"):
                raise NotSupported(
                    "This model's chat interface was called, but chat() is not implemented."
                )
            raise NotSupported("This model's chat interface was called, but chat is not supported.")
        mimetype, _ = payload.parse_content_type(request.content_type)
        if mimetype.lower() != "application/json":
            raise ModelError(
                "415 Unsupported Media Type: Did not attempt to load JSON data because the "
                "request Content-Type was not 'application/json'."
            )
        try:
            params = json.loads(request.body)
        except ValueError:
            raise BadRequest(
                "The browser (or proxy) sent a request that this server could not understand."
            ) from None
        if not isinstance(params, dict):
            # What DRUM answers, as it calls params.get(...) first.
            raise ModelError(f"'{type(params).__name__}' object has no attribute 'get'")
        association_id = params.get("datarobot_association_id") or str(uuid.uuid4())
        monitor = self.monitor
        started = time.perf_counter()
        stream: Iterator[bytes] | None = None
        try:
            result = model.chat(params, request.headers)
            if getattr(result, "object", None) != "chat.completion":
                finished: Callable[[str], None] | None = None
                failed: Callable[[], None] | None = None
                if monitor is not None:
                    finished = functools.partial(
                        monitor.report_chat,
                        params,
                        association_id=association_id,
                        started=started,
                        size=len(request.body),
                    )
                    failed = functools.partial(monitor.report_chat_error, started)
                stream = _sse_stream(result, association_id, finished, failed)
        except Exception:
            # DRUM reports a chat whose hook (or first chunk) failed as zero predictions.
            if monitor is not None:
                monitor.report_chat_error(started)
            raise
        if stream is not None:
            return Response(200, stream, "text/event-stream; charset=utf-8")
        if monitor is not None:
            # Before serialising, as DRUM reports: a body that cannot be built is still reported.
            monitor.report_chat(params, result, association_id, started, len(request.body))
        body = _as_dict(result)
        body["datarobot_association_id"] = association_id
        return json_response(body)

    def models(self, request: Request) -> Response:
        """``/models`` and ``/v1/models``."""
        if self.settings.target_type != "textgeneration":
            raise NotSupported("get_supported_llm_models is supported only for TextGen models")
        listed = self._model.supported_llm_models()
        data: list[Any]
        if listed is not None:
            data = [_as_dict(m) for m in listed if getattr(m, "object", None) == "model"]
        else:
            from tandem.runtime_params import Params

            llm_id = Params().str("LLM_ID")
            data = (
                [{"created": 1735689600, "id": llm_id, "object": "model", "owned_by": "DataRobot"}]
                if llm_id
                else []
            )
        return json_response({"data": data, "object": "list"})

    def direct_access(self, request: Request, path: str = "") -> Response:
        """``/directAccess/...`` and ``/nim/...``: only OpenAI-backed GPU predictors have them."""
        raise PlainBadRequest("This endpoint is only supported by OpenAI based predictors")


# -- helpers -------------------------------------------------------------------------------------


def render_predictions(result: StructuredResult) -> bytes:
    """DRUM's prediction body: pandas ``to_json`` records (10 decimals), plus extra output."""
    out: pd.DataFrame | pd.Series = result.predictions
    if len(out.columns) == 1:
        out = out[PRED_COLUMN]
    body = '{"predictions":' + out.to_json(orient="records")
    if result.extra is not None:
        body += ',"extraModelOutput":' + result.extra.to_json(orient="split")
    return (body + "}").encode("utf-8")


def _as_dict(obj: Any) -> dict[str, Any]:
    if hasattr(obj, "to_dict"):
        return dict(obj.to_dict())
    if hasattr(obj, "model_dump"):
        return dict(obj.model_dump(exclude_unset=True))
    raise ModelError(f"Cannot serialise chat response of type {type(obj)}")


def _chunk_json(chunk: Any, association_id: str) -> str:
    chunk.datarobot_association_id = association_id
    if hasattr(chunk, "to_json"):
        return str(chunk.to_json(indent=None))
    return json.dumps(_as_dict(chunk), separators=(",", ":"))


def _delta_text(chunk: Any) -> str:
    """A chunk's text, as DRUM collects a stream's completion (none when it has no content)."""
    try:
        if chunk.choices and chunk.choices[0].delta.content:
            return str(chunk.choices[0].delta.content)
    except Exception:  # noqa: BLE001 - reading for a report must never break the stream
        pass
    return ""


def _sse_stream(
    result: Any,
    association_id: str,
    finished: Callable[[str], None] | None = None,
    failed: Callable[[], None] | None = None,
) -> Iterator[bytes]:
    """Validate the first chunk now (so a bad hook still gets a 500), then stream lazily.

    ``finished`` gets the completion's whole text once the last chunk went out; ``failed`` is
    called when the stream breaks after it started. Neither is called when the client leaves
    before the end (DRUM reports nothing then either).
    """
    try:
        chunks = iter(result)
        first = next(chunks)
        if type(first).__name__ != "ChatCompletionChunk" and getattr(first, "object", None) != (
            "chat.completion.chunk"
        ):
            raise TypeError(f"First chunk does not look like chat completion chunk: {first!r}")
    except StopIteration:
        if finished is not None:
            finished("")
        return iter([b"data: [DONE]\n\n"])
    except Exception as exc:
        # DRUM's wording, so clients and replay diffs see the same error.
        raise ModelError(
            "Expected response to be ChatCompletion or Iterable[ChatCompletionChunk]. response "
            f"type: {type(result)}.response(str): {result!s}"
        ) from exc

    def generate() -> Iterator[bytes]:
        texts: list[str] = []
        chunk = first
        while True:
            if finished is not None:
                texts.append(_delta_text(chunk))
            for line in _chunk_json(chunk, association_id).splitlines():
                yield f"data: {line}\n".encode()
            yield b"\n"
            try:
                chunk = next(chunks)
            except StopIteration:
                break
            except Exception:
                logger.exception("chat stream failed after it started")
                if failed is not None:
                    failed()
                return
        if finished is not None:
            finished("".join(texts))
        yield b"data: [DONE]\n\n"

    return generate()


def _unstructured_response(result: Any) -> Response:
    single = not isinstance(result, tuple)
    if single:
        result = (result, None)
    if len(result) != 2:
        raise ModelError(
            "In unstructured mode predictions of type tuple must have length = 2, but received "
            f"length = {len(result)}"
        )
    data, options = result
    if not isinstance(data, (bytes, str, type(None))) or not isinstance(
        options, (dict, type(None))
    ):
        if single:
            raise ModelError(
                "In unstructured mode single return value can be of type str/bytes, but "
                f"received {type(data)}"
            )
        raise ModelError(
            "In unstructured mode tuple return value must be of type (str/bytes, dict) but "
            f"received ({type(data)}, {type(options)})"
        )
    options = options or {}
    if isinstance(data, (str, type(None))):
        mimetype = options.get("mimetype", TEXT_DEFAULT)
        charset = options.get("charset", "utf-8")
        body = b"" if data is None else data.encode(charset)
    else:
        mimetype = options.get("mimetype", BINARY_DEFAULT)
        charset = options.get("charset")
        body = data
    content_type = mimetype if charset is None else f"{mimetype}; charset={charset}"
    return Response(200, body, content_type)


def _clean_columns(df: pd.DataFrame) -> pd.DataFrame:
    names = [str(c).strip().replace("\n", "\\n") for c in df.columns]
    if any(not n for n in names):
        raise ModelError(
            "Column name serialization check failed: ensure there are no column names made up "
            "entirely of whitespace"
        )
    df = df.copy()
    df.columns = names
    return df


def _csv_payload(df: pd.DataFrame) -> bytes:
    text = _clean_columns(df).to_csv(index=False, lineterminator="\r\n")
    return text[:-2].encode("utf-8")


def _mtx_payload(df: pd.DataFrame) -> tuple[bytes, bytes]:
    from scipy.io import mmwrite

    df = _clean_columns(df)
    sink = io.BytesIO()
    mmwrite(sink, df.sparse.to_coo())
    return sink.getvalue(), "\n".join(str(c) for c in df.columns).encode("utf-8")


def _encode_multipart(fields: list[tuple[str, bytes, bool]]) -> tuple[bytes, str]:
    """multipart/form-data with a boundary derived from the content, so bytes are reproducible."""
    digest = hashlib.sha256()
    for name, data, _ in fields:
        digest.update(name.encode())
        digest.update(data)
    boundary = digest.hexdigest()[:32]
    out = bytearray()
    for name, data, is_file in fields:
        out += f"--{boundary}\r\n".encode()
        if is_file:
            out += (
                f'Content-Disposition: form-data; name="{name}"; filename="{name}"\r\n'
                f"Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
        else:
            out += f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        out += data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"
