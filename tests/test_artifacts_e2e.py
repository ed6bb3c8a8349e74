"""Artifact-only models against real Flask-dev, Gunicorn and Uvicorn processes on 127.0.0.1.

For every framework and label mode of ``tests/artifact_models.py``: the three stacks start
concurrently from the same code dir and must answer ``/predict/`` with the same bytes, and
those predictions must match the framework's own ``predict`` / ``predict_proba``. Start-up
errors (no artifact, two artifacts, an object no predictor handles, a missing package) must
stop every stack with DRUM's message, or be served identically with ``--with-error-server``.
"""

from __future__ import annotations

import importlib
import pickle
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.artifact_models import (
    CASES_BY_ID,
    QUERY_CSV,
    REGRESSION,
    ArtifactCase,
    check_predictions,
)
from tests.support import SERVER_TYPES, ServerProcess

pytestmark = pytest.mark.e2e

CSV = {"Content-Type": "text/csv"}


@contextmanager
def servers(code_dir: Path, args: tuple[str, ...]) -> Iterator[dict[str, ServerProcess]]:
    """One server per stack, started concurrently, all stopped afterwards."""
    procs = {st: ServerProcess(code_dir, st, args=list(args)) for st in SERVER_TYPES}
    try:
        with ThreadPoolExecutor(len(procs)) as pool:
            list(pool.map(ServerProcess.start, procs.values()))
        yield procs
        for st, server in procs.items():
            assert server.proc is not None and server.proc.poll() is None, (
                f"{st} died:\n{server.logs()}"
            )
    finally:
        with ThreadPoolExecutor(len(procs)) as pool:
            list(pool.map(ServerProcess.stop, procs.values()))


def start_failures(code_dir: Path, args: tuple[str, ...]) -> dict[str, str]:
    """Start every stack on a code dir that cannot load; return each one's start-up failure."""
    procs = {st: ServerProcess(code_dir, st, args=list(args)) for st in SERVER_TYPES}

    def attempt(server: ServerProcess) -> str:
        try:
            server.start()
        except RuntimeError as exc:
            return str(exc)
        finally:
            server.stop()
        return f"started although loading must fail:\n{server.logs()}"

    with ThreadPoolExecutor(len(procs)) as pool:
        return dict(zip(procs, pool.map(attempt, procs.values()), strict=True))


#: Every framework, artifact format and label mode; the in-process tier runs all of CASES.
E2E_CASES = [
    CASES_BY_ID[name]
    for name in (
        "sk-regression-pkl",
        "sk-binary-joblib",
        "sk-multiclass-pkl",
        "sk-pipeline",
        "xgb-classifier-binary",
        "xgb-regressor-joblib-compressed",
        "xgb-pipeline",
        "xgb-booster-binary",
        "xgb-booster-multiclass",
        "lgbm-classifier-multiclass",
        "lgbm-booster-binary",
        "lgbm-booster-regression",
        "onnx-regression-double",
        "onnx-binary-zipmap",
        "onnx-multiclass-no-zipmap",
    )
]


@pytest.mark.parametrize("case", E2E_CASES, ids=[c.id for c in E2E_CASES])
def test_artifact_on_every_stack(case: ArtifactCase, tmp_path: Path) -> None:
    for module in case.requires:
        pytest.importorskip(module)
    code_dir, expected = case.build(tmp_path)
    with servers(code_dir, case.args) as procs:
        bodies: dict[str, bytes] = {}
        for st, server in procs.items():
            with httpx.Client(base_url=server.url, timeout=30) as client:
                resp = client.post("/predict/", content=QUERY_CSV, headers=CSV)
                assert resp.status_code == 200, f"{st}: {resp.content!r}\n{server.logs()}"
                assert resp.headers["content-type"] == "application/json"
                bodies[st] = resp.content
                assert client.get("/info/").json()["predictor"] == case.predictor, st
        first = bodies[SERVER_TYPES[0]]
        for st, body in bodies.items():
            assert body == first, f"{SERVER_TYPES[0]} vs {st}: {first!r} != {body!r}"
        check_predictions(first, expected, case.id)


@pytest.fixture
def missing_module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A code dir whose model.pkl pickles an object of a module the servers cannot import."""
    libs = tmp_path / "libs"
    libs.mkdir()
    (libs / "tandem_e2e_throwaway.py").write_text("class Model:\n    pass\n")
    monkeypatch.syspath_prepend(str(libs))
    module = importlib.import_module("tandem_e2e_throwaway")
    code_dir = tmp_path / "model"
    code_dir.mkdir()
    (code_dir / "model.pkl").write_bytes(pickle.dumps(module.Model()))
    # The servers never see libs/; remove it here too.
    monkeypatch.delitem(sys.modules, "tandem_e2e_throwaway")
    (libs / "tandem_e2e_throwaway.py").unlink()
    return code_dir


def _no_artifact(code_dir: Path) -> None:
    (code_dir / "notes.txt").write_text("no model")


def _two_artifacts(code_dir: Path) -> None:
    (code_dir / "a.pkl").write_bytes(pickle.dumps({}))
    (code_dir / "b.pkl").write_bytes(pickle.dumps({}))


def _unhandled(code_dir: Path) -> None:
    (code_dir / "model.pkl").write_bytes(pickle.dumps({"weights": [1.0, 2.0]}))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_no_artifact, "Could not find model artifact file"),
        (_two_artifacts, "Multiple serialized model files found"),
        (
            _unhandled,
            "Could not find any framework to handle loaded model and a score hook is not provided",
        ),
    ],
    ids=["no-artifact", "two-artifacts", "unhandled-object"],
)
def test_start_up_errors(make: Callable[[Path], None], message: str, tmp_path: Path) -> None:
    code_dir = tmp_path / "model"
    code_dir.mkdir()
    make(code_dir)
    for st, failure in start_failures(code_dir, REGRESSION).items():
        assert "server exited with 1 during start-up" in failure, f"{st}: {failure}"
        assert message in failure, f"{st}: {failure}"


def test_missing_package_stops_every_stack(missing_module_dir: Path) -> None:
    expected = (
        "Loading model.pkl needs the Python package tandem_e2e_throwaway "
        "(pip install tandem_e2e_throwaway), which is not installed."
    )
    for st, failure in start_failures(missing_module_dir, REGRESSION).items():
        assert "server exited with 1 during start-up" in failure, f"{st}: {failure}"
        assert expected in failure, f"{st}: {failure}"


def test_missing_package_with_error_server(missing_module_dir: Path) -> None:
    """The error server answers the same bytes on every stack: 200 on /ping, 513 elsewhere."""
    answers: dict[str, tuple[int, bytes, int, bytes]] = {}
    with servers(missing_module_dir, (*REGRESSION, "--with-error-server")) as procs:
        for st, server in procs.items():
            with httpx.Client(base_url=server.url, timeout=30) as client:
                ping = client.get("/ping")
                predict = client.post("/predict/", content=QUERY_CSV, headers=CSV)
                answers[st] = (ping.status_code, ping.content, predict.status_code, predict.content)
    first = answers[SERVER_TYPES[0]]
    for st, answer in answers.items():
        assert answer == first, f"{SERVER_TYPES[0]} vs {st}: {first!r} != {answer!r}"
    assert first[0] == 200 and first[2] == 513
    assert b"needs the Python package tandem_e2e_throwaway" in first[1]
    assert b"needs the Python package tandem_e2e_throwaway" in first[3]


@pytest.mark.parametrize("server_type", SERVER_TYPES)
def test_r_model_stops_start_up_with_a_clear_error(tmp_path: Path, server_type: str) -> None:
    """Issue 10: a code dir with custom.R and no custom.py is refused, on every stack."""
    code_dir = tmp_path / "r_model"
    code_dir.mkdir()
    (code_dir / "custom.R").write_text("init <- function(...) {}\n")
    server = ServerProcess(code_dir, server_type, args=["--target-type", "regression"])
    with pytest.raises(RuntimeError, match="exited with"):
        server.start()
    assert "holds an R model (custom.R) and no custom.py" in server.logs()
