"""Every HTTP case against both frameworks in-process (fast tier): golden answers, same bytes."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import httpx
import pytest

from tests.conformance import Answer, check_golden, check_identical, send, settings_for
from tests.conformance_cases import CASES, MODELS
from tests.support import FRAMEWORKS, in_process_client

_clients: dict[tuple[str, str], httpx.Client] = {}


@pytest.fixture(scope="module")
def model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


def _client(
    root: Path, model: str, framework: str, monkeypatch: pytest.MonkeyPatch
) -> httpx.Client:
    key = (model, framework)
    if key not in _clients:
        spec = MODELS[model]
        code_dir = root / model
        if not code_dir.exists():
            code_dir = spec.build(root)
        for name, value in spec.env:
            monkeypatch.setenv(name, value)
        _clients[key] = in_process_client(framework, settings_for(spec, code_dir, framework))
    return _clients[key]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case_in_process(case, model_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    answers: dict[str, Answer] = {}
    for framework in FRAMEWORKS:
        answer = send(_client(model_root, case.model, framework, monkeypatch), case)
        check_golden(case, answer, framework)
        answers[framework] = answer
    check_identical(case, answers)


def test_every_model_has_a_case() -> None:
    used = defaultdict(int)
    for case in CASES:
        used[case.model] += 1
    assert set(MODELS) <= set(used), set(MODELS) - set(used)
