"""``tandem rollback --to flask``: the rollback plan's Level 1 as one command.

Exit status: 0 when the server recovered on the requested stack and verification passed (or a
dry run was printed), 1 when a step or verification failed, 2 when nothing was done because the
request was not confirmed or cannot be carried out, 3 when the target already runs the requested
stack.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tandem.ops.verify_cli import add_verify_arguments, normalize_url, options_from_args

DESCRIPTION = """\
Roll a deployment back to another stack (the rollback plan's Level 1): change DRUM_SERVER_TYPE
where the deployment reads it, restart, wait for readiness (/readyz, then /ping, then /info/
reporting the new stack), run `tandem verify --expect-server STACK` and print the time to
recovery.

Targets:
  --env-file PATH --restart-cmd CMD
      rewrite MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE (and/or a bare DRUM_SERVER_TYPE) in the env
      file atomically, keeping every other line and a timestamped backup, then run CMD
  --kubernetes --namespace N --configmap NAME --deployment NAME --url URL
      through the Kubernetes API (the official Python client; kubeconfig, or the pod's service
      account in a pod): patch the ConfigMap key (DRUM's JSON form), restart the deployment
      as `kubectl rollout restart` does (also moving its pods' tandem-server-type label and
      config digest, as `tandem export kubernetes` writes them, when it has them), wait for
      the rollout as `kubectl rollout status` does, then verify through URL; --dry-run prints
      the exact patches (JSON) and contacts no cluster

It refuses when the target already runs the requested stack, prints what it will change first
and asks for confirmation on a terminal (--yes skips the question; --dry-run only prints).

Exit status: 0 recovered and verified (or dry run), 1 a step or verification failed, 2 not
confirmed / cannot be carried out (nothing changed), 3 already on the requested stack."""


def _stack(value: str) -> str:
    from tandem.ops import normalize_stack

    stack = normalize_stack(value)
    if stack is None:
        raise argparse.ArgumentTypeError(
            f"invalid stack {value!r} (choose from flask, gunicorn, fastapi)"
        )
    return stack


def _seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {value!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value!r}")
    return number


def add_parser(subparsers: Any) -> None:
    """Register ``tandem rollback``."""
    parser = subparsers.add_parser(
        "rollback",
        help="switch a deployment's DRUM_SERVER_TYPE (Level 1 rollback), restart and verify",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--to",
        required=True,
        type=_stack,
        metavar="{flask,gunicorn,fastapi}",
        help="the stack to move to",
    )
    parser.add_argument("--url", type=normalize_url, help="the server to wait for and verify")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    parser.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    parser.add_argument(
        "--ready-timeout",
        type=_seconds,
        default=300.0,
        help="seconds from the change until the server must be ready (default 300)",
    )
    env = parser.add_argument_group("env-file target")
    env.add_argument("--env-file", type=_path, help="env file the deployment reads")
    env.add_argument("--restart-cmd", help="shell command that restarts the server")
    env.add_argument(
        "--restart-timeout",
        type=_seconds,
        default=300.0,
        help="seconds the restart command may take (default 300)",
    )
    kube = parser.add_argument_group("Kubernetes target")
    kube.add_argument("--kubernetes", action="store_true", help="roll back a Kubernetes deployment")
    kube.add_argument("--namespace", help="namespace of the ConfigMap and deployment")
    kube.add_argument("--configmap", help="ConfigMap the pods read DRUM_SERVER_TYPE from")
    kube.add_argument("--deployment", help="deployment to restart")
    kube.add_argument(
        "--configmap-key",
        default="DRUM_SERVER_TYPE",
        help="key in the ConfigMap (default DRUM_SERVER_TYPE)",
    )
    kube.add_argument(
        "--context", help="kubeconfig context (default: the kubeconfig's current context)"
    )
    kube.add_argument(
        "--kubeconfig",
        help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config; in a pod, without "
        "--context or --kubeconfig, the pod's service account)",
    )
    kube.add_argument(
        "--kubectl",
        help="ignored, kept for existing scripts: the Kubernetes API is called directly",
    )
    kube.add_argument(
        "--rollout-timeout",
        type=_seconds,
        default=300.0,
        help="seconds to wait for the rollout, as kubectl rollout status (default 300)",
    )
    add_verify_arguments(parser, expect=False)


def _path(value: str) -> Any:
    from pathlib import Path

    return Path(value)


def _target(args: argparse.Namespace) -> Any:
    """The target from the arguments; raises ``ValueError`` with a usage message."""
    from tandem.ops.rollback import EnvFileTarget, KubernetesTarget

    if args.env_file is not None and args.kubernetes:
        raise ValueError("choose one target: --env-file or --kubernetes")
    if args.env_file is not None:
        if not args.restart_cmd:
            raise ValueError("--env-file needs --restart-cmd CMD (how to restart the server)")
        return EnvFileTarget(args.env_file, args.restart_cmd, args.restart_timeout)
    if args.kubernetes:
        missing = [
            flag
            for flag, value in (
                ("--namespace", args.namespace),
                ("--configmap", args.configmap),
                ("--deployment", args.deployment),
            )
            if not value
        ]
        if missing:
            raise ValueError(f"--kubernetes needs {', '.join(missing)}")
        if not args.url and not args.dry_run:
            raise ValueError("--kubernetes needs --url URL to verify the rolled-back service")
        return KubernetesTarget(
            namespace=args.namespace,
            configmap=args.configmap,
            deployment=args.deployment,
            key=args.configmap_key,
            context=args.context,
            kubeconfig=args.kubeconfig,
            rollout_timeout=args.rollout_timeout,
        )
    raise ValueError("choose a target: --env-file PATH --restart-cmd CMD, or --kubernetes ...")


def _confirm(args: argparse.Namespace) -> bool:
    if args.yes:
        return True
    if not sys.stdin.isatty():
        print(
            "Refusing to change anything without confirmation: stdin is not a terminal and "
            "--yes was not given. Re-run with --yes to proceed (or --dry-run to preview).",
            file=sys.stderr,
        )
        return False
    try:
        answer = input("Proceed? [y/N] ")
    except (EOFError, KeyboardInterrupt):
        print(file=sys.stderr)
        return False
    return answer.strip().lower() in ("y", "yes")


def run(args: argparse.Namespace) -> int:
    """``tandem rollback``: see the module docstring for the exit status."""
    from tandem.ops.report import make_console, print_report
    from tandem.ops.rollback import EXIT_REFUSED, RollbackRequest, perform_rollback

    try:
        target = _target(args)
    except ValueError as exc:
        print(f"tandem rollback: error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    if args.kubectl is not None:
        print(
            "tandem rollback: note: --kubectl is ignored; Tandem calls the Kubernetes API with "
            "its Python client (--kubeconfig and --context choose the cluster)",
            file=sys.stderr,
        )
    if not args.url and not args.dry_run:
        print("tandem rollback: error: --url URL is required to verify the server", file=sys.stderr)
        return EXIT_REFUSED
    request = RollbackRequest(
        stack=args.to,
        target=target,
        url=args.url,
        verify=options_from_args(args, args.to),
        dry_run=args.dry_run,
        ready_timeout=args.ready_timeout,
    )
    console = make_console()
    result = perform_rollback(
        request,
        confirm=lambda: _confirm(args),
        out=sys.stdout,
        show_report=lambda report: print_report(report, console),
    )
    return result.exit_code
