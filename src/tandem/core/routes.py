"""The one route table both HTTP adapters are built from."""

from __future__ import annotations

import functools
from dataclasses import dataclass


@dataclass(frozen=True)
class Route:
    """A DRUM endpoint: its Flask endpoint name, declared paths, methods and service handler."""

    name: str
    """Endpoint name; Flask registers it as ``model_api.<name>`` (custom_flask.py relies on it)."""
    paths: tuple[str, ...]
    """Paths as DRUM declares them, relative to URL_PREFIX; ``{path:path}`` is a tail param."""
    methods: tuple[str, ...]
    handler: str
    """Name of the :class:`~tandem.core.service.PredictionService` method."""
    blocking: bool = False
    """Runs model code (so the FastAPI adapter moves it off the event loop)."""
    error_server: bool = True
    """Answers 513 when the model failed to load and the error server is on."""


ROUTES: tuple[Route, ...] = (
    Route("ping", ("/", "/ping/"), ("GET",), "ping"),
    Route("health", ("/health/",), ("GET",), "health"),
    Route("info", ("/info/",), ("GET",), "info"),
    Route("capabilities", ("/capabilities/",), ("GET",), "capabilities"),
    Route("stats", ("/stats/",), ("GET",), "stats"),
    Route(
        "predict",
        ("/predict/", "/predictions/", "/invocations"),
        ("POST",),
        "predict",
        blocking=True,
    ),
    Route("transform", ("/transform/",), ("POST",), "transform", blocking=True),
    Route(
        "predict_unstructured",
        ("/predictUnstructured/", "/predictionsUnstructured/"),
        ("POST",),
        "predict_unstructured",
        blocking=True,
    ),
    Route("chat", ("/chat/completions", "/v1/chat/completions"), ("POST",), "chat", blocking=True),
    Route("get_supported_llm_models", ("/models", "/v1/models"), ("GET",), "models", blocking=True),
    Route("livez", ("/livez",), ("GET",), "livez", error_server=False),
    Route("readyz", ("/readyz",), ("GET",), "readyz", error_server=False),
    Route("startupz", ("/startupz",), ("GET",), "startupz", error_server=False),
    Route("metrics", ("/metrics",), ("GET",), "metrics", error_server=False),
    Route(
        "forward_request",
        ("/directAccess/{path:path}", "/nim/{path:path}"),
        ("GET", "POST", "PUT"),
        "direct_access",
    ),
)


def path_variants(path: str, prefix: str) -> list[str]:
    """Every concrete path a declared path answers on: with and without the trailing slash."""
    if path == "/":
        return [prefix + "/", prefix] if prefix else ["/"]
    if path.endswith("{path:path}"):
        return [prefix + path]
    bare = path.rstrip("/")
    return [prefix + bare, prefix + bare + "/"]


def concrete_paths(route: Route, prefix: str) -> dict[str, str]:
    """Every concrete path ``route`` answers on, mapped to the declared path it comes from."""
    return {path: declared for declared in route.paths for path in path_variants(declared, prefix)}


def allowed_methods(path: str, prefix: str) -> list[str] | None:
    """Methods allowed on a concrete path, or None when no route matches it (for 404/405)."""
    methods: set[str] = set()
    for route in ROUTES:
        for declared in route.paths:
            if declared.endswith("{path:path}"):
                head = prefix + declared[: -len("{path:path}")]
                if path.startswith(head) and len(path) > len(head):
                    methods.update(route.methods)
            elif path in path_variants(declared, prefix):
                methods.update(route.methods)
    if not methods:
        return None
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


@functools.lru_cache(maxsize=8)
def _template_index(prefix: str) -> dict[str, str]:
    index: dict[str, str] = {}
    for route in ROUTES:
        for declared in route.paths:
            if not declared.endswith("{path:path}"):
                for path in path_variants(declared, prefix):
                    index.setdefault(path, declared)
    return index


def template_for(path: str, prefix: str) -> str:
    """The declared path a concrete path belongs to (the metrics' ``endpoint``), or unmatched."""
    found = _template_index(prefix).get(path)
    if found is not None:
        return found
    for route in ROUTES:
        for declared in route.paths:
            if declared.endswith("{path:path}"):
                head = prefix + declared[: -len("{path:path}")]
                if path.startswith(head) and len(path) > len(head):
                    return declared
    return "unmatched"
