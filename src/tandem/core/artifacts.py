"""Artifact-only models: find the serialized model in a code dir, load it, predict with it.

DRUM's rules (drum_contract.md §2.4): the artifact is the single top-level file with a known
extension; it is deserialized by extension; the predictor is chosen from the loaded object in
DRUM's order (Keras, XGBoost, PyTorch, scikit-learn, ONNX). Tandem adds two things DRUM lacks:
``.joblib`` artifacts load without a ``load_model`` hook, and a native ``lightgbm.Booster`` is
served (DRUM only serves LightGBM through its scikit-learn wrapper).

Frameworks are optional extras imported lazily; a missing one raises an error that names the
package to install. Predictor detection never imports a framework: it looks at the class
hierarchy of the loaded object. Loading a pickle executes code from the model directory: the code
dir is trusted, exactly as under DRUM.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import mmap
import pickle
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tandem.errors import ModelLoadError

#: Extensions loaded without a ``load_model`` hook. DRUM auto-loads .pkl/.pth/.h5/.onnx;
#: Tandem also auto-loads .joblib (DRUM requires a hook for it).
ARTIFACT_EXTENSIONS = (".pkl", ".joblib", ".onnx", ".pth", ".h5")

#: Top-level import name -> (package to install, how to install it).
_PACKAGES: dict[str, tuple[str, str]] = {
    "sklearn": ("scikit-learn", "pip install 'tandem[sklearn]'"),
    "joblib": ("joblib", "pip install 'tandem[sklearn]'"),
    "xgboost": ("xgboost", "pip install 'tandem[xgboost]'"),
    "lightgbm": ("lightgbm", "pip install 'tandem[lightgbm]'"),
    "onnxruntime": ("onnxruntime", "pip install 'tandem[onnx]'"),
    "torch": ("torch", "pip install torch"),
    "tensorflow": ("tensorflow", "pip install tensorflow"),
    "keras": ("keras", "pip install keras"),
}

_CLASSIFICATION = ("binary", "multiclass", "multilabel")


def install_hint(module: str) -> str:
    """``package (pip install ...)`` for an import name, e.g. ``xgboost (pip install ...)``."""
    top = module.split(".")[0]
    package, command = _PACKAGES.get(top, (top, f"pip install {top}"))
    return f"{package} ({command})"


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _missing_module(exc: ModuleNotFoundError, what: str) -> ModelLoadError:
    """The error for a ``ModuleNotFoundError`` raised while loading or importing ``what``.

    Names the package to install when the top-level package is absent; when the package is
    installed but lacks the submodule, the model was saved with another version of it.
    """
    name = exc.name or str(exc)
    top = name.split(".")[0]
    if name != top and _installed(top):
        try:
            version = str(getattr(importlib.import_module(top), "__version__", "")).strip()
        except Exception:
            version = ""
        package = _PACKAGES.get(top, (top, ""))[0]
        installed_as = f"{package} {version}" if version else package
        return ModelLoadError(
            f"{what} needs the module {name}, which the installed {installed_as} does not "
            f"have; the model was probably saved with another version of {package}."
        )
    return ModelLoadError(
        f"{what} needs the Python package {install_hint(top)}, which is not installed."
    )


def require(module: str) -> Any:
    """Import an optional framework or fail with the package to install."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == module.split(".")[0]:
            raise ModelLoadError(
                f"This model needs the Python package {install_hint(module)}, which is not "
                "installed."
            ) from None
        raise


def find_artifact(code_dir: Path) -> Path:
    """The single top-level artifact of a code dir, with DRUM's error messages.

    Only top-level files count (DRUM's detection is not recursive); extensions are matched
    case-insensitively.
    """
    entries = sorted(code_dir.iterdir())
    listing = " | ".join(p.name for p in entries)
    found = [p for p in entries if p.is_file() and p.suffix.lower() in ARTIFACT_EXTENSIONS]
    if not found:
        raise ModelLoadError(
            f"Could not find model artifact file in: {code_dir} supported by default "
            f"predictors. They support filenames with the following extensions "
            f"{', '.join(ARTIFACT_EXTENSIONS)}. If your artifact is not supported by default "
            "predictor, implement custom.load_model hook. "
            f"List of retrieved files are: {listing}"
        )
    if len(found) > 1:
        raise ModelLoadError(
            "Multiple serialized model files found. Remove extra artifacts or overwrite "
            f"custom.load_model(). List of retrieved files are: {listing}"
        )
    return found[0]


#: Frameworks whose native code runs OpenMP parallel regions while a model is deserialized.
_OPENMP_FRAMEWORKS = ("xgboost", "lightgbm")


def _openmp_frameworks_in(path: Path) -> list[str]:
    """The OpenMP frameworks a pickle/joblib file may need (by name, without unpickling).

    A plain pickle names the modules of its classes in clear text, so a byte search is exact
    enough (a false positive only imports a framework early). A compressed joblib file cannot be
    searched: every installed OpenMP framework counts.
    """
    with path.open("rb") as fh:
        try:
            data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file
            return []
        with data:
            if path.suffix.lower() == ".joblib" and data[:1] != b"\x80":
                return [m for m in _OPENMP_FRAMEWORKS if _installed(m)]
            return [m for m in _OPENMP_FRAMEWORKS if data.find(m.encode()) != -1]


@contextlib.contextmanager
def _without_openmp_pool(path: Path) -> Iterator[None]:
    """Deserialize ``path`` with OpenMP limited to one thread, restored afterwards.

    Gunicorn and the multi-worker Uvicorn supervisor load the model once and then fork. GNU
    libgomp is not fork-safe: if the parent ever ran a parallel region with more than one
    thread (unpickling an XGBoost or LightGBM booster does), the first multi-threaded region
    in a forked worker waits forever for pool threads that do not exist there, and every
    prediction hangs. Loading single-threaded leaves no pool behind, so workers build their
    own and still predict on every core. The frameworks are imported first (the unpickling
    would import them anyway) so that their OpenMP runtimes are loaded when the limit is set.
    ``threadpoolctl`` (a scikit-learn dependency, and in the xgboost/lightgbm extras) sets the
    limit; XGBoost's own ``config_context`` is used as well.
    """
    modules = []
    for name in _openmp_frameworks_in(path):
        try:
            modules.append(importlib.import_module(name))
        except Exception:  # the load itself reports what is missing
            continue
    with contextlib.ExitStack() as stack:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            pass
        else:
            stack.enter_context(threadpool_limits(limits=1, user_api="openmp"))
        for module in modules:
            if module.__name__ == "xgboost" and hasattr(module, "config_context"):
                stack.enter_context(module.config_context(nthread=1))
        yield


def openmp_safe_loading(path: Path) -> contextlib.AbstractContextManager[None]:
    """The OpenMP limit of :func:`_without_openmp_pool` while code other than Tandem's (a
    custom task's ``load``) unpickles ``path``; nothing when there is no such file."""
    return _without_openmp_pool(path) if path.is_file() else contextlib.nullcontext()


def _load_pickle(path: Path) -> Any:
    with path.open("rb") as fh:
        try:
            return pickle.load(fh)
        except UnicodeDecodeError:
            # A Python 2 pickle (numpy arrays inside str): DRUM's latin-1 fallback.
            fh.seek(0)
            return pickle.load(fh, encoding="latin1")


def _load_joblib(path: Path) -> Any:
    return require("joblib").load(path)


def _load_onnx(path: Path) -> Any:
    ort = require("onnxruntime")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _load_torch(path: Path) -> Any:
    torch = require("torch")
    model = torch.load(path, weights_only=False)
    model.eval()
    return model


def _load_keras(path: Path) -> Any:
    keras = require("tensorflow").keras
    return keras.models.load_model(str(path), compile=False)


_LOADERS: dict[str, Callable[[Path], Any]] = {
    ".pkl": _load_pickle,
    ".joblib": _load_joblib,
    ".onnx": _load_onnx,
    ".pth": _load_torch,
    ".h5": _load_keras,
}


def load_artifact(path: Path) -> Any:
    """Deserialize an artifact by its extension; every failure is a :class:`ModelLoadError`.

    A module missing while unpickling names the package to install (or, when the package is
    installed without that module, says the model was saved with another version of it).
    """
    loader = _LOADERS.get(path.suffix.lower())
    if loader is None:
        raise ModelLoadError(f"Unsupported artifact {path.name}")
    try:
        if loader in (_load_pickle, _load_joblib):
            with _without_openmp_pool(path):
                return loader(path)
        return loader(path)
    except ModelLoadError:
        raise
    except ModuleNotFoundError as exc:
        raise _missing_module(exc, f"Loading {path.name}") from exc
    except Exception as exc:
        raise ModelLoadError(
            f"Could not load model from artifact file {path.name}. Exception: {exc!r}"
        ) from exc


# -- detection (no framework imports) -------------------------------------------------------


def _has_base(obj: Any, package: str, names: Sequence[str]) -> bool:
    """Whether ``type(obj)`` has a base class named one of ``names`` from ``package``."""
    for cls in type(obj).__mro__:
        module = getattr(cls, "__module__", "") or ""
        if cls.__name__ in names and (module == package or module.startswith(package + ".")):
            return True
    return False


def _final_step(model: Any) -> Any:
    """The last estimator of a scikit-learn ``Pipeline``, or None for anything else."""
    if _has_base(model, "sklearn", ("Pipeline",)):
        steps = getattr(model, "steps", None)
        if steps:
            return steps[-1][1]
    return None


def _is_keras(model: Any) -> bool:
    return any(_has_base(model, pkg, ("Model",)) for pkg in ("keras", "tensorflow", "tf_keras"))


def _is_xgb_wrapper(model: Any) -> bool:
    return _has_base(model, "xgboost", ("XGBClassifier", "XGBRegressor"))


def _is_classification(target_type: str) -> bool:
    return target_type in _CLASSIFICATION


def _unsupported(target_type: str, predictor: str) -> ValueError:
    return ValueError(f"Target type '{target_type}' is not supported by '{predictor}' predictor")


# -- predictors ----------------------------------------------------------------------------


class ArtifactPredictor:
    """Predicts with a deserialized model object of one framework."""

    name = "base"

    def can_use(self, model: Any) -> bool:
        """Whether this predictor handles ``model`` (DRUM's ``can_use_model``)."""
        raise NotImplementedError

    def predict(
        self, data: pd.DataFrame, model: Any, target_type: str
    ) -> tuple[np.ndarray, Sequence[Any] | None]:
        """Return raw predictions and the model's own column labels (or None)."""
        raise NotImplementedError


class KerasPredictor(ArtifactPredictor):
    """A Keras ``Model``, or a scikit-learn ``Pipeline`` ending in one: ``predict``, no labels."""

    name = "keras"

    def can_use(self, model: Any) -> bool:
        step = _final_step(model)
        return _is_keras(model) or (step is not None and _is_keras(step))

    def predict(
        self, data: pd.DataFrame, model: Any, target_type: str
    ) -> tuple[np.ndarray, Sequence[Any] | None]:
        return np.asarray(model.predict(data)), None


class XGBoostPredictor(ArtifactPredictor):
    """A native ``xgboost.Booster`` (fed a ``DMatrix``, no labels), or a scikit-learn
    ``Pipeline`` ending in ``XGBClassifier``/``XGBRegressor`` (``predict_proba``/``predict``,
    labels from ``classes_``). A bare wrapper is a scikit-learn estimator, as in DRUM."""

    name = "xgboost"

    def can_use(self, model: Any) -> bool:
        step = _final_step(model)
        return _has_base(model, "xgboost", ("Booster",)) or (
            step is not None and _is_xgb_wrapper(step)
        )

    def predict(
        self, data: pd.DataFrame, model: Any, target_type: str
    ) -> tuple[np.ndarray, Sequence[Any] | None]:
        if not _has_base(model, "xgboost", ("Booster",)):
            raw, labels = SKLearnPredictor().predict(data, model, target_type)
            # DRUM's XGBoost predictor passes the pipeline's classes_ array as it is.
            classes = getattr(model, "classes_", None)
            return raw, (classes if labels is not None and classes is not None else labels)
        if not _is_classification(target_type) and target_type not in (
            "regression",
            "anomaly",
            "geopoint",
        ):
            raise _unsupported(target_type, "XGBoostPredictor")
        xgb = require("xgboost")
        return np.asarray(model.predict(xgb.DMatrix(data))), None


class LightGBMPredictor(ArtifactPredictor):
    """A native ``lightgbm.Booster`` (Tandem only; DRUM serves LightGBM's sklearn wrapper).

    ``predict`` gives the positive-class probability for a binary objective (one column),
    one column per class for a multiclass objective, and values for regression; no labels.
    """

    name = "lightgbm"

    def can_use(self, model: Any) -> bool:
        return _has_base(model, "lightgbm", ("Booster",))

    def predict(
        self, data: pd.DataFrame, model: Any, target_type: str
    ) -> tuple[np.ndarray, Sequence[Any] | None]:
        if not _is_classification(target_type) and target_type not in (
            "regression",
            "anomaly",
            "geopoint",
        ):
            raise _unsupported(target_type, "LightGBMPredictor")
        return np.asarray(model.predict(data)), None


class PyTorchPredictor(ArtifactPredictor):
    """A ``torch.nn.Module``: float32 tensor in, ``no_grad`` forward pass, no labels."""

    name = "torch"

    def can_use(self, model: Any) -> bool:
        return _has_base(model, "torch", ("Module",))

    def predict(
        self, data: pd.DataFrame, model: Any, target_type: str
    ) -> tuple[np.ndarray, Sequence[Any] | None]:
        torch = require("torch")
        tensor = torch.from_numpy(data.to_numpy(dtype=np.float32))
        with torch.no_grad():
            out = model(tensor)
        return np.asarray(out.cpu().numpy()), None


class SKLearnPredictor(ArtifactPredictor):
    """Any scikit-learn-compatible estimator (including XGBoost/LightGBM sklearn wrappers).

    Classification: ``predict_proba`` with ``classes_`` as the labels (when present);
    regression/anomaly: ``predict``.
    """

    name = "scikit-learn"

    def can_use(self, model: Any) -> bool:
        if _has_base(model, "sklearn", ("BaseEstimator",)):
            return True
        return callable(getattr(model, "predict", None)) and (
            hasattr(model, "get_params") or hasattr(model, "classes_")
        )

    def predict(
        self, data: pd.DataFrame, model: Any, target_type: str
    ) -> tuple[np.ndarray, Sequence[Any] | None]:
        if _is_classification(target_type):
            classes = getattr(model, "classes_", None)
            # Kept as numpy scalars: DRUM's label-mismatch message shows them that way.
            labels = None if classes is None else list(classes)
            return np.asarray(model.predict_proba(data)), labels
        if target_type in ("regression", "anomaly", "geopoint"):
            return np.asarray(model.predict(data)), None
        raise _unsupported(target_type, "SKLearnPredictor")


#: ONNX tensor element types -> the numpy dtype fed to the first input (default float32).
_ONNX_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
}


class ONNXPredictor(ArtifactPredictor):
    """An ``onnxruntime.InferenceSession``; the whole frame is fed to the first input.

    One output: that output. Several outputs on a classification target: the first whose name
    contains ``prob`` (a ZipMap list of dicts becomes a matrix in key order), else the first.
    As in DRUM, no labels: probability columns are taken in the configured label order.
    """

    name = "onnx"

    def can_use(self, model: Any) -> bool:
        return _has_base(model, "onnxruntime", ("InferenceSession",))

    def predict(
        self, data: pd.DataFrame, model: Any, target_type: str
    ) -> tuple[np.ndarray, Sequence[Any] | None]:
        first = model.get_inputs()[0]
        dtype = _ONNX_DTYPES.get(getattr(first, "type", ""), np.float32)
        outputs = model.run(None, {first.name: data.to_numpy(dtype=dtype)})
        if not outputs:
            raise ValueError("ONNX model should return at least 1 output.")
        chosen = outputs[0]
        if len(outputs) > 1 and _is_classification(target_type):
            names = [o.name for o in model.get_outputs()]
            for name, value in zip(names, outputs, strict=False):
                if "prob" in name.lower():
                    chosen = value
                    break
        if isinstance(chosen, list) and chosen and isinstance(chosen[0], dict):
            keys = list(chosen[0].keys())
            return np.array([[row[k] for k in keys] for row in chosen], dtype=float), None
        return np.asarray(chosen), None


#: DRUM's search order, with LightGBM's native Booster next to XGBoost's.
PREDICTORS: tuple[ArtifactPredictor, ...] = (
    KerasPredictor(),
    XGBoostPredictor(),
    LightGBMPredictor(),
    PyTorchPredictor(),
    SKLearnPredictor(),
    ONNXPredictor(),
)


def select_predictor(model: Any) -> ArtifactPredictor:
    """Pick the predictor for a loaded model object, as DRUM's predictor search does."""
    if model is not None:
        for predictor in PREDICTORS:
            if predictor.can_use(model):
                return predictor
    raise ModelLoadError(
        "Could not find any framework to handle loaded model and a score hook is not provided"
    )
