"""Turning a model's raw output into validated prediction columns (DRUM's marshalling rules)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from tandem.errors import ModelError

PRED_COLUMN = "Predictions"
CLASSIFICATION = ("binary", "multiclass", "multilabel")
SINGLE_COLUMN = (
    "regression",
    "anomaly",
    "textgeneration",
    "geopoint",
    "vectordatabase",
    "agenticworkflow",
)
#: Targets whose predictions are not cast to float64 before rendering.
NON_NUMERIC = ("textgeneration", "geopoint", "vectordatabase", "agenticworkflow")

_TRUE = {"true", "t", "yes", "y", "on"}
_FALSE = {"false", "f", "no", "n", "off"}


def standardize_label(label: Any) -> Any:
    """Normalise a label for comparison: as float, as a boolean-like 1.0/0.0, else lower-case."""
    try:
        return float(label)
    except (TypeError, ValueError):
        pass
    text = str(label).strip().lower()
    if text in _TRUE:
        return 1.0
    if text in _FALSE:
        return 0.0
    return text


def align_labels(
    configured: list[str], model_labels: Sequence[Any] | None, shown: list[str] | None = None
) -> list[str]:
    """Configured label spellings, in the model's column order.

    A mismatch is DRUM's message: the configured labels as ``shown`` (DRUM lists a binary
    model's as [positive, negative]) and the model's as it gave them (numpy scalars included).
    """
    if model_labels is None:
        return configured
    model_list = list(model_labels)
    wanted = {standardize_label(x) for x in configured}
    if wanted != {standardize_label(x) for x in model_list}:
        raise ModelError(
            f"Expected predictions to have columns {shown or configured}, but encountered "
            f"{model_labels}"
        )
    by_std = {standardize_label(x): x for x in configured}
    return [by_std[standardize_label(m)] for m in model_list]


def _as_2d(predictions: Any) -> np.ndarray:
    if not isinstance(predictions, np.ndarray):
        raise ModelError(f"predictions must return a np array, but received {type(predictions)}")
    if predictions.ndim == 1:
        predictions = predictions.reshape(-1, 1)
    if predictions.ndim != 2:
        raise ModelError(
            "predictions must return a 2 dimensional array, but we received a "
            f"{predictions.ndim} dimensional array"
        )
    return predictions


def marshal_predictions(
    target_type: str,
    predictions: Any,
    labels: list[str] | None,
    model_labels: Sequence[Any] | None = None,
) -> pd.DataFrame:
    """Validate raw predictions and return them as a labelled DataFrame.

    Classification: one column per configured label (configured spelling, model order), each
    value in [0, 1], rows summing to 1 except for multilabel. A single probability column on a
    binary model is the positive class's probability (DRUM's documented contract; its server
    path treats it as the negative class, which Tandem does not reproduce).
    """
    values = _as_2d(predictions)
    if target_type in CLASSIFICATION:
        assert labels is not None
        shown = labels[::-1] if target_type == "binary" else labels
        columns = align_labels(labels, model_labels, shown)
        if values.shape[1] == 1:
            if len(columns) == 1:
                raise ModelError("Classification problems must have more than one class label")
            if len(columns) != 2:
                raise ModelError(
                    "Only one dimension of probability returned, but there are "
                    f"{len(columns)} class labels in this model"
                )
            positive = values[:, 0].astype(float)
            values = np.column_stack([1 - positive, positive])
        if values.shape[1] != len(columns):
            raise ModelError(
                "Your predictions must return the probability distribution for the correct "
                f"number of class labels. Expected {len(columns)} columns, but received "
                f"{values.shape[1]}"
            )
        try:
            numeric = values.astype(float)
        except (TypeError, ValueError) as exc:
            raise ModelError(str(exc)) from None
        if (numeric < 0).any():
            raise ModelError("Your prediction probabilities have negative values")
        if (numeric > 1).any():
            raise ModelError("Your prediction probabilities have values greater than 1")
        if target_type != "multilabel":
            good = np.isclose(numeric.sum(axis=1), 1)
            if not np.all(good):
                raise ModelError(
                    f"Your prediction probabilities do not add up to 1. \n{numeric[~good]}"
                )
        return pd.DataFrame(values, columns=columns)
    if target_type in SINGLE_COLUMN:
        if values.shape[1] != 1:
            raise ModelError(
                "Regression, Text Generation, Agentic Workflow and anomaly predictions must "
                f"contain only 1 column. Your predictions have {values.shape[1]} columns"
            )
        return pd.DataFrame(values, columns=[PRED_COLUMN])
    return pd.DataFrame(values)


def split_extra_output(
    df: pd.DataFrame, labels: list[str] | None, target_name: str | None
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Separate prediction columns from extra model output returned by ``score``.

    As DRUM does: prediction columns keep the model's order, and a missing one surfaces as
    pandas' own ``KeyError`` text (``"['no'] not found in axis"``).
    """
    if labels:
        if len(df.columns) <= len(labels) or list(labels) == list(df.columns):
            return df, None
        extra = df.drop(columns=list(labels))
        ordered = [c for c in df.columns if c not in extra.columns]
        return df[ordered], extra
    if len(df.columns) > 1:
        column = target_name or PRED_COLUMN
        if column not in df.columns and len(column) >= 2 and column[0] == column[-1] == '"':
            column = column[1:-1]
        extra = df.drop(columns=[column])
        return df[[column]], extra
    return df, None


def to_float(df: pd.DataFrame) -> pd.DataFrame:
    """Cast predictions to float64 (DRUM does it before JSON; a string fails here)."""
    try:
        return df.astype("float")
    except (TypeError, ValueError) as exc:
        raise ModelError(str(exc)) from None
