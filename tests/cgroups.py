"""A small memory cgroup for tests that need the kernel's real OOM killer (root only)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

ROOT = Path("/sys/fs/cgroup")


def _own(controller: str) -> str | None:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in (controllers.split(",") if controllers else [""]):
            return path.strip().lstrip("/")
    return None


def memory_cgroup(limit_bytes: int) -> Path:
    """Create a child memory cgroup of this process's own, limited to ``limit_bytes``.

    Skips the calling test (saying why) where the kernel or permissions do not allow it.
    """
    name = f"tandem-test-{uuid.uuid4().hex[:8]}"
    try:
        v1 = _own("memory")
        if v1 is not None and (ROOT / "memory").is_dir():
            group = ROOT / "memory" / v1 / name
            group.mkdir()
            (group / "memory.limit_in_bytes").write_text(str(limit_bytes))
            (group / "memory.swappiness").write_text("0")
            return group
        v2 = _own("")
        if v2 is not None and (ROOT / "cgroup.controllers").exists():
            group = ROOT / v2 / name
            group.mkdir()
            (group / "memory.max").write_text(str(limit_bytes))
            (group / "memory.swap.max").write_text("0")
            return group
    except OSError as exc:
        pytest.skip(f"cannot create a memory cgroup here ({exc}); a real OOM kill needs one")
    pytest.skip("no memory cgroup controller on this machine")


def remove(group: Path) -> None:
    """Remove the cgroup (its processes must be gone)."""
    try:
        os.rmdir(group)
    except OSError:
        pass
