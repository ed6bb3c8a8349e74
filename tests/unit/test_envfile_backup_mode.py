"""An env file's backup is never readable by others while it is written (it may hold secrets)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from tandem.ops import envfile


def test_the_backup_of_a_private_env_file_is_never_readable_by_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "drum.env"
    path.write_bytes(b"API_TOKEN=secret\nDRUM_SERVER_TYPE=fastapi\n")
    os.chmod(path, 0o600)
    seen: dict[str, int] = {}
    chmod = os.chmod

    def recording_chmod(target: Any, mode: int, *args: Any, **kwargs: Any) -> None:
        name = os.path.basename(str(target))
        if ".bak-" in name:  # the backup's mode before it is given the original's
            seen[name] = stat.S_IMODE(os.stat(target).st_mode)
        chmod(target, mode, *args, **kwargs)

    monkeypatch.setattr(envfile.os, "chmod", recording_chmod)
    old_umask = os.umask(0o022)
    try:
        applied = envfile.apply_server_type(path, "flask", now=0.0)
    finally:
        os.umask(old_umask)
    assert applied.backup is not None and applied.backup.name in seen
    assert seen[applied.backup.name] & 0o077 == 0
    assert stat.S_IMODE(applied.backup.stat().st_mode) == 0o600
