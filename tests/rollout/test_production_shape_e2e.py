"""The production shape: attach + nginx + Prometheus, with no Tandem code in the data path.

The platform runs two deployments (flask and fastapi), its own nginx (whose ``http`` block
includes the file the rollout owns) and a Prometheus scraping both deployments. ``tandem rollout
start --traffic nginx --prometheus-url`` drives the split through nginx, judges by PromQL, and
compares mirrored requests in its comparison service (the built-in router at weight 0).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from tandem.rollout.nginx import NginxTraffic
from tests.cgroups import memory_cgroup, remove
from tests.engines import Nginx, nginx, prometheus
from tests.rollout.harness import FAST_SPEC, Load, Rollout
from tests.support import FIXTURES, ServerProcess

pytestmark = pytest.mark.e2e

SPEC = {**FAST_SPEC, "window": "6s", "shadow_duration": "4s", "step_hold": "4s"}


@contextmanager
def platform(
    tmp_path: Path,
    candidate_env: dict[str, str] | None = None,
    spec: dict | None = None,
    query_log: bool = False,
) -> Iterator[tuple[Rollout, Nginx]]:
    """Deployments, Prometheus and nginx as a platform runs them, and the rollout for them."""
    code_dir = tmp_path / "deployed"
    shutil.copytree(FIXTURES / "rollout_candidate", code_dir)
    args = ["--target-type", "regression"]
    with ExitStack() as stack:
        base = stack.enter_context(ServerProcess(code_dir, "flask", args=args))
        cand = stack.enter_context(ServerProcess(code_dir, "fastapi", args=args, env=candidate_env))
        prom = stack.enter_context(
            prometheus(
                tmp_path / "prom",
                scrape={
                    "baseline": (base.url.removeprefix("http://"), {"server_type": "flask"}),
                    "candidate": (cand.url.removeprefix("http://"), {"server_type": "fastapi"}),
                },
                query_log=query_log,
            )
        )
        include = tmp_path / "nginx" / "tandem.conf"
        rollout = Rollout(tmp_path, spec=spec or SPEC)
        # The platform's nginx starts with everything on the baseline.
        first = NginxTraffic(include, f"127.0.0.1:{rollout.port}", base.url, cand.url)
        server = stack.enter_context(nginx(tmp_path / "nginx", first.render(0)))
        rollout.command += [
            "--baseline-url", base.url,
            "--candidate-url", cand.url,
            "--prometheus-url", prom,
            "--traffic", "nginx",
            "--nginx-conf", str(include),
            "--nginx-test-cmd", server.test_cmd,
            "--nginx-reload-cmd", server.reload_cmd,
            "--nginx-access-log", str(tmp_path / "nginx" / "split.log"),
        ]  # fmt: skip
        yield rollout, server


def test_healthy_candidate_is_promoted_through_nginx(tmp_path: Path) -> None:
    with platform(tmp_path) as (rollout, server):
        rollout.start()
        load = Load(rollout.url).start()
        try:
            status = rollout.wait_phase({"promoted", "rolled_back"}, timeout=150)
            assert status.phase.value == "promoted", [r.rule for r in rollout.history()]
            assert "* candidate;" in server.include.read_text()
            shadow = next(r for r in rollout.history() if r.rule == "shadow.passed")
            assert shadow.numbers["mirror_compared"] > 0  # nginx mirrored, the service compared
        finally:
            load.stop()
            rollout.stop()
        assert load.total > 100 and load.error_rate == 0.0
        sides = [
            line.split()[0] for line in (tmp_path / "nginx" / "split.log").read_text().splitlines()
        ]
        assert "candidate" in sides and "baseline" in sides


def test_a_wrong_digit_is_caught_by_comparing_nginxs_mirror(tmp_path: Path) -> None:
    with platform(tmp_path, candidate_env={"ROLLOUT_FAULT": "last_digit"}) as (rollout, server):
        rollout.start()
        load = Load(rollout.url).start()
        try:
            status = rollout.wait_phase({"rolled_back"}, timeout=120)
            assert status.rollback_rule == "immediate.prediction_difference"
            assert "* baseline;" in server.include.read_text()
        finally:
            load.stop()
            rollout.stop()
        assert load.error_rate == 0.0


#: As on the built-in path: the leak test is about the leak rule only.
LEAK_ONLY = {
    **SPEC,
    "triggers": {**SPEC["triggers"], "memory_increase": 1000.0, "p99_increase": 1000.0},
}


@pytest.mark.parametrize(
    ("fault", "rule", "spec", "from_canary"),
    [
        ("one_error", "shadow.failure", SPEC, False),
        # Either error rule (see test_prometheus_e2e: Prometheus misses a new series' first 5xx).
        ("errors", "immediate.error_rate|gradual.error_rate", SPEC, True),
        ("hang", "immediate.deadlock", SPEC, True),
        ("leak", "immediate.memory_leak", LEAK_ONLY, False),
    ],
)
def test_fault_matrix_on_the_production_shape(
    tmp_path: Path, fault: str, rule: str, spec: dict, from_canary: bool
) -> None:
    env = {"ROLLOUT_FAULT": fault, **({"ROLLOUT_FAULT_FLAG": "1"} if from_canary else {})}
    with platform(tmp_path, candidate_env=env, spec=spec) as (rollout, server):
        rollout.start()
        load = Load(rollout.url).start()
        try:
            if from_canary:
                rollout.wait_phase({"canary"}, timeout=120)
                (tmp_path / "deployed" / "fault.flag").write_text(fault)
            status = rollout.wait_phase({"rolled_back"}, timeout=120)
            assert status.rollback_rule in rule.split("|"), [r.rule for r in rollout.history()]
            assert "* baseline;" in server.include.read_text()
        finally:
            load.stop()
            rollout.stop()


def test_an_oom_killed_worker_is_rolled_back_from_prometheus(tmp_path: Path) -> None:
    """A real OOM kill, seen only as ``drum_oom_kills_total`` rising in Prometheus."""
    # The candidate's worker runs past a small memory cgroup's limit once, in shadow.
    group = memory_cgroup(64 * 1024 * 1024)
    env = {"ROLLOUT_FAULT": "oom", "TANDEM_TEST_OOM_CGROUP": str(group)}
    try:
        with platform(tmp_path, candidate_env=env) as (rollout, server):
            rollout.start()
            load = Load(rollout.url).start()
            try:
                status = rollout.wait_phase({"rolled_back"}, timeout=90)
                assert status.rollback_rule == "immediate.oom", [r.rule for r in rollout.history()]
                oom = next(r for r in rollout.history() if r.rule == "immediate.oom")
                assert oom.numbers["oom_kills"] == 1
                assert "* baseline;" in server.include.read_text()
            finally:
                load.stop()
                rollout.stop()
    finally:
        remove(group)


#: As on the built-in path (test_slow_candidate_is_reduced_through_the_table): four steps so
#: that 60 % walks the whole reduction table, and only the P99 trigger in play.
SLOW = {
    **SPEC,
    "steps": [10, 30, 60, 100],
    "step_hold": "3s",
    "reduction_wait": "4s",
    "min_samples": 10,
    "triggers": {**SPEC["triggers"], "p99_increase": 5.0},
}


def test_a_slow_candidate_is_reduced_through_the_table_by_prometheus_p99(tmp_path: Path) -> None:
    """P99 from ``drum_request_duration_seconds`` buckets drives the gradual reductions."""
    env = {"ROLLOUT_FAULT": "slow", "ROLLOUT_FAULT_FLAG": "1"}
    with platform(tmp_path, candidate_env=env, spec=SLOW) as (rollout, server):
        rollout.start()
        load = Load(rollout.url, threads=6).start()
        try:
            # The candidate turns slow (+0.25 s a request) once it serves 60 %.
            rollout.wait_for(
                lambda: (s := rollout.status()) is not None and s.weight >= 60, 120, "weight 60"
            )
            (tmp_path / "deployed" / "fault.flag").write_text("slow")
            rollout.wait_phase({"rolled_back"}, timeout=90)
            rows = rollout.history()
            reductions = [(r.from_weight, r.to_weight) for r in rows if r.action == "reduce"]
            final = next(r for r in rows if r.action == "rollback")
            assert final.rule == "gradual.p99", [r.rule for r in rows]
            path = reductions + [(final.from_weight, final.to_weight)]
            assert path == [(60.0, 50.0), (50.0, 25.0), (25.0, 5.0), (5.0, 0.0)], path
            assert "* baseline;" in server.include.read_text()
        finally:
            load.stop()
            rollout.stop()


def _judging_queries(tmp_path: Path) -> int:
    """Queries Prometheus answered about the deployments' requests (only the controller asks)."""
    log = tmp_path / "prom" / "queries.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return sum("drum_requests_total" in json.loads(line)["params"]["query"] for line in lines)


def test_a_killed_controller_resumes_on_nginx_and_prometheus(tmp_path: Path) -> None:
    """``kill -9`` mid-canary, then started again with none of the seam flags: the resumed
    controller must keep driving nginx and judging by Prometheus (as its state recorded)."""
    with platform(tmp_path, query_log=True) as (rollout, server):
        rollout.start()
        load = Load(rollout.url).start()
        try:
            rollout.wait_phase({"canary"}, timeout=120)
            rollout.kill_controller()
            # The operator's command line, without --baseline-url ... --nginx-access-log.
            bare = rollout.command[: rollout.command.index("--baseline-url")]
            refused = subprocess.run(
                [*bare, "--traffic", "builtin"],
                env=rollout.env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert refused.returncode == 1, refused.stdout + refused.stderr
            assert "--traffic nginx" in refused.stderr and "mid-rollout" in refused.stderr
            rollout.command = bare
            asked = _judging_queries(tmp_path)
            rollout.start()
            status = rollout.wait_phase({"promoted", "rolled_back"}, timeout=120)
            assert status.phase.value == "promoted", [r.rule for r in rollout.history()]
            assert "* candidate;" in server.include.read_text()  # nginx got the weights
            assert _judging_queries(tmp_path) > asked  # and Prometheus the questions
            actions = [r.action for r in rollout.history()]
            assert actions.count("start") == 1 and "seam_change" not in actions, actions
            assert "judged by Prometheus" in rollout.logs().split("resuming the rollout")[1]
        finally:
            load.stop()
            rollout.stop()
        assert load.error_rate == 0.0, (load.statuses, load.failures)
