"""End-to-end: ``tandem rollback`` flips a real server, started from an env file, to Flask.

The deployment under test is a shell script that does what a supervisor would: stop the running
server (pid file), source the env file and start ``tandem server`` in the background.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tandem.ops import stack_from_info
from tests.kube_api import RecordedApiServer, load, write_kubeconfig
from tests.support import EXAMPLES, free_port, running

pytestmark = pytest.mark.e2e

ENV_TEMPLATE = """\
# Model server settings, read by restart.sh with `set -a; . drum.env`.
# DRUM_SERVER_TYPE=gunicorn was tried in March; see the runbook.
TARGET_TYPE=regression

MLOPS_RUNTIME_PARAM_EXAMPLE_NOTE='{"type": "string", "payload": "keep me"}'
MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE=fastapi
export EXTRA_SETTING="a value with spaces"   # trailing comment
"""

RESTART_SCRIPT = """\
#!/bin/sh
# Restart the model server: stop the old one (pid file), start a new one from drum.env.
set -eu
DIR=$(cd "$(dirname "$0")" && pwd)
PIDFILE="$DIR/server.pid"
if [ -f "$PIDFILE" ]; then
  PID=$(cat "$PIDFILE")
  kill -TERM -- "-$PID" 2>/dev/null || kill -TERM "$PID" 2>/dev/null || true
  i=0
  while kill -0 "$PID" 2>/dev/null; do
    [ "$(ps -o stat= -p "$PID" 2>/dev/null | cut -c1)" = "Z" ] && break
    i=$((i + 1))
    [ "$i" -eq 100 ] && { kill -KILL -- "-$PID" 2>/dev/null || true; }
    [ "$i" -gt 200 ] && break
    sleep 0.1
  done
  rm -f "$PIDFILE"
fi
set -a
. "$DIR/drum.env"
set +a
setsid {python} -m tandem server --code-dir "$DIR/regression" --address 127.0.0.1:{port} \\
  --logging-level info >>"$DIR/server.log" 2>&1 </dev/null &
echo $! >"$PIDFILE"
"""

KUBERNETES_DRY_RUN = (
    "Rollback to flask (DRUM_SERVER_TYPE=flask)\n"
    "Target:  Kubernetes deployment/churn-model in namespace models (ConfigMap drum-config, key "
    "DRUM_SERVER_TYPE)\n"
    "Current: fastapi ({url}/info/ reports drumServer=fastapi, processServer=uvicorn)\n"
    "Will send to the Kubernetes API (context recorded), as "
    "application/strategic-merge-patch+json:\n"
    "  PATCH /api/v1/namespaces/models/configmaps/drum-config?fieldManager=tandem\n"
    '    {{"data": {{"DRUM_SERVER_TYPE": "{{\\"type\\": \\"string\\", \\"payload\\": '
    '\\"flask\\"}}"}}}}\n'
    "  PATCH /apis/apps/v1/namespaces/models/deployments/churn-model?fieldManager=tandem\n"
    '    {{"spec": {{"template": {{"metadata": {{"annotations": '
    '{{"kubectl.kubernetes.io/restartedAt": "<now>"}}}}}}}}}}\n'
    "  and wait until deployment/churn-model has rolled out (as kubectl rollout status does; "
    "up to 300 s).\n"
    "  The restart's restartedAt is stamped when it is sent. The Deployment is read just "
    "before:\n"
    "  if its pod template has the label tandem-server-type (as `tandem export kubernetes` "
    "writes it, for up's server_type), the same patch also sets it:\n"
    '    {{"spec": {{"template": {{"metadata": {{"labels": '
    '{{"tandem-server-type": "flask"}}}}}}}}}}\n'
    "  and if it has the annotation tandem-config-sha256, sets that to the digest of the "
    "ConfigMap's new data.\n"
    "Then: wait for {url}/readyz and /ping (up to 300 s), and verify:\n"
    "  tandem verify {url} --expect-server flask\n"
    "Dry run: nothing was changed.\n"
)

#: The Kubernetes target of the recorded exchanges (tests/fixtures/kube_exchanges).
KUBE_TARGET = (
    "--kubernetes",
    "--namespace",
    "models",
    "--configmap",
    "drum-config",
    "--deployment",
    "churn-model",
)


def stamped(text: str) -> str:
    """``text`` with each restart timestamp (RFC 3339, UTC, within a minute) as ``<now>``."""

    def check(match: re.Match[str]) -> str:
        sent = datetime.strptime(match.group(2), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert abs((datetime.now(UTC) - sent).total_seconds()) < 60, match.group(0)
        return f"{match.group(1)}<now>"

    pattern = r'("kubectl\.kubernetes\.io/restartedAt": ")(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)'
    return re.sub(pattern, check, text)


def tandem(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the ``tandem`` CLI with no terminal on stdin."""
    return subprocess.run(
        [sys.executable, "-m", "tandem", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@dataclass
class Deployment:
    """A server managed through ``drum.env`` and ``restart.sh`` in one directory."""

    root: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env_file(self) -> Path:
        return self.root / "drum.env"

    @property
    def restart_cmd(self) -> str:
        return f"sh {self.root / 'restart.sh'}"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def info(self) -> dict[str, str]:
        return dict(httpx.get(self.url + "/info/", timeout=5).json())

    def wait(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/ping", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not start:\n{self.log.read_text(errors='replace')}")

    def stop(self) -> None:
        pidfile = self.root / "server.pid"
        if not pidfile.exists():
            return
        pid = int(pidfile.read_text())
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    os.killpg(pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.1)


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    """A regression model running on fastapi, started by ``restart.sh`` from ``drum.env``."""
    shutil.copytree(EXAMPLES / "regression", tmp_path / "regression")
    port = free_port()
    (tmp_path / "drum.env").write_text(ENV_TEMPLATE)
    script = RESTART_SCRIPT.replace("{python}", sys.executable).replace("{port}", str(port))
    (tmp_path / "restart.sh").write_text(script)
    dep = Deployment(tmp_path, port)
    try:
        subprocess.run(["sh", str(tmp_path / "restart.sh")], check=True, timeout=60)
        dep.wait()
        yield dep
    finally:
        dep.stop()


def backups(dep: Deployment) -> list[Path]:
    return sorted(dep.root.glob("drum.env.bak-*"))


def test_env_file_rollback_flips_fastapi_to_flask(deployment: Deployment) -> None:
    dep = deployment
    assert dep.info()["drumServer"] == "fastapi"
    original = dep.env_file.read_bytes()

    proc = tandem(
        "rollback",
        "--to",
        "flask",
        "--env-file",
        str(dep.env_file),
        "--restart-cmd",
        dep.restart_cmd,
        "--yes",
        "--url",
        dep.url,
        "--log-file",
        str(dep.log),
        "--code-dir",
        str(dep.root / "regression"),
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    # Explained before acting: the current stack, the diff and the restart command.
    assert "Current: fastapi (MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE=fastapi on line 6" in out
    assert (
        "-MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE=fastapi\n"
        "+MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE=flask\n"
    ) in out
    assert out.index("Will run:") < out.index("Changed ")
    assert "Time to recovery: " in out
    assert "Verification PASSED" in out
    assert "Rollback to flask verified" in out

    info = dep.info()
    assert (info["drumServer"], info["processServer"]) == ("flask", "werkzeug")
    assert "Starting Flask server" in dep.log.read_text()

    (backup,) = backups(dep)
    assert backup.read_bytes() == original
    old_lines = original.decode().splitlines(keepends=True)
    new_lines = dep.env_file.read_bytes().decode().splitlines(keepends=True)
    assert len(new_lines) == len(old_lines)
    for old, new in zip(old_lines, new_lines, strict=True):
        if old.startswith("MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE="):
            assert new == "MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE=flask\n"
        else:
            assert new == old

    # Already on flask: refused, nothing touched.
    proc = tandem(
        "rollback",
        "--to",
        "flask",
        "--env-file",
        str(dep.env_file),
        "--restart-cmd",
        dep.restart_cmd,
        "--yes",
        "--url",
        dep.url,
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "already runs flask" in proc.stdout
    assert len(backups(dep)) == 1
    assert dep.info()["drumServer"] == "flask"

    # No terminal and no --yes: the plan is explained, then refused; nothing touched.
    before = dep.env_file.read_bytes()
    proc = tandem(
        "rollback",
        "--to",
        "fastapi",
        "--env-file",
        str(dep.env_file),
        "--restart-cmd",
        dep.restart_cmd,
        "--url",
        dep.url,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "+MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE=fastapi" in proc.stdout
    assert "stdin is not a terminal" in proc.stderr and "--yes" in proc.stderr
    assert dep.env_file.read_bytes() == before
    assert len(backups(dep)) == 1
    assert dep.info()["drumServer"] == "flask"

    # A dry run prints the diff and changes nothing.
    proc = tandem(
        "rollback",
        "--to",
        "gunicorn",
        "--env-file",
        str(dep.env_file),
        "--restart-cmd",
        dep.restart_cmd,
        "--url",
        dep.url,
        "--dry-run",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    diff = (
        f"--- {dep.env_file}\n+++ {dep.env_file}\n@@ -5,3 +5,3 @@\n"
        ' MLOPS_RUNTIME_PARAM_EXAMPLE_NOTE=\'{"type": "string", "payload": "keep me"}\'\n'
        "-MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE=flask\n"
        "+MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE=gunicorn\n"
        ' export EXTRA_SETTING="a value with spaces"   # trailing comment\n'
    )
    assert diff in proc.stdout
    assert f"  {dep.restart_cmd}\n" in proc.stdout
    assert proc.stdout.endswith("Dry run: nothing was changed.\n")
    assert dep.env_file.read_bytes() == before
    assert len(backups(dep)) == 1


def test_failed_restart_is_reported(tmp_path: Path) -> None:
    env = tmp_path / "drum.env"
    env.write_text("DRUM_SERVER_TYPE=fastapi\n")
    proc = tandem(
        "rollback",
        "--to",
        "flask",
        "--env-file",
        str(env),
        "--restart-cmd",
        "exit 7",
        "--yes",
        "--url",
        f"http://127.0.0.1:{free_port()}",
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "restart failed" in proc.stdout and "status 7" in proc.stdout
    assert env.read_text() == "DRUM_SERVER_TYPE=flask\n"
    (backup,) = tmp_path.glob("drum.env.bak-*")
    assert backup.read_text() == "DRUM_SERVER_TYPE=fastapi\n"
    assert str(backup) in proc.stdout


def test_kubernetes_dry_run_prints_the_exact_patches_and_sends_nothing(tmp_path: Path) -> None:
    code_dir = tmp_path / "regression"
    shutil.copytree(EXAMPLES / "regression", code_dir)
    with RecordedApiServer(load("dry_run")) as api:
        config = str(write_kubeconfig(tmp_path / "kubeconfig", api.url))
        with running(code_dir, "fastapi", args=["--target-type", "regression"]) as server:
            proc = tandem(
                "rollback",
                "--to",
                "flask",
                *KUBE_TARGET,
                "--kubeconfig",
                config,
                "--context",
                "recorded",
                "--url",
                server.url,
                "--dry-run",
            )
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert stamped(proc.stdout) == KUBERNETES_DRY_RUN.format(url=server.url)

        with running(code_dir, "flask", args=["--target-type", "regression"]) as server:
            for extra in (["--dry-run"], ["--yes"]):
                proc = tandem(
                    "rollback",
                    "--to",
                    "flask",
                    *KUBE_TARGET,
                    "--kubeconfig",
                    config,
                    "--url",
                    server.url,
                    "--kubectl",
                    str(tmp_path / "no-such-kubectl"),
                    *extra,
                )
                assert proc.returncode == 3, proc.stdout + proc.stderr
                assert "Refusing: the target already runs flask" in proc.stdout
                assert "PATCH" not in proc.stdout
                assert "--kubectl is ignored" in proc.stderr
        api.assert_complete()
    # Not one request reached the API server: no read, no patch.
    assert api.served == []


def test_kubernetes_dry_run_without_a_server() -> None:
    proc = tandem(
        "rollback",
        "--to",
        "gunicorn",
        "--kubernetes",
        "--namespace",
        "prod",
        "--configmap",
        "drum",
        "--deployment",
        "model",
        "--configmap-key",
        "MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE",
        "--context",
        "prod-eu",
        "--rollout-timeout",
        "120",
        "--dry-run",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert stamped(proc.stdout) == (
        "Rollback to gunicorn (DRUM_SERVER_TYPE=gunicorn)\n"
        "Target:  Kubernetes deployment/model in namespace prod (ConfigMap drum, key "
        "MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE)\n"
        "Current: unknown (no --url given; a dry run contacts no cluster)\n"
        "Will send to the Kubernetes API (context prod-eu), as "
        "application/strategic-merge-patch+json:\n"
        "  PATCH /api/v1/namespaces/prod/configmaps/drum?fieldManager=tandem\n"
        '    {"data": {"MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE": "{\\"type\\": \\"string\\", '
        '\\"payload\\": \\"gunicorn\\"}"}}\n'
        "  PATCH /apis/apps/v1/namespaces/prod/deployments/model?fieldManager=tandem\n"
        '    {"spec": {"template": {"metadata": {"annotations": '
        '{"kubectl.kubernetes.io/restartedAt": "<now>"}}}}}\n'
        "  and wait until deployment/model has rolled out (as kubectl rollout status does; "
        "up to 120 s).\n"
        "  The restart's restartedAt is stamped when it is sent. The Deployment is read just "
        "before:\n"
        "  if its pod template has the label tandem-server-type (as `tandem export kubernetes` "
        "writes it, for up's server_type), the same patch also sets it:\n"
        '    {"spec": {"template": {"metadata": {"labels": {"tandem-server-type": "gunicorn"}}}}}\n'
        "  and if it has the annotation tandem-config-sha256, sets that to the digest of the "
        "ConfigMap's new data.\n"
        "Then: nothing to verify (no --url given).\n"
        "Dry run: nothing was changed.\n"
    )


def test_kubernetes_rollback_to_flask_through_recorded_api(
    deployment: Deployment, tmp_path: Path
) -> None:
    """The whole Level 1 on Kubernetes: the API side is the recorded exchanges; the server is
    real. The recording's hooks play the cluster: the ConfigMap patch lands in the env file the
    "pod" reads (as envFrom would set it, DRUM's JSON form and all), and the restart patch
    restarts it (as the Deployment controller would) and gives the new "pods" its label."""
    dep = deployment
    assert dep.info()["drumServer"] == "fastapi"
    restarts: list[threading.Thread] = []
    pod_labels = {"tandem-server-type": "fastapi"}

    def store_value(body: Any) -> None:
        value = body["data"]["DRUM_SERVER_TYPE"]
        text = dep.env_file.read_text()
        dep.env_file.write_text(
            text.replace(
                "MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE=fastapi",
                f"MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE='{value}'",
            )
        )

    def restart_pods(body: Any) -> None:
        pod_labels.update(body["spec"]["template"]["metadata"].get("labels", {}))
        command = ["sh", str(dep.root / "restart.sh")]
        thread = threading.Thread(target=subprocess.run, args=(command,), kwargs={"timeout": 60})
        thread.start()
        restarts.append(thread)

    hooks = {"configmap-patch": store_value, "restart": restart_pods}
    with RecordedApiServer(load("rollback_to_flask"), hooks) as api:
        config = str(write_kubeconfig(tmp_path / "kubeconfig", api.url))
        proc = tandem(
            "rollback",
            "--to",
            "flask",
            *KUBE_TARGET,
            "--kubeconfig",
            config,
            "--context",
            "recorded",
            "--yes",
            "--url",
            dep.url,
            "--log-file",
            str(dep.log),
            "--code-dir",
            str(dep.root / "regression"),
        )
        for thread in restarts:
            thread.join(timeout=60)
        api.assert_complete()
    out = stamped(proc.stdout)
    assert proc.returncode == 0, out + proc.stderr
    assert "Current: fastapi (" in out
    # The plan, then the same patches as they are sent, then kubectl's rollout status lines.
    # The ConfigMap's value is DRUM's JSON form; the Deployment's pod template has the
    # tandem-server-type label, so the restart patch moves it to the new stack.
    sent = (
        '{"data": {"DRUM_SERVER_TYPE": "{\\"type\\": \\"string\\", \\"payload\\": '
        '\\"flask\\"}"}}\n',
        '{"spec": {"template": {"metadata": {"annotations": '
        '{"kubectl.kubernetes.io/restartedAt": "<now>"}, '
        '"labels": {"tandem-server-type": "flask"}}}}}\n',
    )
    plan, _, applied = out.partition("PATCH /api/v1/namespaces/models/configmaps/drum-config: ")
    assert f"    {sent[0]}" in plan
    assert (
        '    {"spec": {"template": {"metadata": {"labels": {"tandem-server-type": "flask"}}}}}\n'
    ) in plan
    assert applied.startswith(sent[0])
    assert ("PATCH /apis/apps/v1/namespaces/models/deployments/churn-model: " + sent[1]) in applied
    assert (
        "  Waiting for deployment spec update to be observed...\n"
        '  Waiting for deployment "churn-model" rollout to finish: 1 out of 2 new replicas have '
        "been updated...\n"
        '  Waiting for deployment "churn-model" rollout to finish: 1 old replicas are pending '
        "termination...\n"
        '  Waiting for deployment "churn-model" rollout to finish: 1 of 2 updated replicas are '
        "available...\n"
        '  deployment "churn-model" successfully rolled out\n'
    ) in applied
    assert "Time to recovery: " in out
    assert "Verification PASSED" in out
    assert "Rollback to flask verified" in out
    info = dep.info()
    assert (info["drumServer"], info["processServer"]) == ("flask", "werkzeug")
    # The server read the JSON form; up's server_type (the pod label) names what it runs.
    stored = "MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE='" + json.dumps(
        {"type": "string", "payload": "flask"}
    )
    assert stored + "'\n" in dep.env_file.read_text()
    assert pod_labels == {"tandem-server-type": stack_from_info(info)}
    assert api.mutating_requests() == [
        "PATCH /api/v1/namespaces/models/configmaps/drum-config?fieldManager=tandem",
        "PATCH /apis/apps/v1/namespaces/models/deployments/churn-model?fieldManager=tandem",
    ]


def kube_rollback(recording: str, tmp_path: Path, *extra: str) -> tuple[Any, RecordedApiServer]:
    """``tandem rollback --to flask --yes`` against a recording, with a --url nothing answers
    (so the current stack is the ConfigMap's)."""
    with RecordedApiServer(load(recording)) as api:
        config = str(write_kubeconfig(tmp_path / "kubeconfig", api.url))
        proc = tandem(
            "rollback",
            "--to",
            "flask",
            *KUBE_TARGET,
            "--kubeconfig",
            config,
            "--yes",
            "--url",
            f"http://127.0.0.1:{free_port()}",
            *extra,
        )
        api.assert_complete()
    return proc, api


def test_kubernetes_rollout_that_times_out(tmp_path: Path) -> None:
    proc, api = kube_rollback("rollout_timeout", tmp_path, "--rollout-timeout", "2")
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert "Current: fastapi (ConfigMap drum-config sets DRUM_SERVER_TYPE=fastapi)" in out
    assert out.endswith(
        "Rollback FAILED: rollout failed: deployment/churn-model in namespace models did not "
        'finish rolling out within 2 s (last status: Waiting for deployment "churn-model" '
        "rollout to finish: 1 out of 2 new replicas have been updated...). ConfigMap "
        "drum-config already sets DRUM_SERVER_TYPE to flask and the restart was sent; see why "
        "the new pods are not ready: kubectl describe deployment/churn-model --namespace models\n"
    )
    assert "Time to recovery" not in out
    assert len(api.mutating_requests()) == 2


def test_kubernetes_configmap_without_the_key_is_refused(tmp_path: Path) -> None:
    proc, api = kube_rollback("configmap_missing_key", tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Current: unknown (ConfigMap drum-config has no key DRUM_SERVER_TYPE)" in proc.stdout
    assert proc.stdout.endswith(
        "Rollback not started: ConfigMap drum-config in namespace models has no key "
        "DRUM_SERVER_TYPE (its keys: MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE, TARGET_TYPE), so the "
        "pods do not read the stack from it; check --configmap and --configmap-key. Nothing "
        "was changed.\n"
    )
    assert api.served == ["GET /api/v1/namespaces/models/configmaps/drum-config"]


def test_kubernetes_forbidden(tmp_path: Path) -> None:
    # The patch refused (a read-only role): the step failed, nothing changed.
    proc, api = kube_rollback("configmap_patch_forbidden", tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.endswith(
        "Rollback FAILED: PATCH configmap drum-config in namespace models: the API server "
        'answered 403 Forbidden: configmaps "drum-config" is forbidden: User '
        '"system:serviceaccount:models:tandem-readonly" cannot patch resource "configmaps" in '
        'API group "" in the namespace "models". The credentials in use lack the RBAC '
        "permission; a Level-1 rollback needs get and patch on configmaps, and get and patch on "
        "deployments (apps), in the namespace. Nothing was changed.\n"
    )
    assert api.mutating_requests() == [
        "PATCH /api/v1/namespaces/models/configmaps/drum-config?fieldManager=tandem"
    ]
    # Not even readable: refused before the plan, exit 2.
    proc, api = kube_rollback("configmap_get_forbidden", tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Rollback not started: GET configmap drum-config in namespace models: the API " in (
        proc.stdout
    )
    assert 'cannot get resource "configmaps"' in proc.stdout
    assert "Will send" not in proc.stdout


def test_usage_errors() -> None:
    proc = tandem("rollback", "--to", "flask", "--env-file", "x.env", "--url", "127.0.0.1:1")
    assert proc.returncode == 2
    assert "--restart-cmd" in proc.stderr
    proc = tandem("rollback", "--to", "flask", "--kubernetes", "--namespace", "n", "--dry-run")
    assert proc.returncode == 2
    assert "--configmap" in proc.stderr and "--deployment" in proc.stderr
    proc = tandem("rollback", "--to", "tornado", "--kubernetes")
    assert proc.returncode == 2
    assert "invalid stack" in proc.stderr
