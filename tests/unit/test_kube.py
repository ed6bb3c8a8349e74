"""``tandem.ops.kube`` through the real ``kubernetes`` client against recorded API exchanges.

No cluster: :class:`tests.kube_api.RecordedApiServer` answers on 127.0.0.1 with responses
written from the Kubernetes API reference, and fails the test on any request that is not the
recorded one (method, path, query, body, bearer token and patch content type). The client is
configured from a kubeconfig, as ``tandem rollback --kubeconfig`` would configure it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tandem.ops import kube
from tandem.runtime_params import Params, parse_value
from tandem.server_type import decide_server_type
from tests.kube_api import RecordedApiServer, load, write_kubeconfig
from tests.support import free_port

NS, CM, DEP = "models", "drum-config", "churn-model"
FLASK = '{"type": "string", "payload": "flask"}'
NOW = datetime(2026, 11, 20, 10, 15, 2, tzinfo=UTC)


def stamp_of(patch: dict[str, Any]) -> datetime:
    """The restartedAt a restart patch carries (checked to be RFC 3339 UTC)."""
    text = patch["spec"]["template"]["metadata"]["annotations"][kube.RESTARTED_AT_ANNOTATION]
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def restart_body(
    now: datetime, label: str | None = None, digest: str | None = None
) -> dict[str, Any]:
    """A Level-1 Deployment patch as it must be sent, spelt out."""
    metadata: dict[str, Any] = {
        "annotations": {kube.RESTARTED_AT_ANNOTATION: now.strftime("%Y-%m-%dT%H:%M:%SZ")}
    }
    if digest is not None:
        metadata["annotations"][kube.CONFIG_DIGEST_ANNOTATION] = digest
    if label is not None:
        metadata["labels"] = {kube.SERVER_TYPE_LABEL: label}
    return {"spec": {"template": {"metadata": metadata}}}


# -- the Level-1 seam (no client needed) ----------------------------------------------------


def test_server_type_value_is_drums_json_form_and_tandem_reads_it() -> None:
    assert kube.server_type_value("flask") == FLASK
    for stack in ("flask", "gunicorn", "fastapi"):
        value = kube.server_type_value(stack)
        assert parse_value("DRUM_SERVER_TYPE", value) == stack
        for name in ("MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE", "DRUM_SERVER_TYPE"):
            assert decide_server_type(Params({name: value}), None).server_type == stack


@pytest.mark.parametrize(
    ("value", "payload"),
    [
        (FLASK, "flask"),
        ('{"type":"string","payload":"Gunicorn"}', "Gunicorn"),
        ("fastapi", "fastapi"),
        (" werkzeug ", " werkzeug "),
        ('{"payload": "flask"}', '{"payload": "flask"}'),  # not a valid form: left as it is
        ("{not json", "{not json"),
        ('{"type": "string", "payload": null}', '{"type": "string", "payload": null}'),
    ],
)
def test_param_payload_reads_either_form_and_never_fails(value: str, payload: str) -> None:
    assert kube.param_payload(value) == payload


def test_level1_patch_is_kubectls_restart_plus_what_the_template_carries() -> None:
    exported = {
        "labels": {"app.kubernetes.io/name": "m", kube.SERVER_TYPE_LABEL: "fastapi"},
        "annotations": {kube.CONFIG_DIGEST_ANNOTATION: "0" * 64},
    }
    data = {"DRUM_SERVER_TYPE": FLASK, "TARGET_TYPE": "regression"}
    digest = kube.config_digest(data)
    # A template Tandem did not export, or no stack (tandem fleet): kubectl's patch exactly.
    assert kube.level1_deployment_patch("flask", {"labels": {"a": "b"}}, data, NOW) == (
        kube.restart_patch(NOW)
    )
    assert kube.level1_deployment_patch("flask", None, data, NOW) == restart_body(NOW)
    assert kube.level1_deployment_patch(None, exported, None, NOW) == restart_body(NOW)
    # The label alone; the digest only with the new data; both.
    assert kube.level1_deployment_patch(
        "flask", {"labels": exported["labels"]}, data, NOW
    ) == restart_body(NOW, label="flask")
    assert kube.level1_deployment_patch("flask", exported, None, NOW) == restart_body(
        NOW, label="flask"
    )
    assert kube.level1_deployment_patch("gunicorn", exported, data, NOW) == restart_body(
        NOW, label="gunicorn", digest=digest
    )
    assert digest == kube.config_digest(dict(reversed(list(data.items()))))  # order-free


# -- through the client, against recorded exchanges -----------------------------------------


@contextmanager
def recorded(name: str, tmp_path: Path) -> Iterator[tuple[RecordedApiServer, Any]]:
    """The recording ``name`` served on loopback, and an API client configured for it."""
    pytest.importorskip("kubernetes")
    with RecordedApiServer(load(name)) as server:
        config = write_kubeconfig(tmp_path / "kubeconfig", server.url)
        api = kube.api_from_config(context="recorded", kubeconfig=str(config))
        yield server, api


def test_rollback_sequence_reads_patches_restarts_and_follows_the_rollout(tmp_path: Path) -> None:
    with recorded("rollback_to_flask", tmp_path) as (server, api):
        current = kube.read_param(api, NS, CM, "DRUM_SERVER_TYPE")
        assert current == '{"type": "string", "payload": "fastapi"}'
        assert kube.param_payload(current) == "fastapi"
        patch = kube.write_param(api, NS, CM, "DRUM_SERVER_TYPE", FLASK, dry_run=False)
        assert patch == {"data": {"DRUM_SERVER_TYPE": FLASK}}
        # The pod template has the tandem-server-type label (no digest): the label moves too.
        restart = kube.restart_deployment(api, NS, DEP, dry_run=False, stack="flask")
        assert restart == restart_body(stamp_of(restart), label="flask")
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
            kube.write_param(api, NS, CM, "DRUM_SERVER_TYPE", FLASK, dry_run=False)
        server.assert_complete()
    assert caught.value.status == 403
    assert str(caught.value).startswith("PATCH configmap drum-config in namespace models: ")


def test_rollout_that_never_finishes_times_out_naming_the_last_status(tmp_path: Path) -> None:
    with recorded("rollout_timeout", tmp_path) as (server, api):
        assert kube.read_param(api, NS, CM, "DRUM_SERVER_TYPE") == "fastapi"  # plain form
        kube.write_param(api, NS, CM, "DRUM_SERVER_TYPE", FLASK, dry_run=False)
        # A pod template without Tandem's label: kubectl's restart patch alone.
        restart = kube.restart_deployment(
            api, NS, DEP, dry_run=False, stack="flask", config_data={"DRUM_SERVER_TYPE": FLASK}
        )
        assert restart == restart_body(stamp_of(restart))
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
            kube.restart_deployment(api, NS, DEP, dry_run=False, stack="flask")
        server.assert_complete()  # the read only: no patch was sent
    assert server.mutating_requests() == []


def test_dry_run_sends_nothing_and_returns_the_exact_patches(tmp_path: Path) -> None:
    with recorded("dry_run", tmp_path) as (server, api):
        for client in (api, None):
            assert kube.write_param(client, NS, CM, "DRUM_SERVER_TYPE", FLASK, True) == {
                "data": {"DRUM_SERVER_TYPE": FLASK}
            }
            # The pod template is not read, so the patch shown is kubectl's restart alone.
            for stack in (None, "flask"):
                patch = kube.restart_deployment(client, NS, DEP, dry_run=True, stack=stack)
                assert patch == restart_body(stamp_of(patch))
                assert patch == kube.restart_patch(stamp_of(patch))
        server.assert_complete()
    assert server.served == []


def test_unreachable_api_server(tmp_path: Path) -> None:
    pytest.importorskip("kubernetes")
    config = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{free_port()}")
    api = kube.api_from_config(kubeconfig=str(config))
    with pytest.raises(kube.KubeError, match="cannot reach http://127.0.0.1:") as caught:
        kube.read_param(api, NS, CM, "DRUM_SERVER_TYPE")
    assert caught.value.status is None


def test_missing_kubeconfig(tmp_path: Path) -> None:
    pytest.importorskip("kubernetes")
    missing = tmp_path / "nowhere"
    with pytest.raises(kube.KubeError, match=f"cannot load the kubeconfig {missing}"):
        kube.api_from_config(kubeconfig=str(missing))
    config = write_kubeconfig(tmp_path / "kubeconfig", "http://127.0.0.1:1")
    with pytest.raises(kube.KubeError, match="context other"):
        kube.api_from_config(context="other", kubeconfig=str(config))


def test_kubeconfig_is_read_from_the_environment_at_call_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client freezes $KUBECONFIG when first imported; Tandem reads it when it connects
    (the fast tier failed once when an earlier test had imported the client without it)."""
    monkeypatch.delenv("KUBECONFIG", raising=False)
    import kubernetes.config  # noqa: F401  # imported with no $KUBECONFIG, as in a long session

    path = write_kubeconfig(tmp_path / "kc", "http://127.0.0.1:9", context="later")
    monkeypatch.setenv("KUBECONFIG", str(path))
    api = kube.api_from_config("later")
    assert api.configuration.host == "http://127.0.0.1:9"
