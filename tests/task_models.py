"""Models written against DRUM's custom task interfaces, built at test time (never committed).

Each code dir holds a ``custom.py`` defining ``class CustomTask(<interface>)``, as DRUM's public
task templates do (``task_templates/1_transforms/1_python_missing_values``,
``task_templates/2_estimators/1_python_regression`` and its siblings in
datarobot/datarobot-user-models), and the ``drum_artifact.pkl`` that ``CustomTask().fit(X,
y).save(code_dir)`` writes. The fit runs in a child Python (``sys.executable`` unless told), so
the pickle names the class ``custom.CustomTask`` exactly as it does when DRUM's ``drum fit``
writes it, and this test process never imports a ``custom`` module of its own.

Some models have deliberate failure switches, chosen by a column of the scored data, so one
model covers DRUM's error answers too. :data:`TASK_REQUESTS` are the requests every stack and
DRUM itself are asked; ``tests/fixtures/drum_answers/custom_tasks.json`` holds DRUM's answers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import FIXTURES

_HEADER = """\
import numpy as np
import pandas as pd

from datarobot_drum import CustomHTTPError
from datarobot_drum.custom_task_interfaces import {interface}
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.svm import OneClassSVM


class CustomTask({interface}):
"""

_ESTIMATOR_FIT = """\
    def fit(self, X, y, row_weights=None, **kwargs):
        self.estimator = {estimator}.fit(X, y)
        return self
"""

#: ``custom.py`` bodies by model kind.
SOURCES: dict[str, str] = {
    "transform": _HEADER.format(interface="TransformerInterface")
    + """\
    def fit(self, X, y, **kwargs):
        self.median = X.median(axis=0, numeric_only=True, skipna=True).to_dict()
        return self

    def transform(self, X):
        if "fail" in X.columns:
            raise ValueError("cannot transform this")
        if "array" in X.columns:
            return X.to_numpy()
        if "one_row" in X.columns:
            return X.head(1)
        return X.fillna(self.median)
""",
    "regression": _HEADER.format(interface="RegressionEstimatorInterface")
    + _ESTIMATOR_FIT.format(estimator="Ridge()")
    + """\

    def predict(self, X, **kwargs):
        if "boom" in X.columns:
            raise ValueError("boom happened")
        if "teapot" in X.columns:
            raise CustomHTTPError("I am a teapot", status_code=418)
        values = self.estimator.predict(X[["x0", "x1", "x2"]])
        if "array" in X.columns:
            return values
        if "two" in X.columns:
            return pd.DataFrame({"Predictions": values, "other": values})
        return pd.DataFrame(values, columns=["Predictions"])
""",
    "binary": _HEADER.format(interface="BinaryEstimatorInterface")
    + _ESTIMATOR_FIT.format(estimator="LogisticRegression()")
    + """\

    def predict_proba(self, X, **kwargs):
        return pd.DataFrame(self.estimator.predict_proba(X), columns=self.estimator.classes_)
""",
    "multiclass": _HEADER.format(interface="MulticlassEstimatorInterface")
    + _ESTIMATOR_FIT.format(estimator="LogisticRegression()")
    + """\

    def predict_proba(self, X, **kwargs):
        return pd.DataFrame(self.estimator.predict_proba(X), columns=self.estimator.classes_)
""",
    "anomaly": _HEADER.format(interface="AnomalyEstimatorInterface")
    + _ESTIMATOR_FIT.format(estimator="OneClassSVM(gamma='auto', nu=0.1)")
    + """\

    def predict(self, X, **kwargs):
        scores = self.estimator.decision_function(X)
        return pd.DataFrame(scores, columns=["Predictions"])
""",
    # Served with labels it does not have: DRUM's label-mismatch message quotes its columns.
    "binary_wrong_labels": "",
    # The interface's own default: a binary task without predict_proba.
    "binary_unimplemented": _HEADER.format(interface="BinaryEstimatorInterface")
    + """\
    def fit(self, X, y, **kwargs):
        self.seen = len(X)
        return self
""",
    # Not an interface subclass: DRUM refuses it at start-up, before looking for an artifact.
    "not_inheriting": """\
class CustomTask:
    def fit(self, X, y, **kwargs):
        return self

    def predict(self, X, **kwargs):
        return X
""",
}

SOURCES["binary_wrong_labels"] = SOURCES["binary"]

BINARY_ARGS = (
    "--target-type",
    "binary",
    "--positive-class-label",
    "yes",
    "--negative-class-label",
    "no",
)
#: ``drum server`` / ``tandem server`` flags by model kind. The multiclass model's classes are
#: the integers 0, 1, 2: the configured labels are strings, given out of order on purpose.
ARGS: dict[str, tuple[str, ...]] = {
    "transform": ("--target-type", "transform"),
    "regression": ("--target-type", "regression"),
    "binary": BINARY_ARGS,
    "multiclass": ("--target-type", "multiclass", "--class-labels", "2", "0", "1"),
    "anomaly": ("--target-type", "anomaly"),
    "binary_wrong_labels": (
        "--target-type",
        "binary",
        "--positive-class-label",
        "dog",
        "--negative-class-label",
        "cat",
    ),
    "binary_unimplemented": BINARY_ARGS,
    "not_inheriting": ("--target-type", "regression"),
}

#: Run in the code dir by a child Python: fit the task on fixed data and save it there.
_FIT_SCRIPT = """\
import sys

try:
    import _tandem_drum  # noqa: F401  Tandem's datarobot_drum, when DataRobot's is not installed
except ImportError:
    pass
sys.path.insert(0, ".")
import numpy as np
import pandas as pd

from custom import CustomTask

kind = sys.argv[1]
X = pd.DataFrame(
    np.round(np.random.default_rng(0).normal(size=(80, 3)), 3), columns=["x0", "x1", "x2"]
)
s = X["x0"] + 0.5 * X["x1"]
y = {
    "regression": 1.5 * X["x0"] - 2.0 * X["x1"] + 0.5 * X["x2"] + 3,
    "binary": pd.Series(np.where(s > 0, "yes", "no")),
    "multiclass": pd.Series(np.select([s > 0.5, s < -0.5], [2, 0], 1)),
}.get(kind.split("_")[0])
CustomTask().fit(X, y).save(".")
"""


def build_task_model(dest: Path, kind: str, python: str | None = None) -> Path:
    """Write ``custom.py`` for ``kind`` into ``dest``, fit it and save its artifact there."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "custom.py").write_text(SOURCES[kind])
    if kind != "not_inheriting":
        subprocess.run(
            [python or sys.executable, "-c", _FIT_SCRIPT, kind],
            cwd=dest,
            check=True,
            capture_output=True,
            timeout=120,
        )
        assert (dest / "drum_artifact.pkl").is_file()
    return dest


CSV_TYPE = (("Content-Type", "text/csv"),)
QUERY = b"x0,x1,x2\n0.5,-1.2,2.0\n-1.5,0.3,0.1\n2.25,1.0,-0.75\n0.0,0.0,0.0\n"
GAPS = b"x0,x1,x2\n0.5,,2.0\n,0.3,0.1\n2.25,1.0,\n"


@dataclass(frozen=True)
class TaskRequest:
    """One request to a task model, asked of every Tandem stack and of DRUM."""

    id: str
    kind: str
    path: str
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = CSV_TYPE
    files: tuple[tuple[str, str, bytes], ...] = ()
    """Multipart file parts (field, filename, content)."""

    @property
    def multipart_answer(self) -> bool:
        """Whether a successful answer is multipart (``/transform/``): its boundary is random
        on DRUM, so the parts are compared, not the bytes."""
        return self.path.startswith("/transform")


def _with(column: str) -> bytes:
    """:data:`QUERY` with one more column, a model's failure switch."""
    head, *rows = QUERY.decode().splitlines()
    return ("\n".join([f"{head},{column}", *(f"{r},1" for r in rows)]) + "\n").encode()


TASK_REQUESTS: list[TaskRequest] = [
    TaskRequest("transform", "transform", "/transform/", GAPS),
    TaskRequest(
        "transform-with-y",
        "transform",
        "/transform/",
        headers=(),
        files=(("X", "X.csv", GAPS), ("y", "y.csv", b"target\n1\n0\n1\n")),
    ),
    TaskRequest("transform-raises", "transform", "/transform/", b"x0,fail\n1,2\n"),
    TaskRequest("transform-not-a-frame", "transform", "/transform/", b"x0,array\n1,2\n3,4\n"),
    TaskRequest("transform-row-count", "transform", "/transform/", b"x0,one_row\n1,2\n3,4\n"),
    TaskRequest("transform-on-predict", "transform", "/predict/", GAPS),
    TaskRequest("regression", "regression", "/predict/", QUERY),
    TaskRequest("regression-raises", "regression", "/predict/", _with("boom")),
    TaskRequest("regression-user-error", "regression", "/predict/", _with("teapot")),
    TaskRequest("regression-not-a-frame", "regression", "/predict/", _with("array")),
    TaskRequest("regression-two-columns", "regression", "/predict/", _with("two")),
    TaskRequest("regression-on-transform", "regression", "/transform/", QUERY),
    TaskRequest("binary", "binary", "/predict/", QUERY),
    TaskRequest("binary-wrong-labels", "binary_wrong_labels", "/predict/", QUERY),
    TaskRequest("multiclass", "multiclass", "/predict/", QUERY),
    TaskRequest("anomaly", "anomaly", "/predict/", QUERY),
    TaskRequest("binary-unimplemented", "binary_unimplemented", "/predict/", QUERY),
]

#: DRUM 1.18.1's answers to :data:`TASK_REQUESTS` (how they were recorded is in the file).
DRUM_ANSWERS_FILE = FIXTURES.parent / "drum_answers" / "custom_tasks.json"


def drum_answers() -> dict[str, Any]:
    """The recorded answers file: ``answers`` by request id, ``start_up_failure``."""
    return json.loads(DRUM_ANSWERS_FILE.read_text())


def task_kinds() -> list[str]:
    """Every model kind a request uses, in first-use order."""
    return list(dict.fromkeys(r.kind for r in TASK_REQUESTS))
