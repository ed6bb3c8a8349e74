"""The fleet controller tick by tick, in process: fake deployments, fake metrics, a fake clock and
a real SQLite store. Which deployments move at each percentage, max-unavailable batching, failed
verifications put back, the reduction table, the fleet-wide Level 1 and resuming after a crash."""

from __future__ import annotations

from pathlib import Path

import pytest

from tandem.fleet.plan import bucket, plan_steps, side_for
from tandem.rollout.status import Phase
from tandem.rollout.store import RolloutStore
from tandem.runtime_params import Params
from tandem.server_type import decide_server_type
from tests.fleet.support import IDS, SPEC, Rig, World, make_rig


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return make_rig(tmp_path)


# -- the plan ----------------------------------------------------------------------------------


def test_sides_are_the_servers_own_choice_at_every_percentage() -> None:
    for member_id, expected_bucket in IDS.items():
        assert bucket(member_id) == expected_bucket
        for percent in (0, 1, 1.25, 1.26, 5, 25, 50, 74.57, 75, 100):
            env = {"DRUM_FASTAPI_CANARY_PERCENT": f"{percent:g}", "MLOPS_DEPLOYMENT_ID": member_id}
            server = decide_server_type(Params(env), None).server_type
            assert side_for(member_id, percent) == server
            assert server == ("fastapi" if expected_bucket < percent else "flask")


def test_steps_that_move_nobody_are_skipped_and_the_last_group_keeps_100() -> None:
    plan = plan_steps(SPEC.steps, list(IDS))
    assert plan.steps == (5.0, 10.0, 25.0, 50.0, 100.0)
    assert plan.skipped == (1.0, 75.0, 90.0)  # fleet-17's bucket is 1.25: nobody at 1 %
    assert dict(plan.moves) == {
        5.0: ("fleet-17",),
        10.0: ("fleet-28",),
        25.0: ("fleet-35", "fleet-10"),
        50.0: ("fleet-03", "fleet-09"),
        100.0: ("fleet-08", "fleet-02"),
    }
    # No deployment below the first step: it is skipped too (no candidate evidence there).
    assert plan_steps((1.0, 5.0, 100.0), ["fleet-35", "fleet-02"]).steps == (100.0,)


# -- walking up ---------------------------------------------------------------------------------


def test_a_healthy_fleet_walks_every_step_restarting_only_the_deployments_that_move(
    rig: Rig,
) -> None:
    world = rig.world
    status = rig.controller.initial_status()
    assert (status.phase, status.weight) == (Phase.CANARY, 5.0)
    assert world.on_fastapi() == {"fleet-17"}
    assert {d.percent for d in world.deployments.values()} == {"5"}
    restarts = {i: d.restarts for i, d in world.deployments.items()}
    assert restarts == {i: int(i == "fleet-17") for i in IDS}

    seen = [(status.weight, frozenset(world.on_fastapi()))]
    for _ in range(200):
        if status.phase.is_terminal:
            break
        rig.clock.now += SPEC.interval
        status = rig.controller.tick(status)
        if seen[-1][0] != status.weight:
            seen.append((status.weight, frozenset(world.on_fastapi())))
            # Every deployment carries the fleet's percentage, whether it restarted or not.
            assert {d.percent for d in world.deployments.values()} == {f"{status.weight:g}"}
    assert status.phase == Phase.PROMOTED
    # At 100 % no deployment is left on Flask: judged against the 50 % step's Flask side.
    promoted = rig.decisions("promote")[-1]
    assert promoted.numbers["memory_increase"] == 0.0 and promoted.numbers["p99_increase"] == 0.0
    assert [w for w, _ in seen] == [5.0, 10.0, 25.0, 50.0, 100.0]
    for weight, on in seen:
        assert on == {i for i, b in IDS.items() if b < weight}
    # Each deployment restarted exactly once: when its side changed.
    assert {i: d.restarts for i, d in world.deployments.items()} == dict.fromkeys(IDS, 1)
    actions = [(r.action, r.rule) for r in rig.decisions() if r.action != "hold"]
    assert actions[:2] == [("start", "operator.start"), ("apply", "fleet.apply")]
    assert actions.count(("step_up", "step.passed")) == 4
    assert actions[-2:] == [("apply", "fleet.apply"), ("promote", "step.passed")]
    start = rig.decisions("start")[0]
    assert "skipped" in start.reason and start.numbers["steps"] == [5, 10, 25, 50, 100]


def test_a_steps_hold_starts_once_its_deployments_are_moved(rig: Rig) -> None:
    def slow_restart(dep: object) -> None:
        rig.clock.now += 15.0  # each restart takes 15 s of the 20 s hold

    rig.world.on_restart.append(slow_restart)
    rig.controller.initial_status()
    status = rig.until(lambda s: s.weight == 25.0)
    up10 = next(r for r in rig.decisions("step_up") if r.to_weight == 10.0)
    applied10 = next(r for r in rig.decisions("apply") if r.to_weight == 10.0)
    up25 = next(r for r in rig.decisions("step_up") if r.to_weight == 25.0)
    assert applied10.at - up10.at >= 15.0
    assert up25.at - applied10.at >= SPEC.step_hold
    assert status.step_started_at == rig.decisions("apply")[-1].at


def test_max_unavailable_batches_the_restarts(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, max_unavailable=1)
    status = rig.controller.initial_status()
    status = rig.until(lambda s: s.weight == 25.0)
    last = rig.decisions("apply")[-1]
    assert last.numbers["batches"] == [["fleet-35"], ["fleet-10"]]
    assert rig.world.max_down == 1

    rig = make_rig(tmp_path / "two", max_unavailable=2)
    status = rig.controller.initial_status()
    status = rig.controller.walker.move(100.0, 5.0)
    assert status.batches == [
        ["fleet-28", "fleet-35"],
        ["fleet-10", "fleet-03"],
        ["fleet-09", "fleet-08"],
        ["fleet-02"],
    ]
    assert rig.world.max_down == 2


def test_restarting_deployments_are_left_out_of_service_discovery(rig: Rig) -> None:
    seen: list[dict[str, str | None]] = []
    rig.world.on_restart.append(lambda dep: seen.append(dict(rig.published[-1])))
    rig.controller.initial_status()
    assert seen == [{**dict.fromkeys(IDS, "flask"), "fleet-17": None}]
    assert rig.published[-1] == {**dict.fromkeys(IDS, "flask"), "fleet-17": "fastapi"}


# -- failed verification ------------------------------------------------------------------------


def test_a_deployment_failing_on_fastapi_is_put_back_and_holds_the_step(rig: Rig) -> None:
    world = rig.world
    world.deployments["fleet-35"].fail_on = {"fastapi"}
    rig.controller.initial_status()
    status = rig.until(lambda s: s.weight == 25.0)
    dep = world.deployments["fleet-35"]
    # Moved, failed, put back on Flask with the percentage it had, and verified there.
    assert (dep.side, dep.percent, dep.restarts) == ("flask", "10", 2)
    assert dep.writes == ["5", "10", "25", "10"]
    assert world.deployments["fleet-10"].side == "fastapi"
    state = rig.controller.states["fleet-35"]
    assert state.held_at == 25.0
    assert state.verification is not None
    assert (state.verification["expect"], state.verification["passed"]) == ("flask", True)
    apply = rig.decisions("apply")[-1]
    assert apply.numbers["put_back"] == ["fleet-35"]
    assert "fleet-35: failed on fastapi" in apply.reason and "put back on flask" in apply.reason
    assert any("failed at 25%" in n for n in rig.notes)

    # However long the traffic looks healthy, the step does not pass, nor is fleet-35 retried.
    status = rig.tick(20)
    assert (status.phase, status.weight) == (Phase.CANARY, 25.0)
    assert rig.decisions()[-1].rule == "step.verification"
    assert "fleet-35" in rig.decisions()[-1].reason
    assert dep.restarts == 2

    # The operator fixes it and resumes: it is retried, and the walk goes on.
    dep.fail_on = set()
    rig.store.add_command("resume")
    status = rig.tick()
    assert rig.decisions("retry")[-1].rule == "operator.retry"
    assert dep.side == "fastapi" and rig.controller.states["fleet-35"].held_at is None
    status = rig.until(lambda s: s.phase.is_terminal)
    assert status.phase == Phase.PROMOTED


def test_after_a_failed_batch_the_rest_of_the_step_is_not_attempted(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, max_unavailable=1)
    rig.world.deployments["fleet-35"].fail_on = {"fastapi"}
    rig.controller.initial_status()
    rig.until(lambda s: s.weight == 25.0)
    apply = rig.decisions("apply")[-1]
    assert apply.numbers["put_back"] == ["fleet-35"]
    assert apply.numbers["deferred"] == ["fleet-10"]
    untouched = rig.world.deployments["fleet-10"]
    assert (untouched.side, untouched.percent, untouched.restarts) == ("flask", "10", 0)
    assert rig.controller.states["fleet-10"].held_at == 25.0
    status = rig.tick(3)
    assert "not attempted" in rig.decisions()[-1].reason and status.weight == 25.0


def test_a_restart_command_that_fails_counts_as_a_failed_verification(rig: Rig) -> None:
    rig.controller.initial_status()
    rig.world.deployments["fleet-28"].restart_fails = True
    rig.until(lambda s: s.weight == 10.0)
    state = rig.controller.states["fleet-28"]
    assert state.held_at == 10.0
    assert state.verification is not None and not state.verification["passed"]
    assert "restart failed" in rig.decisions("apply")[-1].reason


# -- walking back -------------------------------------------------------------------------------


def test_a_gradual_trigger_walks_the_reduction_table_down_to_zero(rig: Rig) -> None:
    world = rig.world
    status = rig.controller.initial_status()
    status = rig.until(lambda s: s.weight == 100.0)  # held there for step_hold
    assert world.on_fastapi() == set(IDS)
    before = {i: d.restarts for i, d in world.deployments.items()}
    rig.metrics.candidate_p99 = 0.100  # P99 +900 %: gradual
    moves: list[tuple[float, set[str]]] = []
    for _ in range(200):
        if status.phase.is_terminal:
            break
        on = world.on_fastapi()
        rig.clock.now += SPEC.interval
        status = rig.controller.tick(status)
        if world.on_fastapi() != on:
            moves.append((status.weight, on - world.on_fastapi()))
    assert status.phase == Phase.ROLLED_BACK and status.rollback_rule == "gradual.p99"
    # The seed's table: > 50 -> 50, 25-50 -> 25, 10-25 -> 5, 1-10 -> 0; only movers restart.
    assert moves == [
        (50.0, {"fleet-08", "fleet-02"}),
        (25.0, {"fleet-03", "fleet-09"}),
        (5.0, {"fleet-28", "fleet-35", "fleet-10"}),
        (0.0, {"fleet-17"}),
    ]
    assert {i: d.restarts - before[i] for i, d in world.deployments.items()} == dict.fromkeys(
        IDS, 1
    )
    reductions = [r for r in rig.decisions() if r.action in ("reduce", "rollback")]
    assert [(r.from_weight, r.to_weight) for r in reductions] == [
        (100, 50),
        (50, 25),
        (25, 5),
        (5, 0),
    ]
    gaps = [b.at - a.at for a, b in zip(reductions, reductions[1:], strict=False)]
    assert all(gap >= SPEC.reduction_wait for gap in gaps)
    _assert_every_deployment_verified_on_flask(rig, status.phase_started_at)


def test_an_immediate_trigger_is_the_fleet_wide_level_1(rig: Rig) -> None:
    world = rig.world
    rig.controller.initial_status()
    status = rig.until(lambda s: s.weight == 50.0)
    on = world.on_fastapi()
    before = {i: d.restarts for i, d in world.deployments.items()}
    rig.metrics.candidate_errors = 100  # 10 %
    status = rig.tick()
    assert (status.phase, status.weight) == (Phase.ROLLED_BACK, 0.0)
    assert status.rollback_rule == "immediate.error_rate"
    assert world.on_fastapi() == set()
    # Every FastAPI deployment restarted once, the others not at all; all carry 0 %.
    assert {i: d.restarts - before[i] for i, d in world.deployments.items()} == {
        i: int(i in on) for i in IDS
    }
    assert {d.percent for d in world.deployments.values()} == {"0"}
    _assert_every_deployment_verified_on_flask(rig, status.phase_started_at)
    assert any("rolled back (immediate.error_rate)" in n for n in rig.notes)


def test_a_fastapi_deployment_silent_past_the_ping_timeout_rolls_the_fleet_back(rig: Rig) -> None:
    rig.controller.initial_status()
    rig.until(lambda s: s.weight == 10.0)
    rig.world.deployments["fleet-28"].up = False
    status = rig.until(lambda s: s.phase.is_terminal)
    assert status.rollback_rule == "immediate.deadlock"
    # Down on Flask is not a FastAPI deadlock: the same outage there does not roll back.
    rig2 = make_rig(rig.store.path.parent / "flask-down")
    rig2.controller.initial_status()
    rig2.world.deployments["fleet-02"].up = False
    status = rig2.tick(10)
    assert not status.phase.is_terminal


def test_a_deployment_failing_on_flask_in_a_rollback_is_reported_not_put_back(rig: Rig) -> None:
    rig.controller.initial_status()
    rig.until(lambda s: s.weight == 10.0)
    rig.world.deployments["fleet-28"].fail_on = {"flask"}
    rig.store.add_command("abort")
    status = rig.tick()
    assert (status.phase, status.weight) == (Phase.ABORTED, 0.0)
    dep = rig.world.deployments["fleet-28"]
    assert (dep.side, dep.percent) == ("flask", "0")
    verify = rig.decisions("verify")[-1]
    assert verify.numbers["failed"] and "fleet-28" in verify.reason
    assert any("post-rollback verification" in n for n in rig.notes)


def _assert_every_deployment_verified_on_flask(rig: Rig, since: float) -> None:
    verify = rig.decisions("verify")[-1]
    assert verify.reason == f"all {len(IDS)} deployments verified on flask"
    for member_id, state in rig.controller.states.items():
        assert state.verification is not None, member_id
        assert state.verification["expect"] == "flask" and state.verification["passed"]
        assert state.verification["at"] >= since


# -- operator commands and resuming ---------------------------------------------------------------


def test_pause_holds_and_promote_moves_everyone(rig: Rig) -> None:
    rig.controller.initial_status()
    rig.store.add_command("pause")
    status = rig.tick(10)
    assert (status.phase, status.weight) == (Phase.PAUSED, 5.0)
    rig.store.add_command("promote")
    status = rig.tick()
    assert (status.phase, status.weight) == (Phase.PROMOTED, 100.0)
    assert rig.world.on_fastapi() == set(IDS)


def test_a_killed_controller_resumes_and_finishes_an_interrupted_walk(tmp_path: Path) -> None:
    world = World()
    rig = make_rig(tmp_path, world=world)
    rig.controller.initial_status()
    status = rig.until(lambda s: s.weight == 10.0)
    # Killed mid-walk to 25 %: the decision is recorded, fleet-35 got its percentage and
    # restarted, fleet-10 got neither.
    rig.store.save(status.evolve(weight=25.0, step_index=2), action="step_up", rule="step.passed")
    world.deployments["fleet-35"].percent = "25"
    world.place("fleet-35").restart()
    rig.store.close()

    again = make_rig(tmp_path, world=world, store=RolloutStore(tmp_path / "fleet.db"))
    status = again.controller.initial_status()
    assert status.weight == 25.0
    assert world.on_fastapi() == {"fleet-17", "fleet-28", "fleet-35", "fleet-10"}
    assert world.deployments["fleet-35"].restarts == 1  # already on its side: not restarted
    assert again.decisions("apply")[-1].numbers["moved"] == ["fleet-10"]
    assert {d.percent for d in world.deployments.values()} == {"25"}
    status = again.until(lambda s: s.phase.is_terminal)
    assert status.phase == Phase.PROMOTED


def test_status_rows_show_every_deployment(rig: Rig) -> None:
    from tandem.fleet.controller import status_rows

    rig.controller.initial_status()
    rig.tick(2)
    rows = {r["id"]: r for r in status_rows(rig.store)}
    assert set(rows) == set(IDS)
    assert rows["fleet-17"]["side"] == "fastapi" and rows["fleet-17"]["desired"] == "fastapi"
    assert rows["fleet-17"]["health"] == "up"
    assert rows["fleet-17"]["verification"]["passed"]
    assert rows["fleet-17"]["share"] == 0.75 and rows["fleet-28"]["requests"] == 100
    assert rows["fleet-02"]["side"] == "flask" and rows["fleet-02"]["share"] == 0.0


def test_the_dashboard_shows_the_fleets_deployments(rig: Rig) -> None:
    import httpx

    from tandem.fleet.dashboard import DashboardServer

    rig.controller.initial_status()
    rig.tick(2)
    server = DashboardServer(rig.store.path).start()
    try:
        doc = httpx.get(server.url + "api/dashboard", timeout=5).json()
        page = httpx.get(server.url, timeout=5).text
    finally:
        server.stop()
    assert doc["status"]["weight"] == 5.0 and doc["router"] is None
    assert {row["id"] for row in doc["fleet"]} == set(IDS)
    assert [d["action"] for d in doc["decisions"]][:2] == ["start", "apply"]
    assert doc["observations"][-1]["fleet"] == {"fastapi": 1, "flask": 7}
    assert 'id="fleet-section"' in page and "renderFleet" in page


def test_a_walk_is_saved_as_it_happens(tmp_path: Path) -> None:
    """``tandem fleet status`` reads the store while a walk restarts deployments: each restart,
    and a failed deployment's put-back and hold, are in the store before the walk ends (a crash
    mid-walk keeps them)."""
    rig = make_rig(tmp_path, max_unavailable=1)
    world, bad = rig.world, "fleet-35"  # moves to FastAPI at 25 %
    world.deployments[bad].fail_on = {"fastapi"}
    rig.controller.initial_status()
    seen: list[tuple[str, dict]] = []

    def read_store(dep: object) -> None:
        reader = RolloutStore(tmp_path / "fleet.db")
        try:
            members = reader.get_json("fleet_members") or {}
        finally:
            reader.close()
        seen.append((dep.id, members.get(dep.id, {})))  # type: ignore[attr-defined]

    world.on_restart.append(read_store)
    rig.until(lambda s: rig.world.deployments[bad].restarts >= 2)
    first, *rest = [doc for i, doc in seen if i == bad]
    assert first["health"] == "restarting"
    put_back = rest[0]  # read while it is being put back on Flask, still in the walk
    assert put_back["held_at"] == 25.0 and put_back["health"] == "restarting"
    assert all(doc.get("health") == "restarting" for _, doc in seen)


def test_a_promote_with_deployments_put_back_does_not_exit_0(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    """An operator's promote jumps to 100 %; a deployment failing on FastAPI there is put back,
    and the command says so and exits 1 rather than claiming the fleet moved."""
    from tandem.fleet.cli import EXIT_NOT_PROMOTED, EXIT_PROMOTED, exit_code

    rig.world.deployments["fleet-35"].fail_on = {"fastapi"}
    rig.controller.initial_status()
    rig.store.add_command("pause")
    rig.tick(3)
    rig.store.add_command("promote")
    status = rig.tick()
    assert (status.phase, status.weight) == (Phase.PROMOTED, 100.0)
    assert rig.world.deployments["fleet-35"].side == "flask"
    behind = rig.controller.left_behind(status)  # and those deferred after its batch failed
    assert "fleet-35" in behind and set(behind) == set(IDS) - rig.world.on_fastapi()
    assert exit_code(rig.controller, status) == EXIT_NOT_PROMOTED
    assert f"{len(behind)} deployment(s) are still on Flask" in capsys.readouterr().err
    rig.world.deployments["fleet-35"].fail_on = set()
    healthy = make_rig(rig.store.path.parent / "ok")
    healthy.controller.initial_status()
    healthy.store.add_command("promote")
    done = healthy.tick()
    assert exit_code(healthy.controller, done) == EXIT_PROMOTED


class _Crash(Exception):
    """The controller process dies here."""


def test_a_put_back_cut_short_by_a_crash_is_finished_on_resume(tmp_path: Path) -> None:
    """fleet-35 fails on FastAPI at 25 % and the controller dies as its put-back restart
    begins: resumed, the controller puts it back on Flask (held there), never leaves it on
    the side it failed on."""
    world = World()
    rig = make_rig(tmp_path, world=world, max_unavailable=1)
    dep = world.deployments["fleet-35"]
    dep.fail_on = {"fastapi"}

    def crash_on_put_back(d: object) -> None:
        if d is dep and dep.restarts == 1:  # its second restart: the put-back
            raise _Crash

    world.on_restart.append(crash_on_put_back)
    rig.controller.initial_status()
    with pytest.raises(_Crash):
        rig.until(lambda s: False)
    assert (dep.side, dep.percent) == ("fastapi", "10")  # died before Flask came up
    rig.store.close()
    world.on_restart.remove(crash_on_put_back)

    again = make_rig(tmp_path, world=world, store=RolloutStore(tmp_path / "fleet.db"))
    status = again.controller.initial_status()
    assert status.weight == 25.0
    assert (dep.side, dep.percent) == ("flask", "10")
    state = again.controller.states["fleet-35"]
    assert state.held_at == 25.0 and state.verification is not None
    assert (state.verification["expect"], state.verification["passed"]) == ("flask", True)
    assert "fleet-35" in again.decisions("apply")[-1].numbers["put_back"]
    assert "fleet-35" in again.controller.left_behind(status)
