"""``--deployment-config``: DataRobot's prediction-API ("PPS") response shape for ``/predict/``.

With a deployment config, DRUM answers ``{"data": [{"prediction": …, "predictionValues": [{"label":
…, "value": …}], "rowId": 0}, …]}`` instead of ``{"predictions": […]}``, shaped per target type from
the config's ``target`` section (class mapping, threshold, name). The body is Python's
``json.dumps`` of that structure, as DRUM renders it (spaces after separators, full float repr).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tandem.errors import ConfigError, ModelError

#: Target types whose predictions are text or structures (DRUM casts the others to float).
NON_NUMERIC = ("textgeneration", "geopoint", "vectordatabase", "agenticworkflow")
ANOMALY_LABEL = "Anomaly Score"


def load(path: str | Path) -> dict[str, Any]:
    """Read and check a deployment config file, failing start-up with DRUM's messages."""
    try:
        with open(path) as f:
            config = json.load(f)
    except json.JSONDecodeError:
        raise ConfigError(f"Failed to parse deployment config json file '{path}'") from None
    except OSError as exc:
        raise ConfigError(f"The file {path} does not exist! ({exc.strerror})") from None
    if not isinstance(config, dict) or "target" not in config:
        raise ConfigError(f"'target' section not found in deployment config json file {path}")
    target = config["target"]
    if not isinstance(target, dict):
        raise ConfigError(
            f"'target' section in deployment config json file {path} is not an object"
        )
    return config


def class_names(class_mapping: Any) -> list[Any] | None:
    """Labels of ``class_mapping`` (``[[label, index], …]``) in index order, or None."""
    if not class_mapping:
        return None
    return [pair[0] for pair in sorted(class_mapping, key=lambda pair: pair[1])]


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value ``json.dumps`` can write."""
    return value.item() if isinstance(value, np.generic) else value


Row = list[Any]
Mapper = Callable[[Row, list[str], dict[str, Any], list[Any] | None], dict[str, Any]]


def _single(
    row: Row, columns: list[str], target: dict[str, Any], names: list[Any] | None
) -> dict[str, Any]:
    value = row[0]
    return {
        "prediction": value,
        "predictionValues": [{"label": target.get("name"), "value": value}],
    }


def _anomaly(
    row: Row, columns: list[str], target: dict[str, Any], names: list[Any] | None
) -> dict[str, Any]:
    return _single(row, columns, {**target, "name": ANOMALY_LABEL}, names)


def _column(row: Row, columns: list[str], label: Any) -> Any:
    try:
        return row[columns.index(str(label))]
    except ValueError:
        raise ModelError(
            f"Deployment config class {label!r} is not among the model's classes {columns}"
        ) from None


def _need_names(names: list[Any] | None, minimum: int) -> list[Any]:
    if not names or len(names) < minimum:
        raise ModelError(
            "Deployment config 'target.class_mapping' must list the model's classes for this "
            "target type"
        )
    return names


def _binary(
    row: Row, columns: list[str], target: dict[str, Any], names: list[Any] | None
) -> dict[str, Any]:
    negative, positive = _need_names(names, 2)[:2]
    threshold = target.get("prediction_threshold")
    p = _column(row, columns, positive)
    return {
        "prediction": positive if p > threshold else negative,
        "predictionValues": [
            {"label": positive, "value": p},
            {"label": negative, "value": 1 - p},
        ],
        "predictionThreshold": threshold,
    }


def _multiclass(
    row: Row, columns: list[str], target: dict[str, Any], names: list[Any] | None
) -> dict[str, Any]:
    values = [{"label": n, "value": _column(row, columns, n)} for n in _need_names(names, 2)]
    top = max(row)
    decision = next(v["label"] for v in values if v["value"] >= top)
    return {"prediction": decision, "predictionValues": values}


def _multilabel(
    row: Row, columns: list[str], target: dict[str, Any], names: list[Any] | None
) -> dict[str, Any]:
    values = [{"label": n, "value": _column(row, columns, n)} for n in _need_names(names, 1)]
    threshold = target.get("prediction_threshold")
    return {
        "prediction": [v["label"] for v in values if v["value"] > threshold],
        "predictionValues": values,
        "predictionThreshold": threshold,
    }


MAPPERS: dict[str, Mapper] = {
    "regression": _single,
    "anomaly": _anomaly,
    "binary": _binary,
    "multiclass": _multiclass,
    "multilabel": _multilabel,
    "textgeneration": _single,
    "geopoint": _single,
    "vectordatabase": _single,
    "agenticworkflow": _single,
}


def render(
    predictions: pd.DataFrame,
    extra: pd.DataFrame | None,
    config: dict[str, Any],
    target_type: str,
) -> bytes:
    """The PPS body for validated ``predictions`` (and extra model output), as DRUM writes it."""
    mapper = MAPPERS.get(target_type)
    if mapper is None:
        raise ModelError(f"target type '{target_type}' is not supported")
    target = config["target"]
    names = class_names(target.get("class_mapping"))
    frame = predictions if target_type in NON_NUMERIC else predictions.astype("float")
    columns = [str(c) for c in frame.columns]
    extra_rows = extra.to_dict(orient="records") if extra is not None else None
    data = []
    for index, row in enumerate(frame.itertuples(index=False, name=None)):
        record = mapper([_plain(v) for v in row], columns, target, names)
        record["rowId"] = index
        if extra_rows is not None:
            record["extraModelOutput"] = {k: _plain(v) for k, v in extra_rows[index].items()}
        data.append(record)
    return json.dumps({"data": data}, default=_fallback).encode("utf-8")


def _fallback(value: Any) -> Any:
    """What ``json.dumps`` cannot write itself: numpy arrays and scalars, timestamps."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
