"""Level-1 rollback: change ``DRUM_SERVER_TYPE`` where the deployment reads it, restart, verify.

The rollback plan's Level 1 ("Runtime Parameter (Immediate)", time to recovery under five
minutes) as one operation:

1. find out which stack the target runs now, and refuse when it already runs the requested one;
2. explain what will change (the env-file diff, or the exact Kubernetes API patches as JSON)
   and ask for confirmation (``dry_run`` stops here, changing nothing and contacting no cluster);
3. change the variable and restart: an env file is rewritten atomically with a timestamped backup
   and the restart command runs; on Kubernetes (:mod:`tandem.ops.kube`, the official client) the
   ConfigMap key is patched (to DRUM's JSON form, which DRUM and Tandem both read), the
   Deployment restarted as ``kubectl rollout restart`` does, with its ``tandem-server-type`` pod
   label (``up``'s ``server_type``) and config digest brought along when it has them
   (:func:`tandem.ops.kube.level1_deployment_patch`), and its rollout awaited as ``kubectl rollout
   status`` does;
4. wait until the server is ready on the new stack (``/readyz``, then ``/ping``, then ``/info/``
   reporting it), which gives the time to recovery;
5. run :func:`tandem.ops.verify.run_checks` with the new stack expected.

:func:`perform_rollback` returns a :class:`RollbackResult` whose ``exit_code`` is 0 only when the
server recovered and verification passed.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import httpx

from tandem.ops import envfile, kube, normalize_stack, stack_from_info
from tandem.ops.verify import VerifyOptions, VerifyReport, run_checks

EXIT_OK = 0
"""Recovered and verified."""
EXIT_FAILED = 1
"""The change, the restart, readiness or verification failed."""
EXIT_REFUSED = 2
"""Not confirmed, or the request cannot be carried out (bad target); nothing was changed."""
EXIT_ALREADY = 3
"""The target already runs the requested stack; nothing was changed."""

#: The rollback plan's Level-1 target for time to recovery.
LEVEL1_TARGET_SECONDS = 300.0


class RollbackError(Exception):
    """A rollback step failed; ``exit_code`` says how the command should exit."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Observation:
    """Which stack a target runs, and how that was found out."""

    stack: str | None
    """Canonical stack (``flask``, ``gunicorn``, ``fastapi``) or None when unknown."""
    source: str
    raw: str | None = None
    """The value as written (env file, ConfigMap), when there is one."""


def observe_url(url: str, headers: dict[str, str], timeout: float = 5.0) -> Observation | None:
    """The stack ``/info/`` at ``url`` reports, or None when it does not answer usefully."""
    try:
        response = httpx.get(url.rstrip("/") + "/info/", headers=headers, timeout=timeout)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    try:
        info = response.json()
    except ValueError:
        return None
    if not isinstance(info, dict):
        return None
    stack = stack_from_info(info)
    return Observation(
        stack,
        f"{url.rstrip('/')}/info/ reports drumServer={info.get('drumServer')}, "
        f"processServer={info.get('processServer')}",
    )


def run_command(command: str | list[str], timeout: float, out: TextIO) -> None:
    """Run a command (a shell string or an argv list), echoing it; raise on failure."""
    shown = command if isinstance(command, str) else shlex.join(command)
    print(f"$ {shown}", file=out, flush=True)
    try:
        completed = subprocess.run(command, shell=isinstance(command, str), timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RollbackError(f"{shown!r} did not finish within {timeout:g} s") from None
    except OSError as exc:
        raise RollbackError(f"cannot run {shown!r}: {exc.strerror or exc}") from None
    if completed.returncode != 0:
        raise RollbackError(f"{shown!r} exited with status {completed.returncode}")


@dataclass
class EnvFileTarget:
    """A deployment that reads ``DRUM_SERVER_TYPE`` from an env file and restarts by a command."""

    path: Path
    restart_cmd: str
    restart_timeout: float = 300.0
    applied: envfile.AppliedChange | None = None

    def describe(self) -> str:
        """One line naming the target."""
        return f"env file {self.path}, restarted with: {self.restart_cmd}"

    def _text(self) -> str:
        try:
            return envfile.decode(self.path.read_bytes())
        except OSError as exc:
            raise RollbackError(
                f"cannot read env file {self.path}: {exc.strerror or exc}", EXIT_REFUSED
            ) from None

    def observe(self) -> Observation:
        """The stack the env file sets."""
        found = envfile.effective_assignment(self._text())
        if found is None:
            return Observation(None, f"{self.path} does not set DRUM_SERVER_TYPE")
        return Observation(
            normalize_stack(found.value),
            f"{found.key}={found.value} on line {found.line_no} of {self.path}",
            found.value,
        )

    def plan(self, stack: str) -> list[str]:
        """The diff the change makes and the restart command."""
        change = envfile.rewrite_server_type(self._text(), stack)
        return [
            f"Will change {self.path} (a timestamped backup is written next to it first):",
            envfile.unified_diff(change.old_text, change.new_text, str(self.path)),
            "Will run:",
            f"  {self.restart_cmd}",
        ]

    def apply(self, stack: str, out: TextIO) -> None:
        """Rewrite the env file, then run the restart command."""
        try:
            self.applied = envfile.apply_server_type(self.path, stack)
        except OSError as exc:
            raise RollbackError(f"cannot rewrite {self.path}: {exc.strerror or exc}") from None
        lines = ", ".join(str(n) for n in self.applied.change.changed_lines)
        print(
            f"Changed {self.applied.path} (line {lines}); backup: {self.applied.backup}",
            file=out,
            flush=True,
        )
        try:
            run_command(self.restart_cmd, self.restart_timeout, out)
        except RollbackError as exc:
            raise RollbackError(
                f"restart failed: {exc}. {self.applied.path} already sets DRUM_SERVER_TYPE="
                f"{stack}; the previous version is in {self.applied.backup}"
            ) from None


@dataclass
class KubernetesTarget:
    """A Deployment whose pods read ``DRUM_SERVER_TYPE`` from a ConfigMap.

    Talks to the Kubernetes API through :mod:`tandem.ops.kube` (the official Python client): the
    kubeconfig's ``context`` (or, in a pod, the service account), patches the ConfigMap key to
    :func:`~tandem.ops.kube.server_type_value` (DRUM's JSON form; the current value is read in
    either form), restarts the Deployment with
    :func:`~tandem.ops.kube.level1_deployment_patch` (``kubectl rollout restart``'s annotation,
    plus the ``tandem-server-type`` label and config digest when its pod template has them) and
    waits as ``kubectl rollout status`` does. A dry run contacts nothing.
    """

    namespace: str
    configmap: str
    deployment: str
    key: str = "DRUM_SERVER_TYPE"
    context: str | None = None
    rollout_timeout: float = 300.0
    kubeconfig: str | None = None
    poll_interval: float = 1.0
    api: Any = field(default=None, repr=False)
    """The API client (built from ``context``/``kubeconfig`` on first use when None)."""
    data: dict[str, str] | None = field(default=None, repr=False)
    """The ConfigMap's data as last read."""

    def describe(self) -> str:
        """One line naming the target."""
        return (
            f"Kubernetes deployment/{self.deployment} in namespace {self.namespace} "
            f"(ConfigMap {self.configmap}, key {self.key})"
        )

    def _client(self) -> Any:
        if self.api is None:
            try:
                self.api = kube.api_from_config(self.context, self.kubeconfig)
            except kube.KubeError as exc:
                raise RollbackError(f"{exc}. Nothing was changed.", EXIT_REFUSED) from None
        return self.api

    def read(self) -> dict[str, str]:
        """Read the ConfigMap (once); a failure is a :class:`RollbackError` (nothing changed)."""
        if self.data is None:
            try:
                self.data = kube.configmap_data(self._client(), self.namespace, self.configmap)
            except kube.KubeError as exc:
                raise RollbackError(f"{exc}. Nothing was changed.", EXIT_REFUSED) from None
        return self.data

    def observe(self) -> Observation:
        """The stack the ConfigMap sets (reads it through the Kubernetes API)."""
        value = self.read().get(self.key)
        if value is None:
            return Observation(None, f"ConfigMap {self.configmap} has no key {self.key}")
        return Observation(
            normalize_stack(kube.param_payload(value)),
            f"ConfigMap {self.configmap} sets {self.key}={value}",
            value,
        )

    def preflight(self) -> None:
        """Before asking: the ConfigMap can be read and has the key (else nothing is changed).

        A ConfigMap without the key is refused rather than given one: the pods cannot be
        reading the stack from it (a wrong ``--configmap-key``?), so patching it and restarting
        would change nothing but the pods.
        """
        data = self.read()
        if self.key not in data:
            keys = ", ".join(sorted(data)) or "none"
            raise RollbackError(
                f"ConfigMap {self.configmap} in namespace {self.namespace} has no key "
                f"{self.key} (its keys: {keys}), so the pods do not read the stack from it; "
                "check --configmap and --configmap-key. Nothing was changed.",
                EXIT_REFUSED,
            )

    def patches(self, stack: str) -> list[tuple[str, str, dict[str, Any]]]:
        """``(method, path, body)`` of each patch the rollback sends, in order.

        The Deployment's is the one sent to a pod template without Tandem's label and digest
        annotation (:meth:`plan` says what is added when they are there: the template is only
        read just before the restart).
        """
        query = f"?fieldManager={kube.FIELD_MANAGER}"
        value = kube.server_type_value(stack)
        return [
            (
                "PATCH",
                kube.configmap_path(self.namespace, self.configmap) + query,
                kube.write_param(None, self.namespace, self.configmap, self.key, value, True),
            ),
            (
                "PATCH",
                kube.deployment_path(self.namespace, self.deployment) + query,
                kube.restart_deployment(None, self.namespace, self.deployment, True, stack=stack),
            ),
        ]

    def plan(self, stack: str) -> list[str]:
        """The exact patches that will be sent (JSON bodies as sent), then the rollout wait."""
        at = f" (context {self.context})" if self.context else ""
        lines = [f"Will send to the Kubernetes API{at}, as {kube.PATCH_CONTENT_TYPE}:"]
        for method, path, body in self.patches(stack):
            lines += [f"  {method} {path}", f"    {json.dumps(body)}"]
        label = {"spec": {"template": {"metadata": {"labels": {kube.SERVER_TYPE_LABEL: stack}}}}}
        lines += [
            f"  and wait until deployment/{self.deployment} has rolled out (as kubectl rollout "
            f"status does; up to {self.rollout_timeout:g} s).",
            "  The restart's restartedAt is stamped when it is sent. The Deployment is read just "
            "before:",
            f"  if its pod template has the label {kube.SERVER_TYPE_LABEL} (as `tandem export "
            "kubernetes` writes it, for up's server_type), the same patch also sets it:",
            f"    {json.dumps(label)}",
            f"  and if it has the annotation {kube.CONFIG_DIGEST_ANNOTATION}, sets that to the "
            "digest of the ConfigMap's new data.",
        ]
        return lines

    def apply(self, stack: str, out: TextIO) -> None:
        """Patch the ConfigMap, restart the Deployment and wait for its rollout."""
        api = self._client()
        current = self.read()
        configmap_path = kube.configmap_path(self.namespace, self.configmap)
        value = kube.server_type_value(stack)
        try:
            patch = kube.write_param(
                api, self.namespace, self.configmap, self.key, value, dry_run=False
            )
        except kube.KubeError as exc:
            raise RollbackError(f"{exc}. Nothing was changed.") from None
        print(f"PATCH {configmap_path}: {json.dumps(patch)}", file=out, flush=True)
        changed = f"ConfigMap {self.configmap} already sets {self.key} to {stack}"
        data = {**current, self.key: value}
        try:
            patch = kube.restart_deployment(
                api, self.namespace, self.deployment, dry_run=False, stack=stack, config_data=data
            )
        except kube.KubeError as exc:
            raise RollbackError(
                f"restart failed: {exc}. {changed}; restart the pods to apply it "
                f"(kubectl rollout restart deployment/{self.deployment} "
                f"--namespace {self.namespace}), and set the pod template's "
                f"{kube.SERVER_TYPE_LABEL} label to {stack} if it has one"
            ) from None
        deployment_path = kube.deployment_path(self.namespace, self.deployment)
        print(f"PATCH {deployment_path}: {json.dumps(patch)}", file=out, flush=True)
        try:
            kube.wait_rollout(
                api,
                self.namespace,
                self.deployment,
                self.rollout_timeout,
                poll_interval=self.poll_interval,
                progress=lambda line: print(f"  {line}", file=out, flush=True),
            )
        except kube.KubeError as exc:
            raise RollbackError(
                f"rollout failed: {exc}. {changed} and the restart was sent; see why the new "
                f"pods are not ready: kubectl describe deployment/{self.deployment} "
                f"--namespace {self.namespace}"
            ) from None


Target = EnvFileTarget | KubernetesTarget


@dataclass
class RollbackRequest:
    """What to roll back, to which stack, and how to verify it."""

    stack: str
    target: Target
    url: str | None
    verify: VerifyOptions = field(default_factory=VerifyOptions)
    dry_run: bool = False
    ready_timeout: float = LEVEL1_TARGET_SECONDS


@dataclass
class RollbackResult:
    """The outcome of :func:`perform_rollback`."""

    exit_code: int
    message: str
    current: Observation | None = None
    time_to_recovery: float | None = None
    """Seconds from the change to a ready server on the new stack (None when not recovered)."""
    total_seconds: float | None = None
    """Seconds from the change to the end of verification."""
    report: VerifyReport | None = None
    backup: Path | None = None


def redacted_verify_command(url: str, options: VerifyOptions) -> str:
    """The ``tandem verify`` command line equivalent to ``options`` (header values hidden)."""
    argv = ["tandem", "verify", url]
    if options.expect_server:
        argv += ["--expect-server", options.expect_server]
    if options.log_file:
        argv += ["--log-file", str(options.log_file)]
    if options.payload:
        argv += ["--payload", str(options.payload)]
    for spec in options.code_dirs:
        argv += ["--code-dir", f"{spec.path}={spec.url}" if spec.url else str(spec.path)]
    if options.expected:
        argv += ["--expected", str(options.expected)]
    if options.full:
        argv += ["--full", "--load-seconds", f"{options.load_seconds:g}"]
    for route in options.extension_routes:
        prefix = "" if route.method == "GET" else f"{route.method} "
        argv += ["--extension-route", f"{prefix}{route.path}={route.status}"]
    for name in options.headers:
        argv += ["--header", f"{name}: ***"]
    if options.require_traces:
        argv += ["--require-traces"]
    if options.require_mlops:
        argv += ["--require-mlops"]
    return shlex.join(argv)


def wait_ready(
    url: str, stack: str, headers: dict[str, str], timeout: float
) -> tuple[bool, str, float]:
    """Wait until ``url`` is ready on ``stack``: ``/readyz`` (when served), ``/ping``, ``/info/``.

    Returns ``(ready, what was seen last, seconds waited)``. A server whose ``/info/`` cannot be
    read (an authenticating extension, say) is taken as ready once ``/ping`` answers.
    """
    started = time.monotonic()
    deadline = started + timeout
    seen = "no answer yet"
    with httpx.Client(headers=headers, timeout=min(5.0, max(timeout, 0.5))) as client:
        while True:
            ready, seen = _probe(client, url.rstrip("/"), stack)
            if ready:
                return True, seen, time.monotonic() - started
            if time.monotonic() >= deadline:
                return False, seen, time.monotonic() - started
            time.sleep(0.25)


def _probe(client: httpx.Client, url: str, stack: str) -> tuple[bool, str]:
    try:
        readyz = client.get(url + "/readyz")
        if readyz.status_code not in (200, 404):
            return False, f"/readyz answered {readyz.status_code}"
        ping = client.get(url + "/ping")
        if ping.status_code != 200:
            return False, f"/ping answered {ping.status_code}"
        info = client.get(url + "/info/")
    except httpx.HTTPError as exc:
        return False, f"{type(exc).__name__}: {exc}"
    if info.status_code != 200:
        return True, f"/ping 200; /info/ answered {info.status_code}, stack not confirmed"
    try:
        running = stack_from_info(info.json())
    except (ValueError, AttributeError):
        return True, "/ping 200; /info/ is not JSON, stack not confirmed"
    if running != stack:
        return False, f"/ping 200 but /info/ reports {running} (waiting for {stack})"
    return True, f"/readyz and /ping 200, /info/ reports {running}"


def _format_seconds(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min ({seconds:.0f} s)"


def current_stack(request: RollbackRequest) -> Observation:
    """What the target runs now: the env file's value, else ``/info/``, else the ConfigMap."""
    target = request.target
    headers = request.verify.headers
    if isinstance(target, EnvFileTarget):
        observed = target.observe()
        if observed.stack is not None or request.url is None:
            return observed
        from_url = observe_url(request.url, headers)
        return from_url or observed
    if request.url is not None:
        from_url = observe_url(request.url, headers)
        if from_url is not None:
            return from_url
    if request.dry_run:
        where = f"{request.url}/info/ did not answer" if request.url else "no --url given"
        return Observation(None, f"{where}; a dry run contacts no cluster")
    return target.observe()


def perform_rollback(
    request: RollbackRequest,
    confirm: Callable[[], bool],
    out: TextIO,
    show_report: Callable[[VerifyReport], None] | None = None,
) -> RollbackResult:
    """Carry out (or, with ``dry_run``, only explain) a Level-1 rollback; see the module doc."""
    stack = normalize_stack(request.stack)
    if stack is None:
        return RollbackResult(EXIT_REFUSED, f"unknown stack {request.stack!r}")
    target = request.target
    try:
        current = current_stack(request)
    except RollbackError as exc:
        print(f"Rollback not started: {exc}", file=out, flush=True)
        return RollbackResult(exc.exit_code, str(exc))

    print(f"Rollback to {stack} (DRUM_SERVER_TYPE={stack})", file=out)
    print(f"Target:  {target.describe()}", file=out)
    print(f"Current: {current.stack or 'unknown'} ({current.source})", file=out)
    if current.stack == stack:
        message = f"Refusing: the target already runs {stack} ({current.source}); nothing to do."
        if isinstance(target, EnvFileTarget) and request.url:
            running = observe_url(request.url, request.verify.headers)
            if running is not None and running.stack not in (None, stack):
                message += (
                    f" Note: {running.source} — the server was not restarted after the change; "
                    f"run the restart command: {target.restart_cmd}"
                )
        print(message, file=out, flush=True)
        return RollbackResult(EXIT_ALREADY, message, current)

    if isinstance(target, KubernetesTarget) and not request.dry_run:
        try:
            target.preflight()
        except RollbackError as exc:
            print(f"Rollback not started: {exc}", file=out, flush=True)
            return RollbackResult(exc.exit_code, str(exc), current)

    options = replace(request.verify, expect_server=stack)
    for line in target.plan(stack):
        print(line, file=out)
    if request.url:
        print(
            f"Then: wait for {request.url}/readyz and /ping (up to {request.ready_timeout:g} s), "
            "and verify:",
            file=out,
        )
        print(f"  {redacted_verify_command(request.url, options)}", file=out)
    else:
        print("Then: nothing to verify (no --url given).", file=out)
    if request.dry_run:
        print("Dry run: nothing was changed.", file=out, flush=True)
        return RollbackResult(EXIT_OK, "dry run", current)
    out.flush()
    if request.url is None:
        return RollbackResult(EXIT_REFUSED, "--url is required to wait for and verify the server")
    if not confirm():
        message = "Not confirmed: nothing was changed."
        print(message, file=out, flush=True)
        return RollbackResult(EXIT_REFUSED, message, current)

    changed_at = time.monotonic()
    try:
        target.apply(stack, out)
    except RollbackError as exc:
        print(f"Rollback FAILED: {exc}", file=out, flush=True)
        backup = (
            target.applied.backup if isinstance(target, EnvFileTarget) and target.applied else None
        )
        return RollbackResult(exc.exit_code, str(exc), current, backup=backup)
    backup = target.applied.backup if isinstance(target, EnvFileTarget) and target.applied else None

    print(f"Waiting for {request.url} to be ready on {stack}…", file=out, flush=True)
    remaining = max(1.0, request.ready_timeout - (time.monotonic() - changed_at))
    ready, seen, _ = wait_ready(request.url, stack, options.headers, remaining)
    time_to_recovery = time.monotonic() - changed_at if ready else None
    if ready:
        assert time_to_recovery is not None
        note = (
            ""
            if time_to_recovery <= LEVEL1_TARGET_SECONDS
            else " — over the rollback plan's 5-minute Level 1 target"
        )
        print(
            f"Time to recovery: {_format_seconds(time_to_recovery)} (from changing "
            f"DRUM_SERVER_TYPE to a ready {stack} server: {seen}){note}",
            file=out,
            flush=True,
        )
    else:
        print(
            f"Not recovered: the server was not ready on {stack} within "
            f"{request.ready_timeout:g} s (last: {seen}); verifying anyway",
            file=out,
            flush=True,
        )

    report = run_checks(request.url, options)
    total = time.monotonic() - changed_at
    if show_report is not None:
        show_report(report)
    if ready and report.ok:
        recovery = _format_seconds(time_to_recovery or 0.0)
        message = (
            f"Rollback to {stack} verified: time to recovery {recovery}, verified after "
            f"{_format_seconds(total)}"
        )
        code = EXIT_OK
    else:
        failed = ", ".join(c.name for c in report.failed) or "none"
        problem = "not ready" if not ready else f"verification failed ({failed})"
        message = f"Rollback to {stack} FAILED: {problem}"
        if backup is not None:
            message += f"; the previous env file is in {backup}"
        code = EXIT_FAILED
    print(message, file=out, flush=True)
    return RollbackResult(code, message, current, time_to_recovery, total, report, backup)
