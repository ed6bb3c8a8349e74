"""DRUM's marshalling rules: label normalisation/ordering, validation messages, extra output."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from tandem.core.marshal import (
    PRED_COLUMN,
    align_labels,
    marshal_predictions,
    split_extra_output,
    standardize_label,
    to_float,
)
from tandem.errors import ModelError


def model_error(func: Any, *args: Any) -> str:
    with pytest.raises(ModelError) as err:
        func(*args)
    return str(err.value)


# -- label normalisation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        (0, 0.0),
        (1, 1.0),
        ("1", 1.0),
        ("1.0", 1.0),
        (" 2 ", 2.0),
        (np.int64(3), 3.0),
        (2.5, 2.5),
        (True, 1.0),
        (False, 0.0),
        (np.bool_(True), 1.0),
        ("True", 1.0),
        ("false", 0.0),
        ("YES", 1.0),
        ("no", 0.0),
        ("y", 1.0),
        ("n", 0.0),
        ("t", 1.0),
        ("on", 1.0),
        ("off", 0.0),
        ("Setosa", "setosa"),
        ("  Mixed Case ", "mixed case"),
        (None, "none"),
    ],
)
def test_standardize_label(label: Any, expected: Any) -> None:
    got = standardize_label(label)
    assert got == expected
    assert type(got) is type(expected)


@pytest.mark.parametrize(
    ("configured", "model", "expected"),
    [
        # drum_contract.md §2.5 [verified] examples:
        (["1", "0"], [0, 1], ["0", "1"]),
        (["True", "False"], [False, True], ["False", "True"]),
        (["yes", "no"], ["no", "yes"], ["no", "yes"]),
        (["Yes", "No"], ["NO", "YES"], ["No", "Yes"]),
        (["1.0", "2.4", "0.4"], [2.4, 1.0, 0.4], ["2.4", "1.0", "0.4"]),
        (["a", "b", "c"], np.array(["c", "a", "b"]), ["c", "a", "b"]),
        (["a", "b"], None, ["a", "b"]),
        (["1", "0"], np.array([0, 1]), ["0", "1"]),
    ],
)
def test_align_labels(configured: list[str], model: Any, expected: list[str]) -> None:
    assert align_labels(configured, model) == expected


@pytest.mark.parametrize(
    ("configured", "model", "message"),
    [
        (
            ["yes", "no"],
            ["yes"],
            "Expected predictions to have columns ['yes', 'no'], but encountered ['yes']",
        ),
        (
            ["a", "b"],
            ["a", "c"],
            "Expected predictions to have columns ['a', 'b'], but encountered ['a', 'c']",
        ),
        (
            ["0", "1"],
            [0, 2],
            "Expected predictions to have columns ['0', '1'], but encountered [0, 2]",
        ),
    ],
)
def test_align_labels_mismatch(configured: list[str], model: list[Any], message: str) -> None:
    assert model_error(align_labels, configured, model) == message


# -- shape and type checks ---------------------------------------------------------------------


def test_predictions_must_be_an_ndarray() -> None:
    assert model_error(marshal_predictions, "regression", [1.0, 2.0], None) == (
        "predictions must return a np array, but received <class 'list'>"
    )
    assert model_error(marshal_predictions, "binary", np.float64(0.5), ["a", "b"]) == (
        "predictions must return a np array, but received <class 'numpy.float64'>"
    )


def test_predictions_must_be_one_or_two_dimensional() -> None:
    assert model_error(marshal_predictions, "regression", np.zeros((2, 1, 1)), None) == (
        "predictions must return a 2 dimensional array, but we received a 3 dimensional array"
    )
    assert model_error(marshal_predictions, "binary", np.array(0.5), ["a", "b"]) == (
        "predictions must return a 2 dimensional array, but we received a 0 dimensional array"
    )


@pytest.mark.parametrize(
    "target",
    ["regression", "anomaly", "textgeneration", "geopoint", "vectordatabase", "agenticworkflow"],
)
def test_single_column_targets(target: str) -> None:
    df = marshal_predictions(target, np.array([1.5, 2.5]), None)
    assert list(df.columns) == [PRED_COLUMN] == ["Predictions"]
    assert df[PRED_COLUMN].tolist() == [1.5, 2.5]
    message = model_error(marshal_predictions, target, np.ones((2, 2)), None)
    assert message == (
        "Regression, Text Generation, Agentic Workflow and anomaly predictions must contain "
        "only 1 column. Your predictions have 2 columns"
    )


def test_text_predictions_stay_strings() -> None:
    df = marshal_predictions("textgeneration", np.array(["hi", "there"], dtype=object), None)
    assert df[PRED_COLUMN].tolist() == ["hi", "there"]


@pytest.mark.parametrize("target", ["transform", "unstructured"])
def test_other_targets_pass_through(target: str) -> None:
    df = marshal_predictions(target, np.array([[1, 2], [3, 4]]), None)
    assert list(df.columns) == [0, 1]
    assert df.values.tolist() == [[1, 2], [3, 4]]


# -- classification ----------------------------------------------------------------------------


def test_binary_uses_configured_spelling_in_model_order() -> None:
    preds = np.array([[0.2, 0.8], [0.6, 0.4]])
    df = marshal_predictions("binary", preds, ["False", "True"], [True, False])
    assert list(df.columns) == ["True", "False"]
    assert df.values.tolist() == [[0.2, 0.8], [0.6, 0.4]]


def test_binary_without_model_labels_uses_configured_order() -> None:
    df = marshal_predictions("binary", np.array([[0.25, 0.75]]), ["no", "yes"])
    assert list(df.columns) == ["no", "yes"]
    assert df.values.tolist() == [[0.25, 0.75]]


def test_binary_single_column_is_the_positive_probability() -> None:
    # labels come in class_ordering order: [negative, positive]
    df = marshal_predictions("binary", np.array([0.9, 0.25]), ["no", "yes"])
    assert list(df.columns) == ["no", "yes"]
    assert df["yes"].tolist() == pytest.approx([0.9, 0.25])
    assert df["no"].tolist() == pytest.approx([0.1, 0.75])


def test_single_column_needs_two_labels() -> None:
    assert model_error(marshal_predictions, "binary", np.array([[0.5]]), ["only"]) == (
        "Classification problems must have more than one class label"
    )
    assert model_error(marshal_predictions, "multiclass", np.array([[0.5]]), ["a", "b", "c"]) == (
        "Only one dimension of probability returned, but there are 3 class labels in this model"
    )


def test_column_count_must_match_labels() -> None:
    assert model_error(
        marshal_predictions, "multiclass", np.array([[0.5, 0.5]]), ["a", "b", "c"]
    ) == (
        "Your predictions must return the probability distribution for the correct number of "
        "class labels. Expected 3 columns, but received 2"
    )


@pytest.mark.parametrize("target", ["binary", "multiclass", "multilabel"])
def test_negative_probabilities(target: str) -> None:
    assert model_error(marshal_predictions, target, np.array([[-0.1, 1.1]]), ["a", "b"]) == (
        "Your prediction probabilities have negative values"
    )


@pytest.mark.parametrize("target", ["binary", "multiclass", "multilabel"])
def test_probabilities_above_one(target: str) -> None:
    assert model_error(marshal_predictions, target, np.array([[1.5, 0.0]]), ["a", "b"]) == (
        "Your prediction probabilities have values greater than 1"
    )


def test_rows_must_sum_to_one_and_only_bad_rows_are_shown() -> None:
    preds = np.array([[0.5, 0.5], [0.2, 0.2], [0.3, 0.3]])
    assert model_error(marshal_predictions, "binary", preds, ["a", "b"]) == (
        "Your prediction probabilities do not add up to 1. \n[[0.2 0.2]\n [0.3 0.3]]"
    )
    assert model_error(
        marshal_predictions, "multiclass", np.array([[0.1, 0.1, 0.1]]), ["a", "b", "c"]
    ) == ("Your prediction probabilities do not add up to 1. \n[[0.1 0.1 0.1]]")


def test_sum_check_uses_isclose_tolerance() -> None:
    preds = np.array([[0.3333333333, 0.3333333333, 0.3333333334], [0.5, 0.5 + 1e-9, 0.0]])
    df = marshal_predictions("multiclass", preds, ["a", "b", "c"])
    assert df.shape == (2, 3)


def test_multilabel_has_no_sum_rule() -> None:
    preds = np.array([[0.9, 0.9, 0.9], [0.0, 0.0, 0.0]])
    df = marshal_predictions("multilabel", preds, ["a", "b", "c"], ["c", "b", "a"])
    assert list(df.columns) == ["c", "b", "a"]
    assert df.values.tolist() == [[0.9, 0.9, 0.9], [0.0, 0.0, 0.0]]


def test_non_numeric_probabilities() -> None:
    preds = np.array([["abc", "0.5"]], dtype=object)
    assert model_error(marshal_predictions, "binary", preds, ["a", "b"]) == (
        "could not convert string to float: 'abc'"
    )


def test_label_mismatch_reaches_marshal() -> None:
    assert model_error(
        marshal_predictions, "binary", np.array([[0.5, 0.5]]), ["no", "yes"], ["yes", "maybe"]
    ) == ("Expected predictions to have columns ['yes', 'no'], but encountered ['yes', 'maybe']")


def test_multiclass_numeric_model_labels_vs_string_configured() -> None:
    preds = np.array([[0.1, 0.2, 0.7]])
    df = marshal_predictions("multiclass", preds, ["2", "0", "1"], np.array([0, 1, 2]))
    assert list(df.columns) == ["0", "1", "2"]
    assert df.values.tolist() == [[0.1, 0.2, 0.7]]


# -- extra model output ------------------------------------------------------------------------


def test_split_classification_with_extra() -> None:
    df = pd.DataFrame({"x": [1], "no": [0.4], "yes": [0.6], "y": ["z"]})
    preds, extra = split_extra_output(df, ["no", "yes"], None)
    assert list(preds.columns) == ["no", "yes"]
    assert extra is not None
    assert list(extra.columns) == ["x", "y"]
    assert extra.values.tolist() == [[1, "z"]]


def test_split_classification_without_extra_returns_input() -> None:
    df = pd.DataFrame({"yes": [0.6], "no": [0.4]})
    preds, extra = split_extra_output(df, ["no", "yes"], None)
    assert preds is df
    assert extra is None


def test_split_classification_missing_label_column() -> None:
    # DRUM lets pandas' KeyError through; its text is the client's error message.
    df = pd.DataFrame({"a": [1.0], "x": [0], "y": [0]})
    with pytest.raises(KeyError) as err:
        split_extra_output(df, ["a", "b"], None)
    assert str(err.value) == "\"['b'] not found in axis\""


def test_split_keeps_the_models_column_order() -> None:
    df = pd.DataFrame({"yes": [0.25], "no": [0.75], "e": ["x"]})
    preds, extra = split_extra_output(df, ["no", "yes"], None)
    assert list(preds.columns) == ["yes", "no"]
    assert extra is not None and list(extra.columns) == ["e"]


def test_split_single_column_keeps_any_name() -> None:
    df = pd.DataFrame({"whatever": [1.0]})
    preds, extra = split_extra_output(df, None, None)
    assert preds is df
    assert extra is None


def test_split_regression_uses_predictions_column() -> None:
    df = pd.DataFrame({"e1": [1], "Predictions": [1.5], "e2": ["x"]})
    preds, extra = split_extra_output(df, None, None)
    assert list(preds.columns) == ["Predictions"]
    assert preds["Predictions"].tolist() == [1.5]
    assert extra is not None
    assert list(extra.columns) == ["e1", "e2"]


def test_split_regression_missing_predictions_column() -> None:
    df = pd.DataFrame({"a": [1], "b": [2]})
    with pytest.raises(KeyError) as err:
        split_extra_output(df, None, None)
    assert str(err.value) == "\"['Predictions'] not found in axis\""


def test_split_uses_target_name() -> None:
    df = pd.DataFrame({"Query Response": ["hi"], "col1": [0]})
    preds, extra = split_extra_output(df, None, "Query Response")
    assert list(preds.columns) == ["Query Response"]
    assert extra is not None
    assert list(extra.columns) == ["col1"]


def test_split_strips_redundant_quotes_from_target_name() -> None:
    df = pd.DataFrame({"Query Response": ["hi"], "col1": [0]})
    preds, extra = split_extra_output(df, None, '"Query Response"')
    assert list(preds.columns) == ["Query Response"]
    assert extra is not None
    assert list(extra.columns) == ["col1"]


def test_split_quoted_target_name_matching_a_quoted_column() -> None:
    df = pd.DataFrame({'"answer"': ["hi"], "answer": ["other"], "e": [0]})
    preds, extra = split_extra_output(df, None, '"answer"')
    assert list(preds.columns) == ['"answer"']
    assert preds.iloc[0, 0] == "hi"
    assert extra is not None
    assert list(extra.columns) == ["answer", "e"]


@pytest.mark.parametrize("target_name", ['"', '"answer', "answer"])
def test_split_target_name_missing(target_name: str) -> None:
    df = pd.DataFrame({"a": ["x"], "b": [0]})
    stripped = (
        target_name[1:-1]
        if len(target_name) >= 2 and target_name[0] == '"' == (target_name[-1])
        else target_name
    )
    with pytest.raises(KeyError) as err:
        split_extra_output(df, None, target_name)
    assert err.value.args[0] == f"[{stripped!r}] not found in axis"


# -- to_float ----------------------------------------------------------------------------------


def test_to_float() -> None:
    df = to_float(pd.DataFrame({"Predictions": [1, 2]}))
    assert df["Predictions"].dtype == np.float64
    assert df["Predictions"].tolist() == [1.0, 2.0]
    assert model_error(to_float, pd.DataFrame({"Predictions": ["abc"]})) == (
        "could not convert string to float: 'abc'"
    )
