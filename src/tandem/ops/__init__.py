"""Operations tooling: post-rollback verification (``tandem verify``) and Level-1 rollback.

The cores are importable without the CLI (for example by a rollout controller):

- :func:`tandem.ops.verify.run_checks` runs the rollback plan's verification checklist against a
  running server and returns a :class:`tandem.ops.verify.VerifyReport`;
- :mod:`tandem.ops.envfile` reads and rewrites ``DRUM_SERVER_TYPE`` in env files;
- :mod:`tandem.ops.rollback` plans and performs a rollback of an env-file or Kubernetes target;
- :mod:`tandem.ops.kube` reads and patches a ConfigMap key, restarts a Deployment and waits for
  its rollout through the Kubernetes API (the official client; shared with ``tandem fleet``).
"""

from __future__ import annotations

#: Stacks a deployment can be moved to, as ``DRUM_SERVER_TYPE`` spells them.
STACKS = ("flask", "gunicorn", "fastapi")

#: Accepted spellings of each stack (Tandem's server-type aliases included).
STACK_ALIASES = {
    "flask": "flask",
    "werkzeug": "flask",
    "gunicorn": "gunicorn",
    "fastapi": "fastapi",
    "uvicorn": "fastapi",
}


def normalize_stack(value: str | None) -> str | None:
    """The canonical stack for a ``DRUM_SERVER_TYPE`` value, or None when unknown or empty."""
    if value is None:
        return None
    return STACK_ALIASES.get(value.strip().lower())


def framework_of(stack: str) -> str:
    """The web framework (``/info/`` ``drumServer``) a stack runs: ``flask`` or ``fastapi``."""
    return "fastapi" if stack == "fastapi" else "flask"


def stack_from_info(info: dict[str, object]) -> str | None:
    """The stack a server reports in ``/info/`` (``drumServer`` and ``processServer``)."""
    framework = str(info.get("drumServer") or info.get("drum_server") or "").lower()
    process = str(info.get("processServer") or "").lower()
    if framework == "fastapi":
        return "fastapi"
    if framework == "flask":
        return "gunicorn" if process == "gunicorn" else "flask"
    return None
