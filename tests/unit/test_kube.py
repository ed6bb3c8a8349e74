"""``tandem.ops.kube`` through the real ``kubernetes`` client against recorded API exchanges.

No cluster: :class:`tests.kube_api.RecordedApiServer` answers on 127.0.0.1 with responses
written from the Kubernetes API reference, and fails the test on any request that is not the
recorded one (method, path, query, body, bearer token and patch content type). The client is
configured from a kubeconfig, as ``tandem rollback --kubeconfig`` would configure it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tandem.ops import kube
from tests.kube_api import RecordedApiServer, load, write_kubeconfig
from tests.support import free_port

pytest.importorskip("kubernetes")

NS, CM, DEP = "models", "drum-config", "churn-model"


@contextmanager
def recorded(name: str, tmp_path: Path) -> Iterator[tuple[RecordedApiServer, Any]]:
    """The recording ``name`` served on loopback, and an API client configured for it."""
    with RecordedApiServer(load(name)) as server:
        config = write_kubeconfig(tmp_path / "kubeconfig", server.url)
        api = kube.api_from_config(context="recorded", kubeconfig=str(config))
        yield server, api


def test_rollback_sequence_reads_patches_restarts_and_follows_the_rollout(tmp_path: Path) -> None:
    with recorded("rollback_to_flask", tmp_path) as (server, api):
        assert kube.read_param(api, NS, CM, "DRUM_SERVER_TYPE") == "fastapi"
        patch = kube.write_param(api, NS, CM, "DRUM_SERVER_TYPE", "flask", dry_run=False)
        assert patch == {"data": {"DRUM_SERVER_TYPE": "flask"}}
        restart = kube.restart_deployment(api, NS, DEP, dry_run=False)
        annotations = restart["spec"]["template"]["metadata"]["annotations"]
        assert list(annotations) == ["kubectl.kubernetes.io/restartedAt"]
        lines: list[str] = []
        kube.wait_rollout(api, NS, DEP, timeout=30, poll_interval=0.05, progress=lines.append)
        server.assert_complete()
    # kubectl rollout status's own words, one line per state.
    assert lines == [
        "Waiting for deployment spec update to be observed...",
        'Waiting for deployment "churn-model" rollout to finish: 1 out of 2 new replicas have '
        "been updated...",
        'Waiting for deployment "churn-model" rollout to finish: 1 old replicas are pending '
        "termination...",
        'Waiting for deployment "churn-model" rollout to finish: 1 of 2 updated replicas are '
        "available...",
        'deployment "churn-model" successfully rolled out',
    ]
    assert server.mutating_requests() == [
        f"PATCH /api/v1/namespaces/{NS}/configmaps/{CM}?fieldManager=tandem",
        f"PATCH /apis/apps/v1/namespaces/{NS}/deployments/{DEP}?fieldManager=tandem",
    ]


def test_missing_key_reads_as_none(tmp_path: Path) -> None:
    with recorded("configmap_missing_key", tmp_path) as (server, api):
        assert kube.read_param(api, NS, CM, "DRUM_SERVER_TYPE") is None
        server.assert_complete()


def test_forbidden_read_says_what_was_refused_and_what_to_grant(tmp_path: Path) -> None:
    with recorded("configmap_get_forbidden", tmp_path) as (server, api):
        with pytest.raises(kube.KubeError) as caught:
            kube.read_param(api, NS, CM, "DRUM_SERVER_TYPE")
        server.assert_complete()
    error = caught.value
    assert (error.status, error.reason) == (403, "Forbidden")
    message = str(error)
    assert message.startswith(
        "GET configmap drum-config in namespace models: the API server answered 403 Forbidden: "
        'configmaps "drum-config" is forbidden: User "system:serviceaccount:models:'
        'tandem-readonly" cannot get resource "configmaps"'
    )
    assert "RBAC" in message and "get and patch on configmaps" in message


def test_forbidden_patch(tmp_path: Path) -> None:
    with recorded("configmap_patch_forbidden", tmp_path) as (server, api):
        assert kube.read_param(api, NS, CM, "DRUM_SERVER_TYPE") == "fastapi"
        with pytest.raises(kube.KubeError, match="cannot patch resource") as caught:
            kube.write_param(api, NS, CM, "DRUM_SERVER_TYPE", "flask", dry_run=False)
        server.assert_complete()
    assert caught.value.status == 403
    assert str(caught.value).startswith("PATCH configmap drum-config in namespace models: ")


def test_rollout_that_never_finishes_times_out_naming_the_last_status(tmp_path: Path) -> None:
    with recorded("rollout_timeout", tmp_path) as (server, api):
        kube.read_param(api, NS, CM, "DRUM_SERVER_TYPE")
        kube.write_param(api, NS, CM, "DRUM_SERVER_TYPE", "flask", dry_run=False)
        kube.restart_deployment(api, NS, DEP, dry_run=False)
        with pytest.raises(kube.RolloutTimeout) as caught:
            kube.wait_rollout(api, NS, DEP, timeout=0.6, poll_interval=0.1)
        server.assert_complete()
    assert str(caught.value) == (
        "deployment/churn-model in namespace models did not finish rolling out within 0.6 s "
        '(last status: Waiting for deployment "churn-model" rollout to finish: 1 out of 2 new '
        "replicas have been updated...)"
    )


def test_progress_deadline_exceeded_fails_at_once(tmp_path: Path) -> None:
    with recorded("progress_deadline_exceeded", tmp_path) as (server, api):
        with pytest.raises(kube.RolloutFailed) as caught:
            kube.wait_rollout(api, NS, DEP, timeout=60)
        server.assert_complete()
    assert str(caught.value) == (
        'deployment "churn-model" exceeded its progress deadline: ReplicaSet '
        '"churn-model-6d9b7c5f4" has timed out progressing.'
    )


def test_paused_deployment_is_not_restarted(tmp_path: Path) -> None:
    with recorded("deployment_paused", tmp_path) as (server, api):
        with pytest.raises(kube.KubeError, match="it is paused"):
            kube.restart_deployment(api, NS, DEP, dry_run=False)
        server.assert_complete()  # the read only: no patch was sent
    assert server.mutating_requests() == []


def test_dry_run_sends_nothing_and_returns_the_exact_patches(tmp_path: Path) -> None:
    with recorded("dry_run", tmp_path) as (server, api):
        for client in (api, None):
            assert kube.write_param(client, NS, CM, "DRUM_SERVER_TYPE", "flask", True) == {
                "data": {"DRUM_SERVER_TYPE": "flask"}
            }
            patch = kube.restart_deployment(client, NS, DEP, dry_run=True)
            stamp = patch["spec"]["template"]["metadata"]["annotations"][
                "kubectl.kubernetes.io/restartedAt"
            ]
            assert patch == kube.restart_patch(datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S%z"))
        server.assert_complete()
    assert server.served == []


def test_unreachable_api_server(tmp_path: Path) -> None:
    config = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{free_port()}")
    api = kube.api_from_config(kubeconfig=str(config))
    with pytest.raises(kube.KubeError, match="cannot reach http://127.0.0.1:") as caught:
        kube.read_param(api, NS, CM, "DRUM_SERVER_TYPE")
    assert caught.value.status is None


def test_missing_kubeconfig(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(kube.KubeError, match=f"cannot load the kubeconfig {missing}"):
        kube.api_from_config(kubeconfig=str(missing))
    config = write_kubeconfig(tmp_path / "kubeconfig", "http://127.0.0.1:1")
    with pytest.raises(kube.KubeError, match="context other"):
        kube.api_from_config(context="other", kubeconfig=str(config))
