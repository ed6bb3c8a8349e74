"""The fleet's dashboard in a real browser: headless Chromium runs the page's scripts against
``tandem fleet start --dashboard-address``'s server over a fleet state written by fake ticks."""

from __future__ import annotations

from pathlib import Path

import pytest

from tandem.fleet.dashboard import DashboardServer
from tests.fleet.support import make_rig
from tests.test_dashboard_e2e import CHROMIUM, _chromium

pytestmark = pytest.mark.e2e


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_the_page_renders_every_deployment(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    rig.world.deployments["fleet-28"].fail_on = {"fastapi"}
    rig.controller.initial_status()
    rig.until(lambda s: s.weight == 10.0)
    server = DashboardServer(rig.store.path).start()
    try:
        done = _chromium("--dump-dom", server.url)
    finally:
        server.stop()
    dom = done.stdout.decode()
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert "<h1>Tandem fleet</h1>" in dom
    assert "(1 of 8 on FastAPI)" in dom
    for member_id in rig.world.deployments:
        assert f">{member_id}<" in dom
    assert "flask (held at 10 %)" in dom  # fleet-28: failed on FastAPI, put back
    assert dom.count(">ok on fastapi ") == 1 and dom.count(">ok on flask ") == 1
