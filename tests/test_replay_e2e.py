"""``tandem replay`` against real servers: record on one stack, replay against both, find changes.

Traffic is recorded once (binary model on Gunicorn, two workers, sample rate 1) and replayed with
the real command line against a Flask baseline and FastAPI candidates: the same model (everything
matches), a model whose "yes" probability moves in the fifth decimal place for one row, one that
fails (500) on batches containing a 7, and one that is 0.2 s slower per request.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conformance_cases import BINARY
from tests.support import ServerProcess, fixture_dir

pytestmark = pytest.mark.e2e

#: First-column values of the recorded batches; 4 is the row the fifth-decimal candidate shifts,
#: 7 the value the status-changing candidate refuses.
BATCHES = [[1, 4, 2], [3], [7, 0], [4], [2, 5], [0, 1, 2, 3], [7], [5, 4, 6], [1], [2, 2]]
PATHS = ("/predict/", "/predictions/", "/invocations")
#: Localhost latencies are a few milliseconds, so the p99 of a few dozen requests is dominated by
#: scheduling jitter (a GC pause or a busy CI core doubles it). Runs that are not about latency
#: relax the ratio so they test matching only; the slow-candidate test keeps the default 1.2.
NO_LATENCY_GATE = ["--max-p99-ratio", "1000"]


def _csv(values: list[int]) -> bytes:
    return ("a,b\n" + "".join(f"{v},{v * 10}\n" for v in values)).encode()


def _record(url: str) -> int:
    """The recorded traffic; returns the number of prediction requests sent."""
    calls: list[tuple[str, bytes, dict[str, str], dict[str, str]]] = []
    for round_ in range(3):
        for i, batch in enumerate(BATCHES):
            headers = {"Content-Type": "text/csv", "Authorization": "Bearer not-recorded"}
            params = {"round": str(round_)} if i % 4 == 0 else {}
            calls.append((PATHS[(i + round_) % 3], _csv(batch), headers, params))
    calls.append(("/predict/", b"", {}, {}))  # 422: an error answer is replayed too
    calls.append(
        ("/predict/", b"a,b\n1,2\n", {"Content-Type": "text/csv", "X-Request-ID": "r1"}, {})
    )
    with httpx.Client(base_url=url, timeout=30) as client, ThreadPoolExecutor(8) as pool:
        responses = list(
            pool.map(lambda c: client.post(c[0], content=c[1], headers=c[2], params=c[3]), calls)
        )
        assert client.get("/info/").status_code == 200  # not a prediction: not recorded
    assert [r.status_code for r in responses].count(422) == 1
    return len(calls)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch folder shared by the module's servers and reports."""
    return tmp_path_factory.mktemp("replay")


@pytest.fixture(scope="module")
def recording(workdir: Path) -> Path:
    """Traffic recorded from the binary model on Gunicorn with two workers."""
    record_file = workdir / "rec.jsonl"
    code_dir = fixture_dir("binary_hooks", workdir / "recorded")
    env = {
        "MLOPS_RUNTIME_PARAM_CUSTOM_MODEL_WORKERS": "2",
        "DRUM_RECORD_REQUESTS": "true",
        "DRUM_RECORD_SAMPLE_RATE": "1",
        "DRUM_RECORD_FILE": str(record_file),
    }
    with ServerProcess(code_dir, "gunicorn", args=list(BINARY), env=env) as server:
        expected = _record(server.url)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if record_file.exists() and len(record_file.read_text().splitlines()) >= expected:
                break
            time.sleep(0.1)
    assert len(record_file.read_text().splitlines()) == expected
    assert b"not-recorded" not in record_file.read_bytes()
    return record_file


@contextmanager
def _serve(workdir: Path, fixture: str, server_type: str) -> Iterator[ServerProcess]:
    code_dir = fixture_dir(fixture, workdir / f"{fixture}-{server_type}")
    env = {"MLOPS_RUNTIME_PARAM_CUSTOM_MODEL_WORKERS": "2"}
    with ServerProcess(code_dir, server_type, args=list(BINARY), env=env) as server:
        yield server


@pytest.fixture(scope="module")
def baseline(workdir: Path) -> Iterator[ServerProcess]:
    """The recorded model on the Flask development server."""
    with _serve(workdir, "binary_hooks", "flask") as server:
        yield server


@pytest.fixture(scope="module")
def candidate(workdir: Path) -> Iterator[ServerProcess]:
    """The recorded model on FastAPI."""
    with _serve(workdir, "binary_hooks", "fastapi") as server:
        yield server


def _replay(workdir: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    """Run ``tandem replay``; returns (exit status, JSON report, printed output)."""
    report = workdir / f"report-{time.monotonic_ns()}.json"
    proc = subprocess.run(
        [sys.executable, "-m", "tandem", "replay", "--no-progress", "--output", str(report), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.exists(), proc.stdout + proc.stderr
    return proc.returncode, json.loads(report.read_text()), proc.stdout + proc.stderr


def _lines_with(recording: Path, value: int) -> int:
    """Recorded requests whose batch has a row with first column ``value``."""
    count = 0
    for line in recording.read_text().splitlines():
        body = json.loads(line)["request"]["body"]
        rows = body.splitlines()[1:]
        count += any(row.split(",")[0] == str(value) for row in rows)
    return count


def test_replay_against_both_stacks_matches(
    workdir: Path, recording: Path, baseline: ServerProcess, candidate: ServerProcess
) -> None:
    """Same model on Flask and FastAPI: 100 % match, exit 0, JSON and HTML reports."""
    html = workdir / "same.html"
    status, report, out = _replay(
        workdir,
        "--requests", str(recording),
        "--baseline", baseline.url,
        "--candidate", candidate.url,
        "--html", str(html),
        *NO_LATENCY_GATE,
    )  # fmt: skip
    assert status == 0, out
    total = len(recording.read_text().splitlines())
    assert report["totals"]["requests"] == report["totals"]["compared"] == total
    assert report["totals"]["matched"] == total
    assert report["match_rate"] == 100.0
    assert report["passed"] is True
    assert report["totals"]["errors"] == report["totals"]["bad_lines"] == 0
    assert {r["route"] for r in report["routes"]} == {
        "POST /predict/",
        "POST /predictions/",
        "POST /invocations",
    }
    latency = report["latency"]
    for side in ("baseline", "candidate"):
        assert latency[side]["count"] == total
        assert 0 < latency[side]["p50_ms"] <= latency[side]["p95_ms"] <= latency[side]["p99_ms"]
    assert latency["p99_ratio"] > 0
    assert "PASS" in out and "Match rate" in out
    page = html.read_text()
    assert page.startswith("<!DOCTYPE html>") and "PASS" in page
    assert "<script" not in page and "src=" not in page and "<link" not in page


@pytest.mark.parametrize("stack", ["baseline", "candidate"])
def test_replay_against_recorded_responses(
    workdir: Path, recording: Path, stack: str, request: pytest.FixtureRequest
) -> None:
    """Only ``--candidate``: each stack's answers equal the recorded (Gunicorn) ones."""
    server: ServerProcess = request.getfixturevalue(stack)
    status, report, out = _replay(workdir, "--requests", str(recording), "--candidate", server.url)
    assert status == 0, out
    assert report["mode"] == "recording"
    assert report["match_rate"] == 100.0
    assert report["latency"]["baseline"]["source"] == "recorded (server-side)"
    assert report["thresholds"]["latency_checked"] is False


def test_fifth_decimal_change_is_a_difference_unless_tolerated(
    workdir: Path, recording: Path, baseline: ServerProcess
) -> None:
    """One row's probabilities move by 2e-5: reported by default, accepted with a tolerance."""
    with _serve(workdir, "binary_fifth_decimal", "fastapi") as server:
        common = ["--requests", str(recording), "--baseline", baseline.url, "--candidate",
                  server.url, *NO_LATENCY_GATE]  # fmt: skip
        status, report, out = _replay(workdir, *common, "--max-differences", "100")
        assert status == 1, out
        affected = _lines_with(recording, 4)
        assert report["totals"]["body_mismatches"] == affected
        assert report["totals"]["status_mismatches"] == 0
        assert report["match_rate"] < 100
        assert any("match rate" in f for f in report["failures"])
        diffs = report["differences"]
        assert {d["kind"] for d in diffs} == {"body"}
        assert {d["column"] for d in diffs} == {"yes", "no"}
        for d in diffs:
            assert d["where"] == f"predictions[{d['row']}].{d['column']}"
            # Exactly the fifth decimal place moved (by 2 units), in opposite directions.
            shift = d["candidate"] - d["baseline"]
            assert abs(abs(shift) - 2e-5) < 1e-9
            assert (shift > 0) == (d["column"] == "yes")
        # The row named is the row whose first column is 4, in the request named.
        lines = recording.read_text().splitlines()
        for d in diffs:
            line_no = int(d["request"].rsplit(":", 1)[1])
            rows = json.loads(lines[line_no - 1])["request"]["body"].splitlines()[1:]
            assert rows[d["row"]].split(",")[0] == "4"
        assert "predictions[" in out and "yes" in out

        status, report, out = _replay(workdir, *common, "--float-tolerance", "1e-4")
        assert status == 0, out
        assert report["match_rate"] == 100.0
        status, report, out = _replay(workdir, *common, "--significant-digits", "3")
        assert status == 0, out
        status, report, out = _replay(workdir, *common, "--significant-digits", "6")
        assert status == 1, out


def test_changed_status_code_is_reported(
    workdir: Path, recording: Path, baseline: ServerProcess
) -> None:
    """A candidate that fails on some batches: status mismatches, named with both codes."""
    with _serve(workdir, "binary_status_change", "fastapi") as server:
        status, report, out = _replay(
            workdir,
            "--requests", str(recording),
            "--baseline", baseline.url,
            "--candidate", server.url,
            "--max-differences", "100",
            *NO_LATENCY_GATE,
        )  # fmt: skip
        assert status == 1, out
        affected = _lines_with(recording, 7)
        assert affected > 0
        assert report["totals"]["status_mismatches"] == affected
        assert report["totals"]["body_mismatches"] == 0
        total = report["totals"]["compared"]
        assert report["match_rate"] == pytest.approx(100 * (total - affected) / total, abs=1e-3)
        statuses = [d for d in report["differences"] if d["kind"] == "status"]
        assert len(statuses) == affected
        assert {(d["baseline"], d["candidate"]) for d in statuses} == {(200, 500)}
        by_route = {r["route"]: r for r in report["routes"]}
        assert sum(r["status_mismatches"] for r in by_route.values()) == affected


def test_slower_candidate_fails_the_p99_ratio(
    workdir: Path, recording: Path, baseline: ServerProcess
) -> None:
    """Same answers, 0.2 s slower per request: 100 % match, but the default 1.2 ratio fails."""
    with _serve(workdir, "binary_slow", "fastapi") as server:
        status, report, out = _replay(
            workdir,
            "--requests", str(recording),
            "--baseline", baseline.url,
            "--candidate", server.url,
        )  # fmt: skip
        assert status == 1, out
        assert report["match_rate"] == 100.0
        assert report["latency"]["p99_ratio"] > 1.2
        assert report["latency"]["candidate"]["p99_ms"] >= 200
        assert report["failures"] == [
            f"p99 latency ratio {report['latency']['p99_ratio']:g} is above the maximum of 1.2"
        ]
        assert "FAIL" in out


def test_chat_streams_recorded_and_replayed(workdir: Path) -> None:
    """Chat completions, streamed or not: recorded on FastAPI, replayed against Gunicorn.

    A stream is recorded as ``"stream": true`` without its body, and the client still gets the
    whole stream. Replayed against the recording, a stream's body is not compared; replayed
    against a live baseline it is, event by event, with the per-request association ids ignored.
    """
    record_file = workdir / "chat.jsonl"
    env = {
        "TARGET_NAME": "answer",
        "MLOPS_RUNTIME_PARAM_CUSTOM_MODEL_WORKERS": "2",
        "DRUM_RECORD_REQUESTS": "true",
        "DRUM_RECORD_SAMPLE_RATE": "1",
        "DRUM_RECORD_FILE": str(record_file),
    }
    args = ["--target-type", "textgeneration"]
    recorder_dir = fixture_dir("chat_openai_echo", workdir / "chat-recorder")
    other_dir = fixture_dir("chat_openai_echo", workdir / "chat-gunicorn")
    with (
        ServerProcess(recorder_dir, "fastapi", args=args, env=env) as recorder,
        ServerProcess(other_dir, "gunicorn", args=args, env={"TARGET_NAME": "answer"}) as other,
    ):
        with httpx.Client(base_url=recorder.url, timeout=30) as client:
            for i, stream in enumerate([False, True, False, True]):
                body = {"model": "m", "messages": [{"role": "user", "content": f"hello {i}"}]}
                r = client.post("/chat/completions", json={**body, "stream": stream})
                assert r.status_code == 200
                if stream:
                    assert r.text.endswith("data: [DONE]\n\n") and f"{i}" in r.text
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if record_file.exists() and len(record_file.read_text().splitlines()) == 4:
                break
            time.sleep(0.1)
        # The recording server is also a replay baseline below (and records that traffic too).
        recorded = workdir / "chat-recorded.jsonl"
        recorded.write_bytes(record_file.read_bytes())
        docs = [json.loads(line) for line in recorded.read_text().splitlines()]
        assert len(docs) == 4
        assert [d["response"]["stream"] for d in docs].count(True) == 2
        for doc in docs:
            assert doc["route"] == "chat"
            if doc["response"]["stream"]:
                assert doc["response"]["body"] is None
                assert doc["response"]["content_type"].startswith("text/event-stream")

        status, report, out = _replay(
            workdir, "--requests", str(recorded), "--candidate", other.url
        )
        assert status == 0, out
        assert report["totals"]["bodies_not_compared"] == 2
        assert report["match_rate"] == 100.0

        status, report, out = _replay(
            workdir,
            "--requests", str(recorded),
            "--baseline", recorder.url,
            "--candidate", other.url,
            *NO_LATENCY_GATE,
        )  # fmt: skip
        assert status == 0, out
        assert report["totals"]["bodies_not_compared"] == 0
        assert report["match_rate"] == 100.0
        # Without the default ignore, the association ids differ in every answer.
        status, report, out = _replay(
            workdir,
            "--requests", str(recorded),
            "--baseline", recorder.url,
            "--candidate", other.url,
            "--compare-field", "datarobot_association_id",
            *NO_LATENCY_GATE,
        )  # fmt: skip
        assert status == 1, out
        assert report["totals"]["body_mismatches"] == 4
        assert {d["column"] for d in report["differences"]} == {"datarobot_association_id"}
