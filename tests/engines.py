"""Real Prometheus and Alertmanager (Debian's packages) on loopback ports, for end-to-end tests."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
    scrape: dict[str, str | tuple[str, dict[str, str]]] | None = None,
    alertmanager_url: str | None = None,
    query_log: bool = False,
    file_sd: dict[str, Path] | None = None,
) -> Iterator[str]:
    """A Prometheus evaluating ``rules`` every second and scraping ``scrape`` every second
    (job -> ``host:port``, or ``(host:port, target labels)``), and the targets of each
    ``file_sd`` job's file (job -> path; the file may appear and change later: Prometheus
    watches it and applies a change within its ~5 s discovery interval); with ``query_log``,
    every query it answers is logged to ``workdir/queries.log`` (one JSON object a line)."""
    assert PROMETHEUS, "prometheus is not installed (.ci/run installs it)"
    workdir.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": job,
                "static_configs": [
                    {"targets": [target], "labels": {}}
                    if isinstance(target, str)
                    else {"targets": [target[0]], "labels": target[1]}
                ],
            }
            for job, target in (scrape or {}).items()
        ]
        + [
            {"job_name": job, "file_sd_configs": [{"files": [str(path)], "refresh_interval": "1s"}]}
            for job, path in (file_sd or {}).items()
        ],
    }
    if query_log:
        config["global"]["query_log_file"] = str(workdir / "queries.log")
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
        _wait_scraped(url, len(scrape or {}))
        yield url


def _wait_scraped(url: str, targets: int) -> None:
    """Until every target was scraped once: discovery hands targets over only after ~5 s."""
    deadline = time.monotonic() + 30
    while targets and time.monotonic() < deadline:
        active = httpx.get(url + "/api/v1/targets", timeout=2).json()["data"]["activeTargets"]
        if len(active) >= targets and all(t["health"] != "unknown" for t in active):
            return
        time.sleep(0.2)
    if targets:
        raise RuntimeError(f"prometheus did not scrape its {targets} targets in 30 s")


NGINX = shutil.which("nginx")


@dataclass
class Nginx:
    """A running nginx whose ``http`` block includes one file a test (or the rollout) owns."""

    prefix: Path
    main_conf: Path
    include: Path
    proc: subprocess.Popen[bytes]

    @property
    def test_cmd(self) -> str:
        """``nginx -t`` for this instance."""
        return f"{NGINX} -t -c {self.main_conf} -p {self.prefix}"

    @property
    def reload_cmd(self) -> str:
        """Graceful reload of this instance."""
        return f"{NGINX} -s reload -c {self.main_conf} -p {self.prefix}"


@contextmanager
def nginx(prefix: Path, include_text: str) -> Iterator[Nginx]:
    """An nginx (one worker, no daemon) including ``prefix/tandem.conf``, started with
    ``include_text`` in it; the include's own ``server`` block decides what it listens on."""
    assert NGINX, "nginx is not installed (.ci/run installs nginx-light)"
    prefix.mkdir(parents=True, exist_ok=True)
    include = prefix / "tandem.conf"
    include.write_text(include_text)
    temp = " ".join(
        f"{name}_temp_path {prefix / name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main = prefix / "nginx.conf"
    main.write_text(
        f"pid {prefix / 'nginx.pid'};\nerror_log {prefix / 'error.log'} warn;\n"
        "daemon off;\nworker_processes 1;\nevents { worker_connections 1024; }\n"
        f"http {{\n  access_log off;\n  {temp}\n  include {include};\n}}\n"
    )
    log = (prefix / "stdout.log").open("wb")
    proc = subprocess.Popen(
        [NGINX, "-c", str(main), "-p", str(prefix)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not (prefix / "nginx.pid").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not start:\n{(prefix / 'error.log').read_text()}")
            time.sleep(0.05)
        yield Nginx(prefix, main, include, proc)
    finally:
        stop_process_group(proc)  # type: ignore[arg-type]
        log.close()
