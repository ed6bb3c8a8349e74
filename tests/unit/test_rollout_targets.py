"""The targets seam's flags: spawn needs the model, attach needs both URLs."""

from __future__ import annotations

import argparse
import re

import pytest

from tandem.errors import ConfigError
from tandem.rollout.cli import _targets
from tandem.rollout.controller import Deployment, build_children


def args(**kw: object) -> argparse.Namespace:
    values: dict[str, object] = dict(
        code_dir=None,
        target_type=None,
        baseline_url=None,
        candidate_url=None,
        baseline_env=[],
        candidate_env=[],
        server_arg=[],
    )
    values.update(kw)
    return argparse.Namespace(**values)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({}, "rollout start needs --code-dir and --target-type (spawn targets)"),
        ({"baseline_url": "http://b"}, "--baseline-url and --candidate-url go together"),
        (
            {"baseline_url": "http://b", "candidate_url": "http://c", "server_arg": ["--x"]},
            "attached deployments are configured where they run",
        ),
    ],
)
def test_bad_target_flags_are_refused(given: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        _targets(args(**given))


def test_attach_with_target_type_needs_no_model() -> None:
    assert (
        _targets(args(baseline_url="http://b", candidate_url="http://c", target_type="binary"))
        == "binary"
    )


def test_attached_rollout_runs_only_the_router(tmp_path) -> None:
    dep = Deployment(
        code_dir=None,
        server_args=["--target-type", "regression"],
        baseline_url="http://10.0.0.1:8080",
        candidate_url="http://10.0.0.2:8080",
    )
    (router,) = build_children(dep, tmp_path / "state.db")
    assert router.name == "router"
    cmd = router.command
    assert cmd[cmd.index("--baseline") + 1] == "http://10.0.0.1:8080"
    assert cmd[cmd.index("--candidate") + 1] == "http://10.0.0.2:8080"
