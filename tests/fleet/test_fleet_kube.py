"""The fleet's Kubernetes path on the real ``kubernetes`` client, against recorded API exchanges
(``tests/kube_api.py``): a step that moves a Deployment to FastAPI and the Level 1 that moves it
back, each request checked exactly, and the dry run's patches with nothing sent.

The controller is driven tick by tick in process, as in ``test_fleet_ticks.py``: fleet-17 (the
only deployment on FastAPI at 5 %) is the Kubernetes entry, the other seven are the fake world's.
Readiness and verification are the fake world's too; the recording's hooks stand for the
Deployment controller, replacing the pods onto the side the restart asked for.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tandem.cli import main
from tandem.fleet.inventory import KubernetesEntry, Member
from tandem.fleet.places import KubernetesPlace, kubernetes_api, place_for
from tandem.ops import kube
from tandem.rollout.status import Phase
from tests.fleet.support import make_rig
from tests.kube_api import RecordedApiServer, load, write_kubeconfig

ENTRY = KubernetesEntry(namespace="ml", configmap="fleet-17-drum", deployment="fleet-17")


def test_a_step_and_the_level_1_move_a_kubernetes_deployment_and_its_label(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = make_rig(tmp_path)
    dep = rig.world.deployments["fleet-17"]
    dep.percent = None  # what the ConfigMap says is read from the API

    def replaced(side: str, percent: str) -> Any:
        def hook(body: Any) -> None:  # the Deployment controller replaces the pods
            dep.side, dep.percent = side, percent
            dep.restarts += 1

        return hook

    exchanges = load("fleet_step_and_level1")
    hooks = {"restart-fastapi": replaced("fastapi", "5"), "restart-flask": replaced("flask", "0")}
    with RecordedApiServer(exchanges, hooks) as api_server:
        monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kc", api_server.url)))
        member = Member("fleet-17", "http://fleet-17.ml.svc:8080", kubernetes=ENTRY)
        place = place_for(member, lambda: kubernetes_api("recorded"))
        assert isinstance(place, KubernetesPlace) and place.api is not None
        rig.controller.walker.places["fleet-17"] = place

        # The first step: 5 % written everywhere, fleet-17 restarted onto FastAPI.
        status = rig.controller.initial_status()
        assert (status.phase, status.weight) == (Phase.CANARY, 5.0)
        assert rig.world.on_fastapi() == {"fleet-17"}
        state = rig.controller.states["fleet-17"]
        assert (state.side, state.percent) == ("fastapi", "5")
        assert state.verification is not None and state.verification["passed"]
        assert rig.decisions("apply")[-1].numbers["moved"] == ["fleet-17"]
        assert {d.percent for d in rig.world.deployments.values()} == {"5"}

        # An immediate trigger: the fleet-wide Level 1 puts it back on Flask.
        rig.metrics.candidate_errors = 100
        status = rig.tick()
        assert (status.phase, status.weight) == (Phase.ROLLED_BACK, 0.0)
        assert rig.world.on_fastapi() == set() and dep.restarts == 2
        api_server.assert_complete()

    # Every request was the recorded one: the label followed the side both ways, with the
    # digest of the ConfigMap's data as written.
    restarts = [e for e in exchanges if e["id"].startswith("restart-")]
    assert [e["request"]["body"]["spec"]["template"]["metadata"]["labels"] for e in restarts] == [
        {kube.SERVER_TYPE_LABEL: "fastapi"},
        {kube.SERVER_TYPE_LABEL: "flask"},
    ]
    polls = [line for line in api_server.served if line.startswith("GET /apis/")]
    assert len(polls) == 6  # per move: the read before the restart, then two rollout polls


def test_the_dry_run_prints_the_exact_patches_and_sends_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    entries = [
        {
            "id": member_id,
            "url": f"http://{member_id}.ml.svc:8080",
            "kubernetes": {
                "namespace": "ml",
                "configmap": f"{member_id}-drum",
                "deployment": member_id,
            },
        }
        for member_id in ("fleet-17", "fleet-02")
    ]
    (tmp_path / "fleet.yaml").write_text(yaml.safe_dump({"deployments": entries}))
    with RecordedApiServer(load("dry_run")) as api_server:
        monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kc", api_server.url)))
        code = main(
            [
                "fleet",
                "start",
                "--dry-run",
                "--inventory",
                str(tmp_path / "fleet.yaml"),
                "--kube-context",
                "recorded",
                "--state",
                str(tmp_path / "s.db"),
            ]
        )
        api_server.assert_complete()
        assert api_server.served == []
    out = capsys.readouterr().out
    assert code == 0 and "dry run: nothing was changed" in out
    assert not (tmp_path / "s.db").exists()
    percent = {
        "data": {"DRUM_FASTAPI_CANARY_PERCENT": json.dumps({"type": "numeric", "payload": 5})}
    }
    for member_id, moves in (("fleet-17", 5), ("fleet-02", 100)):
        lines = out.splitlines()
        start = lines.index(
            f"{member_id}: sends to the Kubernetes API, as application/strategic-merge-patch+json:"
        )
        assert lines[start + 1] == (
            "  at 5% (each step its own percentage): PATCH "
            f"/api/v1/namespaces/ml/configmaps/{member_id}-drum?fieldManager=tandem"
        )
        assert json.loads(lines[start + 2]) == percent
        assert lines[start + 3] == (
            f"  at {moves}%, restarted onto fastapi: PATCH "
            f"/apis/apps/v1/namespaces/ml/deployments/{member_id}?fieldManager=tandem"
        )
        restart = json.loads(lines[start + 4])
        stamp = restart["spec"]["template"]["metadata"]["annotations"].pop(
            kube.RESTARTED_AT_ANNOTATION
        )
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp)
        assert restart == {"spec": {"template": {"metadata": {"annotations": {}}}}}
        assert '{"labels": {"tandem-server-type": "fastapi"}}' in lines[start + 5]
