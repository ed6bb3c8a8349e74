"""Reading back what a monitored server spooled, with DataRobot's library (as its agent does)."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class SpooledRecord:
    """One record of a filesystem spool: its type (``DEPLOYMENT_STATS``...) and payload."""

    data_type: str
    deployment_id: str
    payload: dict[str, Any]


def channel(directory: Path) -> str:
    """``--monitor-settings`` for a filesystem spool in ``directory`` (the task's settings)."""
    return f"spooler_type=filesystem;directory={directory};max_files=5;file_max_size=1024000"


def read_spool(directory: Path) -> list[SpooledRecord]:
    """Every record spooled in ``directory``, oldest first, read with the library's dequeue.

    The library's reader deletes the files it finished and keeps its offset in the directory, so
    it reads a copy: the spool itself is left as the server wrote it.
    """
    from datarobot_mlops.common import config
    from datarobot_mlops.common.config import ConfigConstants
    from datarobot_mlops.common.enums import MLOpsSpoolAction
    from datarobot_mlops.spooler.filesystem_spooler import FSRecordSpooler

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "spool"
        shutil.copytree(directory, copy, ignore=shutil.ignore_patterns(".tandem-spool.lock"))
        config.clear_config()
        config.set_config(ConfigConstants.FILESYSTEM_DIRECTORY, str(copy))
        spooler = FSRecordSpooler()
        spooler.open(action=MLOpsSpoolAction.DEQUEUE)
        records: list[SpooledRecord] = []
        try:
            while True:
                batch = spooler.dequeue()
                if not batch:
                    break
                records += [
                    SpooledRecord(r.get_data_type().name, r.get_deployment_id(), r.get_payload())
                    for r in batch
                ]
        finally:
            spooler.close()
            config.clear_config()
    return records


def of_type(records: list[SpooledRecord], data_type: str) -> list[dict[str, Any]]:
    """The payloads of one record type."""
    return [r.payload for r in records if r.data_type == data_type]
