"""Tandem beside DataRobot's datarobot-drum in one virtualenv: neither breaks the other.

Installs both, in both orders, into fresh virtualenvs (real pip, real wheels), then uninstalls one:
DRUM's own ``drum fit --help`` and ``import datarobot_drum.drum.main`` keep working, ``drum server``
runs Tandem while Tandem is installed (and DRUM again once it is gone), and Tandem serves a model
that imports ``datarobot_drum`` with and without DataRobot's package.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.support import REPO, fixture_dir, free_port, stop_process_group

pytestmark = pytest.mark.e2e

DRUM = "datarobot-drum==1.18.1"
PIP_TIMEOUT = 900


def clean_env() -> dict[str, str]:
    """The caller's environment minus what would leak into the fresh virtualenvs: runtime
    parameters, Tandem's per-server state, and PYTHONPATH (a source tree on it holds a
    ``tandem.egg-info`` that pip counts as Tandem already installed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_RUNTIME_PARAM_")}
    for name in (
        "PYTHONPATH",
        "DRUM_SERVER_TYPE",
        "TANDEM_STATE_DIR",
        "PROMETHEUS_MULTIPROC_DIR",
        "TANDEM_MASTER_PID",
    ):
        env.pop(name, None)
    return env


def run(
    *cmd: str | Path, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure the assertion shows everything it printed."""
    proc = subprocess.run(
        [str(c) for c in cmd],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=clean_env(),
    )
    if check:
        assert proc.returncode == 0, f"{cmd}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def tandem_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", out, REPO, timeout=600)
    (wheel,) = out.glob("tandem-*.whl")
    return wheel


def new_venv(path: Path) -> Path:
    run(sys.executable, "-m", "venv", path)
    return path


def pip(venv: Path, *args: str | Path) -> None:
    run(
        venv / "bin" / "python",
        "-m",
        "pip",
        "--quiet",
        "--disable-pip-version-check",
        *args,
        timeout=PIP_TIMEOUT,
    )


@contextmanager
def serving(cmd: list[str | Path], tmp: Path) -> Iterator[str]:
    """Start a server command on a free port; yield its URL once /ping answers."""
    port = free_port()
    log = (tmp / f"server-{port}.log").open("wb")
    env = clean_env()
    proc = subprocess.Popen(
        [str(c) for c in cmd] + ["--address", f"127.0.0.1:{port}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp / f"server-{port}.log").read_text(errors="replace")
            try:
                if httpx.get(url + "/ping", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not answer /ping in 120 s"
            time.sleep(0.2)
        # Whoever answered must be this process: a server that lost the port to another one
        # (free_port() races other test processes) exits on its failed bind.
        time.sleep(1.0)
        assert proc.poll() is None, (tmp / f"server-{port}.log").read_text(errors="replace")
        yield url
    finally:
        stop_process_group(proc)  # type: ignore[arg-type]
        log.close()


def teapot(url: str) -> httpx.Response:
    """The fixture model raises datarobot_drum's CustomHTTPError(418) on every prediction."""
    r = httpx.post(url + "/predict/", content=b"a\n1\n", headers={"Content-Type": "text/csv"})
    assert r.status_code == 418, r.text
    assert r.json() == {"message": "I am a teapot"}
    return r


def served_by_tandem(r: httpx.Response) -> bool:
    """Tandem sends X-Request-ID on every answer; DRUM 1.18.1 does not."""
    return "x-request-id" in r.headers


def assert_drum_intact(venv: Path) -> None:
    """DataRobot's own commands and modules still work."""
    proc = run(venv / "bin" / "drum", "fit", "--help")
    assert "usage: drum fit" in proc.stdout
    run(venv / "bin" / "python", "-c", "import datarobot_drum.drum.main")


def drum_server(venv: Path, code_dir: Path) -> list[str | Path]:
    return [venv / "bin" / "drum", "server", "--code-dir", code_dir, "--target-type", "regression"]


@pytest.mark.slow
@pytest.mark.parametrize("order", ["drum-then-tandem", "tandem-then-drum"])
def test_installed_side_by_side_then_one_uninstalled(
    order: str, tandem_wheel: Path, tmp_path: Path
) -> None:
    venv = new_venv(tmp_path / "venv")
    model = fixture_dir("user_error", tmp_path / "model")
    installs: list[tuple[str | Path, ...]] = [(DRUM,), (tandem_wheel,)]
    for spec in installs if order == "drum-then-tandem" else reversed(installs):
        pip(venv, "install", *spec)

    assert_drum_intact(venv)
    python = venv / "bin" / "python"
    proc = run(
        python,
        "-c",
        "import _tandem_drum, datarobot_drum as d; print(_tandem_drum.is_compat(d.__file__))",
    )
    assert proc.stdout.strip() == "False", "DataRobot's package must win over Tandem's stand-in"
    with serving(drum_server(venv, model), tmp_path) as url:
        r = teapot(url)  # DataRobot's CustomHTTPError, answered by Tandem
        assert served_by_tandem(r)
        assert r.headers["X-Drum-User-Http-Error"] == "true"

    if order == "drum-then-tandem":
        pip(venv, "uninstall", "--yes", "tandem")
        assert_drum_intact(venv)
        with serving(drum_server(venv, model), tmp_path) as url:
            assert not served_by_tandem(teapot(url)), "DRUM's drum server runs DRUM again"
    else:
        pip(venv, "uninstall", "--yes", "datarobot-drum")
        proc = run(
            python,
            "-c",
            "import _tandem_drum, datarobot_drum as d; print(_tandem_drum.is_compat(d.__file__))",
        )
        assert proc.stdout.strip() == "True", "Tandem's stand-in takes over once DRUM is gone"
        tandem_server = [
            venv / "bin" / "tandem",
            "server",
            "--code-dir",
            model,
            "--target-type",
            "regression",
        ]
        with serving(tandem_server, tmp_path) as url:
            assert served_by_tandem(teapot(url))


def test_drum_command_without_datarobots_package(tmp_path: Path) -> None:
    """The dev virtualenv has no datarobot-drum; ``drum`` comes from packaging/tandem-drum."""
    drum = Path(sys.executable).parent / "drum"
    assert drum.exists(), "install ./packaging/tandem-drum (scripts/setup.sh does)"
    proc = run(drum, "validation", "--code-dir", tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr == (
        "drum: error: 'drum validation' is DataRobot's DRUM, which is not installed here "
        "(Tandem runs 'drum server' and 'drum score'): pip install datarobot-drum\n"
    )
    model = fixture_dir("user_error", tmp_path / "model")
    with serving(
        [drum, "server", "--code-dir", model, "--target-type", "regression"], tmp_path
    ) as url:
        r = teapot(url)
        assert served_by_tandem(r)
        assert r.headers["X-Drum-User-Http-Error"] == "true"
