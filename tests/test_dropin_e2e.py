"""Issue 10, drop-in for `drum server` users: start-up refusals on every stack.

The working paths (deployment-config responses, task interfaces) are conformance cases, which the
end-to-end tier runs against every stack; this file holds what stops a server from starting.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import SERVER_TYPES, ServerProcess, fixture_dir

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("server_type", SERVER_TYPES)
def test_unreadable_deployment_config_stops_start_up(tmp_path: Path, server_type: str) -> None:
    code_dir = fixture_dir("regression_hooks", tmp_path)
    config = tmp_path / "deployment.json"
    config.write_text("{not json")
    server = ServerProcess(
        code_dir,
        server_type,
        args=["--target-type", "regression", "--deployment-config", str(config)],
    )
    with pytest.raises(RuntimeError, match="exited with 1"):
        server.start()
    assert f"Failed to parse deployment config json file '{config}'" in server.logs()
