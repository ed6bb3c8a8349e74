"""Where a deployment's percentage lives and how it restarts: an env file and a command, or a
ConfigMap key and a rollout restart (through :mod:`tandem.ops.kube`, the official Kubernetes
client).

Each deployment gets a :class:`Place` with four operations: read the percentage it will start
with, write a new one, say whether something pins its side (``DRUM_SERVER_TYPE`` set, which wins
over the percentage), and restart it onto the side its percentage now gives it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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

    def restart(self, side: str | None = None) -> None:
        """Restart the deployment onto ``side`` (the stack its written percentage gives it);
        raises :class:`RestartError`."""


def run_restart(command: str, timeout: float) -> None:
    """Run a restart command through the shell; raise :class:`RestartError` with its output's
    tail when it fails or outlasts ``timeout``.

    Its output goes to a temporary file, not a pipe: a command that leaves a server running in
    the background (which inherits the descriptors) must not keep the fleet waiting for EOF.
    """
    with tempfile.TemporaryFile() as out:
        try:
            # Its own process group: a command abandoned at its timeout is stopped with
            # everything it started, so nothing it left behind runs on with no owner.
            proc = subprocess.Popen(
                command,
                shell=True,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise RestartError(f"cannot run {command!r}: {exc.strerror or exc}") from None
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop_group(proc)
            raise RestartError(
                f"{command!r} did not finish within {timeout:g} s (stopped, with what it started)"
            ) from None
        except BaseException:
            _stop_group(proc)
            raise
        if returncode != 0:
            out.seek(max(0, os.fstat(out.fileno()).st_size - 600))
            tail = out.read().decode(errors="replace").strip()
            raise RestartError(
                f"{command!r} exited with status {returncode}" + (f": {tail}" if tail else "")
            )


def _stop_group(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM the command's process group (the shell and all it started), wait up to ``grace``
    seconds for every member to exit, then SIGKILL whatever is left."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        proc.wait()
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()  # reap the shell, so it does not count as a member left
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break  # the whole group is gone
        time.sleep(0.05)
    else:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


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

    def restart(self, side: str | None = None) -> None:
        """Run the restart command (the env file alone picks ``side``)."""
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
    restarts return the patch they would send.

    The percentage is written in DRUM's JSON form (:func:`~tandem.ops.kube.numeric_value`, what
    DRUM requires when the ConfigMap reaches the pods as ``MLOPS_RUNTIME_PARAM_*``, as exported
    Deployments mount it) and read in either form. A restart onto a side is
    :func:`~tandem.ops.kube.level1_deployment_patch` for that side: the pod template's
    ``tandem-server-type`` label (and ``tandem-config-sha256`` digest), when it has them, follow.
    """

    api: Any
    namespace: str
    configmap: str
    key: str
    deployment: str
    timeout: float = 300.0
    dry_run: bool = False
    data: dict[str, str] | None = field(default=None, repr=False)
    """The ConfigMap's data as last read (and written): the digest of a restart."""

    def _configmap(self) -> dict[str, str]:
        try:
            data = _kube().configmap_data(self.api, self.namespace, self.configmap)
        except Exception as exc:  # KubeError: what was asked and what the API server said
            raise RestartError(str(exc)) from None
        self.data = data
        return data

    def _payload(self, data: dict[str, str], key: str) -> str | None:
        value = data.get(key)
        return None if value is None else _kube().param_payload(value)

    def read(self) -> str | None:
        """The percentage the ConfigMap's key sets (either form's payload)."""
        return self._payload(self._configmap(), self.key)

    def value(self, percent: str) -> str:
        """The value written for ``percent``: DRUM's JSON form."""
        return str(_kube().numeric_value(percent))

    def write(self, percent: str) -> dict[str, Any] | None:
        """Patch the ConfigMap key (with ``dry_run``, only return the patch)."""
        if not self.dry_run and self.read() == percent:
            return None
        value = self.value(percent)
        try:
            patch = _kube().write_param(
                self.api, self.namespace, self.configmap, self.key, value, self.dry_run
            )
        except Exception as exc:
            raise RestartError(str(exc)) from None
        if self.data is not None and not self.dry_run:
            self.data = {**self.data, self.key: value}
        return {"configmap": f"{self.namespace}/{self.configmap}", "patch": patch}

    def pinned(self) -> str | None:
        """``DRUM_SERVER_TYPE`` as the ConfigMap sets it (either spelling, either form)."""
        data = self._configmap()
        for key in reversed(PIN_KEYS):  # the prefixed form wins, as in the environment
            value = self._payload(data, key)
            if value:
                return value
        return None

    def deployment_id(self) -> str | None:
        """``MLOPS_DEPLOYMENT_ID`` as the ConfigMap sets it."""
        return self._payload(self._configmap(), "MLOPS_DEPLOYMENT_ID")

    def restart_patch(self, side: str | None = None) -> dict[str, Any]:
        """The Deployment patch a restart onto ``side`` sends, as a dry run knows it (the pod
        template unread: ``kubectl rollout restart``'s annotation alone)."""
        return dict(
            _kube().restart_deployment(None, self.namespace, self.deployment, True, stack=side)
        )

    def restart(self, side: str | None = None) -> None:
        """``kubectl rollout restart`` (moving the pod template's ``tandem-server-type`` label to
        ``side`` when it has one) and ``rollout status``, through the client."""
        kube = _kube()
        try:
            kube.restart_deployment(
                self.api,
                self.namespace,
                self.deployment,
                self.dry_run,
                stack=side,
                config_data=None if self.dry_run else self.data,
            )
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
