"""nginx as the rollout's traffic engine: one include file the controller owns.

The file holds, at nginx's ``http`` level, the split (``map`` + ``split_clients``, the same key
and hash as the built-in router: :mod:`tandem.rollout.split`), one upstream per side and the
public ``server`` block. The platform includes it once in its own ``nginx.conf``::

    http {
        include /etc/nginx/tandem/model.conf;   # --nginx-conf
    }

Every weight change rewrites the file atomically, checks the whole configuration with
``nginx -t`` and applies it with a graceful reload (old workers finish their requests). A failed
check or reload restores the previous file and raises :class:`TrafficError`: the change did not
happen, and the caller must not record it as done.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from tandem.rollout.split import BUCKETS

DEFAULT_TEST_CMD = "nginx -t"
DEFAULT_RELOAD_CMD = "nginx -s reload"
#: The access-log format the include defines: enough to audit the split request by request.
LOG_FORMAT = "tandem_split"


class TrafficError(RuntimeError):
    """The traffic engine refused or failed a change; the previous split is still in force."""


def _upstream_address(url: str) -> str:
    parts = urlsplit(url if "//" in url else f"http://{url}")
    if not parts.hostname or not parts.port:
        raise ValueError(f"{url!r} needs a host and a port")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{parts.port}"


def percent(weight_bp: int) -> str:
    """``split_clients``' spelling of a weight in basis points (``12.34%``)."""
    return f"{weight_bp // 100}.{weight_bp % 100:02d}%"


@dataclass
class NginxTraffic:
    """Renders and applies the include file for one rollout."""

    conf_path: Path
    listen: str
    """``host:port`` of the public ``server`` block."""
    baseline_url: str
    candidate_url: str
    test_cmd: str = DEFAULT_TEST_CMD
    reload_cmd: str = DEFAULT_RELOAD_CMD
    access_log: Path | None = None
    """Where the ``server`` block logs each request's side (None: nginx's default log)."""
    max_body_size: str = "100m"
    timeout_s: float = 30.0
    compare_url: str | None = None
    """The comparison service (a built-in router at weight 0 that mirrors everything it gets):
    sampled baseline-served requests are copied to it with nginx's ``mirror``."""
    applied_bp: int | None = field(default=None, init=False)

    def render(self, weight_bp: int, mirror_rate: float = 0.0) -> str:
        """The include file for ``weight_bp`` (0..10000) and ``mirror_rate`` (0..1)."""
        weight_bp = max(0, min(BUCKETS, int(weight_bp)))
        mirror_bp = max(0, min(BUCKETS, round(mirror_rate * BUCKETS)))
        mirroring = self.compare_url is not None and mirror_bp > 0
        if not mirroring:
            mirror_split, mirror_loc, mirror_dir, compare = "", "", "", ""
        else:
            assert self.compare_url is not None
            sample = "* 1;" if mirror_bp == BUCKETS else f"{percent(mirror_bp)} 1; * 0;"
            # A second hash of the key (prefixed), so the mirrored sample does not follow the
            # split: baseline-served requests of every bucket are compared.
            mirror_split = f'split_clients "m$tandem_split_key" $tandem_mirror {{ {sample} }}\n'
            compare = (
                f"upstream tandem_compare {{ server {_upstream_address(self.compare_url)}; "
                "keepalive 8; }\n"
            )
            mirror_dir = "mirror /_tandem_mirror;\n        mirror_request_body on;\n        "
            mirror_loc = """
    location = /_tandem_mirror {
        internal;
        if ($tandem_mirror != "1") { return 204; }
        if ($tandem_side = "candidate") { return 204; }
        proxy_pass http://tandem_compare$request_uri;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
    }"""
        if weight_bp == 0:
            split = "* baseline;"
        elif weight_bp == BUCKETS:
            split = "* candidate;"
        else:
            split = f"{percent(weight_bp)} candidate; * baseline;"
        log = f"access_log {self.access_log} {LOG_FORMAT};" if self.access_log is not None else ""
        log_format = (
            f"log_format {LOG_FORMAT} "
            """'$tandem_side $status $request_time "$http_x_request_id" "$uri"';"""
        )
        return f"""\
# Managed by `tandem rollout` (candidate weight {percent(weight_bp)}); rewritten on every change.
map $http_x_request_id $tandem_split_key {{
    "" "$remote_addr $uri";
    default $http_x_request_id;
}}
split_clients "$tandem_split_key" $tandem_side {{ {split} }}
{mirror_split}{log_format}
upstream tandem_baseline {{ server {_upstream_address(self.baseline_url)}; keepalive 32; }}
upstream tandem_candidate {{ server {_upstream_address(self.candidate_url)}; keepalive 32; }}
{compare}server {{
    listen {self.listen};
    {log}
    client_max_body_size {self.max_body_size};
    # A reload closes the old workers' idle keep-alive connections; a request a client sends
    # on one at that moment is reset (HTTP/1.1's keep-alive race, and POST is never retried).
    # Without client keep-alive every request opens a connection the running workers accept.
    keepalive_timeout 0;
    location / {{
        {mirror_dir}proxy_pass http://tandem_$tandem_side;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_request_buffering on;
        add_header X-Tandem-Backend $tandem_side always;
    }}{mirror_loc}
}}
"""

    def apply(self, weight_bp: int, mirror_rate: float = 0.0) -> None:
        """Write, check and reload; on any failure put the previous file back and raise."""
        text = self.render(weight_bp, mirror_rate)
        previous = self.conf_path.read_bytes() if self.conf_path.exists() else None
        _atomic_write(self.conf_path, text.encode())
        try:
            self._run(self.test_cmd, "nginx -t")
            self._run(self.reload_cmd, "reload")
        except TrafficError:
            if previous is None:
                self.conf_path.unlink(missing_ok=True)
            else:
                _atomic_write(self.conf_path, previous)
            raise
        self.applied_bp = weight_bp

    def set_routing(self, weight: float, mirror_rate: float) -> None:
        """The controller's traffic seam: a weight in percent and a mirror rate."""
        self.apply(round(weight * 100), mirror_rate)

    def _run(self, command: str, what: str) -> None:
        try:
            proc = subprocess.run(
                shlex.split(command), capture_output=True, text=True, timeout=self.timeout_s
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TrafficError(f"{what} ({command}) could not run: {exc}") from None
        if proc.returncode != 0:
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            # nginx names the cause on an [emerg] line; its last line only says "test failed".
            cause = [line for line in lines if "[emerg]" in line or "[error]" in line]
            raise TrafficError(
                f"{what} ({command}) failed with {proc.returncode}: "
                + ((cause or lines or ["no output"])[0])
            )


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
