"""Prometheus as the metric source: a real Prometheus scrapes both sides every second and the
controller judges by PromQL (attach targets, built-in router for the split and the mirror)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.engines import prometheus
from tests.rollout.harness import FAST_SPEC, Load, Rollout
from tests.support import FIXTURES, ServerProcess

pytestmark = pytest.mark.e2e

#: PromQL windows need a few one-second scrapes in them.
SPEC = {**FAST_SPEC, "window": "6s", "shadow_duration": "4s", "step_hold": "4s"}


@contextmanager
def deployments(
    tmp_path: Path, candidate_env: dict[str, str] | None = None, scrape_candidate: bool = True
) -> Iterator[tuple[ServerProcess, ServerProcess, str]]:
    code_dir = tmp_path / "deployed"
    shutil.copytree(FIXTURES / "rollout_candidate", code_dir)
    args = ["--target-type", "regression"]
    with (
        ServerProcess(code_dir, "flask", args=args) as base,
        ServerProcess(code_dir, "fastapi", args=args, env=candidate_env) as cand,
    ):
        scrape: dict[str, str | tuple[str, dict[str, str]]] = {
            "baseline": (base.url.removeprefix("http://"), {"server_type": "flask"}),
        }
        if scrape_candidate:  # else "no data": Prometheus has no candidate series at all
            scrape["candidate"] = (cand.url.removeprefix("http://"), {"server_type": "fastapi"})
        with prometheus(tmp_path / "prom", scrape=scrape) as prom:
            yield base, cand, prom


def rollout_for(tmp_path: Path, base: ServerProcess, cand: ServerProcess, prom: str) -> Rollout:
    return Rollout(
        tmp_path,
        spec=SPEC,
        extra_args=[
            "--baseline-url",
            base.url,
            "--candidate-url",
            cand.url,
            "--prometheus-url",
            prom,
        ],
    )


def test_healthy_candidate_is_promoted_on_prometheus_evidence(tmp_path: Path) -> None:
    with deployments(tmp_path) as (base, cand, prom):
        rollout = rollout_for(tmp_path, base, cand, prom).start()
        load = Load(rollout.url).start()
        try:
            status = rollout.wait_phase({"promoted", "rolled_back"}, timeout=120)
            assert status.phase.value == "promoted", [r.rule for r in rollout.history()]
            passed = [r for r in rollout.history() if r.rule == "step.passed"]
            assert passed and all(r.numbers["error_rate"] == 0 for r in passed)
        finally:
            load.stop()
            rollout.stop()


def test_errors_in_canary_are_rolled_back_from_prometheus_counts(tmp_path: Path) -> None:
    env = {"ROLLOUT_FAULT": "errors", "ROLLOUT_FAULT_FLAG": "1"}
    with deployments(tmp_path, candidate_env=env) as (base, cand, prom):
        rollout = rollout_for(tmp_path, base, cand, prom).start()
        load = Load(rollout.url).start()
        try:
            rollout.wait_phase({"canary"}, timeout=90)
            (tmp_path / "deployed" / "fault.flag").write_text("errors")
            status = rollout.wait_phase({"rolled_back"}, timeout=90)
            # Prometheus misses the first increment of a counter series that appears mid-window
            # (the first 5xx), so the counts may first show a rate in the gradual band: at the
            # 10 % step either error rule ends in a rollback.
            assert status.rollback_rule in ("immediate.error_rate", "gradual.error_rate"), [
                r.rule for r in rollout.history()
            ]
        finally:
            load.stop()
            rollout.stop()


def test_no_data_holds_and_never_promotes(tmp_path: Path) -> None:
    with deployments(tmp_path, scrape_candidate=False) as (base, cand, prom):
        rollout = rollout_for(tmp_path, base, cand, prom).start()
        load = Load(rollout.url).start()
        try:
            rollout.wait_for(
                lambda: any(r.rule == "inconclusive" for r in rollout.history()),
                60,
                "an inconclusive shadow",
            )
            status = rollout.status()
            assert status is not None and status.phase.value == "shadow"
            assert not any(r.action in ("start_canary", "promote") for r in rollout.history())
        finally:
            load.stop()
            rollout.stop()
