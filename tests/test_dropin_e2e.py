"""Issue 10, drop-in for `drum server` users: start-up refusals on every stack.

The working paths (deployment-config responses, task interfaces) are conformance cases, which the
end-to-end tier runs against every stack; this file holds what stops a server from starting.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support import SERVER_TYPES, ServerProcess, build_sklearn_artifact, fixture_dir

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


@pytest.mark.parametrize("server_type", SERVER_TYPES)
def test_lazy_loading_puts_the_artifact_in_place_before_load(
    tmp_path: Path, server_type: str
) -> None:
    """The code dir ships no artifact; --lazy-loading-file fetches it from a file:// repository."""
    built = build_sklearn_artifact(tmp_path / "built", "regression")
    store = tmp_path / "store" / "bucket" / "models"
    store.mkdir(parents=True)
    (built / "model.pkl").rename(store / "model.pkl")
    code_dir = tmp_path / "code"
    code_dir.mkdir()
    lazy = tmp_path / "lazy.yaml"
    lazy.write_text(
        yaml.safe_dump(
            {
                "files": [
                    {
                        "remotePath": "models/model.pkl",
                        "localPath": str(code_dir / "model.pkl"),
                        "repositoryId": "local",
                    }
                ],
                "repositories": [
                    {
                        "repositoryId": "local",
                        "bucketName": "bucket",
                        "credentialId": "none",
                        "endpointUrl": (tmp_path / "store").as_uri(),
                    }
                ],
                "credentials": [],
            }
        )
    )
    server = ServerProcess(
        code_dir,
        server_type,
        args=["--target-type", "regression", "--lazy-loading-file", str(lazy)],
    )
    with server:
        r = httpx.post(
            server.url + "/predict/",
            content=b"a,b,c\n1,2,3\n",
            headers={"Content-Type": "text/csv"},
        )
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 1
    assert (code_dir / "model.pkl").read_bytes() == (store / "model.pkl").read_bytes()


SECRET_TASK = """\
import pandas as pd

from datarobot_drum.custom_task_interfaces import RegressionEstimatorInterface


class CustomTask(RegressionEstimatorInterface):
    def fit(self, X, y, **kwargs):
        return self

    def predict(self, X, **kwargs):
        token = self.secrets["API"].api_token
        db = self.secrets["DB"]
        print(f"scoring with {token} as {db.username}:{db.password}", flush=True)
        return pd.DataFrame({"Predictions": [float(len(token) + len(db.password))] * len(X)})
"""
SAVE_TASK = (
    "import sys, _tandem_drum, pandas as pd; sys.path.insert(0, '.'); "
    "from custom import CustomTask; "
    "CustomTask().fit(pd.DataFrame({'a': [1.0]}), pd.Series([1.0])).save('.')"
)


@pytest.mark.parametrize("server_type", SERVER_TYPES)
def test_user_secrets_reach_a_custom_task_and_no_log(tmp_path: Path, server_type: str) -> None:
    """A mounted secret file and a prefixed variable, as DRUM reads them; values never leak."""
    code_dir = tmp_path / "task"
    code_dir.mkdir()
    (code_dir / "custom.py").write_text(SECRET_TASK)
    subprocess.run([sys.executable, "-c", SAVE_TASK], cwd=code_dir, check=True, timeout=120)
    mount = tmp_path / "secrets"
    mount.mkdir()
    password = "pw-9c1e2b"  # 9 characters
    (mount / "DB").write_text(
        json.dumps({"credential_type": "basic", "username": "svc", "password": password})
    )
    token = "tok-5d8a7f0b"  # 12 characters
    server = ServerProcess(
        code_dir,
        server_type,
        args=["--target-type", "regression", "--user-secrets-mount-path", str(mount)],
        env={
            "USER_SECRETS_PREFIX": "MYSECRETS",
            "MYSECRETS_API": json.dumps({"credential_type": "api_token", "api_token": token}),
        },
    )
    with server:
        r = httpx.post(
            server.url + "/predict/", content=b"a\n1\n2\n", headers={"Content-Type": "text/csv"}
        )
        assert r.status_code == 200, r.text
        assert r.json() == {"predictions": [21.0, 21.0]}
        seen = httpx.get(server.url + "/info/").text + httpx.get(server.url + "/stats/").text
    logs = server.logs()
    assert "scoring with" in logs  # the model's print reached the log...
    for secret in (token, password):  # ...with the secret values scrubbed, as DRUM scrubs them
        assert secret not in logs
        assert secret not in seen
