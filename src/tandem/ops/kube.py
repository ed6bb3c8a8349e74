"""The Kubernetes side of a Level-1 rollback, on the official ``kubernetes`` Python client.

Five calls, shared by ``tandem rollback --kubernetes`` and ``tandem fleet --kubernetes``:

- :func:`api_from_config` builds an API client: the pod's service account when running in a pod
  (and neither a context nor a kubeconfig was named), else the kubeconfig (``--kubeconfig``,
  ``$KUBECONFIG`` or ``~/.kube/config``, at ``--context`` or its current context), as kubectl
  does;
- :func:`read_param` reads one key of a ConfigMap (``None`` when the key is absent);
- :func:`write_param` patches one key of a ConfigMap's ``data``;
- :func:`restart_deployment` sends the patch ``kubectl rollout restart`` sends: the pod template
  annotation ``kubectl.kubernetes.io/restartedAt``, which makes the Deployment controller replace
  every pod; given the stack the deployment moves to (a Level-1 rollback's, or a fleet
  step's), the Level-1 patch of
  :func:`level1_deployment_patch` instead (the same annotation, plus the pod labels and
  annotations ``tandem export kubernetes`` derives from the stack, when the pod template has
  them);
- :func:`wait_rollout` waits as ``kubectl rollout status`` does: the spec change observed
  (``status.observedGeneration``), every replica updated, no old replica left, every updated
  replica available; a ``ProgressDeadlineExceeded`` condition fails at once.

Patches are strategic merge patches (``application/strategic-merge-patch+json``, what
``kubectl patch`` and ``kubectl rollout restart`` send by default; on a ConfigMap's ``data`` map
it merges exactly as a JSON merge patch would) and carry ``fieldManager=tandem``, so the
objects' ``managedFields`` name Tandem as the writer. :func:`write_param` and
:func:`restart_deployment` return the exact body they send.

**The Level-1 seam**, shared with ``tandem export kubernetes`` (:mod:`tandem.export.model`), so
that a rollback and the exported objects never disagree:

- :func:`server_type_value` is ``DRUM_SERVER_TYPE`` as a ConfigMap holds it: DRUM's JSON form
  ``{"type": "string", "payload": "flask"}``, the only form DRUM itself accepts in
  ``MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE`` (a plain value stops it at start-up) and one Tandem
  reads too; :func:`param_payload` reads either form back;
- :func:`level1_deployment_patch` is the Deployment patch of a Level-1 rollback: the restart
  annotation and, when the pod template carries them, the ``tandem-server-type`` label (which the
  exported Pod/ServiceMonitor turns into ``up``'s ``server_type``) set to the new stack and the
  ``tandem-config-sha256`` annotation set to the digest of the ConfigMap's new data
  (:func:`config_digest`).

**Dry run** (``dry_run=True``): nothing is sent, not even a read, and ``api`` may be ``None``.
The API server's own ``dryRun=All`` was not used: a dry run must work before any credentials
exist (it is the plan shown to whoever will grant them), a server-side dry run still runs
admission webhooks, and it cannot preview the restart's effect anyway. The returned patch is what
a real call would send, except that a restart's ``restartedAt`` is the time it is actually sent.

Objects are read as the JSON the API server sent (``_preload_content=False``) rather than through
the client's typed models, whose classes differ between client generations (plain classes up to
36.x, pydantic models from 37): the same code runs on every version the ``kubernetes`` extra
allows. Every failure is a :class:`KubeError` whose message says what was asked, what the API
server answered and, for 401/403/404, what to check.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tandem.errors import RuntimeParameterError
from tandem.runtime_params import parse_value

#: The pod-template annotation ``kubectl rollout restart`` sets.
RESTARTED_AT_ANNOTATION = "kubectl.kubernetes.io/restartedAt"
#: The pod-template label that names the stack (``tandem export kubernetes`` sets it; the exported
#: Pod/ServiceMonitor makes it the ``server_type`` target label of ``up``).
SERVER_TYPE_LABEL = "tandem-server-type"
#: The pod-template annotation ``tandem export kubernetes`` sets to :func:`config_digest` of the
#: ConfigMap's data, so that a changed ConfigMap re-applied with its Deployment restarts the pods.
CONFIG_DIGEST_ANNOTATION = "tandem-config-sha256"
#: ``fieldManager`` of every patch (recorded in the objects' ``managedFields``).
FIELD_MANAGER = "tandem"
#: The content type of every patch (the client sends it for a dict body).
PATCH_CONTENT_TYPE = "application/strategic-merge-patch+json"
#: Seconds one API request may take.
REQUEST_TIMEOUT = 30.0
#: The service-account token a pod is given (the client's in-cluster loader reads it).
SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
#: What to install when the client is missing.
INSTALL_HINT = "pip install 'tandem[kubernetes]'"


class KubeError(Exception):
    """A Kubernetes API call failed, or the client could not be configured.

    ``status`` is the HTTP status the API server answered (``None`` when it was not reached);
    ``reason`` its ``Status.reason`` (``Forbidden``, ``NotFound``, ...) when it sent one.
    """

    def __init__(self, message: str, status: int | None = None, reason: str | None = None):
        super().__init__(message)
        self.status = status
        self.reason = reason


class RolloutFailed(KubeError):
    """The Deployment reported a failed rollout (``ProgressDeadlineExceeded``)."""


class RolloutTimeout(KubeError):
    """The rollout did not finish within the timeout."""


def _client_modules() -> tuple[Any, Any]:
    """``kubernetes.client`` and ``kubernetes.config``, or a :class:`KubeError` saying how to
    install them (imported late: a dry run and the rest of Tandem do not need them)."""
    try:
        from kubernetes import client, config
    except ImportError:
        raise KubeError(f"the Kubernetes Python client is not installed: {INSTALL_HINT}") from None
    return client, config


def in_pod() -> bool:
    """Whether this process runs in a Kubernetes pod with a service account."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and SERVICE_ACCOUNT_TOKEN.is_file()


def api_from_config(context: str | None = None, kubeconfig: str | None = None) -> Any:
    """A ``kubernetes.client.ApiClient`` for the cluster Tandem should talk to.

    In a pod, with neither ``context`` nor ``kubeconfig`` given: the pod's service account
    (in-cluster configuration). Otherwise the kubeconfig file ``kubeconfig`` (default
    ``$KUBECONFIG``, else ``~/.kube/config``) at ``context`` (default: its current context).
    Raises :class:`KubeError` when the client is missing or the configuration cannot be loaded.
    """
    client, config = _client_modules()
    from kubernetes.config.config_exception import ConfigException

    if context is None and kubeconfig is None and in_pod():
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)
        except ConfigException as exc:
            raise KubeError(f"cannot use the pod's service account: {exc}") from None
        return client.ApiClient(configuration)
    # $KUBECONFIG is read now: the client reads it once, when it is first imported.
    path = kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    at = f" (context {context})" if context else ""
    try:
        return config.new_client_from_config(config_file=path, context=context)
    except (ConfigException, OSError, ValueError, TypeError) as exc:
        raise KubeError(f"cannot load the kubeconfig {path}{at}: {exc}") from None


def configmap_path(namespace: str, configmap: str) -> str:
    """The API path of a ConfigMap."""
    return f"/api/v1/namespaces/{namespace}/configmaps/{configmap}"


def deployment_path(namespace: str, deployment: str) -> str:
    """The API path of a Deployment."""
    return f"/apis/apps/v1/namespaces/{namespace}/deployments/{deployment}"


def _host(api: Any) -> str:
    configuration = getattr(api, "configuration", None)
    return str(getattr(configuration, "host", "") or "the API server")


def _status_message(body: Any) -> tuple[str | None, str | None]:
    """``(message, reason)`` of a ``Status`` object in an error response body."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str) or not body:
        return None, None
    try:
        doc = json.loads(body)
    except ValueError:
        return body.strip()[:300] or None, None
    if not isinstance(doc, dict):
        return None, None
    message = doc.get("message")
    reason = doc.get("reason")
    return (str(message) if message else None), (str(reason) if reason else None)


#: What to check for the statuses that need a person's attention.
_HINTS = {
    401: "the credentials were not accepted (an expired token? check the kubeconfig's user)",
    403: (
        "the credentials in use lack the RBAC permission; a Level-1 rollback needs get and "
        "patch on configmaps, and get and patch on deployments (apps), in the namespace"
    ),
    404: "check the namespace and the object's name",
}


def _api_error(what: str, api: Any, exc: Any) -> KubeError:
    status = getattr(exc, "status", None)
    status = status if isinstance(status, int) and status > 0 else None
    message, reason = _status_message(getattr(exc, "body", None))
    reason = reason or getattr(exc, "reason", None)
    if status is None:
        detail = message or str(reason or exc).strip()
        return KubeError(f"{what}: cannot reach {_host(api)}: {detail}")
    text = f"{what}: the API server answered {status} {reason or ''}".rstrip()
    if message:
        text += f": {message}"
    if status in _HINTS:
        text += f". {_HINTS[status][0].upper()}{_HINTS[status][1:]}"
    return KubeError(text, status, str(reason) if reason else None)


def _call(what: str, api: Any, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a generated API method and return the JSON the API server answered."""
    import urllib3
    from kubernetes.client.exceptions import ApiException

    kwargs.setdefault("_request_timeout", REQUEST_TIMEOUT)
    try:
        response = method(*args, _preload_content=False, **kwargs)
        data = response.data
    except ApiException as exc:
        raise _api_error(what, api, exc) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise KubeError(f"{what}: cannot reach {_host(api)}: {exc}") from None
    try:
        return json.loads(data)
    except ValueError:
        raise KubeError(f"{what}: the answer of {_host(api)} is not JSON") from None


def configmap_data(api: Any, namespace: str, configmap: str) -> dict[str, str]:
    """The ``data`` of a ConfigMap (empty when it has none); :class:`KubeError` on failure."""
    client, _ = _client_modules()
    what = f"GET configmap {configmap} in namespace {namespace}"
    obj = _call(what, api, client.CoreV1Api(api).read_namespaced_config_map, configmap, namespace)
    data = obj.get("data") if isinstance(obj, dict) else None
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def read_param(api: Any, namespace: str, configmap: str, key: str) -> str | None:
    """The value of ``key`` in the ConfigMap, or ``None`` when the ConfigMap has no such key.

    A missing ConfigMap, a refusal or an unreachable API server raise :class:`KubeError`.
    """
    return configmap_data(api, namespace, configmap).get(key)


def param_patch(key: str, value: str) -> dict[str, Any]:
    """The patch :func:`write_param` sends."""
    return {"data": {key: value}}


def write_param(
    api: Any, namespace: str, configmap: str, key: str, value: str, dry_run: bool
) -> dict[str, Any]:
    """Set ``key`` to ``value`` in the ConfigMap (other keys untouched); return the patch body.

    A strategic merge patch of ``data`` with ``fieldManager=tandem``. With ``dry_run`` nothing is
    sent and ``api`` may be ``None``.
    """
    patch = param_patch(key, value)
    if dry_run:
        return patch
    client, _ = _client_modules()
    _call(
        f"PATCH configmap {configmap} in namespace {namespace}",
        api,
        client.CoreV1Api(api).patch_namespaced_config_map,
        configmap,
        namespace,
        patch,
        field_manager=FIELD_MANAGER,
    )
    return patch


def restart_patch(now: datetime | None = None) -> dict[str, Any]:
    """The patch ``kubectl rollout restart`` sends, stamped ``now`` (default: this instant).

    The timestamp is RFC 3339 in UTC, as kubectl writes it on a machine whose zone is UTC.
    """
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: stamp}}}}}


def server_type_value(stack: str) -> str:
    """``DRUM_SERVER_TYPE`` as a ConfigMap (or a container's ``env``) holds it: DRUM's JSON form.

    ``{"type": "string", "payload": "flask"}``: what DRUM requires in
    ``MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE`` and what Tandem reads there and in a bare
    ``DRUM_SERVER_TYPE`` (:func:`tandem.runtime_params.parse_value`).
    """
    return json.dumps({"type": "string", "payload": stack})


def numeric_value(number: str) -> str:
    """A numeric runtime parameter as a ConfigMap holds it: DRUM's JSON form,
    ``{"type": "numeric", "payload": 25}`` (``tandem fleet``'s ``DRUM_FASTAPI_CANARY_PERCENT``;
    an integral value as an integer). :func:`param_payload` reads it back as ``"25"``."""
    value = float(number)
    payload: float | int = int(value) if value.is_integer() else value
    return json.dumps({"type": "numeric", "payload": payload})


def param_payload(value: str) -> str:
    """A runtime parameter's value as written, read back: the JSON form's ``payload``, or the
    plain value (what Tandem accepts besides DRUM's form). Never fails: a value that is neither
    is returned as it is."""
    try:
        payload = parse_value("", value)
    except RuntimeParameterError:
        return value
    return value if payload is None else str(payload)


def config_digest(data: Mapping[str, str]) -> str:
    """SHA-256 of a ConfigMap's ``data`` (the :data:`CONFIG_DIGEST_ANNOTATION` value)."""
    text = json.dumps(dict(data), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def template_metadata(deployment: Any) -> dict[str, Any]:
    """The pod template's ``metadata`` of a Deployment object (empty when it has none)."""
    spec = deployment.get("spec") if isinstance(deployment, dict) else None
    template = spec.get("template") if isinstance(spec, dict) else None
    metadata = template.get("metadata") if isinstance(template, dict) else None
    return metadata if isinstance(metadata, dict) else {}


def level1_deployment_patch(
    stack: str | None,
    metadata: Mapping[str, Any] | None = None,
    config_data: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The Deployment patch of a Level-1 rollback to ``stack``: one source for ``tandem rollback
    --kubernetes`` and ``tandem export kubernetes``'s documented Level 1.

    Always :func:`restart_patch` (``now``), which makes the Deployment controller replace every
    pod. ``metadata`` is the pod template's metadata as it is now; when its labels carry
    :data:`SERVER_TYPE_LABEL` (as exported Deployments do) and ``stack`` is given, the patch sets
    it to ``stack``, so that the new pods, and ``up``'s ``server_type`` in Prometheus, name the
    stack they run. When its annotations carry :data:`CONFIG_DIGEST_ANNOTATION` and
    ``config_data`` (the ConfigMap's data after the change) is given, the patch sets it to that
    data's :func:`config_digest`. Nothing else is added: a Deployment Tandem did not export gets
    exactly ``kubectl rollout restart``'s patch.
    """
    patch = restart_patch(now)
    template = patch["spec"]["template"]["metadata"]
    metadata = metadata or {}
    labels = metadata.get("labels")
    annotations = metadata.get("annotations")
    if (
        config_data is not None
        and isinstance(annotations, Mapping)
        and CONFIG_DIGEST_ANNOTATION in annotations
    ):
        template["annotations"][CONFIG_DIGEST_ANNOTATION] = config_digest(config_data)
    if stack is not None and isinstance(labels, Mapping) and SERVER_TYPE_LABEL in labels:
        template["labels"] = {SERVER_TYPE_LABEL: stack}
    return patch


def restart_deployment(
    api: Any,
    namespace: str,
    deployment: str,
    dry_run: bool,
    *,
    stack: str | None = None,
    config_data: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Restart every pod of a Deployment as ``kubectl rollout restart`` does; return the patch.

    Reads the Deployment first and refuses a paused one, as kubectl does (its pods would not be
    replaced). The patch is :func:`level1_deployment_patch` for ``stack`` and ``config_data``
    on the pod template just read (``tandem fleet`` passes the stack each deployment moves to,
    and the ConfigMap's data after its percentage was written); with neither given, exactly
    kubectl's. With
    ``dry_run`` nothing is sent (not even the read) and ``api`` may be ``None``: the patch
    returned is then kubectl's restart alone, the pod template being unknown.
    """
    if dry_run:
        return level1_deployment_patch(stack, None, config_data)
    client, _ = _client_modules()
    apps = client.AppsV1Api(api)
    where = f"deployment {deployment} in namespace {namespace}"
    current = _call(f"GET {where}", api, apps.read_namespaced_deployment, deployment, namespace)
    if isinstance(current, dict) and (current.get("spec") or {}).get("paused"):
        raise KubeError(
            f"cannot restart {where}: it is paused, so its pods would not be replaced "
            f"(kubectl rollout resume deployment/{deployment} --namespace {namespace} first)"
        )
    patch = level1_deployment_patch(stack, template_metadata(current), config_data)
    _call(
        f"PATCH {where}",
        api,
        apps.patch_namespaced_deployment,
        deployment,
        namespace,
        patch,
        field_manager=FIELD_MANAGER,
    )
    return patch


def rollout_status(deployment: dict[str, Any]) -> tuple[bool, str]:
    """``(done, message)`` for a Deployment object, by ``kubectl rollout status``'s rules.

    Raises :class:`RolloutFailed` when its ``Progressing`` condition says
    ``ProgressDeadlineExceeded``.
    """
    metadata = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    name = metadata.get("name", "?")
    generation = int(metadata.get("generation") or 0)
    observed = int(status.get("observedGeneration") or 0)
    if generation > observed:
        return False, "Waiting for deployment spec update to be observed..."
    for condition in status.get("conditions") or []:
        if (
            condition.get("type") == "Progressing"
            and condition.get("reason") == "ProgressDeadlineExceeded"
        ):
            detail = condition.get("message")
            raise RolloutFailed(
                f'deployment "{name}" exceeded its progress deadline'
                + (f": {detail}" if detail else ""),
                reason="ProgressDeadlineExceeded",
            )
    wanted = spec.get("replicas")
    replicas = int(status.get("replicas") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    if wanted is not None and updated < int(wanted):
        return False, (
            f'Waiting for deployment "{name}" rollout to finish: {updated} out of {wanted} new '
            "replicas have been updated..."
        )
    if replicas > updated:
        return False, (
            f'Waiting for deployment "{name}" rollout to finish: {replicas - updated} old '
            "replicas are pending termination..."
        )
    if available < updated:
        return False, (
            f'Waiting for deployment "{name}" rollout to finish: {available} of {updated} '
            "updated replicas are available..."
        )
    return True, f'deployment "{name}" successfully rolled out'


def wait_rollout(
    api: Any,
    namespace: str,
    deployment: str,
    timeout: float,
    *,
    poll_interval: float = 1.0,
    progress: Callable[[str], None] | None = None,
) -> None:
    """Wait until the Deployment has rolled out, as ``kubectl rollout status`` does.

    Reads the Deployment every ``poll_interval`` seconds and calls ``progress`` with each new
    status line (kubectl's wording). Raises :class:`RolloutFailed` on ``ProgressDeadlineExceeded``,
    :class:`RolloutTimeout` when ``timeout`` seconds pass first (naming the last status), and
    :class:`KubeError` when a read fails.
    """
    client, _ = _client_modules()
    apps = client.AppsV1Api(api)
    what = f"GET deployment {deployment} in namespace {namespace}"
    deadline = time.monotonic() + timeout
    last: str | None = None
    while True:
        remaining = deadline - time.monotonic()
        request_timeout = max(1.0, min(REQUEST_TIMEOUT, remaining))
        obj = _call(
            what,
            api,
            apps.read_namespaced_deployment,
            deployment,
            namespace,
            _request_timeout=request_timeout,
        )
        done, message = rollout_status(obj if isinstance(obj, dict) else {})
        if message != last:
            last = message
            if progress is not None:
                progress(message)
        if done:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RolloutTimeout(
                f"deployment/{deployment} in namespace {namespace} did not finish rolling out "
                f"within {timeout:g} s (last status: {message})"
            )
        time.sleep(min(poll_interval, remaining))
