"""Issue 10, drop-in for `drum server` users: start-up refusals on every stack.

The working paths (deployment-config responses, task interfaces) are conformance cases, which the
end-to-end tier runs against every stack; this file holds what stops a server from starting.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support import SERVER_TYPES, ServerProcess, fixture_dir

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("server_type", SERVER_TYPES)
def test_unreadable_deployment_config_stops_start_up(tmp_path: Path, server_type: str) -> None:
    code_dir = fixture_dir("regression_hooks", tmp_path)
    config = tmp_path / "deployment.json"
    config.write_text("{not json")
    server = ServerProcess(
        code_dir,
        server_type,
        args=["--target-type", "regression", "--deployment-config", str(config)],
    )
    with pytest.raises(RuntimeError, match="exited with 1"):
        server.start()
    assert f"Failed to parse deployment config json file '{config}'" in server.logs()


@pytest.mark.parametrize("server_type", SERVER_TYPES)
def test_dr_api_access_configures_datarobots_client(tmp_path: Path, server_type: str) -> None:
    """DRUM calls datarobot.Client(token, endpoint + /api/v2) before loading the model."""
    code_dir = fixture_dir("dr_api_env", tmp_path)
    fake = tmp_path / "site"
    fake.mkdir()
    # A stand-in for DataRobot's client package that records how it was configured.
    (fake / "datarobot.py").write_text("CALLS = []\n\ndef Client(**kw):\n    CALLS.append(kw)\n")
    token = "tok-e2e-7f3a"
    server = ServerProcess(
        code_dir,
        server_type,
        args=["--target-type", "unstructured", "--allow-dr-api-access"],
        env={
            "PYTHONPATH": str(fake),
            "EXTERNAL_WEB_SERVER_URL": "https://dr.example",
            "API_TOKEN": token,
        },
    )
    with server:
        r = httpx.post(server.url + "/predictUnstructured/", content=b"x")
        assert r.status_code == 200, r.text
        assert r.json() == {
            "endpoint": "https://dr.example/api/v2",
            "token_set": True,
            "client_calls": [{"token": token, "endpoint": "https://dr.example/api/v2"}],
        }
        info = httpx.get(server.url + "/info/").text
    assert token not in info
    assert token not in server.logs()
