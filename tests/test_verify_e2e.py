"""End-to-end: ``tandem verify`` against real servers of every stack on 127.0.0.1.

Verification must pass on healthy servers and fail, naming the right item, on a broken
``/health/``, the wrong stack, failing predictions, a missing extension route and errors of the
other stack in the log.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import EXAMPLES, SERVER_TYPES, fixture_dir, free_port, running

pytestmark = pytest.mark.e2e

FRAMEWORK = {"flask": "flask", "gunicorn": "flask", "fastapi": "fastapi"}
OTHER = {"flask": "fastapi", "gunicorn": "fastapi", "fastapi": "flask"}
REGRESSION_ARGS = ["--target-type", "regression"]


def tandem(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run the ``tandem`` CLI in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "tandem", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def verify(url: str, *args: str) -> tuple[int, dict[str, Any]]:
    """``tandem verify URL --json ARGS``: exit status and the parsed report."""
    proc = tandem("verify", url, "--json", *args)
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"not JSON:\n{proc.stdout}\n{proc.stderr}") from None
    return proc.returncode, report


def statuses(report: dict[str, Any]) -> dict[str, str]:
    """Item name -> pass/fail/skip."""
    return {check["name"]: check["status"] for check in report["checks"]}


def item(report: dict[str, Any], name: str) -> dict[str, Any]:
    """One item of a report."""
    return next(check for check in report["checks"] if check["name"] == name)


def copy_example(name: str, dest: Path) -> Path:
    """A fresh copy of ``examples/<name>``."""
    target = dest / name
    shutil.copytree(EXAMPLES / name, target)
    return target


@pytest.mark.parametrize("server_type", SERVER_TYPES)
def test_verify_passes_on_a_healthy_server(tmp_path: Path, server_type: str) -> None:
    code_dir = copy_example("regression", tmp_path)
    expected = tmp_path / "expected.json"
    scored = tandem(
        "score",
        "--code-dir",
        str(code_dir),
        "--target-type",
        "regression",
        "--input",
        str(code_dir / "data.csv"),
        "--output",
        str(expected),
    )
    assert scored.returncode == 0, scored.stderr
    with running(code_dir, server_type, args=REGRESSION_ARGS) as server:
        code, report = verify(
            server.url,
            "--expect-server",
            server_type if server_type == "gunicorn" else FRAMEWORK[server_type],
            "--log-file",
            str(server.log_path),
            "--code-dir",
            str(code_dir),
            "--expected",
            str(expected),
            "--full",
            "--load-seconds",
            "1",
        )
        assert code == 0, json.dumps(report, indent=2)
        assert report["ok"] is True and report["failed"] == []
        got = statuses(report)
        for name in (
            "ping",
            "health",
            "info",
            "logs",
            "predict_single",
            "predict_batch",
            "expected_output",
            "stats",
            "metrics",
            "load_test",
            "model:regression",
        ):
            assert got[name] == "pass", item(report, name)
        assert [c["group"] for c in report["checks"]][:4] == ["Immediate"] * 4
        assert item(report, "predict_batch")["data"]["rows"] == 5
        load = item(report, "load_test")["data"]
        assert load["requests"] > 0 and load["errors"] == 0 and load["p99_ms"] is not None
        traces = item(report, "traces")
        assert traces["status"] == "skip"
        assert "tracing not configured" in traces["observed"]

        # The same server checked against the other stack: the wrong stack is named.
        code, report = verify(
            server.url, "--expect-server", OTHER[server_type], "--log-file", str(server.log_path)
        )
        assert code == 1
        assert set(report["failed"]) == {"info", "logs"}
        assert "expected" in item(report, "info")["observed"]


def test_human_output_and_python_api(tmp_path: Path) -> None:
    from tandem.ops.verify import Status, VerifyOptions, run_checks, verify_for_controller

    code_dir = copy_example("regression", tmp_path)
    with running(code_dir, "fastapi", args=REGRESSION_ARGS) as server:
        proc = tandem(
            "verify", server.url, "--expect-server", "fastapi", "--log-file", str(server.log_path)
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        for text in (
            "Immediate checks",
            "Functional checks",
            "PASS",
            "/ping returns 200",
            "single-row prediction succeeds",
            "Verification PASSED",
        ):
            assert text in proc.stdout, proc.stdout

        report = run_checks(server.url + "/", VerifyOptions(expect_server="uvicorn", code_dirs=[]))
        assert report.ok, report.to_dict()
        assert report.url == server.url
        info, single = report.check("info"), report.check("predict_single")
        assert info is not None and info.status is Status.PASS
        # The server's own code dir (named by /info/) provided the sample data.
        assert single is not None and "code dir from /info/" in single.data["source"]

        # The rollout controller's entry point.
        result = verify_for_controller(server.url, expect_server="fastapi", code_dir=code_dir)
        assert result["passed"] is True and result["summary"] == "all checks passed"
        assert {"name": "ping", "passed": True}.items() <= result["items"][0].items()
        result = verify_for_controller(server.url, expect_server="flask", code_dir=code_dir)
        assert result["passed"] is False and result["summary"] == "failed: info"


@pytest.mark.parametrize("server_type", ["flask", "fastapi"])
def test_broken_health_is_named(tmp_path: Path, server_type: str) -> None:
    code_dir = fixture_dir("broken_health", tmp_path)
    with running(code_dir, server_type, args=REGRESSION_ARGS) as server:
        code, report = verify(
            server.url, "--expect-server", server_type, "--log-file", str(server.log_path)
        )
    assert code == 1
    assert report["failed"] == ["health"]
    assert item(report, "health")["observed"].startswith("500")
    assert item(report, "ping")["status"] == "pass"


def test_failing_predictions_are_named(tmp_path: Path) -> None:
    code_dir = fixture_dir("raising", tmp_path)
    payload = tmp_path / "rows.csv"
    payload.write_text("a,b\n1,2\n3,4\n5,6\n")
    with running(code_dir, "fastapi", args=REGRESSION_ARGS) as server:
        code, report = verify(server.url, "--expect-server", "fastapi", "--payload", str(payload))
        assert code == 1
        assert set(report["failed"]) == {"predict_single", "predict_batch"}
        assert "500" in item(report, "predict_single")["observed"]
        assert "boom happened" in item(report, "predict_single")["observed"]
        # The 500s were counted: the metrics item still passes.
        assert item(report, "metrics")["status"] == "pass"

        # With --full the load test fails too (every request answers 500).
        code, report = verify(
            server.url, "--payload", str(payload), "--full", "--load-seconds", "0.5"
        )
        assert code == 1
        assert {"predict_single", "predict_batch", "load_test"} <= set(report["failed"])
        assert "500" in item(report, "load_test")["observed"]


def test_missing_sample_data_fails_with_a_clear_message(tmp_path: Path) -> None:
    code_dir = fixture_dir("regression_hooks", tmp_path)
    with running(code_dir, "flask", args=REGRESSION_ARGS) as server:
        code, report = verify(server.url, "--code-dir", str(code_dir))
    assert code == 1
    assert set(report["failed"]) == {"predict_single", "predict_batch"}
    observed = item(report, "predict_single")["observed"]
    assert "no sample data" in observed and "--payload" in observed


@pytest.mark.parametrize("server_type", ["gunicorn", "fastapi"])
def test_missing_extension_route_is_named(tmp_path: Path, server_type: str) -> None:
    code_dir = fixture_dir("extension_routes", tmp_path)
    with running(code_dir, server_type, args=REGRESSION_ARGS) as server:
        code, report = verify(
            server.url,
            "--full",
            "--load-seconds",
            "0.5",
            "--extension-route",
            "/custom/hello=200",
            "--extension-route",
            "/custom/missing=200",
        )
    assert code == 1
    assert report["failed"] == ["extension_route:/custom/missing"]
    assert item(report, "extension_route:/custom/hello")["status"] == "pass"
    assert "404" in item(report, "extension_route:/custom/missing")["observed"]


def test_headers_are_sent_with_every_request(tmp_path: Path) -> None:
    code_dir = copy_example("extension_auth", tmp_path)
    env = {"MLOPS_RUNTIME_PARAM_EXAMPLE_AUTH_TOKEN": "s3cret"}
    with running(code_dir, "fastapi", args=REGRESSION_ARGS, env=env) as server:
        code, report = verify(server.url, "--code-dir", str(code_dir))
        assert code == 1
        assert "info" in report["failed"] and "401" in item(report, "info")["observed"]
        code, report = verify(
            server.url,
            "--header",
            "X-Auth: s3cret",
            "--code-dir",
            str(code_dir),
            "--full",
            "--load-seconds",
            "0.5",
            "--extension-route",
            "/info/=200",
        )
        assert code == 0, json.dumps(report, indent=2)


def test_every_model_type_answers_on_its_route(tmp_path: Path) -> None:
    regression = copy_example("regression", tmp_path)
    unstructured = copy_example("unstructured", tmp_path)
    transform = copy_example("transform", tmp_path)
    with (
        running(regression, "flask", args=REGRESSION_ARGS) as main,
        running(unstructured, "flask") as text_server,
        running(transform, "flask") as transform_server,
    ):
        code, report = verify(
            main.url,
            "--expect-server",
            "flask",
            "--full",
            "--load-seconds",
            "0.5",
            "--code-dir",
            str(regression),
            "--code-dir",
            f"{unstructured}={text_server.url}",
            "--code-dir",
            f"{transform}={transform_server.url}",
        )
        assert code == 0, json.dumps(report, indent=2)
        assert "/predictUnstructured/" in item(report, "model:unstructured")["observed"]
        assert "/transform/" in item(report, "model:transform")["observed"]
        assert "targetType=regression" in item(report, "model:regression")["observed"]

        # A code dir checked against a server of another target type is named.
        code, report = verify(
            main.url, "--full", "--load-seconds", "0.5", "--code-dir", f"{transform}={main.url}"
        )
        assert code == 1
        assert "model:transform" in report["failed"]

        # An unstructured server verified directly: one request, batch not applicable.
        code, report = verify(text_server.url, "--expect-server", "flask")
        assert code == 0, json.dumps(report, indent=2)
        assert "/predictUnstructured/" in item(report, "predict_single")["observed"]
        assert item(report, "predict_batch")["status"] == "skip"


def test_expected_output_mismatch_is_named(tmp_path: Path) -> None:
    code_dir = copy_example("regression", tmp_path)
    scored = tmp_path / "expected.csv"
    proc = tandem(
        "score",
        "--code-dir",
        str(code_dir),
        "--target-type",
        "regression",
        "--input",
        str(code_dir / "data.csv"),
        "--output",
        str(scored),
    )
    assert proc.returncode == 0, proc.stderr
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"predictions": [1.0, 2.0, 3.0, 4.0, 5.0]}))
    with running(code_dir, "gunicorn", args=REGRESSION_ARGS) as server:
        code, report = verify(server.url, "--code-dir", str(code_dir), "--expected", str(scored))
        assert code == 0, json.dumps(report, indent=2)
        assert item(report, "expected_output")["status"] == "pass"
        code, report = verify(server.url, "--code-dir", str(code_dir), "--expected", str(wrong))
        assert code == 1
        assert report["failed"] == ["expected_output"]
        assert "row 0" in item(report, "expected_output")["observed"]


def test_other_stack_errors_in_the_log_are_named(tmp_path: Path) -> None:
    code_dir = copy_example("regression", tmp_path)
    with running(code_dir, "flask", args=REGRESSION_ARGS) as server:
        original = server.log_path.read_text()
        # Errors of the server that ran before the last start are ignored.
        before = tmp_path / "before.log"
        before.write_text(
            "2026-01-01 00:00:00,000 ERROR uvicorn.error: Exception in ASGI application\n"
            + original
        )
        code, report = verify(server.url, "--expect-server", "flask", "--log-file", str(before))
        assert code == 0, json.dumps(report, indent=2)
        after = tmp_path / "after.log"
        after.write_text(
            original
            + "2026-01-01 00:00:01,000 ERROR uvicorn.error: Exception in ASGI application\n"
        )
        code, report = verify(server.url, "--expect-server", "flask", "--log-file", str(after))
        assert code == 1
        assert report["failed"] == ["logs"]
        assert "FastAPI/Uvicorn error" in item(report, "logs")["observed"]
        traceback = tmp_path / "traceback.log"
        traceback.write_text(
            original
            + "Traceback (most recent call last):\n"
            + '  File "custom.py", line 9, in score\n'
            + "ValueError: boom happened\n"
        )
        code, report = verify(server.url, "--log-file", str(traceback))
        assert code == 1
        assert report["failed"] == ["logs"]
        observed = item(report, "logs")["observed"]
        assert "1 traceback(s)" in observed and "ValueError: boom happened" in observed


def test_traces_item(tmp_path: Path) -> None:
    from tests.otlp_receiver import OtlpReceiver

    code_dir = copy_example("regression", tmp_path)
    with running(code_dir, "fastapi", args=REGRESSION_ARGS) as server:
        code, report = verify(server.url, "--require-traces")
        assert code == 1
        assert report["failed"] == ["traces"]
    with OtlpReceiver() as receiver:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "50",
            "OTEL_SDK_DISABLED": "",
            "OTEL_TRACES_EXPORTER": "otlp",
        }
        with running(code_dir, "fastapi", args=REGRESSION_ARGS, env=env) as server:
            code, report = verify(server.url, "--require-traces")
            assert code == 0, json.dumps(report, indent=2)
            traces = item(report, "traces")
            assert traces["status"] == "pass"
            assert traces["data"]["spans_exported"] > 0
            assert traces["data"]["export_failures"] == 0


def test_unreachable_server_fails_fast() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, report = verify(url, "--expect-server", "flask", "--timeout", "2")
    assert code == 1
    assert {"ping", "health", "info"} <= set(report["failed"])
    with pytest.raises(httpx.HTTPError):
        httpx.get(url + "/ping", timeout=1)
