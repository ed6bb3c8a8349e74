"""Prometheus file-based service discovery for the fleet, kept current as deployments move.

One target group per deployment, labelled with ``server_type`` (the side it runs: the label every
fleet query selects by) and ``deployment_id``, plus any ``--file-sd-label``; ``__scheme__`` and
``__metrics_path__`` when its URL is HTTPS or has a path prefix. A deployment is left out while the
fleet restarts it, so no failed scrape is recorded under the side it is leaving. Point a scrape
job at the file::

    scrape_configs:
      - job_name: drum-fleet
        file_sd_configs: [{files: [/etc/prometheus/tandem-fleet.json]}]

The file is replaced atomically (Prometheus watches it and reads only whole files); Prometheus
applies a change within its discovery interval (about 5 s).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tandem.fleet.inventory import Member
from tandem.ops.envfile import write_atomic


def target_groups(
    members: Sequence[Member],
    sides: Mapping[str, str | None],
    labels: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The file's content: deployments whose side is None (restarting) are left out."""
    groups = []
    for member in members:
        side = sides.get(member.id)
        if side is None:
            continue
        group_labels = {**(labels or {}), "server_type": side, "deployment_id": member.id}
        parts = urlsplit(member.url)
        if parts.scheme == "https":
            group_labels["__scheme__"] = "https"
        if parts.path.strip("/"):
            group_labels["__metrics_path__"] = "/" + parts.path.strip("/") + "/metrics"
        groups.append({"targets": [member.target], "labels": group_labels})
    return groups


def write_file_sd(path: Path, groups: list[dict[str, Any]]) -> bool:
    """Replace the file when its content changes; True when it was written."""
    data = (json.dumps(groups, indent=2, sort_keys=True) + "\n").encode()
    try:
        if path.read_bytes() == data:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data, 0o644)
    return True
