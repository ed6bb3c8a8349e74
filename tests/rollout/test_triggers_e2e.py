"""The seed's triggers fed by engines and people: security alerts, extension-failure reports and
trace gaps.

Security: a real Prometheus rule fires, a real Alertmanager delivers it to the router's admin API
as its webhook, and the controller rolls back at once. Extension failures: reports through
``tandem rollout report`` and the admin API reduce the canary gradually. Trace gaps: a candidate
whose OTLP endpoint is a loopback port nobody listens on is reduced gradually, read from its
``/stats/``; the same candidate exporting to a working local receiver is not.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.engines import alertmanager, prometheus
from tests.otlp_receiver import OtlpReceiver
from tests.rollout.harness import FAST_SPEC, Load, NotifyReceiver, Rollout
from tests.support import free_port

pytestmark = pytest.mark.e2e

#: A canary that stays at 10 % long enough for the engines to start and deliver.
HOLDING = {**FAST_SPEC, "step_hold": "120s"}
TOKEN = "admin-token-for-alerts"


def test_security_alert_from_alertmanager_rolls_back_at_once(tmp_path: Path) -> None:
    rollout = Rollout(tmp_path, spec=HOLDING, admin_token=TOKEN).start()
    load = Load(rollout.url).start()
    try:
        rollout.wait_phase({"canary"}, timeout=60)
        rules = [
            {
                "alert": "CandidateSecurityIncident",
                "expr": "vector(1)",
                "labels": {"category": "security", "severity": "low"},
                "annotations": {"summary": "token leaked in a log"},
            },
            {
                "alert": "DiskAlmostFull",
                "expr": "vector(1)",
                "labels": {"category": "capacity"},
                "annotations": {"summary": "not a security matter"},
            },
        ]
        with (
            alertmanager(
                tmp_path / "am", rollout.admin_url + "/api/alerts", bearer=TOKEN
            ) as am_url,
            prometheus(tmp_path / "prom", rules=rules, alertmanager_url=am_url),
        ):
            status = rollout.wait_phase({"rolled_back"}, timeout=60)
        assert status.rollback_rule == "immediate.security"
        final = next(r for r in rollout.history() if r.action == "rollback")
        assert "CandidateSecurityIncident: token leaked in a log" in final.reason
        assert "DiskAlmostFull" not in final.reason
        store = rollout.store()
        try:
            names = sorted(e.labels["alertname"] for e in store.events("alert"))
        finally:
            store.close()
        assert "DiskAlmostFull" in names  # recorded, but it did not match the matcher
    finally:
        load.stop()
        rollout.stop()


def test_four_extension_failure_reports_reduce_the_canary(tmp_path: Path) -> None:
    spec = {**HOLDING, "steps": [30, 60, 100], "window": "60s"}
    rollout = Rollout(tmp_path, spec=spec).start()
    load = Load(rollout.url).start()
    try:
        rollout.wait_phase({"canary"}, timeout=60)
        for n in range(3):
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "tandem",
                    "rollout",
                    "report",
                    "--state",
                    str(rollout.state),
                    "--extension",
                    f"auth extension rejected a token ({n})",
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert proc.returncode == 0, proc.stderr
        # Three are tolerated (the seed: more than 3); the fourth comes through the admin API.
        r = httpx.post(
            rollout.admin_url + "/api/reports",
            json={"extension": "custom route /explain returned 500"},
            timeout=5,
        )
        assert r.status_code == 200 and r.json() == {"received": 1, "recorded": 1}
        rollout.wait_for(
            lambda: any(row.rule == "gradual.extension" for row in rollout.history()),
            60,
            "a gradual.extension decision",
        )
        first = next(row for row in rollout.history() if row.rule == "gradual.extension")
        assert (first.from_weight, first.to_weight) == (30.0, 25.0)
        assert "4 extension failures reported (> 3)" in first.reason
    finally:
        load.stop()
        rollout.stop()


#: Spans leave the candidate every 200 ms (a failing export gives up after 1 s), so 3 s of lag
#: covers a healthy export on two busy cores; the 10 s window leaves 7 s of ended spans to judge.
#: A traced candidate's early requests were seen slow on a loaded CI machine (P99 over 14x the
#: baseline's, before workers set OpenTelemetry up as they start) and its RSS steps up, which the
#: compressed latency, memory and leak limits would take for a fault; those rules are not under
#: test here, so they cannot name the reduction before the trace-gap rule does.
TRACING = {
    **HOLDING,
    "steps": [30, 60, 100],
    "window": "10s",
    "max_shadow_p99_ratio": 100.0,
    "triggers": {
        **FAST_SPEC["triggers"],
        "trace_export_lag": "3s",
        "leak_warmup": "6s",
        "p99_increase": 1000.0,
        "memory_increase": 1000.0,
    },
}


def _traced_candidate(endpoint: str) -> list[str]:
    """``--candidate-env`` flags: only the candidate traces, to ``endpoint``."""
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
        "OTEL_SDK_DISABLED": "",
        "OTEL_TRACES_EXPORTER": "otlp",
    }
    return [arg for key, value in env.items() for arg in ("--candidate-env", f"{key}={value}")]


def _judged_tracing(rollout: Rollout) -> list[dict[str, int]]:
    """The trace counts of the canary evaluations that had some (built-in source)."""
    store = rollout.store()
    try:
        rows = store.observations()
    finally:
        store.close()
    return [o["tracing"] for o in rows if o["phase"] == "canary" and o.get("tracing")]


def test_a_candidate_whose_spans_cannot_be_exported_is_reduced(tmp_path: Path) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens: every export fails
    rollout = Rollout(tmp_path, spec=TRACING, extra_args=_traced_candidate(nobody)).start()
    load = Load(rollout.url, max_seconds=150).start()
    try:
        rollout.wait_phase({"canary"}, timeout=40)
        rollout.wait_for(  # on a loaded CI machine the first failed exports take a while
            lambda: any(row.rule == "gradual.tracing" for row in rollout.history()),
            90,
            "a gradual.tracing decision",
        )
        history = rollout.history()
        first = next(row for row in history if row.rule == "gradual.tracing")
        # Usually 30 -> 25; on a loaded machine another gradual rule may have taken the first
        # step (the candidate's first traced requests are slow while OTel sets itself up).
        steps = [(r.rule, r.from_weight, r.to_weight) for r in history if r.action == "reduce"]
        assert first.action == "reduce" and first.to_weight < first.from_weight, steps
        assert all(rule.startswith("gradual.") for rule, _, _ in steps), steps
        assert "trace gaps: 0 spans exported for" in first.reason, first.reason
        assert first.numbers["export_failures"] > 0 and first.numbers["spans_ended"] > 0
    finally:
        load.stop()
        rollout.stop()


def test_a_candidate_exporting_every_span_is_not_reduced(tmp_path: Path) -> None:
    with OtlpReceiver() as receiver:
        rollout = Rollout(
            tmp_path, spec=TRACING, extra_args=_traced_candidate(receiver.endpoint)
        ).start()
        load = Load(rollout.url, max_seconds=60).start()
        try:
            rollout.wait_phase({"canary"}, timeout=40)
            # Sixteen judged evaluations (8 s at 0.5 s), with spans ending all along.
            rollout.wait_for(
                lambda: sum(t["spans_ended"] > 0 for t in _judged_tracing(rollout)) >= 16,
                30,
                "judged trace counts",
            )
            judged = _judged_tracing(rollout)
            assert all(t["export_failures"] == 0 for t in judged), judged
            assert all(t["spans_exported"] >= t["spans_ended"] for t in judged), judged
            assert not [row for row in rollout.history() if row.rule == "gradual.tracing"]
            status = rollout.status()
            assert status is not None and (status.phase.value, status.weight) == ("canary", 30)
            assert receiver.snapshot()  # the spans did arrive
        finally:
            load.stop()
            rollout.stop()


def test_admin_api_refuses_what_is_not_a_report_or_a_webhook(tmp_path: Path) -> None:
    rollout = Rollout(tmp_path, spec=HOLDING).start()
    try:
        for path, body in (("/api/alerts", {"no": "alerts"}), ("/api/reports", {"extension": ""})):
            r = httpx.post(rollout.admin_url + path, json=body, timeout=5)
            assert r.status_code == 400, r.text
            assert r.json()["message"].startswith("ERROR: ")
    finally:
        rollout.stop()


def test_pagerduty_is_triggered_on_rollback_and_resolved_on_recovery(tmp_path: Path) -> None:
    pager = NotifyReceiver()  # a local Events API v2 receiver
    rollout = Rollout(
        tmp_path,
        fault="last_digit",
        env={"TANDEM_PAGERDUTY_ROUTING_KEY": "rk-e2e"},
        extra_args=["--pagerduty-url", pager.url],
    ).start()
    load = Load(rollout.url).start()
    try:
        status = rollout.wait_phase({"rolled_back"}, timeout=90)
        rollout.wait_for(lambda: len(pager.messages) >= 2, 30, "trigger and resolve")
        trigger, resolve = pager.messages[:2]
        key = f"tandem-rollout-{int(status.started_at * 1000)}"
        assert trigger["event_action"] == "trigger" and resolve["event_action"] == "resolve"
        assert trigger["dedup_key"] == resolve["dedup_key"] == key
        assert trigger["routing_key"] == resolve["routing_key"] == "rk-e2e"
        assert trigger["payload"]["severity"] == "critical"
        assert "immediate.prediction_difference" in trigger["payload"]["summary"]
    finally:
        load.stop()
        rollout.stop()
        pager.close()


def test_pagerduty_without_a_routing_key_is_refused_before_anything_starts(
    tmp_path: Path,
) -> None:
    rollout = Rollout(tmp_path, extra_args=["--pagerduty-url", "http://127.0.0.1:9/"])
    proc = subprocess.run(
        rollout.command, capture_output=True, text=True, timeout=60, env=rollout.env
    )
    assert proc.returncode == 1
    assert "--pagerduty-url needs the routing key in TANDEM_PAGERDUTY_ROUTING_KEY" in proc.stderr
    assert not rollout.child_pids()
