"""``--deployment-config``: loading (DRUM's start-up errors) and the PPS body per target type."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tandem.cli import build_parser
from tandem.core import deployment_config
from tandem.errors import ConfigError, ModelError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "deployment.json"
    path.write_text(text)
    return path


def test_bad_json_fails_with_drums_message(tmp_path: Path) -> None:
    path = write(tmp_path, "{not json")
    with pytest.raises(ConfigError) as err:
        deployment_config.load(path)
    assert str(err.value) == f"Failed to parse deployment config json file '{path}'"


def test_missing_target_fails_with_drums_message(tmp_path: Path) -> None:
    path = write(tmp_path, '{"other": 1}')
    with pytest.raises(ConfigError) as err:
        deployment_config.load(path)
    assert str(err.value) == f"'target' section not found in deployment config json file {path}"


def test_missing_file_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["server", "--deployment-config", "/nonexistent.json"])
    assert exit_.value.code == 2
    assert "argument --deployment-config: The file /nonexistent.json does not exist!" in (
        capsys.readouterr().err
    )


def test_class_names_follow_the_mapping_index() -> None:
    assert deployment_config.class_names([["c", 2], ["a", 0], ["b", 1]]) == ["a", "b", "c"]
    assert deployment_config.class_names(None) is None


def target(mapping: list[list[object]] | None = None, threshold: float = 0.5) -> dict[str, object]:
    return {"target": {"name": "y", "class_mapping": mapping, "prediction_threshold": threshold}}


def test_binary_uses_the_threshold_strictly_and_lists_positive_first() -> None:
    frame = pd.DataFrame({"no": np.array([0.5, 0.25]), "yes": np.array([0.5, 0.75])})
    body = deployment_config.render(frame, None, target([["no", 0], ["yes", 1]]), "binary")
    rows = json.loads(body)["data"]
    assert [r["prediction"] for r in rows] == ["no", "yes"]  # 0.5 is not > 0.5
    assert rows[1]["predictionValues"] == [
        {"label": "yes", "value": 0.75},
        {"label": "no", "value": 0.25},
    ]
    assert rows[1]["rowId"] == 1 and rows[1]["predictionThreshold"] == 0.5


def test_multiclass_ties_go_to_the_first_label_in_mapping_order() -> None:
    frame = pd.DataFrame({"a": [0.4], "b": [0.4], "c": [0.2]})
    body = deployment_config.render(
        frame, None, target([["b", 0], ["a", 1], ["c", 2]]), "multiclass"
    )
    assert json.loads(body)["data"][0]["prediction"] == "b"


def test_multilabel_lists_every_label_over_the_threshold() -> None:
    frame = pd.DataFrame({"a": [0.9], "b": [0.1], "c": [0.6]})
    body = deployment_config.render(
        frame, None, target([["a", 0], ["b", 1], ["c", 2]]), "multilabel"
    )
    assert json.loads(body)["data"][0]["prediction"] == ["a", "c"]


def test_text_generation_keeps_text_and_the_target_name() -> None:
    frame = pd.DataFrame({"answer": ["hi"]})
    body = deployment_config.render(frame, None, target(), "textgeneration")
    assert body == (
        b'{"data": [{"prediction": "hi", "predictionValues": [{"label": "y", "value": "hi"}], '
        b'"rowId": 0}]}'
    )


def test_a_class_missing_from_the_model_is_a_model_error() -> None:
    frame = pd.DataFrame({"no": [0.5], "yes": [0.5]})
    with pytest.raises(ModelError, match="'maybe' is not among the model's classes"):
        deployment_config.render(frame, None, target([["no", 0], ["maybe", 1]]), "binary")
