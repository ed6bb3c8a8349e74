"""fleet.yaml validation, env-file places, file_sd content and the dry run, in process."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tandem.cli import main
from tandem.errors import ConfigError
from tandem.fleet.cli import check_places
from tandem.fleet.filesd import target_groups, write_file_sd
from tandem.fleet.inventory import DEFAULT_CONFIGMAP_KEY, load_inventory, parse_inventory
from tandem.fleet.places import EnvFilePlace, KubernetesPlace, RestartError, place_for


def _env(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.env"
    path.write_text(text)
    return path


def test_a_valid_inventory_with_defaults_and_relative_paths(tmp_path: Path) -> None:
    _env(tmp_path, "a", "MLOPS_DEPLOYMENT_ID=a\n")
    doc = {
        "defaults": {"restart_timeout": "30s", "verify": {"timeout": "5s"}},
        "deployments": [
            {
                "id": "a",
                "url": "http://10.0.0.5:8080/",
                "env_file": "a.env",
                "restart_cmd": "systemctl restart drum-a",
                "ready_timeout": "1m",
                "verify": {"payload": "samples/a.csv", "headers": {"X-Key": "k"}},
            },
            {
                "id": "b",
                "url": "https://b.ml.svc/models/b",
                "kubernetes": {"namespace": "ml", "configmap": "b-drum", "deployment": "b"},
            },
        ],
    }
    (tmp_path / "fleet.yaml").write_text(yaml.safe_dump(doc))
    inventory = load_inventory(tmp_path / "fleet.yaml")
    a, b = inventory.members
    assert (a.url, a.env_file, a.restart_timeout, a.ready_timeout) == (
        "http://10.0.0.5:8080",
        tmp_path / "a.env",
        30.0,
        60.0,
    )
    assert a.verify.payload == tmp_path / "samples" / "a.csv" and a.verify.timeout == 5.0
    assert a.verify.headers == {"X-Key": "k"} and a.target == "10.0.0.5:8080"
    assert b.kubernetes is not None and b.kubernetes.key == DEFAULT_CONFIGMAP_KEY
    assert (b.restart_timeout, b.target) == (30.0, "b.ml.svc:443")


def test_every_problem_is_reported_at_once_naming_its_entry(tmp_path: Path) -> None:
    doc = {
        "deployment": [],
        "deployments": [
            {"id": "a", "url": "http://a:1", "env_file": "missing.env"},
            {"id": "a", "url": "ftp://a", "env_file": "x.env", "restart_cmd": "r"},
            {"url": "http://c:1"},
            {
                "id": "d",
                "url": "http://d:1",
                "kubernetes": {"namespace": "ml", "deploymnt": "d"},
                "restart_cmd": "kubectl rollout restart deploy/d",
            },
            {"id": "e", "url": "http://e:1", "step_hold": "5m"},
        ],
    }
    with pytest.raises(ConfigError) as caught:
        parse_inventory(doc, "fleet.yaml", tmp_path)
    text = str(caught.value)
    for expected in (
        "top level: unknown keys ['deployment']",
        "deployments[0] (id 'a'): env_file",
        "deployments[0] (id 'a'): restart_cmd is required",
        "deployments[1] (id 'a'): url 'ftp://a' must be http(s)",
        "deployments[2]: id (the deployment's MLOPS_DEPLOYMENT_ID) is required",
        "deployments[3] (id 'd'): kubernetes needs configmap, deployment",
        "kubernetes has unknown keys ['deploymnt']",
        "restart_cmd does not apply to a kubernetes entry",
        "deployments[4] (id 'e'): unknown keys ['step_hold']",
        "give exactly one of env_file",
        "deployments: id 'a' is listed 2 times",
    ):
        assert expected in text, expected
    with pytest.raises(ConfigError, match="must be a non-empty list"):
        parse_inventory({"deployments": []})
    shared = {"env_file": "s.env", "restart_cmd": "r"}
    _env(tmp_path, "s", "")
    with pytest.raises(ConfigError, match="share one parameter store"):
        parse_inventory(
            {
                "deployments": [
                    {"id": "x", "url": "http://x:1", **shared},
                    {"id": "y", "url": "http://y:1", **shared},
                ]
            },
            base=tmp_path,
        )


def test_env_files_that_pin_a_side_or_name_another_id_are_refused(tmp_path: Path) -> None:
    entries = []
    for name, text in (
        ("ok", "MLOPS_DEPLOYMENT_ID=ok\n"),
        ("pinned", "MLOPS_DEPLOYMENT_ID=pinned\nDRUM_SERVER_TYPE=flask\n"),
        ("other", "MLOPS_DEPLOYMENT_ID=someone-else\n"),
        ("noid", "X=1\n"),
    ):
        entries.append(
            {
                "id": name,
                "url": f"http://{name}:1",
                "env_file": str(_env(tmp_path, name, text)),
                "restart_cmd": "true",
            }
        )
    inventory = parse_inventory({"deployments": entries})
    places = {m.id: place_for(m) for m in inventory.members}
    with pytest.raises(ConfigError) as caught:
        check_places(inventory, places)
    assert "pinned: env file" in str(caught.value) and "DRUM_SERVER_TYPE=flask" in str(caught.value)
    assert "other: env file" in str(caught.value) and "someone-else" in str(caught.value)
    ok_only = parse_inventory({"deployments": [entries[0], entries[3]]})
    warnings = check_places(ok_only, {m.id: place_for(m) for m in ok_only.members})
    assert len(warnings) == 1 and warnings[0].startswith("noid:")


def test_an_env_file_place_writes_atomically_and_restarts_by_its_command(tmp_path: Path) -> None:
    env = _env(
        tmp_path,
        "a",
        'MLOPS_DEPLOYMENT_ID=a\nMLOPS_RUNTIME_PARAM_DRUM_FASTAPI_CANARY_PERCENT={"type":"numeric","payload":5}\n',
    )
    marker = tmp_path / "restarted"
    place = EnvFilePlace(env, f"echo restarted >> {marker}", 10)
    assert place.read() == "5"
    assert place.write("5") is None
    assert place.write("25") == {"env_file": str(env), "lines": [2]}
    assert '"payload":25}' in env.read_text() and place.read() == "25"
    place.restart()
    place.restart()
    assert marker.read_text() == "restarted\nrestarted\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.env", "restarted"]  # no backup
    failing = EnvFilePlace(env, "echo 'port in use' >&2; exit 3", 10)
    with pytest.raises(RestartError, match="exited with status 3: port in use"):
        failing.restart()
    # A command that leaves a server running in the background does not keep the fleet waiting.
    pid_file = tmp_path / "sleep.pid"
    background = EnvFilePlace(env, f"sleep 30 & echo $! > {pid_file}; echo started", 5)
    started = time.monotonic()
    try:
        background.restart()
        assert time.monotonic() - started < 4
    finally:
        os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_a_kubernetes_place_goes_through_the_kube_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """The calls in order (tests/fleet/test_fleet_kube.py plays them on the real client)."""
    calls: list[tuple[Any, ...]] = []
    data = {"DRUM_FASTAPI_CANARY_PERCENT": "5"}  # a plain value is read too

    def configmap_data(api: Any, namespace: str, configmap: str) -> dict[str, str]:
        calls.append(("read", namespace, configmap))
        return dict(data)

    def write_param(
        api: Any, ns: str, cm: str, key: str, value: str, dry_run: bool
    ) -> dict[str, Any]:
        calls.append(("write", ns, cm, key, value, dry_run))
        if not dry_run:
            data[key] = value
        return {"data": {key: value}}

    def restart_deployment(api: Any, ns: str, dep: str, dry_run: bool, **kw: Any) -> Any:
        calls.append(("restart", ns, dep, dry_run, kw))
        return {}

    from tandem.ops import kube

    monkeypatch.setattr(kube, "configmap_data", configmap_data)
    monkeypatch.setattr(kube, "write_param", write_param)
    monkeypatch.setattr(kube, "restart_deployment", restart_deployment)
    monkeypatch.setattr(
        kube, "wait_rollout", lambda api, ns, dep, timeout: calls.append(("wait", ns, dep, timeout))
    )
    place = KubernetesPlace("api", "ml", "b-drum", "DRUM_FASTAPI_CANARY_PERCENT", "b", 60)
    assert place.read() == "5" and place.pinned() is None
    assert place.write("5") is None
    percent25 = '{"type": "numeric", "payload": 25}'
    assert place.write("25") == {
        "configmap": "ml/b-drum",
        "patch": {"data": {"DRUM_FASTAPI_CANARY_PERCENT": percent25}},
    }
    assert place.read() == "25"
    place.restart("fastapi")
    after = {"DRUM_FASTAPI_CANARY_PERCENT": percent25}
    assert calls[-2:] == [
        ("restart", "ml", "b", False, {"stack": "fastapi", "config_data": after}),
        ("wait", "ml", "b", 60),
    ]
    data["MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE"] = '{"type": "string", "payload": "flask"}'
    assert place.pinned() == "flask"
    dry = KubernetesPlace("api", "ml", "b-drum", "DRUM_FASTAPI_CANARY_PERCENT", "b", 60, True)
    assert dry.write("12.5") == {
        "configmap": "ml/b-drum",
        "patch": {"data": {"DRUM_FASTAPI_CANARY_PERCENT": '{"type": "numeric", "payload": 12.5}'}},
    }
    assert data["DRUM_FASTAPI_CANARY_PERCENT"] == percent25


def test_file_sd_labels_each_target_with_its_side_and_id(tmp_path: Path) -> None:
    inventory = parse_inventory(
        {
            "deployments": [
                {
                    "id": "a",
                    "url": "http://127.0.0.1:8001",
                    "kubernetes": {"namespace": "n", "configmap": "a", "deployment": "a"},
                },
                {
                    "id": "b",
                    "url": "https://b.example/prefix/",
                    "kubernetes": {"namespace": "n", "configmap": "b", "deployment": "b"},
                },
                {
                    "id": "c",
                    "url": "http://c:80",
                    "kubernetes": {"namespace": "n", "configmap": "c", "deployment": "c"},
                },
            ]
        }
    )
    groups = target_groups(
        inventory.members, {"a": "fastapi", "b": "flask", "c": None}, {"fleet": "churn"}
    )
    assert groups == [
        {
            "targets": ["127.0.0.1:8001"],
            "labels": {"fleet": "churn", "server_type": "fastapi", "deployment_id": "a"},
        },
        {
            "targets": ["b.example:443"],
            "labels": {
                "fleet": "churn",
                "server_type": "flask",
                "deployment_id": "b",
                "__scheme__": "https",
                "__metrics_path__": "/prefix/metrics",
            },
        },
    ]
    path = tmp_path / "sd" / "fleet.json"
    assert write_file_sd(path, groups) is True
    assert write_file_sd(path, groups) is False  # unchanged: not rewritten
    assert json.loads(path.read_text()) == groups


def test_the_dry_run_prints_the_plan_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = ["fleet-17", "fleet-28", "fleet-35", "fleet-02"]
    entries = []
    for member_id in ids:
        env = _env(tmp_path, member_id, f"MLOPS_DEPLOYMENT_ID={member_id}\n")
        entries.append(
            {
                "id": member_id,
                "url": f"http://{member_id}:8080",
                "env_file": env.name,
                "restart_cmd": "false",
            }
        )
    # One of them in Kubernetes: no cluster is contacted, the patch is printed.
    entries[-1] = {
        "id": "fleet-02",
        "url": "http://fleet-02.ml.svc:8080",
        "kubernetes": {"namespace": "ml", "configmap": "fleet-02-drum", "deployment": "fleet-02"},
    }
    (tmp_path / "fleet.yaml").write_text(yaml.safe_dump({"deployments": entries}))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    code = main(
        [
            "fleet",
            "start",
            "--dry-run",
            "--inventory",
            str(tmp_path / "fleet.yaml"),
            "--state",
            str(tmp_path / "s.db"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "steps 5% -> 10% -> 25% -> 100% (skipped, moving nobody: 1%, 50%, 75%, 90%)" in out
    assert "step 5%: restart fleet-17" in out and "step 100%: restart fleet-02" in out
    assert "dry run: nothing was changed" in out
    # The exact patches are checked in tests/fleet/test_fleet_kube.py.
    assert (
        "  at 5% (each step its own percentage): PATCH "
        "/api/v1/namespaces/ml/configmaps/fleet-02-drum?fieldManager=tandem" in out
    )
    assert "  at 100%, restarted onto fastapi: PATCH /apis/apps/v1/" in out
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_new_fleet_needs_an_inventory_and_prometheus(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fleet", "start", "--state", str(tmp_path / "s.db")]) == 1
    assert "needs --inventory" in capsys.readouterr().err
    env = _env(tmp_path, "a", "MLOPS_DEPLOYMENT_ID=a\n")
    (tmp_path / "fleet.yaml").write_text(
        yaml.safe_dump(
            {
                "deployments": [
                    {"id": "a", "url": "http://a:1", "env_file": str(env), "restart_cmd": "true"}
                ]
            }
        )
    )
    assert (
        main(
            [
                "fleet",
                "start",
                "--state",
                str(tmp_path / "s.db"),
                "--inventory",
                str(tmp_path / "fleet.yaml"),
            ]
        )
        == 1
    )
    assert "needs --prometheus-url" in capsys.readouterr().err
    assert main(["fleet", "status", "--state", str(tmp_path / "s.db")]) == 1
    assert main(["fleet", "pause", "--state", str(tmp_path / "s.db")]) == 1


def test_rollout_and_fleet_refuse_each_others_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tandem.rollout.store import RolloutStore

    fleet_state, rollout_state = tmp_path / "fleet.db", tmp_path / "rollout.db"
    RolloutStore(fleet_state).set_json("fleet", {"members": []})
    RolloutStore(rollout_state).set_json("deployment", {"code_dir": None})
    assert main(["rollout", "start", "--state", str(fleet_state)]) == 1
    assert "holds a fleet rollout" in capsys.readouterr().err
    assert main(["fleet", "start", "--state", str(rollout_state)]) == 1
    assert "holds a `tandem rollout`" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        (["--file-sd-label", "server_type=x"], "the fleet's own label"),
        (["--file-sd-label", "bad-name=x"], "not a Prometheus label name"),
        (["--max-unavailable", "0"], "--max-unavailable must be at least 1"),
    ],
)
def test_bad_start_flags_are_refused_before_anything_changes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: list[str], message: str
) -> None:
    env = _env(tmp_path, "a", "MLOPS_DEPLOYMENT_ID=a\n")
    inventory = tmp_path / "fleet.yaml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "deployments": [
                    {"id": "a", "url": "http://a:1", "env_file": str(env), "restart_cmd": "false"}
                ]
            }
        )
    )
    argv = ["fleet", "start", "--state", str(tmp_path / "s.db"), "--inventory", str(inventory)]
    argv += ["--prometheus-url", "http://127.0.0.1:9", *flag]
    assert main(argv) == 1
    assert message in capsys.readouterr().err
    assert env.read_text() == "MLOPS_DEPLOYMENT_ID=a\n"
