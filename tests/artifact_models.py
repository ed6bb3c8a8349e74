"""Artifact-only code dirs for every supported framework, built at test time (never committed).

Each :class:`ArtifactCase` trains a small deterministic model, writes it into a fresh code dir
and returns what the served predictions must be: the framework's own ``predict`` /
``predict_proba`` output on :data:`QUERY`, with the column labels Tandem must answer with.
Shared by the in-process tier (``test_artifacts.py``) and the end-to-end tier
(``test_artifacts_e2e.py``).
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FEATURES = ["x0", "x1", "x2"]
_rng = np.random.default_rng(0)
TRAIN = pd.DataFrame(_rng.normal(size=(300, 3)), columns=FEATURES)
#: Rows scored in every test; rounded so the CSV round trip is exact.
QUERY = pd.DataFrame(
    np.round(np.random.default_rng(1).normal(size=(8, 3)) * 1.5, 3), columns=FEATURES
)
QUERY_CSV = QUERY.to_csv(index=False).encode()

Y_REG = TRAIN.to_numpy() @ np.array([1.5, -2.0, 0.5]) + 3
Y_BIN = np.where(TRAIN["x0"] + 0.3 * TRAIN["x1"] > 0, "yes", "no")
Y_BIN01 = (TRAIN["x0"] + 0.3 * TRAIN["x1"] > 0).astype(int).to_numpy()
Y_MC = np.select([TRAIN["x0"] > 0.5, TRAIN["x0"] < -0.5], ["a", "c"], "b")
Y_MC012 = np.select([TRAIN["x0"] > 0.5, TRAIN["x0"] < -0.5], [0, 2], 1)

REGRESSION = ("--target-type", "regression")
BINARY_YES_NO = (
    "--target-type",
    "binary",
    "--positive-class-label",
    "yes",
    "--negative-class-label",
    "no",
)
BINARY_1_0 = (
    "--target-type",
    "binary",
    "--positive-class-label",
    "1",
    "--negative-class-label",
    "0",
)


def multiclass(*labels: str) -> tuple[str, ...]:
    """CLI args for a multiclass model with these labels, in this order."""
    return ("--target-type", "multiclass", "--class-labels", *labels)


@dataclass
class Expected:
    """What ``/predict/`` must answer for :data:`QUERY`."""

    values: np.ndarray
    """(rows,) for regression, (rows, labels) for classification, columns as in ``columns``."""
    columns: list[str] | None
    """Label of each probability column in answer order; None for regression."""
    atol: float = 1e-6


@dataclass(frozen=True)
class ArtifactCase:
    """One artifact-only model: how to build it and how it is served."""

    id: str
    args: tuple[str, ...]
    predictor: str
    """``/info/`` ``predictor``: the built-in predictor DRUM's search picks."""
    requires: tuple[str, ...]
    """Import names needed to build it (the test is skipped without them)."""
    builder: Callable[[Path], Expected]

    def build(self, root: Path) -> tuple[Path, Expected]:
        """Create ``root/<id>`` with the artifact and return it with the expected answer."""
        code_dir = root / self.id
        code_dir.mkdir(parents=True)
        return code_dir, self.builder(code_dir)


def dump_pickle(obj: Any, path: Path) -> None:
    """Pickle ``obj`` to ``path``."""
    with path.open("wb") as fh:
        pickle.dump(obj, fh)


def _proba(model: Any, columns: list[str]) -> Expected:
    return Expected(np.asarray(model.predict_proba(QUERY)), columns)


# -- scikit-learn ----------------------------------------------------------------------------


def _sk_regression(fmt: str) -> Callable[[Path], Expected]:
    def build(code_dir: Path) -> Expected:
        from sklearn.linear_model import Ridge

        model = Ridge().fit(TRAIN, Y_REG)
        if fmt == "joblib":
            import joblib

            joblib.dump(model, code_dir / "model.joblib")
        else:
            dump_pickle(model, code_dir / "model.pkl")
        return Expected(model.predict(QUERY), None)

    return build


def _sk_binary(fmt: str) -> Callable[[Path], Expected]:
    def build(code_dir: Path) -> Expected:
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression().fit(TRAIN, Y_BIN)
        assert list(model.classes_) == ["no", "yes"]
        if fmt == "joblib":
            import joblib

            joblib.dump(model, code_dir / "model.joblib", compress=3)
        else:
            dump_pickle(model, code_dir / "model.pkl")
        return _proba(model, ["no", "yes"])

    return build


def _sk_multiclass(fmt: str) -> Callable[[Path], Expected]:
    def build(code_dir: Path) -> Expected:
        from sklearn.ensemble import RandomForestClassifier

        model = RandomForestClassifier(n_estimators=10, random_state=0).fit(TRAIN, Y_MC)
        if fmt == "joblib":
            import joblib

            joblib.dump(model, code_dir / "model.joblib")
        else:
            dump_pickle(model, code_dir / "model.pkl")
        # Configured "c b a": the answer keeps the model's (classes_) column order.
        return _proba(model, ["a", "b", "c"])

    return build


def _sk_numeric_labels(code_dir: Path) -> Expected:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(TRAIN, Y_BIN01)
    dump_pickle(model, code_dir / "model.pkl")
    # classes_ [0, 1] vs configured "1"/"0": configured spelling, model order.
    return _proba(model, ["0", "1"])


def _sk_pipeline(code_dir: Path) -> Expected:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(TRAIN, Y_MC)
    dump_pickle(model, code_dir / "model.pkl")
    return _proba(model, ["a", "b", "c"])


# -- XGBoost ---------------------------------------------------------------------------------


def _xgb_classifier_binary(code_dir: Path) -> Expected:
    from xgboost import XGBClassifier

    model = XGBClassifier(n_estimators=8, max_depth=3).fit(TRAIN, Y_BIN01)
    dump_pickle(model, code_dir / "model.pkl")
    return _proba(model, ["0", "1"])


def _xgb_classifier_multiclass(code_dir: Path) -> Expected:
    from xgboost import XGBClassifier

    model = XGBClassifier(n_estimators=8, max_depth=3).fit(TRAIN, Y_MC012)
    dump_pickle(model, code_dir / "model.pkl")
    return _proba(model, ["0", "1", "2"])


def _xgb_regressor(code_dir: Path) -> Expected:
    from xgboost import XGBRegressor

    model = XGBRegressor(n_estimators=8, max_depth=3).fit(TRAIN, Y_REG)
    dump_pickle(model, code_dir / "model.pkl")
    return Expected(model.predict(QUERY), None)


def _xgb_regressor_joblib(code_dir: Path) -> Expected:
    import joblib
    from xgboost import XGBRegressor

    model = XGBRegressor(n_estimators=8, max_depth=3).fit(TRAIN, Y_REG)
    joblib.dump(model, code_dir / "model.joblib", compress=3)
    return Expected(model.predict(QUERY), None)


def _xgb_pipeline(code_dir: Path) -> Expected:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from xgboost import XGBClassifier

    model = make_pipeline(StandardScaler(), XGBClassifier(n_estimators=8))
    model.fit(TRAIN, Y_BIN01)
    dump_pickle(model, code_dir / "model.pkl")
    return _proba(model, ["0", "1"])


def _xgb_booster(objective: str) -> Callable[[Path], Expected]:
    def build(code_dir: Path) -> Expected:
        import xgboost as xgb

        params: dict[str, Any] = {"objective": objective, "max_depth": 3}
        if objective == "binary:logistic":
            label: Any = Y_BIN01
        elif objective == "multi:softprob":
            label, params["num_class"] = Y_MC012, 3
        else:
            label = Y_REG
        booster = xgb.train(params, xgb.DMatrix(TRAIN, label=label), num_boost_round=8)
        dump_pickle(booster, code_dir / "booster.pkl")
        raw = booster.predict(xgb.DMatrix(QUERY))
        if objective == "binary:logistic":
            # No labels: one column, the positive ("yes") class; order [negative, positive].
            return Expected(np.column_stack([1 - raw, raw]), ["no", "yes"])
        if objective == "multi:softprob":
            # No labels: configured labels in configured order.
            return Expected(raw, ["c", "a", "b"])
        return Expected(raw, None)

    return build


# -- LightGBM --------------------------------------------------------------------------------


def _lgbm_classifier(kind: str) -> Callable[[Path], Expected]:
    def build(code_dir: Path) -> Expected:
        from lightgbm import LGBMClassifier

        model = LGBMClassifier(n_estimators=10, verbose=-1)
        if kind == "binary":
            model.fit(TRAIN, Y_BIN)
            columns = ["no", "yes"]
        else:
            model.fit(TRAIN, Y_MC)
            columns = ["a", "b", "c"]
        dump_pickle(model, code_dir / "model.pkl")
        return _proba(model, columns)

    return build


def _lgbm_regressor(code_dir: Path) -> Expected:
    from lightgbm import LGBMRegressor

    model = LGBMRegressor(n_estimators=10, verbose=-1).fit(TRAIN, Y_REG)
    dump_pickle(model, code_dir / "model.pkl")
    return Expected(model.predict(QUERY), None)


def _lgbm_booster(objective: str) -> Callable[[Path], Expected]:
    def build(code_dir: Path) -> Expected:
        import lightgbm as lgb

        params: dict[str, Any] = {"objective": objective, "verbose": -1}
        if objective == "binary":
            label: Any = Y_BIN01
        elif objective == "multiclass":
            label, params["num_class"] = Y_MC012, 3
        else:
            label = Y_REG
        booster = lgb.train(params, lgb.Dataset(TRAIN, label=label), num_boost_round=10)
        dump_pickle(booster, code_dir / "model.pkl")
        raw = booster.predict(QUERY)
        if objective == "binary":
            return Expected(np.column_stack([1 - raw, raw]), ["no", "yes"])
        if objective == "multiclass":
            return Expected(raw, ["x", "y", "z"])
        return Expected(raw, None)

    return build


# -- ONNX ------------------------------------------------------------------------------------


def _onnx(kind: str, zipmap: bool = True, dtype: Any = np.float32) -> Callable[[Path], Expected]:
    def build(code_dir: Path) -> Expected:
        from skl2onnx import to_onnx
        from sklearn.linear_model import LogisticRegression, Ridge

        if kind == "regression":
            model: Any = Ridge().fit(TRAIN.to_numpy(), Y_REG)
        elif kind == "binary":
            model = LogisticRegression().fit(TRAIN.to_numpy(), Y_BIN)
        else:
            model = LogisticRegression().fit(TRAIN.to_numpy(), Y_MC)
        options = None if kind == "regression" else {id(model): {"zipmap": zipmap}}
        onx = to_onnx(model, TRAIN.to_numpy()[:1].astype(dtype), options=options)
        (code_dir / "model.onnx").write_bytes(onx.SerializeToString())
        if kind == "regression":
            return Expected(model.predict(QUERY.to_numpy()), None, atol=1e-4)
        proba = model.predict_proba(QUERY.to_numpy())
        if kind == "binary":
            return Expected(proba, ["no", "yes"], atol=1e-5)
        # No labels from ONNX (as in DRUM): the configured labels name the columns in order.
        return Expected(proba, ["first", "second", "third"], atol=1e-5)

    return build


CASES: list[ArtifactCase] = [
    ArtifactCase(
        "sk-regression-pkl", REGRESSION, "scikit-learn", ("sklearn",), _sk_regression("pkl")
    ),
    ArtifactCase("sk-binary-pkl", BINARY_YES_NO, "scikit-learn", ("sklearn",), _sk_binary("pkl")),
    ArtifactCase(
        "sk-multiclass-pkl",
        multiclass("c", "b", "a"),
        "scikit-learn",
        ("sklearn",),
        _sk_multiclass("pkl"),
    ),
    ArtifactCase(
        "sk-regression-joblib",
        REGRESSION,
        "scikit-learn",
        ("sklearn", "joblib"),
        _sk_regression("joblib"),
    ),
    ArtifactCase(
        "sk-binary-joblib",
        BINARY_YES_NO,
        "scikit-learn",
        ("sklearn", "joblib"),
        _sk_binary("joblib"),
    ),
    ArtifactCase(
        "sk-multiclass-joblib",
        multiclass("a", "b", "c"),
        "scikit-learn",
        ("sklearn", "joblib"),
        _sk_multiclass("joblib"),
    ),
    ArtifactCase("sk-numeric-labels", BINARY_1_0, "scikit-learn", ("sklearn",), _sk_numeric_labels),
    ArtifactCase(
        "sk-pipeline", multiclass("a", "b", "c"), "scikit-learn", ("sklearn",), _sk_pipeline
    ),
    ArtifactCase(
        "xgb-classifier-binary",
        BINARY_1_0,
        "scikit-learn",
        ("sklearn", "xgboost"),
        _xgb_classifier_binary,
    ),
    ArtifactCase(
        "xgb-classifier-multiclass",
        multiclass("2", "0", "1"),
        "scikit-learn",
        ("sklearn", "xgboost"),
        _xgb_classifier_multiclass,
    ),
    ArtifactCase(
        "xgb-regressor", REGRESSION, "scikit-learn", ("sklearn", "xgboost"), _xgb_regressor
    ),
    ArtifactCase(
        "xgb-regressor-joblib-compressed",
        REGRESSION,
        "scikit-learn",
        ("sklearn", "xgboost", "joblib"),
        _xgb_regressor_joblib,
    ),
    ArtifactCase("xgb-pipeline", BINARY_1_0, "xgboost", ("sklearn", "xgboost"), _xgb_pipeline),
    ArtifactCase(
        "xgb-booster-binary",
        BINARY_YES_NO,
        "xgboost",
        ("xgboost",),
        _xgb_booster("binary:logistic"),
    ),
    ArtifactCase(
        "xgb-booster-multiclass",
        multiclass("c", "a", "b"),
        "xgboost",
        ("xgboost",),
        _xgb_booster("multi:softprob"),
    ),
    ArtifactCase(
        "xgb-booster-regression",
        REGRESSION,
        "xgboost",
        ("xgboost",),
        _xgb_booster("reg:squarederror"),
    ),
    ArtifactCase(
        "lgbm-classifier-binary",
        BINARY_YES_NO,
        "scikit-learn",
        ("sklearn", "lightgbm"),
        _lgbm_classifier("binary"),
    ),
    ArtifactCase(
        "lgbm-classifier-multiclass",
        multiclass("b", "c", "a"),
        "scikit-learn",
        ("sklearn", "lightgbm"),
        _lgbm_classifier("multiclass"),
    ),
    ArtifactCase(
        "lgbm-regressor", REGRESSION, "scikit-learn", ("sklearn", "lightgbm"), _lgbm_regressor
    ),
    ArtifactCase(
        "lgbm-booster-binary",
        BINARY_YES_NO,
        "lightgbm",
        ("lightgbm",),
        _lgbm_booster("binary"),
    ),
    ArtifactCase(
        "lgbm-booster-multiclass",
        multiclass("x", "y", "z"),
        "lightgbm",
        ("lightgbm",),
        _lgbm_booster("multiclass"),
    ),
    ArtifactCase(
        "lgbm-booster-regression",
        REGRESSION,
        "lightgbm",
        ("lightgbm",),
        _lgbm_booster("regression"),
    ),
    ArtifactCase(
        "onnx-regression",
        REGRESSION,
        "onnx",
        ("sklearn", "skl2onnx", "onnxruntime"),
        _onnx("regression"),
    ),
    ArtifactCase(
        "onnx-regression-double",
        REGRESSION,
        "onnx",
        ("sklearn", "skl2onnx", "onnxruntime"),
        _onnx("regression", dtype=np.float64),
    ),
    ArtifactCase(
        "onnx-binary-zipmap",
        BINARY_YES_NO,
        "onnx",
        ("sklearn", "skl2onnx", "onnxruntime"),
        _onnx("binary", zipmap=True),
    ),
    ArtifactCase(
        "onnx-binary-no-zipmap",
        BINARY_YES_NO,
        "onnx",
        ("sklearn", "skl2onnx", "onnxruntime"),
        _onnx("binary", zipmap=False),
    ),
    ArtifactCase(
        "onnx-multiclass-zipmap",
        multiclass("first", "second", "third"),
        "onnx",
        ("sklearn", "skl2onnx", "onnxruntime"),
        _onnx("multiclass", zipmap=True),
    ),
    ArtifactCase(
        "onnx-multiclass-no-zipmap",
        multiclass("first", "second", "third"),
        "onnx",
        ("sklearn", "skl2onnx", "onnxruntime"),
        _onnx("multiclass", zipmap=False),
    ),
]
CASES_BY_ID = {c.id: c for c in CASES}


def check_predictions(body: bytes, expected: Expected, where: str = "") -> None:
    """Assert a ``/predict/`` JSON body matches ``expected`` (labels, order and values)."""
    doc = json.loads(body)
    assert set(doc) == {"predictions"}, f"{where}: {body[:300]!r}"
    rows = doc["predictions"]
    assert len(rows) == len(QUERY), where
    if expected.columns is None:
        got = np.array(rows, dtype=float)
        assert got.shape == (len(QUERY),), where
    else:
        for row in rows:
            assert list(row) == expected.columns, f"{where}: {list(row)} != {expected.columns}"
        got = np.array([[row[c] for c in expected.columns] for row in rows], dtype=float)
    np.testing.assert_allclose(
        got, np.asarray(expected.values, dtype=float), rtol=1e-5, atol=expected.atol, err_msg=where
    )
