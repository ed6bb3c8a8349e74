"""Container resources: sensible defaults, or sized from a running server's ``/stats/``.

From ``/stats/`` (``--stats-url``), Tandem's or DRUM's:

- memory: the server's resident memory (``mem_info.drum_rss``, all its processes, MiB) is the
  basis. The request is that plus 25 %. The limit leaves room for the rollout's own memory
  trigger first: the candidate may use up to ``1 + memory_increase`` times the baseline before a
  gradual reduction (1.5x by default), so the limit is that multiple plus 25 %. A candidate that
  grows past it is reduced by the trigger before the kernel's OOM killer acts;
- CPU: the processes' CPU use in ``drum_info`` (``cpu_percent``, since the previous call; one
  read of an idle server says little), plus 25 %, but at least 250m per worker process
  (``worker_info.workers``). No CPU limit: throttling shows up as latency, which the P99
  trigger would read as a regression of the stack.

Without ``/stats/``: requests ``cpu: 500m``, ``memory: 512Mi``; limit ``memory: 1Gi``.
Everything is rounded up: CPU to 50m, memory to 16 MiB.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from tandem.errors import ConfigError

HEADROOM = 1.25
CPU_PER_WORKER_M = 250


@dataclass(frozen=True)
class Resources:
    """A container's requests and memory limit, with how they were chosen."""

    cpu_request: str = "500m"
    memory_request: str = "512Mi"
    memory_limit: str = "1Gi"
    basis: str = "defaults (no --stats-url)"

    def to_k8s(self) -> dict[str, dict[str, str]]:
        """The container's ``resources`` block."""
        return {
            "requests": {"cpu": self.cpu_request, "memory": self.memory_request},
            "limits": {"memory": self.memory_limit},
        }


def _mib(value: float) -> str:
    return f"{max(16, math.ceil(value / 16) * 16)}Mi"


def _millicores(value: float) -> str:
    return f"{max(50, math.ceil(value / 50) * 50)}m"


def resources_from_stats(doc: dict[str, Any], memory_increase: float) -> Resources:
    """Resources for the server ``doc`` (a ``/stats/`` body) describes; ConfigError when the
    document has no resident memory figure."""
    mem = doc.get("mem_info") or {}
    rss = mem.get("drum_rss")
    if not isinstance(rss, (int, float)) or isinstance(rss, bool) or rss <= 0:
        raise ConfigError("/stats/ has no mem_info.drum_rss: is this a DRUM or Tandem server?")
    procs = [p for p in doc.get("drum_info") or [] if isinstance(p, dict)]
    cpu_pct = sum(float(p.get("cpu_percent") or 0.0) for p in procs)
    workers = len((doc.get("worker_info") or {}).get("workers") or []) or 1
    cpu_m = max(cpu_pct / 100 * 1000 * HEADROOM, CPU_PER_WORKER_M * workers)
    return Resources(
        cpu_request=_millicores(cpu_m),
        memory_request=_mib(rss * HEADROOM),
        memory_limit=_mib(rss * (1 + memory_increase) * HEADROOM),
        basis=(
            f"/stats/: {rss:g} MiB resident, {cpu_pct:g}% CPU, {workers} worker(s); "
            f"limit = RSS x {1 + memory_increase:g} (the memory trigger) x {HEADROOM:g}"
        ),
    )


def stats_url(url: str) -> str:
    """``http://host:8080`` or ``.../stats/``: the ``/stats/`` URL."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"--stats-url must be an http(s) URL, got {url!r}")
    path = parts.path.rstrip("/")
    if not path.endswith("/stats"):
        path += "/stats"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path + "/", "", ""))


def fetch_stats(url: str, timeout: float = 10.0) -> dict[str, Any]:
    """GET a server's ``/stats/`` document; ConfigError when it cannot be read."""
    target = stats_url(url)
    try:
        with urllib.request.urlopen(target, timeout=timeout) as resp:  # noqa: S310 (http only)
            doc = json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {target}: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{target} did not answer a JSON object")
    return doc
