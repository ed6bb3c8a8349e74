"""A deployment's restart command for the fleet end-to-end test: pid-file kill, then start.

``python restart_server.py --pid-file P --env-file E --log L -- tandem server ...``

Stops the process group whose leader's PID is in ``P`` (SIGTERM, SIGKILL after 10 s), then
starts the command in a new session with the environment ``E`` gives (``KEY=VALUE`` lines, as
systemd's ``EnvironmentFile=`` reads them, over this process's environment without runtime
parameters), its output appended to ``L``, writes the new PID to ``P`` and exits. Each start is
appended to ``P.starts`` (one line: the PID), so a test can count restarts.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import time
from pathlib import Path


def _env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip().strip("'\"")
    return out


def _stop(pid_file: Path) -> None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def main() -> int:
    """Restart (or first start) one deployment."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--pid-file", type=Path, required=True)
    parser.add_argument("--env-file", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    _stop(args.pid_file)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MLOPS_RUNTIME_PARAM_")
        and k not in ("DRUM_SERVER_TYPE", "DRUM_FASTAPI_CANARY_PERCENT", "MLOPS_DEPLOYMENT_ID")
    }
    env.update(_env_file(args.env_file))
    with args.log.open("ab") as log:
        proc = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    args.pid_file.write_text(f"{proc.pid}\n")
    with args.pid_file.with_name(args.pid_file.name + ".starts").open("a") as starts:
        starts.write(f"{proc.pid}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
