"""End-to-end: ``--monitor`` on every stack, read back with DataRobot's own ``datarobot-mlops``.

A real ``tandem server`` reports to a filesystem spool (several worker processes on Gunicorn and
Uvicorn, each reporting from its own background thread); the spool is then read with the
library's dequeue, as DataRobot's agent reads it, and must hold one deployment-stats record and
one prediction-data record per prediction, with the features sent and the predictions answered.
A spool directory that disappears fails the reports, never the predictions, and
``tandem verify`` says so.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tandem.ops.promtext import parse_samples
from tests.mlops_support import channel, of_type, read_spool
from tests.support import SERVER_TYPES, ServerProcess, build_sklearn_artifact, running

pytestmark = pytest.mark.e2e

METRIC = "drum_mlops_reports_total"


def monitor_args(spool: Path, workers: int) -> list[str]:
    args = ["--monitor", "--deployment-id", "D", "--model-id", "M"]
    args += ["--monitor-settings", channel(spool)]
    return args + (["--max-workers", str(workers)] if workers > 1 else [])


def workers_for(server_type: str) -> int:
    """Two worker processes where the stack forks them: each must report on its own."""
    return 1 if server_type == "flask" else 2


def outcomes(server: ServerProcess) -> dict[str, float] | None:
    """``drum_mlops_reports_total`` by outcome, or None when the server does not have it."""
    samples = parse_samples(httpx.get(server.url + "/metrics", timeout=10).text)
    found = [(labels["outcome"], value) for name, labels, value in samples if name == METRIC]
    if not found:
        return None
    counts = {"sent": 0.0, "failed": 0.0, "dropped": 0.0}
    for outcome, value in found:
        counts[outcome] += value
    return counts


def wait_outcome(server: ServerProcess, outcome: str, minimum: float) -> dict[str, float]:
    deadline = time.monotonic() + 20
    while True:
        counts = outcomes(server)
        assert counts is not None
        if counts[outcome] >= minimum:
            return counts
        assert time.monotonic() < deadline, f"{outcome} stayed below {minimum}: {counts}"
        time.sleep(0.1)


def request_body(i: int) -> tuple[bytes, list[list[float]]]:
    """Distinct inputs: floats (the pandas-free fast path) or integers (the general path),
    1 to 3 rows."""
    rows = [[i + r + 0.5, -i - r - 0.5, 2 * r + 0.25] for r in range(i % 3 + 1)]
    if i % 2:
        rows = [[int(v) for v in row] for row in rows]
    text = "a,b,c\n" + "".join(",".join(str(v) for v in row) + "\n" for row in rows)
    return text.encode(), rows


def predict_all(server: ServerProcess, n: int) -> list[tuple[list[list[float]], list[float]]]:
    """``n`` predictions, each on a new connection (so every worker gets some)."""
    sent = []
    for i in range(n):
        body, rows = request_body(i)
        response = httpx.post(
            server.url + "/predict/",
            content=body,
            headers={"Content-Type": "text/csv"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        sent.append((rows, response.json()["predictions"]))
    return sent


def key(features: dict[str, list[float]]) -> str:
    """Features as a comparable key (the library may send 0 as 0.0 beside float columns)."""
    return json.dumps({name: [float(v) for v in values] for name, values in features.items()})


def verify(server: ServerProcess, payload: Path, *args: str) -> dict[str, Any]:
    """``tandem verify --json``: the MLOps item of the report."""
    proc = subprocess.run(
        [sys.executable, "-m", "tandem", "verify", server.url, "--json", "--payload", str(payload)]
        + list(args),
        capture_output=True,
        text=True,
        timeout=180,
    )
    report = json.loads(proc.stdout)
    return next(check for check in report["checks"] if check["name"] == "mlops")


@pytest.mark.parametrize("server_type", SERVER_TYPES)
def test_predictions_are_spooled_through_the_library(tmp_path: Path, server_type: str) -> None:
    code_dir = build_sklearn_artifact(tmp_path / "model", "regression")
    spool = tmp_path / "spool"
    spool.mkdir()
    payload = tmp_path / "payload.csv"
    payload.write_text("a,b,c\n0.5,1,2\n1.5,2,3\n")
    args = ["--target-type", "regression", *monitor_args(spool, workers_for(server_type))]
    n = 12
    with running(code_dir, server_type, args=args) as server:
        assert outcomes(server) == {"sent": 0, "failed": 0, "dropped": 0}
        sent = predict_all(server, n)
        counts = wait_outcome(server, "sent", n)
        assert counts == {"sent": n, "failed": 0, "dropped": 0}

        # The rollback plan's "MLOps metrics are flowing": verify's own predictions reported too.
        item = verify(server, payload, "--require-mlops")
        assert item["status"] == "pass", item
        assert item["data"]["delta"] == {"sent": 2, "failed": 0, "dropped": 0}
    records = read_spool(spool)
    assert {r.deployment_id for r in records} == {"D"}
    stats = of_type(records, "DEPLOYMENT_STATS")
    data = of_type(records, "PREDICTIONS_DATA")
    assert {r.data_type for r in records} == {"DEPLOYMENT_STATS", "PREDICTIONS_DATA"}
    assert len(stats) == len(data) == n + 2
    assert {s["modelId"] for s in stats + data} == {"M"}
    expected_counts = [len(rows) for rows, _ in sent] + [1, 2]
    assert sorted(s["numPredictions"] for s in stats) == sorted(expected_counts)
    assert all(s["executionTime"] > 0 and not s["userError"] for s in stats)
    # Each prediction's features and answers, whichever worker and path served it.
    by_features = {key(d["features"]): d for d in data}
    for rows, predictions in sent:
        features = {name: [row[i] for row in rows] for i, name in enumerate("abc")}
        record = by_features.pop(key(features))
        assert record["predictions"] == pytest.approx(predictions, abs=1e-9)
        assert "classNames" not in record
    assert len(by_features) == 2  # verify's single row and batch


@pytest.mark.parametrize("server_type", SERVER_TYPES)
def test_a_broken_spool_fails_reports_never_predictions(tmp_path: Path, server_type: str) -> None:
    code_dir = build_sklearn_artifact(tmp_path / "model", "regression")
    spool = tmp_path / "spool"
    spool.mkdir()
    payload = tmp_path / "payload.csv"
    payload.write_text("a,b,c\n0.5,1,2\n1.5,2,3\n")
    args = ["--target-type", "regression", *monitor_args(spool, workers_for(server_type))]
    with running(code_dir, server_type, args=args) as server:
        shutil.rmtree(spool)  # the spool volume went away after start-up
        sent = predict_all(server, 6)
        assert [len(p) for _, p in sent] == [1, 2, 3, 1, 2, 3]
        counts = wait_outcome(server, "failed", 6)
        assert counts["sent"] == 0 and counts["dropped"] == 0
        logs = server.logs()
        assert "the MLOps channel did not open" in logs and "does not exist" in logs

        item = verify(server, payload)
        assert item["status"] == "fail", item
        assert "reports are not reaching the MLOps channel" in item["observed"]

        # The directory is back: reporting resumes on its own (after a second's back-off).
        spool.mkdir()
        time.sleep(1.2)
        predict_all(server, 4)
        wait_outcome(server, "sent", 1)
    assert of_type(read_spool(spool), "DEPLOYMENT_STATS")


EMBEDDED_MODEL = """
def score_unstructured(model, data, **kwargs):
    mlops = kwargs.get("mlops")
    if mlops is None:
        return "no mlops"
    rows = data.count("\\n")
    mlops.report_deployment_stats(num_predictions=rows, execution_time_ms=1.0)
    return "reported %d" % rows
"""


@pytest.mark.parametrize("server_type", SERVER_TYPES)
def test_embedded_monitoring_hands_the_model_the_library(tmp_path: Path, server_type: str) -> None:
    code_dir = tmp_path / "model"
    code_dir.mkdir()
    (code_dir / "custom.py").write_text(textwrap.dedent(EMBEDDED_MODEL))
    spool = tmp_path / "spool"
    spool.mkdir()
    args = ["--target-type", "unstructured", "--monitor-embedded"]
    args += ["--deployment-id", "D", "--model-id", "M", "--monitor-settings", channel(spool)]
    args += ["--webserver", "http://127.0.0.1:9", "--api-token", "unused"]
    if server_type != "flask":
        args += ["--max-workers", "2"]
    with running(code_dir, server_type, args=args) as server:
        answers = [
            httpx.post(
                server.url + "/predictUnstructured/",
                content="x\n" * (i + 1),
                headers={"Content-Type": "text/plain"},
                timeout=30,
            ).text
            for i in range(3)
        ]
        assert answers == ["reported 1", "reported 2", "reported 3"]
        assert outcomes(server) is None  # the model reports; Tandem counts nothing
    stats = of_type(read_spool(spool), "DEPLOYMENT_STATS")
    assert sorted(s["numPredictions"] for s in stats) == [1, 2, 3]


def test_a_spool_that_cannot_open_stops_start_up(tmp_path: Path) -> None:
    code_dir = build_sklearn_artifact(tmp_path / "model", "regression")
    args = ["--target-type", "regression", *monitor_args(tmp_path / "missing", 1)]
    server = ServerProcess(code_dir, "fastapi", args=args)
    with pytest.raises(RuntimeError, match="exited with 1"):
        server.start()
    lines = [line for line in server.logs().splitlines() if line.startswith("tandem: error:")]
    assert len(lines) == 1 and "MLOps monitoring cannot start" in lines[0], server.logs()
    assert "does not exist" in lines[0]
