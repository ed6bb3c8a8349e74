"""``tandem server --runtime-params-file`` on every stack: what the model's RuntimeParameters see.

The model (tests/runtime_params_support.py) answers with ``RuntimeParameters.has/get`` for each
parameter and the raw ``MLOPS_RUNTIME_PARAM_*`` variables; the expected answer is DRUM 1.18.1's,
recorded in tests/fixtures/drum_answers/runtime_params_file.json.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.runtime_params_support import build_model, load_recording
from tests.support import SERVER_TYPES, ServerProcess, free_port

pytestmark = pytest.mark.e2e

SECRET = "fake/secret+key"


@pytest.mark.parametrize("server_type", SERVER_TYPES)
def test_model_gets_drums_values(tmp_path: Path, server_type: str) -> None:
    code_dir, values_file = build_model(tmp_path)
    args = ["--target-type", "unstructured", "--runtime-params-file", str(values_file)]
    if server_type != "flask":
        args += ["--max-workers", "2"]  # every worker process inherits the variables
    server = ServerProcess(code_dir, server_type, args=args)
    with server:
        answers = [
            httpx.post(server.url + "/predictionsUnstructured/", content=b"x", timeout=30)
            for _ in range(6)
        ]
    recorded = load_recording()["answer"]
    for response in answers:
        assert response.status_code == 200, response.text
        assert response.json() == recorded
    got = answers[0].json()["get"]
    assert got["STR"] == {"has": True, "type": "str", "value": "hello, wörld"}
    assert got["NUM_INT"] == {"has": True, "type": "int", "value": 42}
    assert got["NUM_FLOAT"] == {"has": True, "type": "float", "value": 2.5}
    assert got["BOOL"] == {"has": True, "type": "bool", "value": False}
    assert got["CRED"]["value"] == {
        "credentialType": "s3",
        "awsAccessKeyId": "AKIAEXAMPLENOTREAL",
        "awsSecretAccessKey": SECRET,
        "awsSessionToken": None,
    }
    assert got["DEFAULT_STR"] == {"has": True, "type": "str", "value": "from the definitions"}
    assert got["DEFAULT_NUM"] == {"has": True, "type": "int", "value": 3}
    assert got["DEFAULT_BOOL"] == {"has": True, "type": "bool", "value": True}
    assert got["NO_VALUE"] == {"has": True, "type": "NoneType", "value": None}
    assert got["NOT_DECLARED"]["has"] is False
    logs = server.logs()
    assert "runtime parameters from" in logs
    assert "NOT_DECLARED not declared in model-metadata.yaml" in logs
    assert SECRET not in logs


@pytest.mark.parametrize("server_type", SERVER_TYPES)
def test_bad_yaml_stops_start_up(tmp_path: Path, server_type: str) -> None:
    recorded = load_recording()["bad_yaml"]
    code_dir, values_file = build_model(tmp_path, values=recorded["values"])
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MLOPS_RUNTIME_PARAM_") and k not in ("DRUM_SERVER_TYPE",)
    }
    env["MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE"] = server_type
    proc = subprocess.run(
        [sys.executable, "-m", "tandem", "server", "--code-dir", str(code_dir)]
        + ["--address", f"127.0.0.1:{free_port()}", "--runtime-params-file", str(values_file)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == recorded["exit_code"] == 1
    assert proc.stdout == ""
    message = recorded["message"].format(values_file=values_file.resolve())
    assert proc.stderr == f"tandem: error: {message}\n"
