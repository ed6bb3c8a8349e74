"""One model deployment as the exports describe it: names, labels, and the Level-1 seam.

Every exported object names the same things the same way, so that the rollback plan's Level 1
("set ``DRUM_SERVER_TYPE`` back in the ConfigMap and restart"), ``tandem rollback --kubernetes``
and (later) ``tandem fleet --kubernetes`` find them: :meth:`Model.rollback_target` and
:meth:`Model.level1_patches` are that seam.

Labels on every pod:

- ``app.kubernetes.io/name: <name>``: the workload's selector (Flagger renames it to
  ``<name>-primary`` on the primary copy, as it does with every selector label);
- ``tandem-model: <name>``: unchanged on every copy (Flagger's primary, Argo Rollouts' canary
  and stable ReplicaSets); the Pod/ServiceMonitor turns it into the ``tandem_model`` target
  label that every exported query selects by;
- ``tandem-server-type: <stack>``: the ``server_type`` target label of ``up`` (Tandem's own
  metrics carry ``server_type`` themselves; ``up`` only has the target's labels).

The ConfigMap holds ``DRUM_SERVER_TYPE`` in DRUM's JSON form (``{"type": "string", "payload":
"fastapi"}``): the pods read it as ``MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE``, where DRUM accepts
nothing else and Tandem reads it too. The value, the label, the digest and the Level-1 Deployment
patch come from :mod:`tandem.ops.kube`, which ``tandem rollback --kubernetes`` sends them with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tandem.errors import ConfigError
from tandem.export.sizing import Resources
from tandem.ops import kube
from tandem.ops.kube import CONFIG_DIGEST_ANNOTATION, SERVER_TYPE_LABEL
from tandem.runtime_params import PREFIX as RUNTIME_PARAM_PREFIX
from tandem.server_type import DEFAULT_SERVER_TYPE, normalise_server_type

NAME_LABEL = "app.kubernetes.io/name"
MODEL_LABEL = "tandem-model"
#: The ConfigMap key the rollback plan's Level 1 changes.
SERVER_TYPE_KEY = "DRUM_SERVER_TYPE"
#: Prometheus target labels made from the pod labels by the monitors' relabelings.
MODEL_TARGET_LABEL = "tandem_model"
SERVER_TYPE_TARGET_LABEL = "server_type"

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
#: Leaves room for the longest derived name (``<name>-canary``, ``<name>-error-rate-gradual``)
#: within Kubernetes' 63-character limit on Service names and label values.
MAX_NAME = 40
_PARAM = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_name(value: str, what: str = "--name") -> str:
    """A Kubernetes DNS label short enough for every derived name; ConfigError otherwise."""
    if not _NAME.match(value) or len(value) > MAX_NAME:
        raise ConfigError(
            f"{what} {value!r} must be lower-case letters, digits and '-', starting and ending "
            f"with a letter or digit, at most {MAX_NAME} characters"
        )
    return value


@dataclass(frozen=True)
class Model:
    """A model server deployment: what the Kubernetes objects are built from."""

    name: str
    namespace: str = "default"
    image: str = ""
    """Container image with Tandem (or DRUM) and the model's dependencies."""
    code_dir: str = "/opt/code"
    """The model's folder inside the image (``CODE_DIR``)."""
    deployment_id: str | None = None
    """``MLOPS_DEPLOYMENT_ID``: the deployment-level canary hashes it."""
    server_type: str = DEFAULT_SERVER_TYPE
    port: int = 8080
    replicas: int = 2
    command: tuple[str, ...] = ("tandem", "server")
    target_type: str | None = None
    workers: int | None = None
    """``MAX_WORKERS``: worker processes per pod (None: the server's default)."""
    runtime_params: tuple[tuple[str, str], ...] = ()
    """Extra runtime parameters for the ConfigMap (``NAME``, value), beside DRUM_SERVER_TYPE."""
    resources: Resources = field(default_factory=Resources)

    def __post_init__(self) -> None:
        check_name(self.name)
        check_name(self.namespace, "--namespace")
        object.__setattr__(self, "server_type", normalise_server_type(self.server_type))
        for key, _ in self.runtime_params:
            if not _PARAM.match(key) or key == SERVER_TYPE_KEY:
                raise ConfigError(
                    f"runtime parameter name {key!r} must be letters, digits and '_' (and "
                    f"{SERVER_TYPE_KEY} is set by --server-type)"
                )
        if not 0 < self.port < 65536:
            raise ConfigError(f"--port must be 1-65535, got {self.port}")
        if self.replicas < 1:
            raise ConfigError(f"--replicas must be at least 1, got {self.replicas}")

    # -- names -----------------------------------------------------------------------------

    @property
    def configmap_name(self) -> str:
        """The ConfigMap whose ``DRUM_SERVER_TYPE`` key picks the stack."""
        return f"{self.name}-config"

    @property
    def deployment_name(self) -> str:
        """The Deployment (or Argo Rollout) running the pods."""
        return self.name

    @property
    def service_name(self) -> str:
        """The Service in front of the pods."""
        return self.name

    def selector_labels(self) -> dict[str, str]:
        """The workload's and Service's selector."""
        return {NAME_LABEL: self.name}

    def pod_labels(self, server_type: str | None = None) -> dict[str, str]:
        """Labels of every pod (see the module docstring)."""
        return {
            NAME_LABEL: self.name,
            MODEL_LABEL: self.name,
            SERVER_TYPE_LABEL: server_type or self.server_type,
        }

    def metric_selector(self) -> str:
        """The PromQL labels of this deployment's series (the ``--prometheus-selector`` the
        rollout would be given): the namespace and the ``tandem_model`` target label."""
        return f'namespace="{self.namespace}", {MODEL_TARGET_LABEL}="{self.name}"'

    # -- configuration ---------------------------------------------------------------------

    def config_data(self, server_type: str | None = None) -> dict[str, str]:
        """The ConfigMap's data: runtime parameters by bare name (the pods get them as
        ``MLOPS_RUNTIME_PARAM_<NAME>``); ``DRUM_SERVER_TYPE`` in DRUM's JSON form
        (:func:`tandem.ops.kube.server_type_value`), the others as given."""
        stack = normalise_server_type(server_type or self.server_type)
        data = {SERVER_TYPE_KEY: kube.server_type_value(stack)}
        data.update(dict(self.runtime_params))
        return data

    def config_digest(self, server_type: str | None = None) -> str:
        """SHA-256 of the ConfigMap's data (the pod-template annotation)."""
        return kube.config_digest(self.config_data(server_type))

    def template_metadata(self, server_type: str | None = None) -> dict[str, Any]:
        """The pod template's metadata: the pod labels and the config digest."""
        return {
            "labels": self.pod_labels(server_type),
            "annotations": {CONFIG_DIGEST_ANNOTATION: self.config_digest(server_type)},
        }

    # -- the Level-1 seam ------------------------------------------------------------------

    def level1_patches(
        self, server_type: str, now: datetime | None = None
    ) -> dict[str, dict[str, Any]]:
        """The rollback plan's Level 1 on the exported objects, as two patches: exactly what
        ``tandem rollback --kubernetes`` sends to them (both come from :mod:`tandem.ops.kube`).

        ``configmap``: a merge patch of the ConfigMap's key, in DRUM's JSON form (the plan's
        ``kubectl patch configmap``). ``deployment``:
        :func:`~tandem.ops.kube.level1_deployment_patch` on the exported pod template, a
        strategic-merge patch of ``kubectl rollout restart``'s annotation (stamped ``now``,
        default this instant), the server-type label and the config digest: applying it restarts
        the pods (the plan's "restart") and keeps ``up``'s ``server_type`` label true.
        """
        stack = normalise_server_type(server_type)
        return {
            "configmap": kube.param_patch(SERVER_TYPE_KEY, kube.server_type_value(stack)),
            "deployment": kube.level1_deployment_patch(
                stack, self.template_metadata(), self.config_data(stack), now
            ),
        }

    def rollback_target(self) -> Any:
        """This deployment as ``tandem rollback --kubernetes`` addresses it."""
        from tandem.ops.rollback import KubernetesTarget

        return KubernetesTarget(
            namespace=self.namespace,
            configmap=self.configmap_name,
            deployment=self.deployment_name,
            key=SERVER_TYPE_KEY,
        )


def env_name(param: str) -> str:
    """The environment variable a ConfigMap key becomes in the pods."""
    return RUNTIME_PARAM_PREFIX + param
