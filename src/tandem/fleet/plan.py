"""Which side each deployment takes at a percentage, and which steps move anyone: pure functions.

The side comes from :func:`tandem.server_type.decide_server_type` itself, given the environment a
deployment would start with (``DRUM_FASTAPI_CANARY_PERCENT`` and ``MLOPS_DEPLOYMENT_ID``), so the
fleet and ``tandem server`` cannot disagree: there is one implementation of the hash.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tandem.runtime_params import Params
from tandem.server_type import decide_server_type, deployment_bucket

CANDIDATE = "fastapi"
BASELINE = "flask"


def format_percent(percent: float) -> str:
    """The percentage as written into a parameter store (``25``, ``12.5``, ``0``)."""
    return f"{percent:g}"


def side_for(deployment_id: str, percent: float) -> str:
    """``fastapi`` or ``flask``: what ``tandem server`` picks for this deployment at ``percent``."""
    environ = {
        "MLOPS_RUNTIME_PARAM_DRUM_FASTAPI_CANARY_PERCENT": format_percent(percent),
        "MLOPS_DEPLOYMENT_ID": deployment_id,
    }
    return decide_server_type(Params(environ), None).server_type


def bucket(deployment_id: str) -> float:
    """The deployment's position in [0, 100): it is on FastAPI at any percentage above it."""
    return deployment_bucket(deployment_id)


def on_candidate(ids: Iterable[str], percent: float) -> frozenset[str]:
    """The deployments on FastAPI at ``percent``."""
    return frozenset(i for i in ids if side_for(i, percent) == CANDIDATE)


@dataclass(frozen=True)
class StepPlan:
    """The spec's steps as this fleet walks them."""

    steps: tuple[float, ...]
    """The steps that move at least one deployment: of spec steps that put the same deployments
    on FastAPI, the lowest is kept (the last group keeps 100 %)."""
    skipped: tuple[float, ...]
    """Spec steps dropped because they move nobody compared with the step before."""
    moves: tuple[tuple[float, tuple[str, ...]], ...]
    """For each kept step, the deployments it moves to FastAPI."""


def plan_steps(spec_steps: Sequence[float], ids: Sequence[str]) -> StepPlan:
    """Collapse the spec's steps for this fleet.

    A step whose FastAPI set is the same as the previous one's would hold for the full step time
    on evidence it already has; a step with nobody on FastAPI has no candidate evidence at all and
    could never pass. The percentage written is still a spec step, so a deployment added to the
    fleet later, or restarted for another reason, picks its side from a percentage the plan names.
    """
    groups: list[tuple[frozenset[str], list[float]]] = []
    for step in spec_steps:
        chosen = on_candidate(ids, step)
        if groups and groups[-1][0] == chosen:
            groups[-1][1].append(step)
        else:
            groups.append((chosen, [step]))
    kept: list[float] = []
    skipped: list[float] = []
    moves: list[tuple[float, tuple[str, ...]]] = []
    before: frozenset[str] = frozenset()
    for index, (chosen, steps) in enumerate(groups):
        if not chosen:
            skipped.extend(steps)
            continue
        keep = steps[-1] if index == len(groups) - 1 else steps[0]
        kept.append(keep)
        skipped.extend(s for s in steps if s != keep)
        moves.append((keep, tuple(sorted(chosen - before, key=bucket))))
        before = chosen
    return StepPlan(tuple(kept), tuple(skipped), tuple(moves))


def batches(items: Sequence[str], size: int) -> list[list[str]]:
    """``items`` in consecutive groups of at most ``size``."""
    return [list(items[i : i + size]) for i in range(0, len(items), max(1, size))]
