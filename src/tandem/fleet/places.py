"""Where a deployment's percentage lives and how it restarts: an env file and a command, or a
ConfigMap key and a rollout restart (through :mod:`tandem.ops.kube`, the official Kubernetes
client).

Each deployment gets a :class:`Place` with four operations: read the percentage it will start
with, write a new one, say whether something pins its side (``DRUM_SERVER_TYPE`` set, which wins
over the percentage), and restart it.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tandem.errors import ConfigError
from tandem.fleet.inventory import PERCENT_PARAM, Member
from tandem.ops import envfile

logger = logging.getLogger("tandem.fleet")

#: Keys that pin a deployment's side whatever the percentage says.
PIN_KEYS = ("DRUM_SERVER_TYPE", "MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE")


class RestartError(Exception):
    """A restart (or the write before it) failed."""


class Place(Protocol):
    """A deployment's parameter store and restart."""

    def read(self) -> str | None:
        """The percentage it will start with, as written (None: not set)."""

    def write(self, percent: str) -> dict[str, Any] | None:
        """Write the percentage; returns what changed (None: nothing did)."""

    def pinned(self) -> str | None:
        """The ``DRUM_SERVER_TYPE`` that overrides the percentage, if any."""

    def deployment_id(self) -> str | None:
        """The ``MLOPS_DEPLOYMENT_ID`` the store sets, if it sets one."""

    def restart(self) -> None:
        """Restart the deployment; raises :class:`RestartError`."""


def run_restart(command: str, timeout: float) -> None:
    """Run a restart command through the shell; raise :class:`RestartError` with its output's
    tail when it fails or outlasts ``timeout``.

    Its output goes to a temporary file, not a pipe: a command that leaves a server running in
    the background (which inherits the descriptors) must not keep the fleet waiting for EOF.
    """
    with tempfile.TemporaryFile() as out:
        try:
            completed = subprocess.run(
                command, shell=True, stdout=out, stderr=subprocess.STDOUT, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            raise RestartError(f"{command!r} did not finish within {timeout:g} s") from None
        except OSError as exc:
            raise RestartError(f"cannot run {command!r}: {exc.strerror or exc}") from None
        if completed.returncode != 0:
            out.seek(max(0, os.fstat(out.fileno()).st_size - 600))
            tail = out.read().decode(errors="replace").strip()
            raise RestartError(
                f"{command!r} exited with status {completed.returncode}"
                + (f": {tail}" if tail else "")
            )


@dataclass
class EnvFilePlace:
    """An env file the deployment reads its environment from, and its restart command."""

    path: Path
    restart_cmd: str
    restart_timeout: float = 300.0

    def _text(self) -> str:
        try:
            return envfile.decode(self.path.read_bytes())
        except OSError as exc:
            raise RestartError(f"cannot read {self.path}: {exc.strerror or exc}") from None

    def read(self) -> str | None:
        """The percentage the file sets."""
        return envfile.read_param(self._text(), PERCENT_PARAM)

    def write(self, percent: str) -> dict[str, Any] | None:
        """Rewrite the file atomically (no backup: the decision log keeps every percentage)."""
        try:
            applied = envfile.apply_param(self.path, PERCENT_PARAM, percent, backup=False)
        except OSError as exc:
            raise RestartError(f"cannot rewrite {self.path}: {exc.strerror or exc}") from None
        if not applied.change.changed:
            return None
        return {"env_file": str(applied.path), "lines": list(applied.change.changed_lines)}

    def pinned(self) -> str | None:
        """``DRUM_SERVER_TYPE`` as the file sets it."""
        return envfile.read_server_type(self._text())

    def deployment_id(self) -> str | None:
        """``MLOPS_DEPLOYMENT_ID`` as the file sets it."""
        return envfile.read_param(self._text(), "MLOPS_DEPLOYMENT_ID")

    def restart(self) -> None:
        """Run the restart command."""
        run_restart(self.restart_cmd, self.restart_timeout)


def _kube() -> Any:
    try:
        from tandem.ops import kube
    except ImportError:  # pragma: no cover - shipped together
        raise ConfigError("tandem.ops.kube (the Kubernetes client) is not available") from None
    return kube


@dataclass
class KubernetesPlace:
    """A ConfigMap key, and a rollout restart of the Deployment whose pods read it, through
    :mod:`tandem.ops.kube`. With ``dry_run`` nothing is sent (``api`` may be None): writes and
    restarts return the patch they would send."""

    api: Any
    namespace: str
    configmap: str
    key: str
    deployment: str
    timeout: float = 300.0
    dry_run: bool = False

    def _read(self, key: str) -> str | None:
        try:
            value = _kube().read_param(self.api, self.namespace, self.configmap, key)
        except Exception as exc:  # KubeError: what was asked and what the API server said
            raise RestartError(str(exc)) from None
        return None if value is None else str(value)

    def read(self) -> str | None:
        """The ConfigMap's value for the key."""
        return self._read(self.key)

    def write(self, percent: str) -> dict[str, Any] | None:
        """Patch the ConfigMap key (with ``dry_run``, only return the patch)."""
        if not self.dry_run and self.read() == percent:
            return None
        try:
            patch = _kube().write_param(
                self.api, self.namespace, self.configmap, self.key, percent, self.dry_run
            )
        except Exception as exc:
            raise RestartError(str(exc)) from None
        return {"configmap": f"{self.namespace}/{self.configmap}", "patch": patch}

    def pinned(self) -> str | None:
        """``DRUM_SERVER_TYPE`` as the ConfigMap sets it (either spelling)."""
        for key in reversed(PIN_KEYS):  # the prefixed form wins, as in the environment
            value = self._read(key)
            if value:
                return value
        return None

    def deployment_id(self) -> str | None:
        """``MLOPS_DEPLOYMENT_ID`` as the ConfigMap sets it."""
        return self._read("MLOPS_DEPLOYMENT_ID")

    def restart(self) -> None:
        """``kubectl rollout restart`` and ``rollout status``, through the client."""
        kube = _kube()
        try:
            kube.restart_deployment(self.api, self.namespace, self.deployment, self.dry_run)
            if not self.dry_run:
                kube.wait_rollout(self.api, self.namespace, self.deployment, self.timeout)
        except Exception as exc:  # KubeError, RolloutFailed, RolloutTimeout
            raise RestartError(
                f"rollout restart of deployment/{self.deployment} in {self.namespace} failed: {exc}"
            ) from None


def place_for(
    member: Member, kube_api: Callable[[], Any] | None = None, dry_run: bool = False
) -> Place:
    """The place of one inventory entry (``kube_api`` builds the client when one is needed)."""
    if member.kubernetes is not None:
        k = member.kubernetes
        api = kube_api() if kube_api is not None and not dry_run else None
        return KubernetesPlace(
            api, k.namespace, k.configmap, k.key, k.deployment, member.restart_timeout, dry_run
        )
    assert member.env_file is not None and member.restart_cmd is not None
    return EnvFilePlace(member.env_file, member.restart_cmd, member.restart_timeout)


def kubernetes_api(context: str | None = None) -> Any:
    """An API client: the pod's service account in a pod, else the kubeconfig (``context``)."""
    try:
        return _kube().api_from_config(context)
    except Exception as exc:  # KubeError: the client is missing or not configured
        raise ConfigError(str(exc)) from None
