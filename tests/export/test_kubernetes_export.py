"""``tandem export kubernetes``: objects Kubernetes accepts, wired the way the seed's Level 1
and the exported queries expect."""

from __future__ import annotations

import copy
import io
import json
import os
import subprocess
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tandem.core.routes import ROUTES
from tandem.errors import ConfigError
from tandem.export import kubernetes
from tandem.export.model import (
    CONFIG_DIGEST_ANNOTATION,
    MODEL_LABEL,
    SERVER_TYPE_KEY,
    SERVER_TYPE_LABEL,
    SERVER_TYPE_TARGET_LABEL,
    Model,
    env_name,
)
from tandem.export.sizing import Resources, resources_from_stats, stats_url
from tandem.ops import kube
from tandem.rollout.spec import RolloutSpec
from tandem.runtime_params import Params
from tandem.server_type import decide_server_type
from tests.export.support import validate
from tests.kube_api import RecordedApiServer, load, write_kubeconfig
from tests.support import REPO, fixture_dir, running

#: DataRobot's DRUM, when ``bench/run.py`` has installed it.
DRUM_PYTHON = REPO / "bench" / ".drum-venv" / "bin" / "python"

SPEC = RolloutSpec()
MODEL = Model(
    name="churn",
    namespace="ml",
    image="registry.example/churn:1",
    deployment_id="64f0c0ffee",
    runtime_params=(("DRUM_CLIENT_REQUEST_TIMEOUT", "60"),),
    workers=2,
    target_type="regression",
)


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in objects}


@pytest.mark.parametrize("monitor", ["podmonitor", "servicemonitor", "none"])
def test_objects_pass_kubernetes_and_prometheus_operator_schemas(monitor: str) -> None:
    objects = kubernetes.manifests(MODEL, SPEC, monitor=monitor)
    kinds = [o["kind"] for o in objects]
    expected = {"podmonitor": ["PodMonitor"], "servicemonitor": ["ServiceMonitor"], "none": []}
    assert kinds == ["ConfigMap", "Deployment", "Service", *expected[monitor]]
    for obj in objects:
        validate(obj)


def test_workload_and_service_can_be_left_to_an_engine() -> None:
    kinds = [o["kind"] for o in kubernetes.manifests(MODEL, SPEC, "none", False, "podmonitor")]
    assert kinds == ["ConfigMap", "PodMonitor"]


def test_configmap_key_is_what_picks_the_stack() -> None:
    """The pods read the ConfigMap through envFrom with the runtime-parameter prefix: Tandem's
    own server-type decision, given that environment, picks the ConfigMap's stack."""
    objects = by_kind(kubernetes.manifests(MODEL, SPEC))
    data = objects["ConfigMap"]["data"]
    assert data == {
        SERVER_TYPE_KEY: '{"type": "string", "payload": "fastapi"}',
        "DRUM_CLIENT_REQUEST_TIMEOUT": "60",
    }
    container = objects["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    (source,) = container["envFrom"]
    assert source["configMapRef"]["name"] == objects["ConfigMap"]["metadata"]["name"]
    environ = {source["prefix"] + key: value for key, value in data.items()}
    environ.update({e["name"]: e["value"] for e in container["env"]})
    assert decide_server_type(Params(environ), None).server_type == "fastapi"
    for stack in ("flask", "gunicorn", "fastapi"):
        model = Model(**{**MODEL.__dict__, "server_type": stack})
        environ[source["prefix"] + SERVER_TYPE_KEY] = model.config_data()[SERVER_TYPE_KEY]
        assert decide_server_type(Params(environ), None).server_type == stack
    assert environ["MLOPS_DEPLOYMENT_ID"] == "64f0c0ffee"
    assert environ["MAX_WORKERS"] == "2"
    assert environ["TARGET_TYPE"] == "regression"


def test_probes_use_paths_the_server_serves() -> None:
    container = kubernetes.deployment(MODEL, SPEC)["spec"]["template"]["spec"]["containers"][0]
    served = {p for route in ROUTES for p in route.paths}
    probes = {k: v["httpGet"]["path"] for k, v in container.items() if k.endswith("Probe")}
    assert probes == {
        "startupProbe": "/startupz",
        "livenessProbe": "/livez",
        "readinessProbe": "/readyz",
    }
    assert set(probes.values()) <= served
    # The migration plan's startupProbe; liveness restarts a pod silent for ping_timeout only
    # after the deadlock alert (up down for ping_timeout, seen one interval later) has fired,
    # so a restart never hides the deadlock from the rollback.
    startup, live = container["startupProbe"], container["livenessProbe"]
    assert (startup["periodSeconds"], startup["failureThreshold"]) == (10, 30)
    restart_after = live["periodSeconds"] * live["failureThreshold"]
    assert restart_after >= SPEC.triggers.ping_timeout + 2 * SPEC.interval
    assert restart_after - live["periodSeconds"] < SPEC.triggers.ping_timeout + 2 * SPEC.interval


def test_monitor_gives_the_queries_their_labels() -> None:
    """The exported queries select by tandem_model and (for up) server_type: the monitor makes
    both target labels from the pod labels, and honours the server's own labels."""
    deployment = kubernetes.deployment(MODEL, SPEC)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pod_labels[MODEL_LABEL] == "churn" and pod_labels[SERVER_TYPE_LABEL] == "fastapi"
    for monitor in (kubernetes.pod_monitor(MODEL, SPEC), kubernetes.service_monitor(MODEL, SPEC)):
        (endpoint,) = monitor["spec"].get("podMetricsEndpoints") or monitor["spec"]["endpoints"]
        assert endpoint["path"] == "/metrics" and endpoint["honorLabels"] is True
        assert endpoint["interval"] == "10s"
        made = {r["targetLabel"]: r["sourceLabels"][0] for r in endpoint["relabelings"]}
        assert made == {
            "tandem_model": "__meta_kubernetes_pod_label_tandem_model",
            "server_type": "__meta_kubernetes_pod_label_tandem_server_type",
        }
        assert monitor["spec"]["selector"]["matchLabels"] == {MODEL_LABEL: "churn"}
    assert MODEL.metric_selector() == 'namespace="ml", tandem_model="churn"'


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 merge (what both patches amount to on these maps)."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        out[key] = _merge(out.get(key), value)
    return out


def _without_restart(deployment: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(deployment)
    del out["spec"]["template"]["metadata"]["annotations"][kube.RESTARTED_AT_ANNOTATION]
    return out


def test_level1_patches_equal_exporting_the_other_stack() -> None:
    """The seam for `tandem rollback --kubernetes`: patching the exported objects to flask is
    exporting them with --server-type flask, plus kubectl's restart annotation (so the pods
    restart), and the patches are exactly what the rollback sends (tandem.ops.kube's)."""
    now = datetime(2026, 11, 20, 10, 15, 2, tzinfo=UTC)
    patches = MODEL.level1_patches("flask", now)
    flask = Model(**{**MODEL.__dict__, "server_type": "flask"})
    assert patches == {
        "configmap": {"data": {SERVER_TYPE_KEY: '{"type": "string", "payload": "flask"}'}},
        "deployment": {
            "spec": {
                "template": {
                    "metadata": {
                        "annotations": {
                            "kubectl.kubernetes.io/restartedAt": "2026-11-20T10:15:02Z",
                            CONFIG_DIGEST_ANNOTATION: flask.config_digest(),
                        },
                        "labels": {SERVER_TYPE_LABEL: "flask"},
                    }
                }
            }
        },
    }
    assert patches["deployment"] == kube.level1_deployment_patch(
        "flask",
        kubernetes.deployment(MODEL, SPEC)["spec"]["template"]["metadata"],
        kubernetes.configmap(flask)["data"],
        now,
    )
    assert _merge(kubernetes.configmap(MODEL), patches["configmap"]) == kubernetes.configmap(flask)
    patched = _merge(kubernetes.deployment(MODEL, SPEC), patches["deployment"])
    assert _without_restart(patched) == kubernetes.deployment(flask, SPEC)
    before = kubernetes.deployment(MODEL, SPEC)["spec"]["template"]["metadata"]["annotations"]
    assert before[CONFIG_DIGEST_ANNOTATION] != flask.config_digest()
    target = MODEL.rollback_target()
    assert (target.namespace, target.configmap, target.deployment, target.key) == (
        "ml",
        "churn-config",
        "churn",
        SERVER_TYPE_KEY,
    )


def test_rollback_of_the_exported_objects_moves_ups_server_type_label(tmp_path: Path) -> None:
    """`tandem rollback --kubernetes` (its Kubernetes target, through the real client) on the
    objects `tandem export kubernetes` wrote: the pods it restarts carry tandem-server-type
    (hence up's server_type) of the new stack, and the objects end up as the export with
    --server-type flask, the restart annotation aside."""
    pytest.importorskip("kubernetes")
    exchanges = load("rollback_exported")
    recorded = {e["id"]: e["response"]["body"] for e in exchanges}
    # The recording serves the export's own objects (re-record it when the export changes).
    configmap, deployment = kubernetes.configmap(MODEL), kubernetes.deployment(MODEL, SPEC)
    assert recorded["configmap-read"]["data"] == configmap["data"]
    assert recorded["deployment-read"]["spec"] == deployment["spec"]
    for obj, exported in (
        (recorded["configmap-read"], configmap),
        (recorded["deployment-read"], deployment),
    ):
        assert {k: obj["metadata"][k] for k in exported["metadata"]} == exported["metadata"]

    sent: dict[str, Any] = {}
    hooks = {
        "configmap-patch": lambda body: sent.__setitem__("configmap", body),
        "restart": lambda body: sent.__setitem__("deployment", body),
    }
    out = io.StringIO()
    with RecordedApiServer(exchanges, hooks) as server:
        config = write_kubeconfig(tmp_path / "kubeconfig", server.url)
        target = replace(
            MODEL.rollback_target(), kubeconfig=str(config), context="recorded", poll_interval=0.05
        )
        observed = target.observe()
        assert (observed.stack, observed.raw) == ("fastapi", configmap["data"][SERVER_TYPE_KEY])
        target.preflight()
        target.apply("flask", out)
        server.assert_complete()
    stamp = sent["deployment"]["spec"]["template"]["metadata"]["annotations"][
        kube.RESTARTED_AT_ANNOTATION
    ]
    now = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    # One source of truth: what the rollback sent is what the export documents, byte for byte.
    assert sent == MODEL.level1_patches("flask", now)
    assert out.getvalue().splitlines()[:2] == [
        f"PATCH /api/v1/namespaces/ml/configmaps/churn-config: {json.dumps(sent['configmap'])}",
        f"PATCH /apis/apps/v1/namespaces/ml/deployments/churn: {json.dumps(sent['deployment'])}",
    ]

    flask = Model(**{**MODEL.__dict__, "server_type": "flask"})
    assert _merge(configmap, sent["configmap"]) == kubernetes.configmap(flask)
    patched = _merge(deployment, sent["deployment"])
    assert _without_restart(patched) == kubernetes.deployment(flask, SPEC)
    labels = patched["spec"]["template"]["metadata"]["labels"]
    assert labels[SERVER_TYPE_LABEL] == "flask"
    # What the API server answered after the restart says the same.
    assert recorded["status-1"]["spec"]["template"]["metadata"]["labels"] == labels
    # The PodMonitor's relabeling makes up's server_type of that pod label.
    (endpoint,) = kubernetes.pod_monitor(MODEL, SPEC)["spec"]["podMetricsEndpoints"]
    meta = {
        "__meta_kubernetes_pod_label_" + k.replace("-", "_").replace(".", "_"): v
        for k, v in labels.items()
    }
    made = {r["targetLabel"]: meta[r["sourceLabels"][0]] for r in endpoint["relabelings"]}
    assert made[SERVER_TYPE_TARGET_LABEL] == "flask"


@pytest.mark.skipif(not DRUM_PYTHON.exists(), reason="DRUM is not installed in bench/.drum-venv")
def test_drum_reads_the_exported_server_type() -> None:
    """DataRobot's own DRUM reads the value the ConfigMap (and the Argo Rollout's env) holds and
    the rollback writes; a plain value, which Tandem would take, stops DRUM."""
    stacks = ("flask", "gunicorn", "fastapi")
    values = [Model(**{**MODEL.__dict__, "server_type": s}).config_data() for s in stacks]
    assert [v[SERVER_TYPE_KEY] for v in values] == [kube.server_type_value(s) for s in stacks]
    values.append({SERVER_TYPE_KEY: "flask"})
    script = (
        "import json, os, sys\n"
        "from datarobot_drum import RuntimeParameters\n"
        "for value in json.load(sys.stdin):\n"
        f"    os.environ[{env_name(SERVER_TYPE_KEY)!r}] = value\n"
        "    try:\n"
        f"        print(RuntimeParameters.get({SERVER_TYPE_KEY!r}))\n"
        "    except Exception as exc:\n"
        "        print(type(exc).__name__)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_RUNTIME_PARAM_")}
    proc = subprocess.run(
        [str(DRUM_PYTHON), "-c", script],
        input=json.dumps([v[SERVER_TYPE_KEY] for v in values]),
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["flask", "gunicorn", "fastapi", "InvalidJsonException"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "Churn"),
        ("name", "x" * 41),
        ("namespace", "ml_models"),
        ("server_type", "tornado"),
        ("runtime_params", (("DRUM_SERVER_TYPE", "flask"),)),
        ("runtime_params", (("BAD-NAME", "1"),)),
        ("replicas", 0),
    ],
)
def test_bad_values_are_refused_with_the_option_named(field: str, value: Any) -> None:
    with pytest.raises(ConfigError):
        Model(**{**MODEL.__dict__, field: value})


STATS = {
    "drum_info": [
        {"cpu_percent": 3.0, "mem": 60.0, "pid": 1, "role": "master"},
        {"cpu_percent": 45.0, "mem": 150.0, "pid": 2, "role": "worker"},
        {"cpu_percent": 40.0, "mem": 150.0, "pid": 3, "role": "worker"},
    ],
    "mem_info": {"drum_rss": 360.0, "container_limit": None},
    "worker_info": {"workers": [{"pid": 2, "rss": 150.0}, {"pid": 3, "rss": 150.0}]},
}


def test_resources_from_stats_leave_room_for_the_memory_trigger() -> None:
    res = resources_from_stats(STATS, SPEC.triggers.memory_increase)
    # 360 MiB x 1.25 = 450 -> 464Mi; x 1.5 (memory trigger) x 1.25 = 675 -> 688Mi;
    # CPU 88 % x 1.25 = 1100m, above the 2 x 250m floor.
    assert res.to_k8s() == {
        "requests": {"cpu": "1100m", "memory": "464Mi"},
        "limits": {"memory": "688Mi"},
    }
    idle = copy.deepcopy(STATS)
    for proc in idle["drum_info"]:
        proc["cpu_percent"] = 0.0
    assert resources_from_stats(idle, 0.5).cpu_request == "500m"
    with pytest.raises(ConfigError):
        resources_from_stats({"mem_info": {}}, 0.5)
    assert Resources().to_k8s()["limits"] == {"memory": "1Gi"}


def test_stats_url_accepts_a_server_or_its_stats_path() -> None:
    assert stats_url("http://10.0.0.5:8080") == "http://10.0.0.5:8080/stats/"
    assert stats_url("http://h:8080/prefix/stats") == "http://h:8080/prefix/stats/"
    with pytest.raises(ConfigError):
        stats_url("h:8080")


@pytest.mark.e2e
def test_probes_and_stats_against_a_real_server(tmp_path: Path) -> None:
    """A real Tandem server answers the exported probes, and its /stats/ sizes the export."""
    from tandem.cli import main

    code_dir = fixture_dir("regression_hooks", tmp_path)
    with running(code_dir, "fastapi", args=["--target-type", "regression"]) as server:
        container = kubernetes.container(MODEL, SPEC)
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            path = container[probe]["httpGet"]["path"]
            assert httpx.get(server.url + path, timeout=5).status_code == 200, path
        out = tmp_path / "out"
        code = main(
            [
                "export",
                "kubernetes",
                "--name",
                "churn",
                "--image",
                "registry.example/churn:1",
                "--stats-url",
                server.url,
                "--out",
                str(out),
            ]
        )
        assert code == 0
    text = (out / "kubernetes.yaml").read_text()
    assert "# Resources: /stats/:" in text
    import yaml

    deployment = next(d for d in yaml.safe_load_all(text) if d["kind"] == "Deployment")
    validate(deployment)
    resources = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources["requests"]["memory"] != "512Mi"  # sized, not the default
