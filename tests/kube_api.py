"""A loopback HTTP server that plays recorded Kubernetes API exchanges, for tests.

``tests/fixtures/kube_exchanges/*.json`` hold request/response pairs written from the
Kubernetes API reference (no live cluster was used; see the README there). The server answers
each incoming request with the next recorded response, after checking the request against the
recorded one: method, path, query and JSON body exactly, and the headers the recording names.
Anything else is recorded as an error (and answered 500), so a test that ends with
:meth:`RecordedApiServer.assert_complete` proves the client sent exactly the recorded requests,
in order, and no others.

Clients reach it through a kubeconfig (:func:`write_kubeconfig`) whose user carries the
recording's bearer token, so the real ``kubernetes`` client is configured as it would be for a
cluster.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

EXCHANGES = Path(__file__).parent / "fixtures" / "kube_exchanges"
#: The bearer token every recording expects (the kubeconfig's user).
TOKEN = "tandem-recorded-token"
#: In a recorded body: any RFC 3339 UTC time within five minutes of now.
NOW_PLACEHOLDER = "{now:RFC3339}"
_RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def load(name: str) -> list[dict[str, Any]]:
    """The exchanges of recording ``name`` (a file name without ``.json``)."""
    doc = json.loads((EXCHANGES / f"{name}.json").read_text())
    return list(doc["exchanges"])


def _matches(expected: Any, actual: Any) -> bool:
    if expected == NOW_PLACEHOLDER:
        if not isinstance(actual, str) or not _RFC3339_UTC.match(actual):
            return False
        sent = datetime.strptime(actual, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        return abs((datetime.now(UTC) - sent).total_seconds()) < 300
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and expected.keys() == actual.keys()
            and all(_matches(expected[k], actual[k]) for k in expected)
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(_matches(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return bool(type(expected) is type(actual) and expected == actual)


class RecordedApiServer:
    """Serves recorded exchanges on 127.0.0.1 (a context manager).

    ``hooks`` maps an exchange's ``id`` to a callable run (with the decoded request body) after
    that exchange is answered: the test's stand-in for what the cluster does next (a kubelet
    restarting pods, say).
    """

    def __init__(
        self,
        exchanges: list[dict[str, Any]],
        hooks: dict[str, Callable[[Any], None]] | None = None,
    ) -> None:
        self.exchanges = exchanges
        self.hooks = hooks or {}
        self.position = 0
        self.served: list[str] = []
        """``METHOD path?query`` of every request, in order."""
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._repeated = False
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        """Where the server listens."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> RecordedApiServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def mutating_requests(self) -> list[str]:
        """Every request served that was not a read."""
        return [line for line in self.served if not line.startswith("GET ")]

    def assert_complete(self) -> None:
        """Every recorded exchange was used, in order, and nothing else was asked."""
        assert not self.errors, "\n".join(self.errors)
        left = self.exchanges[self.position :]
        if self._repeated and left:
            left = left[1:]
        assert not left, f"recorded requests never sent: {[e['request']['path'] for e in left]}"

    def _match(self, request: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
        """The exchange that answers ``request``, advancing the position; else why not."""
        with self._lock:
            candidates = [self.position]
            if self._repeated:
                candidates.append(self.position + 1)
            problem = "no more requests were recorded"
            for index in candidates:
                if index >= len(self.exchanges):
                    continue
                exchange = self.exchanges[index]
                problem = _difference(exchange["request"], request)
                if problem:
                    continue
                self.position = index
                self._repeated = bool(exchange.get("repeat"))
                if not self._repeated:
                    self.position += 1
                return exchange, ""
            return None, problem

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                split = urlsplit(self.path)
                request = {
                    "method": self.command,
                    "path": split.path,
                    "query": parse_qs(split.query, keep_blank_values=True),
                    "headers": {k: v for k, v in self.headers.items()},
                    "body": body,
                }
                server.served.append(f"{self.command} {self.path}")
                exchange, problem = server._match(request)
                if exchange is None:
                    message = f"unrecorded request {self.command} {self.path}: {problem}"
                    server.errors.append(message)
                    self._answer(500, {"kind": "Status", "status": "Failure", "message": message})
                    return
                response = exchange["response"]
                self._answer(int(response["status"]), response["body"])
                hook = server.hooks.get(str(exchange.get("id")))
                if hook is not None:
                    hook(body)

            def _answer(self, status: int, doc: Any) -> None:
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Audit-Id", str(uuid.uuid4()))
                self.send_header("Cache-Control", "no-cache, private")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()

            do_GET = do_PATCH = do_PUT = do_POST = do_DELETE = _serve

        return Handler


def _difference(expected: dict[str, Any], actual: dict[str, Any]) -> str:
    """Why ``actual`` is not the recorded request ``expected`` ("" when it is)."""
    for part in ("method", "path", "query"):
        if expected[part] != actual[part]:
            return f"{part} {actual[part]!r}, recorded {expected[part]!r}"
    headers = {k.lower(): v for k, v in actual["headers"].items()}
    for name, value in (expected.get("headers") or {}).items():
        if headers.get(name.lower()) != value:
            return f"header {name}: {headers.get(name.lower())!r}, recorded {value!r}"
    if not _matches(expected["body"], actual["body"]):
        return f"body {json.dumps(actual['body'])}, recorded {json.dumps(expected['body'])}"
    return ""


def write_kubeconfig(path: Path, server_url: str, context: str = "recorded") -> Path:
    """A kubeconfig whose context ``context`` points at ``server_url`` with the recording's
    bearer token (plain HTTP: loopback only)."""
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "recorded", "cluster": {"server": server_url}}],
                "users": [{"name": "tandem", "user": {"token": TOKEN}}],
                "contexts": [
                    {
                        "name": context,
                        "context": {"cluster": "recorded", "user": "tandem", "namespace": "models"},
                    }
                ],
                "current-context": context,
            }
        )
    )
    return path


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()
