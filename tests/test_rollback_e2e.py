"""End-to-end: ``tandem rollback`` flips a real server, started from an env file, to Flask.

The deployment under test is a shell script that does what a supervisor would: stop the running
server (pid file), source the env file and start ``tandem server`` in the background.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

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
    "Will run:\n"
    "  kubectl --namespace models patch configmap drum-config --type merge --patch "
    '\'{{"data":{{"DRUM_SERVER_TYPE":"flask"}}}}\'\n'
    "  kubectl --namespace models rollout restart deployment/churn-model\n"
    "  kubectl --namespace models rollout status deployment/churn-model --timeout=300s\n"
    "Then: wait for {url}/readyz and /ping (up to 300 s), and verify:\n"
    "  tandem verify {url} --expect-server flask\n"
    "Dry run: nothing was changed.\n"
)


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


def test_kubernetes_dry_run_prints_the_exact_commands(tmp_path: Path) -> None:
    code_dir = tmp_path / "regression"
    shutil.copytree(EXAMPLES / "regression", code_dir)
    with running(code_dir, "fastapi", args=["--target-type", "regression"]) as server:
        proc = tandem(
            "rollback",
            "--to",
            "flask",
            "--kubernetes",
            "--namespace",
            "models",
            "--configmap",
            "drum-config",
            "--deployment",
            "churn-model",
            "--url",
            server.url,
            "--dry-run",
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stdout == KUBERNETES_DRY_RUN.format(url=server.url)

    with running(code_dir, "flask", args=["--target-type", "regression"]) as server:
        for extra in (["--dry-run"], ["--yes"]):
            proc = tandem(
                "rollback",
                "--to",
                "flask",
                "--kubernetes",
                "--namespace",
                "models",
                "--configmap",
                "drum-config",
                "--deployment",
                "churn-model",
                "--url",
                server.url,
                "--kubectl",
                str(tmp_path / "no-such-kubectl"),
                *extra,
            )
            assert proc.returncode == 3, proc.stdout + proc.stderr
            assert "Refusing: the target already runs flask" in proc.stdout
            assert "kubectl" not in proc.stdout.split("Refusing")[1]


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
    assert proc.stdout == (
        "Rollback to gunicorn (DRUM_SERVER_TYPE=gunicorn)\n"
        "Target:  Kubernetes deployment/model in namespace prod (ConfigMap drum, key "
        "MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE)\n"
        "Current: unknown (no --url given; the ConfigMap is not read in a dry run)\n"
        "Will run:\n"
        "  kubectl --context prod-eu --namespace prod patch configmap drum --type merge --patch "
        '\'{"data":{"MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE":"gunicorn"}}\'\n'
        "  kubectl --context prod-eu --namespace prod rollout restart deployment/model\n"
        "  kubectl --context prod-eu --namespace prod rollout status deployment/model "
        "--timeout=120s\n"
        "Then: nothing to verify (no --url given).\n"
        "Dry run: nothing was changed.\n"
    )


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
