"""A pandas-free scoring path for artifact-only scikit-learn models, with DRUM's exact output.

It applies only where the result is provably the same as the general path: a plain numeric CSV
(see :func:`tandem.core.payload.fast_numeric_csv`), a model made only of scikit-learn
estimators that treat a DataFrame as its float64 values, and a header equal to the model's
``feature_names_in_`` (the check scikit-learn itself makes on a DataFrame). The model's own
``predict``/``predict_proba`` runs with all of scikit-learn's input validation. Anything unusual
- a different header, an exception, output that fails validation - returns None and the general
path runs, so errors keep their exact general-path messages.
"""

from __future__ import annotations

import io
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tandem.core import marshal
from tandem.core.fastjson import format_float, format_floats
from tandem.core.payload import fast_numeric_csv

#: scikit-learn subpackages whose estimators use only the numeric values of a DataFrame.
_NUMPY_SAFE = (
    "sklearn.linear_model.",
    "sklearn.ensemble.",
    "sklearn.tree.",
    "sklearn.neighbors.",
    "sklearn.svm.",
    "sklearn.naive_bayes.",
    "sklearn.preprocessing.",
    "sklearn.decomposition.",
    "sklearn.discriminant_analysis.",
    "sklearn.kernel_ridge.",
    "sklearn.neural_network.",
    "sklearn.feature_selection.",
)
_CSV = frozenset({None, "", "text/csv", "text/plain"})
_HOOKS_THAT_DISABLE = ("read_input_data", "transform", "score", "post_process")
#: Bodies above this are read by pandas' C reader (from about five rows it beats Python's).
LARGE_BODY = 1024
#: Answers with at least this many numbers are written by pandas' C writer, not Python's.
MANY_VALUES = 20
#: Fast-path requests at most this big, from a model averaging under INLINE_SECONDS, may run on
#: the event loop itself.
INLINE_BODY = 4096
INLINE_SECONDS = 0.0005
#: Larger fast-path bodies, up to INLINE_LARGE_BODY, may run on the event loop when their
#: expected duration (from this model's recent cost per byte) is under INLINE_LARGE_SECONDS and
#: the last large body took the fast path: the thread hop and the GIL hand-offs it brings cost
#: about a fifth of a 1000-row request, while its work is C code a thread would not overlap.
INLINE_LARGE_BODY = 256 * 1024
INLINE_LARGE_SECONDS = 0.002


try:  # pandas' C reader, which read_csv wraps; private, so every use falls back to read_csv
    from pandas._libs.parsers import TextReader as _TextReader
except ImportError:  # pragma: no cover - a pandas without it
    _TextReader = None

#: read_csv's own arguments to its C reader for ``read_csv(BytesIO(data))`` (pandas 3.1), so the
#: columns are exactly read_csv's. The tests compare the two on every large fast-path body.
_READ_CSV_C_OPTIONS: dict[str, Any] = {
    "delimiter": ",",
    "escapechar": None,
    "quotechar": '"',
    "quoting": 0,
    "doublequote": True,
    "skipinitialspace": False,
    "lineterminator": None,
    "header": 0,
    "index_col": None,
    "names": None,
    "skiprows": set(),
    "na_values": {
        "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
        "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
    },
    "keep_default_na": True,
    "true_values": None,
    "false_values": None,
    "converters": {},
    "dtype": None,
    "thousands": None,
    "comment": None,
    "decimal": ".",
    "usecols": None,
    "skip_blank_lines": True,
    "encoding_errors": "strict",
    "on_bad_lines": 0,
    "dtype_backend": "numpy",
    "na_filter": True,
    "float_precision": None,
    "na_fvalues": set(),
    "allow_leading_cols": True,
}  # fmt: skip


def _c_reader_columns(data: bytes) -> tuple[list[Any], dict[int, np.ndarray]] | None:
    """The header and columns from pandas' C reader, or None when this pandas' reader differs."""
    if _TextReader is None:
        return None
    try:
        reader = _TextReader(io.BytesIO(data), **_READ_CSV_C_OPTIONS)
    except (TypeError, AttributeError):  # another pandas' private signature: use read_csv
        return None
    return list(reader.header[0]) if reader.header else [], reader.read()


def _read_large(data: bytes) -> tuple[list[str], np.ndarray] | None:
    """pandas' own reading of a large CSV, when every column came out float64.

    Straight from the C reader when it takes read_csv's arguments: read_csv's DataFrame around
    it is about half the cost of a 1000-row body. Column-major, as scikit-learn gets a frame.
    """
    try:
        direct = _c_reader_columns(data)
        if direct is None:
            frame = pd.read_csv(io.BytesIO(data))
            names = list(frame.columns)
            arrays = [frame.iloc[:, i].to_numpy() for i in range(frame.shape[1])]
        else:
            names, by_index = direct
            arrays = [by_index[i] for i in range(len(by_index))]
    except Exception:
        return None
    width = len(names)
    if width < 2 or len(arrays) != width or len(set(names)) != width or "" in names:
        return None
    if any(not isinstance(a, np.ndarray) or a.dtype != np.float64 for a in arrays):
        return None
    values = np.empty((len(arrays[0]), width), dtype=np.float64, order="F")
    for i, column in enumerate(arrays):
        values[:, i] = column
    return [str(n) for n in names], values


def _moving_average(average: float, sample: float) -> float:
    """The next moving average; the pessimistic start (1.0) is replaced by the first sample."""
    return sample if average >= 1.0 else 0.9 * average + 0.1 * sample


def _numpy_safe(model: Any) -> bool:
    steps = getattr(model, "steps", None)
    if steps is not None and type(model).__module__.startswith("sklearn.pipeline"):
        return all(_numpy_safe(step) for _, step in steps if step not in (None, "passthrough"))
    return type(model).__module__.startswith(_NUMPY_SAFE)


def _json_key(label: str) -> str:
    """A label as pandas writes an object key (its own escaping rules)."""
    text = pd.Series([0], index=[label]).to_json()
    return text[1 : text.rindex(":")]


@dataclass
class FastPlan:
    """What the fast path needs, computed once at load time."""

    model: Any
    target_type: str
    names: list[str] | None
    n_features: int | None
    keys: list[str] | None
    """JSON-encoded output keys (classification), in the model's column order."""
    columns: list[str] | None = None
    """The same labels, unencoded (for pandas' writer on large answers)."""

    cost: float = 1.0
    """Moving average of this path's duration in seconds on small bodies (starts pessimistic)."""
    cost_per_byte: float = 1.0
    """Moving average of seconds per body byte on larger bodies (starts pessimistic)."""
    large_answered: bool = False
    """Whether the last larger body was answered here (not left to the general path)."""

    def cheap(self, size: int) -> bool:
        """Whether a request this size is answered quickly enough to skip a thread hop.

        Only once this model has proven fast here: small bodies when the moving average is
        under 0.5 ms, larger ones (up to 256 KiB) when the expected duration is under 2 ms and
        the last such body took this path. Then running on the event loop costs less than
        handing the work to the thread pool and back, and never stalls the loop for long.
        """
        if size <= INLINE_BODY:
            return self.cost < INLINE_SECONDS
        return (
            size <= INLINE_LARGE_BODY
            and self.large_answered
            and size * self.cost_per_byte < INLINE_LARGE_SECONDS
        )

    def predict(self, data: bytes, mimetype: str | None) -> bytes | None:
        """The response body, or None when the general path must answer."""
        started = time.perf_counter()
        answer = None
        try:
            answer = self._predict(data, mimetype)
            return answer
        finally:
            elapsed = time.perf_counter() - started
            if len(data) <= INLINE_BODY:
                self.cost = _moving_average(self.cost, elapsed)
            else:
                self.large_answered = answer is not None
                self.cost_per_byte = _moving_average(self.cost_per_byte, elapsed / len(data))

    def _predict(self, data: bytes, mimetype: str | None) -> bytes | None:
        if mimetype not in _CSV:
            return None
        parsed = _read_large(data) if len(data) > LARGE_BODY else fast_numeric_csv(data)
        if parsed is None:
            return None
        header, values = parsed
        # A DataFrame reaches scikit-learn as a column-major array; the same layout makes the
        # BLAS reductions add in the same order, so results match to the last bit.
        values = np.asfortranarray(values)
        if self.names is not None:
            if header != self.names:
                return None
        elif self.n_features is not None and values.shape[1] != self.n_features:
            return None
        try:
            if self.keys is None:
                return self._regression(values, len(values) >= MANY_VALUES)
            return self._classification(values, len(values) * len(self.keys) >= MANY_VALUES)
        except Exception:
            return None

    def _regression(self, values: np.ndarray, many: bool) -> bytes | None:
        raw = np.asarray(self.model.predict(values))
        if raw.ndim == 2 and raw.shape[1] == 1:
            raw = raw[:, 0]
        if raw.ndim != 1 or len(raw) != len(values):
            return None
        if many:  # pandas' C writer is DRUM's own, and faster than Python for many rows
            return (
                '{"predictions":'
                + pd.Series(raw.astype(np.float64)).to_json(orient="records")
                + "}"
            ).encode()
        return ('{"predictions":' + format_floats(raw.astype(np.float64).tolist()) + "}").encode()

    def _classification(self, values: np.ndarray, many: bool) -> bytes | None:
        assert self.keys is not None
        proba = np.asarray(self.model.predict_proba(values), dtype=np.float64)
        if proba.ndim != 2 or proba.shape != (len(values), len(self.keys)):
            return None
        if (proba < 0).any() or (proba > 1).any():
            return None
        if self.target_type != "multilabel" and not np.all(np.isclose(proba.sum(axis=1), 1)):
            return None
        if many:
            frame = pd.DataFrame(proba, columns=self.columns)
            return ('{"predictions":' + frame.to_json(orient="records") + "}").encode()
        keys = self.keys
        rows = [
            "{" + ",".join(f"{k}:{format_float(v)}" for k, v in zip(keys, row, strict=True)) + "}"
            for row in proba.tolist()
        ]
        return ('{"predictions":[' + ",".join(rows) + "]}").encode()


def plan_for(
    model: Any,
    predictor_name: str | None,
    target_type: str,
    hooks: dict[str, Any],
    labels: list[str] | None,
) -> FastPlan | None:
    """A fast plan for this loaded model, or None when the general path must always run."""
    if predictor_name != "scikit-learn" or any(h in hooks for h in _HOOKS_THAT_DISABLE):
        return None
    if target_type not in ("regression", "anomaly", "binary", "multiclass", "multilabel"):
        return None
    if not _numpy_safe(model):
        return None
    names = getattr(model, "feature_names_in_", None)
    keys = None
    label_columns: list[str] | None = None
    if target_type in marshal.CLASSIFICATION:
        classes = getattr(model, "classes_", None)
        if labels is None or classes is None:
            return None
        try:
            columns = marshal.align_labels(labels, list(classes))
        except Exception:
            return None
        keys = [_json_key(c) for c in columns]
        label_columns = list(columns)
    # Fitted with feature names, the model is given a bare array only after the header was
    # checked against them, so scikit-learn's missing-names warning is expected noise.
    warnings.filterwarnings(
        "ignore", message="X does not have valid feature names", category=UserWarning
    )
    return FastPlan(
        model,
        target_type,
        [str(n) for n in names] if names is not None else None,
        getattr(model, "n_features_in_", None),
        keys,
        label_columns,
    )
