"""The bundled examples, served by real Flask-dev, Gunicorn and Uvicorn processes on 127.0.0.1.

Every example is copied into ``tmp_path`` (the repository's folders are never touched), started
on all three stacks at once, and called on every route that makes sense for it with the
example's own sample data. Each answer must be a success (or the documented error) and carry the
same status, content type and body bytes on every stack; ``/info/`` is compared after dropping
the keys that name the stack.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import EXAMPLES, SERVER_TYPES, ServerProcess

pytestmark = pytest.mark.e2e

#: ``/info/`` keys that legitimately differ between stacks.
STACK_KEYS = ("drumServer", "drum_server", "processServer")
#: What ``/info/`` reports as ``drumServer`` and ``processServer`` on each server type.
EXPECTED_STACK = {
    "flask": ("flask", "werkzeug"),
    "gunicorn": ("flask", "gunicorn"),
    "fastapi": ("fastapi", "uvicorn"),
}
TOKEN = "example-t0ken"
MISSING_HEADER = b'{"message":"Missing X-Auth header"}\n'
INVALID_TOKEN = b'{"message":"Auth token is invalid"}\n'


@dataclass(frozen=True, eq=False)
class Call:
    """One HTTP request, and how its answers on the three stacks are compared.

    Compared and hashed by identity, so a call object keys its own answer.
    """

    method: str
    path: str
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    files: dict[str, tuple[str, bytes, str]] | None = None
    status: int = 200
    compare: str = "bytes"
    """``bytes`` (status, content type, body), ``info`` (JSON minus :data:`STACK_KEYS`) or
    ``status`` (only the status, for ``/stats/`` whose numbers are live measurements)."""

    def __str__(self) -> str:
        parts = f" files={sorted(self.files)}" if self.files else ""
        return f"{self.method} {self.path}{parts}"


def copy_example(name: str, dest: Path) -> Path:
    """Copy ``examples/<name>`` into ``dest`` and return the copy."""
    return Path(
        shutil.copytree(
            EXAMPLES / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    )


@dataclass
class Stacks:
    """One code dir running on every server type, with a reusable client for each."""

    servers: dict[str, ServerProcess]
    clients: dict[str, httpx.Client]


@contextmanager
def serve_everywhere(
    code_dir: Path, args: list[str] | None = None, env: dict[str, str] | None = None
) -> Iterator[Stacks]:
    """Start the code dir on every server type concurrently; stop them all on the way out."""
    servers = {
        st: ServerProcess(code_dir, st, args=list(args or []), env=dict(env or {}))
        for st in SERVER_TYPES
    }
    clients: dict[str, httpx.Client] = {}
    try:
        with ThreadPoolExecutor(len(servers)) as pool:
            list(pool.map(ServerProcess.start, servers.values()))
        clients = {st: httpx.Client(base_url=s.url, timeout=30) for st, s in servers.items()}
        yield Stacks(servers, clients)
        for st, server in servers.items():
            assert server.proc is not None and server.proc.poll() is None, (
                f"{st} died:\n{server.logs()}"
            )
    finally:
        for client in clients.values():
            client.close()
        for server in servers.values():
            server.stop()


def _view(call: Call, response: httpx.Response) -> tuple[Any, ...]:
    """What must be identical across stacks for ``call``."""
    if call.compare == "status":
        return (response.status_code,)
    if call.compare == "info":
        doc = response.json()
        for key in STACK_KEYS:
            doc.pop(key, None)
        return response.status_code, response.headers.get("content-type"), doc
    return response.status_code, response.headers.get("content-type"), response.content


def ask(stacks: Stacks, call: Call) -> dict[str, httpx.Response]:
    """Send ``call`` to every stack; check status and cross-stack identity; return answers."""
    answers = {
        st: client.request(
            call.method, call.path, content=call.content, headers=call.headers, files=call.files
        )
        for st, client in stacks.clients.items()
    }
    for st, response in answers.items():
        assert response.status_code == call.status, (
            f"{call} on {st}: {response.status_code} {response.text!r}\n{stacks.servers[st].logs()}"
        )
    views = {st: _view(call, response) for st, response in answers.items()}
    reference = views[SERVER_TYPES[0]]
    for st, view in views.items():
        assert view == reference, (
            f"{call}: {st} differs from {SERVER_TYPES[0]}:\n{view}\n{reference}"
        )
    return answers


def ask_all(stacks: Stacks, calls: list[Call]) -> dict[Call, httpx.Response]:
    """:func:`ask` every call; return one stack's answer per call (they are identical)."""
    return {call: ask(stacks, call)[SERVER_TYPES[0]] for call in calls}


def common_calls(prefix: str = "", headers: dict[str, str] | None = None) -> list[Call]:
    """Liveness, readiness and description routes every example answers."""
    h = dict(headers or {})
    return [
        Call("GET", prefix + "/", headers=h),
        Call("GET", prefix + "/ping", headers=h),
        Call("GET", prefix + "/ping/", headers=h),
        Call("GET", prefix + "/health/", headers=h),
        Call("GET", prefix + "/info/", headers=h, compare="info"),
        Call("GET", prefix + "/capabilities/", headers=h),
        Call("GET", prefix + "/stats/", headers=h, compare="status"),
    ]


def csv_calls(
    data: bytes, prefix: str = "", headers: dict[str, str] | None = None, route: str = "/predict/"
) -> list[Call]:
    """The structured routes with a CSV sent as the raw body and as the multipart file ``X``."""
    h = dict(headers or {})
    routes = [route] if route != "/predict/" else ["/predict/", "/predictions/", "/invocations"]
    raw = [
        Call("POST", prefix + r, content=data, headers={**h, "Content-Type": "text/csv"})
        for r in routes
    ]
    multipart = Call("POST", prefix + route, headers=h, files={"X": ("data.csv", data, "text/csv")})
    return [*raw, multipart]


def check_info(stacks: Stacks, path: str = "/info/", headers: dict[str, str] | None = None) -> None:
    """``/info/`` names each stack correctly."""
    for st, client in stacks.clients.items():
        info = client.get(path, headers=headers).json()
        framework, process_server = EXPECTED_STACK[st]
        assert (info["drumServer"], info["drum_server"], info["processServer"]) == (
            framework,
            framework,
            process_server,
        )


def rows(csv: bytes) -> int:
    """Data rows of a small CSV without embedded newlines."""
    return len(csv.strip().splitlines()) - 1


# -- structured examples ---------------------------------------------------------------------

STRUCTURED: dict[str, dict[str, Any]] = {
    "regression": {"args": ["--target-type", "regression"], "info": {"targetType": "regression"}},
    "binary": {
        "args": [],
        "info": {
            "targetType": "binary",
            "positiveClassLabel": "malignant",
            "negativeClassLabel": "benign",
        },
        "labels": ["benign", "malignant"],
        "winners": ["malignant", "benign", "benign", "malignant", "benign"],
    },
    "multiclass": {
        "args": [],
        "info": {"targetType": "multiclass", "classLabels": ["setosa", "versicolor", "virginica"]},
        "labels": ["setosa", "versicolor", "virginica"],
        "winners": ["setosa", "versicolor", "virginica"] * 2,
    },
}


@pytest.mark.parametrize("example", sorted(STRUCTURED))
def test_structured_example(example: str, tmp_path: Path) -> None:
    spec = STRUCTURED[example]
    code_dir = copy_example(example, tmp_path)
    data = (code_dir / "data.csv").read_bytes()
    with serve_everywhere(code_dir, args=spec["args"]) as stacks:
        check_info(stacks)
        answers = ask_all(stacks, common_calls() + csv_calls(data))
    by_path = {(c.path, c.files is not None): r for c, r in answers.items()}
    info = by_path[("/info/", False)].json()
    for key, value in spec["info"].items():
        assert info[key] == value
    assert by_path[("/capabilities/", False)].json()["supported_methods"] == {"chat": False}
    predictions = by_path[("/predict/", False)].json()["predictions"]
    assert len(predictions) == rows(data)
    assert by_path[("/predict/", True)].content == by_path[("/predict/", False)].content
    if "labels" in spec:
        for row in predictions:
            assert sorted(row) == spec["labels"]
            assert sum(row.values()) == pytest.approx(1.0)
        assert [max(row, key=row.get) for row in predictions] == spec["winners"]
    else:
        assert all(isinstance(p, float) for p in predictions)


# -- unstructured ----------------------------------------------------------------------------


def test_unstructured_example(tmp_path: Path) -> None:
    code_dir = copy_example("unstructured", tmp_path)
    text = (code_dir / "input.txt").read_bytes()
    plain = {"Content-Type": "text/plain; charset=utf-8"}
    calls = [
        Call("POST", "/predictUnstructured/", content=text, headers=plain),
        Call("POST", "/predictionsUnstructured/?top=5", content=text, headers=plain),
        Call("POST", "/predictUnstructured/", content=text, headers={"Content-Type": "text/plain"}),
        Call(
            "POST",
            "/predictUnstructured/",
            content=text,
            headers={"Content-Type": "application/octet-stream"},
        ),
        Call("POST", "/predictUnstructured/?top=x", content=text, headers=plain, status=400),
    ]
    with serve_everywhere(code_dir) as stacks:
        check_info(stacks)
        answers = ask_all(stacks, common_calls() + calls)
    default, top5, no_charset, binary, bad = (answers[c] for c in calls)
    assert default.headers["content-type"] == "application/json; charset=utf-8"
    stats = default.json()
    words = text.decode().split()
    assert stats["characters"] == len(text.decode())
    assert stats["lines"] == len(text.decode().splitlines())
    assert stats["words"] == len(words)
    assert stats["mimetype"] == "text/plain"
    assert len(stats["top_words"]) == 3 and len(top5.json()["top_words"]) == 5
    assert no_charset.content == default.content
    assert binary.json() == {"bytes": len(text), "mimetype": "application/octet-stream"}
    assert bad.json() == {"message": "top must be a non-negative integer, got 'x'"}
    assert bad.headers.get("x-drum-user-http-error") == "true"


# -- transform -------------------------------------------------------------------------------


def test_transform_example(tmp_path: Path) -> None:
    code_dir = copy_example("transform", tmp_path)
    data = (code_dir / "data.csv").read_bytes()
    target = (code_dir / "target.csv").read_bytes()
    with_y = Call(
        "POST",
        "/transform/",
        files={"X": ("data.csv", data, "text/csv"), "y": ("target.csv", target, "text/csv")},
    )
    calls = csv_calls(data, route="/transform/") + [with_y]
    with serve_everywhere(code_dir) as stacks:
        check_info(stacks)
        answers = ask_all(stacks, common_calls() + calls)
    raw, multipart, both = (answers[c] for c in calls)
    assert raw.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert multipart.content == raw.content
    parts = _multipart(raw)
    assert parts["X.format"] == b"csv"
    table = parts["X.transformed"].decode().split("\r\n")
    assert table[0] == data.decode().splitlines()[0]
    assert [line.split(",")[0] for line in table[1:]] == [
        "lot-001",
        "lot-002",
        "lot-003",
        "lot-004",
    ]
    assert table[1] != data.decode().splitlines()[1]  # the numbers were rescaled
    parts = _multipart(both)
    assert parts["y.format"] == b"csv"
    assert parts["y.transformed"] == target.strip().replace(b"\n", b"\r\n")


def _multipart(response: httpx.Response) -> dict[str, bytes]:
    """The named parts of a ``multipart/form-data`` response."""
    boundary = response.headers["content-type"].split("boundary=", 1)[1].encode()
    out: dict[str, bytes] = {}
    for chunk in response.content.split(b"--" + boundary)[1:-1]:
        head, _, body = chunk.strip(b"\r\n").partition(b"\r\n\r\n")
        name = head.split(b'name="', 1)[1].split(b'"', 1)[0].decode()
        out[name] = body
    return out


# -- chat ------------------------------------------------------------------------------------


def _chat(path: str, stream: bool) -> Call:
    body = {
        "model": "tandem-echo",
        "messages": [
            {"role": "system", "content": "You are an echo."},
            {"role": "user", "content": "Hello from the examples test"},
        ],
        "datarobot_association_id": "examples-association-1",
    }
    if stream:
        body["stream"] = True
    return Call(
        "POST",
        path,
        content=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )


def test_chat_example(tmp_path: Path) -> None:
    code_dir = copy_example("chat", tmp_path)
    data = (code_dir / "data.csv").read_bytes()
    chat_calls = [
        _chat("/chat/completions", stream=False),
        _chat("/v1/chat/completions", stream=False),
        _chat("/chat/completions", stream=True),
        _chat("/v1/chat/completions", stream=True),
    ]
    model_calls = [Call("GET", "/models"), Call("GET", "/v1/models")]
    with serve_everywhere(code_dir, env={"TARGET_NAME": "completion"}) as stacks:
        check_info(stacks)
        answers = ask_all(stacks, common_calls() + chat_calls + model_calls + csv_calls(data))
    by_path = {(c.path, c.files is not None, c.content): r for c, r in answers.items()}
    assert by_path[("/capabilities/", False, None)].json()["supported_methods"] == {"chat": True}
    info = by_path[("/info/", False, None)].json()
    assert info["targetType"] == "textgeneration"

    completion, v1_completion, stream, v1_stream = (answers[c] for c in chat_calls)
    assert completion.headers["content-type"] == "application/json"
    assert v1_completion.content == completion.content
    doc = completion.json()
    assert doc["object"] == "chat.completion"
    assert doc["datarobot_association_id"] == "examples-association-1"
    assert doc["created"] == 1735689600
    answer = doc["choices"][0]["message"]["content"]
    assert answer == "Echo: Hello from the examples test"

    assert stream.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert v1_stream.content == stream.content
    events = [e for e in stream.content.decode().split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert {c["datarobot_association_id"] for c in chunks} == {"examples-association-1"}
    assert {c["id"] for c in chunks} == {doc["id"]}
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == answer
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"

    models = answers[model_calls[0]]
    assert answers[model_calls[1]].content == models.content
    assert models.json() == {
        "data": [
            {
                "created": 1735689600,
                "id": "tandem-echo",
                "object": "model",
                "owned_by": "tandem-examples",
            }
        ],
        "object": "list",
    }

    predictions = by_path[("/predict/", False, data)].json()["predictions"]
    assert predictions == [
        "Echo: What is Tandem?",
        "Echo: Say hello, politely.",
        "Echo: Which stacks serve this model?",
    ]
    assert by_path[("/predict/", True, None)].json()["predictions"] == predictions


# -- extension_auth --------------------------------------------------------------------------


def _auth_calls(prefix: str, data: bytes) -> list[Call]:
    """Open probes, the two 401 answers, and authenticated calls of every structured route."""
    open_paths = ["/", "/ping", "/ping/", "/health", "/health/"]
    if prefix:
        open_paths.append("")
    calls = [Call("GET", prefix + p) for p in open_paths]
    for protected in ("/info/", "/capabilities/", "/stats/", "/no-such-route"):
        calls += [
            Call("GET", prefix + protected, status=401),
            Call("GET", prefix + protected, headers={"X-Auth": "wrong"}, status=401),
            Call("GET", prefix + protected, headers={"X-Auth": TOKEN + "x"}, status=401),
        ]
    csv = {"Content-Type": "text/csv"}
    calls += [
        Call("POST", prefix + "/predict/", content=data, headers=csv, status=401),
        Call(
            "POST", prefix + "/predict/", content=data, headers={**csv, "X-Auth": "no"}, status=401
        ),
    ]
    authed = {"X-Auth": TOKEN}
    calls += common_calls(prefix, authed) + csv_calls(data, prefix, authed)
    return calls


def _check_auth_answers(answers: dict[Call, httpx.Response]) -> None:
    for call, response in answers.items():
        if call.status != 401:
            continue
        expected = INVALID_TOKEN if "X-Auth" in call.headers else MISSING_HEADER
        assert response.content == expected, call
        assert response.headers["content-type"] == "application/json", call


@pytest.mark.parametrize(
    ("token_env", "prefix"),
    [
        (
            {
                "MLOPS_RUNTIME_PARAM_EXAMPLE_AUTH_TOKEN": json.dumps(
                    {"type": "string", "payload": TOKEN}
                )
            },
            "",
        ),
        ({"EXAMPLE_AUTH_TOKEN": TOKEN, "URL_PREFIX": "/pfx/"}, "/pfx"),
    ],
    ids=["runtime-param", "env-var-url-prefix"],
)
def test_extension_auth_example(token_env: dict[str, str], prefix: str, tmp_path: Path) -> None:
    code_dir = copy_example("extension_auth", tmp_path)
    data = (code_dir / "data.csv").read_bytes()
    with serve_everywhere(code_dir, env=token_env) as stacks:
        check_info(stacks, prefix + "/info/", headers={"X-Auth": TOKEN})
        answers = ask_all(stacks, _auth_calls(prefix, data))
        if prefix:
            # Outside the prefix nothing is open, not even /ping.
            ask(stacks, Call("GET", "/ping", status=401))
        for st, server in stacks.servers.items():
            assert "Loaded extensions from" in server.logs(), st
            expected = "custom_fastapi.py" if st == "fastapi" else "custom_flask.py"
            assert expected in server.logs(), st
    _check_auth_answers(answers)
    predictions = [
        r.json()["predictions"]
        for c, r in answers.items()
        if c.path.endswith(("/predict/", "/predictions/", "/invocations")) and c.status == 200
    ]
    assert len(predictions) == 4
    assert all(p == predictions[0] and len(p) == rows(data) for p in predictions)


def _start_fails(server: ServerProcess) -> str:
    """Start ``server``, expecting it to exit during start-up; return its output."""
    try:
        with pytest.raises(RuntimeError, match="exited with") as excinfo:
            server.start()
    finally:
        server.stop()
    return str(excinfo.value)


def test_extension_auth_fails_closed_without_token(tmp_path: Path) -> None:
    code_dir = copy_example("extension_auth", tmp_path)
    servers = [ServerProcess(code_dir, st, startup_timeout=90) for st in SERVER_TYPES]
    with ThreadPoolExecutor(len(servers)) as pool:
        outputs = list(pool.map(_start_fails, servers))
    for st, output in zip(SERVER_TYPES, outputs, strict=True):
        assert "token authentication is not configured" in output, st
        assert "EXAMPLE_AUTH_TOKEN" in output, st


def test_extension_auth_on_fastapi_without_custom_fastapi_fails(tmp_path: Path) -> None:
    code_dir = copy_example("extension_auth", tmp_path)
    (code_dir / "custom_fastapi.py").unlink()
    server = ServerProcess(
        code_dir, None, env={"DRUM_SERVER_TYPE": "fastapi", "EXAMPLE_AUTH_TOKEN": TOKEN}
    )
    output = _start_fails(server)
    assert "custom_flask.py" in output
    assert (EXAMPLES / "extension_auth" / "custom_fastapi.py").is_file()
