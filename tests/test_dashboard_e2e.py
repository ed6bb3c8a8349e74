"""End-to-end test of the rollout dashboard: a real router process, a filled store, and Debian's
headless Chromium rendering the page (screenshot and the DOM after its scripts ran)."""

from __future__ import annotations

import math
import os
import re
import shutil
import struct
import subprocess
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tandem.rollout.status import Phase, RolloutStatus
from tandem.rollout.store import RolloutStore
from tests.router_support import RouterProcess
from tests.support import free_port

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "dash-token"
REASON_ROLLBACK = "candidate error rate 2.31% > 1% (Wilson lower bound 1.62%, n=1211)"


def _side(requests: int, error_rate: float, p99: float, rss: float) -> dict[str, Any]:
    errors = round(requests * error_rate)
    return {
        "requests": requests,
        "errors": errors,
        "error_rate": errors / requests if requests else None,
        "p99_ms": round(p99, 1) if requests else None,
        "rss_mb": round(rss, 1),
    }


def fill_store(path: Path, now: float | None = None) -> dict[str, Any]:
    """A realistic rollout story: 5 min of shadow, steps 1 → 5 → 10 → 25 %, a P99 trigger
    that reduces to 5 %, then an error-rate spike that rolls back to 0 %."""
    now = time.time() if now is None else now
    start = now - 25 * 60
    store = RolloutStore(path)
    store.set_json("spec", {"steps": [1.0, 5.0, 10.0, 25.0, 50.0, 75.0, 90.0, 100.0]})
    # (offset s, phase, action, rule, from, to, step_index, reason)
    story = [
        (0, Phase.SHADOW, "start", "start", 0.0, 0.0, -1, "rollout started: shadow at 10 %"),
        (
            300,
            Phase.CANARY,
            "promote",
            "shadow_passed",
            0.0,
            1.0,
            0,
            "shadow clean: 3012 compared, 0 differing, P99 ratio 0.93 <= 1.2",
        ),
        (
            540,
            Phase.CANARY,
            "step_up",
            "step_criteria_met",
            1.0,
            5.0,
            1,
            "1 %: error rate 0.00 % < 0.1 %, P99 -6 % < 30 %, RSS -14 % < 50 %",
        ),
        (
            780,
            Phase.CANARY,
            "step_up",
            "step_criteria_met",
            5.0,
            10.0,
            2,
            "5 %: error rate 0.02 % < 0.1 %, P99 -4 % < 25 %, RSS -12 % < 40 %",
        ),
        (
            1020,
            Phase.CANARY,
            "step_up",
            "step_criteria_met",
            10.0,
            25.0,
            3,
            "10 %: error rate 0.01 % < 0.1 %, P99 +2 % < 20 %, RSS -10 % < 30 %",
        ),
        (
            1200,
            Phase.REDUCING,
            "reduce",
            "p99_gradual",
            25.0,
            5.0,
            3,
            "candidate P99 74.0 ms is +62 % over baseline 45.7 ms (> 50 %) for 2 evaluations",
        ),
        (1380, Phase.ROLLED_BACK, "rollback", "error_rate_immediate", 5.0, 0.0, 3, REASON_ROLLBACK),
    ]
    status = RolloutStatus()
    weight = 0.0
    phase = Phase.SHADOW
    events = list(story)
    t = 0
    while t <= 25 * 60 - 10:
        while events and events[0][0] <= t:
            off, phase, action, rule, before, weight, step, reason = events.pop(0)
            at = start + off
            status = status.evolve(
                phase=phase,
                weight=weight,
                step_index=step,
                started_at=start,
                phase_started_at=at if phase != status.phase else status.phase_started_at,
                step_started_at=at,
                message=reason,
                rollback_rule=rule if phase == Phase.ROLLED_BACK else None,
            )
            store.save(
                status,
                action=action,
                rule=rule,
                from_weight=before,
                reason=reason,
                numbers={"weight": weight},
                at=at,
            )
        share = weight / 100
        total = 3000
        wobble = math.sin(t / 37.0)
        cand_p99 = 42 + 3 * wobble if t < 1080 else 74 + 4 * wobble
        cand_err = 0.0001 if t < 1320 else 0.023
        cand_rss = 176 + t / 120
        mirror_rate = 0.1 if phase == Phase.SHADOW else 0.01
        if phase.is_terminal:
            mirror_rate = 0.0
        candidate = round(total * share) if share else round(total * mirror_rate)
        doc = {
            "phase": phase.value,
            "mirror_rate": mirror_rate,
            "window_s": 60.0,
            "baseline": _side(total - round(total * share), 0.0002, 45 + 2 * wobble, 208 + wobble),
            "candidate": _side(candidate, cand_err, cand_p99, cand_rss),
            "mirror": {"compared": round(total * mirror_rate), "differing": 0},
        }
        store.add_observation(start + t, weight, doc)
        t += 15
    store.close()
    return {"start": start, "decisions": len(story), "observations": 25 * 60 // 15}


@pytest.fixture
def dashboard_router(tmp_path: Path) -> Iterator[tuple[RouterProcess, dict[str, Any]]]:
    """A router (with no reachable backends: the dashboard needs none) over a filled store."""
    store = tmp_path / "rollout.db"
    story = fill_store(store)
    dead = f"http://127.0.0.1:{free_port()}"
    router = RouterProcess(
        tmp_path, dead, dead, store_path=str(store), admin_token=TOKEN, initial_weight_bp=777
    )
    router.start()
    try:
        yield router, story
    finally:
        router.stop()


def test_dashboard_json(dashboard_router: tuple[RouterProcess, dict[str, Any]]) -> None:
    router, story = dashboard_router
    assert httpx.get(router.admin_url + "/api/dashboard").status_code == 401
    r = httpx.get(router.admin_url + "/api/dashboard", headers=router.admin_headers)
    assert r.status_code == 200
    doc = r.json()
    assert doc["store"]["exists"] is True and doc["store"]["error"] is None
    assert doc["status"]["phase"] == "rolled_back"
    assert doc["status"]["weight"] == 0.0
    assert doc["status"]["rollback_rule"] == "error_rate_immediate"
    assert doc["spec"]["steps"][0] == 1.0
    decisions = doc["decisions"]
    assert len(decisions) == story["decisions"]
    assert [d["to_weight"] for d in decisions] == [0.0, 1.0, 5.0, 10.0, 25.0, 5.0, 0.0]
    assert decisions[-1]["rule"] == "error_rate_immediate"
    assert decisions[-1]["reason"] == REASON_ROLLBACK
    assert set(decisions[0]) == {
        "seq",
        "at",
        "phase",
        "action",
        "rule",
        "from_weight",
        "to_weight",
        "reason",
        "numbers",
    }
    observations = doc["observations"]
    assert len(observations) == story["observations"]
    assert observations == sorted(observations, key=lambda o: o["at"])
    last = observations[-1]
    assert last["weight"] == 0.0
    for side in ("baseline", "candidate"):
        assert set(last[side]) >= {"requests", "error_rate", "p99_ms", "rss_mb"}
    assert last["candidate"]["requests"] == 0 and last["candidate"]["error_rate"] is None
    assert max(o["candidate"]["error_rate"] or 0 for o in observations) > 0.01
    # The router resumed the store's weight (0 after the rollback), not the config's 777 bp.
    router_doc = doc["router"]
    assert router_doc["routing"]["weight_bp"] == 0
    assert router_doc["routing"]["mirror_rate"] == 0.0
    assert router_doc["served"]["baseline"]["requests"] == 0
    assert router_doc["mirror"]["differences"] == []
    page = httpx.get(router.admin_url + "/?token=" + TOKEN)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert b"api/dashboard" in page.content and b"<script" in page.content
    assert b"http://" not in page.content.replace(b"http://www.w3.org/2000/svg", b"")  # no CDN


def _chromium(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[bytes]:
    profile = tempfile.mkdtemp(prefix="tandem-chromium-")
    try:
        return subprocess.run(
            [
                str(CHROMIUM),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--window-size=1280,900",
                "--virtual-time-budget=5000",
                *args,
            ],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def _png_summary(data: bytes) -> tuple[int, int, int]:
    """(width, height, distinct byte values in the decompressed image data)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        chunk = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", chunk[:8])
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    return width, height, len(set(zlib.decompress(idat)))


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_dashboard_renders_in_headless_chromium(
    dashboard_router: tuple[RouterProcess, dict[str, Any]], tmp_path: Path
) -> None:
    router, _ = dashboard_router
    url = f"{router.admin_url}/?token={TOKEN}"
    shot = tmp_path / "dash.png"
    result = _chromium(f"--screenshot={shot}", url)
    assert shot.exists(), result.stderr.decode(errors="replace")[-2000:]
    data = shot.read_bytes()
    width, height, distinct = _png_summary(data)
    assert (width, height) == (1280, 900)
    # A blank or error page compresses to a few KB with a handful of byte values; the
    # dashboard (text, four charts, a table) is tens of KB with a wide spread.
    assert len(data) > 40_000, len(data)
    assert distinct > 200, distinct
    if os.environ.get("TANDEM_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["TANDEM_KEEP_SCREENSHOT"])

    # The DOM after the page's scripts ran: the data made it onto the page.
    dom = _chromium("--dump-dom", url).stdout.decode(errors="replace")
    assert 'class="badge phase-rolled_back"' in dom
    assert "rolled back" in dom
    assert "Rolled back by error_rate_immediate" in dom
    assert REASON_ROLLBACK.replace(">", "&gt;") in dom
    assert "p99_gradual" in dom and "shadow_passed" in dom
    assert dom.count("<tr class=") >= 7  # the seven decisions
    assert "10 → 25 %" in dom and "25 → 5 %" in dom and "5 → 0 %" in dom
    assert '<div class="value" id="c-weight">0 %</div>' in dom
    assert '<div class="value" id="c-step">4 / 8</div>' in dom
    assert 'class="empty">no data yet</text>' not in dom
    # Four charts, each with drawn series paths (weight: 1; error, P99, RSS: 2 each).
    paths = re.findall(r'<path d="M[^"]+"', dom)
    assert len(paths) >= 7, len(paths)
    assert "live · updated" in dom
