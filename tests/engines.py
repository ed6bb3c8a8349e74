"""Real Prometheus and Alertmanager (Debian's packages) on loopback ports, for end-to-end tests."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support import free_port, stop_process_group

PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/-/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} not ready in 60 s:\n{log.read_text()[-3000:]}")


@contextmanager
def _process(cmd: list[str], url: str, log: Path, what: str) -> Iterator[str]:
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_ready(proc, url, log, what)
        yield url
    finally:
        stop_process_group(proc)  # type: ignore[arg-type]


@contextmanager
def alertmanager(workdir: Path, webhook_url: str, bearer: str | None = None) -> Iterator[str]:
    """An Alertmanager that sends every alert, at once, to one webhook."""
    assert ALERTMANAGER, "prometheus-alertmanager is not installed (.ci/run installs it)"
    workdir.mkdir(parents=True, exist_ok=True)
    webhook: dict[str, Any] = {"url": webhook_url, "send_resolved": False}
    if bearer:
        webhook["http_config"] = {"authorization": {"type": "Bearer", "credentials": bearer}}
    config = {
        "route": {
            "receiver": "tandem",
            "group_by": ["alertname"],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [{"name": "tandem", "webhook_configs": [webhook]}],
    }
    (workdir / "alertmanager.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    cmd = [
        ALERTMANAGER,
        f"--config.file={workdir / 'alertmanager.yml'}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    with _process(
        cmd, f"http://127.0.0.1:{port}", workdir / "alertmanager.log", "alertmanager"
    ) as url:
        yield url


@contextmanager
def prometheus(
    workdir: Path,
    rules: list[dict[str, Any]] | None = None,
    scrape: dict[str, str] | None = None,
    alertmanager_url: str | None = None,
) -> Iterator[str]:
    """A Prometheus evaluating ``rules`` every second and scraping ``scrape`` (job -> host:port)."""
    assert PROMETHEUS, "prometheus is not installed (.ci/run installs it)"
    workdir.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [target]}]}
            for job, target in (scrape or {}).items()
        ],
    }
    if rules:
        (workdir / "rules.yml").write_text(
            yaml.safe_dump({"groups": [{"name": "tandem", "rules": rules}]})
        )
        config["rule_files"] = [str(workdir / "rules.yml")]
    if alertmanager_url:
        target = alertmanager_url.removeprefix("http://")
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [target]}]}]}
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    cmd = [
        PROMETHEUS,
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        # Alertmanager is discovered a few seconds after start-up; without this, alerts that
        # fired before that wait a minute for their next send.
        "--rules.alert.resend-delay=1s",
    ]
    with _process(cmd, f"http://127.0.0.1:{port}", workdir / "prometheus.log", "prometheus") as url:
        yield url
