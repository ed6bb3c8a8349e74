"""Artifact-only models: find the serialized model in a code dir, load it, predict with it.

Frameworks are optional extras imported lazily; a missing one raises an error that names the
package to install. Loading a pickle executes code from the model directory: the code dir is
trusted, exactly as under DRUM.
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tandem.errors import ModelLoadError

#: Extensions loaded without a ``load_model`` hook. DRUM auto-loads .pkl/.pth/.h5/.onnx;
#: Tandem also auto-loads .joblib (DRUM requires a hook for it).
ARTIFACT_EXTENSIONS = (".pkl", ".joblib", ".onnx", ".pth", ".h5")

_EXTRAS = {
    "sklearn": "scikit-learn (pip install 'tandem[sklearn]')",
    "joblib": "joblib (pip install 'tandem[sklearn]')",
    "xgboost": "xgboost (pip install 'tandem[xgboost]')",
    "lightgbm": "lightgbm (pip install 'tandem[lightgbm]')",
    "onnxruntime": "onnxruntime (pip install 'tandem[onnx]')",
    "torch": "torch (pip install torch)",
    "tensorflow": "tensorflow (pip install tensorflow)",
}


def require(module: str) -> Any:
    """Import an optional framework or fail with the package to install."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == module.split(".")[0]:
            hint = _EXTRAS.get(module.split(".")[0], module)
            raise ModelLoadError(
                f"This model needs the Python package {hint}, which is not installed."
            ) from None
        raise


def find_artifact(code_dir: Path) -> Path:
    """The single top-level artifact of a code dir, with DRUM's error messages."""
    found = sorted(
        p for p in code_dir.iterdir() if p.is_file() and p.suffix.lower() in ARTIFACT_EXTENSIONS
    )
    if not found:
        raise ModelLoadError(
            f"Could not find model artifact file in: {code_dir} supported by default "
            f"predictors. They support filenames with the following extensions "
            f"{', '.join(ARTIFACT_EXTENSIONS)}. If your artifact is not supported by default "
            "predictor, implement custom.load_model hook."
        )
    if len(found) > 1:
        raise ModelLoadError(
            "Multiple serialized model files found. Remove extra artifacts or overwrite "
            "custom.load_model()"
        )
    return found[0]


def load_artifact(path: Path) -> Any:
    """Deserialize an artifact by its extension."""
    suffix = path.suffix.lower()
    if suffix == ".pkl":
        with path.open("rb") as fh:
            try:
                return pickle.load(fh)
            except ModuleNotFoundError as exc:
                raise ModelLoadError(
                    f"Loading {path.name} needs the Python package "
                    f"{_EXTRAS.get((exc.name or '').split('.')[0], exc.name)}, which is not "
                    "installed."
                ) from None
            except UnicodeDecodeError:
                fh.seek(0)
                return pickle.load(fh, encoding="latin1")
    if suffix == ".joblib":
        return require("joblib").load(path)
    if suffix == ".onnx":
        ort = require("onnxruntime")
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    if suffix == ".pth":
        torch = require("torch")
        model = torch.load(path, weights_only=False)
        model.eval()
        return model
    if suffix == ".h5":
        keras = require("tensorflow").keras
        return keras.models.load_model(str(path), compile=False)
    raise ModelLoadError(f"Unsupported artifact {path.name}")


class ArtifactPredictor:
    """Predicts with a deserialized model object of one framework."""

    name = "base"

    def predict(
        self, data: pd.DataFrame, model: Any, target_type: str
    ) -> tuple[np.ndarray, Sequence[Any] | None]:
        """Return raw predictions and the model's own column labels (or None)."""
        raise NotImplementedError


def _is_classification(target_type: str) -> bool:
    return target_type in ("binary", "multiclass", "multilabel")


class SKLearnPredictor(ArtifactPredictor):
    """Any scikit-learn-compatible estimator (including XGBoost/LightGBM sklearn wrappers)."""

    name = "scikit-learn"

    def predict(
        self, data: pd.DataFrame, model: Any, target_type: str
    ) -> tuple[np.ndarray, Sequence[Any] | None]:
        if _is_classification(target_type):
            return np.asarray(model.predict_proba(data)), list(model.classes_)
        if target_type in ("regression", "anomaly", "geopoint"):
            return np.asarray(model.predict(data)), None
        raise ValueError(
            f"Target type '{target_type}' is not supported by 'SKLearnPredictor' predictor"
        )


class XGBoostPredictor(ArtifactPredictor):
    """A native ``xgboost.Booster``."""

    name = "xgboost"

    def predict(
        self, data: pd.DataFrame, model: Any, target_type: str
    ) -> tuple[np.ndarray, Sequence[Any] | None]:
        xgb = require("xgboost")
        return np.asarray(model.predict(xgb.DMatrix(data))), None


class LightGBMPredictor(ArtifactPredictor):
    """A native ``lightgbm.Booster``."""

    name = "lightgbm"

    def predict(
        self, data: pd.DataFrame, model: Any, target_type: str
    ) -> tuple[np.ndarray, Sequence[Any] | None]:
        return np.asarray(model.predict(data)), None


class ONNXPredictor(ArtifactPredictor):
    """An ``onnxruntime.InferenceSession``: feeds the first input a float32 matrix."""

    name = "onnx"

    def predict(
        self, data: pd.DataFrame, model: Any, target_type: str
    ) -> tuple[np.ndarray, Sequence[Any] | None]:
        first = model.get_inputs()[0].name
        outputs = model.run(None, {first: data.to_numpy(dtype=np.float32)})
        names = [o.name for o in model.get_outputs()]
        chosen = outputs[0]
        if len(outputs) > 1 and _is_classification(target_type):
            for name, value in zip(names, outputs, strict=False):
                if "prob" in name.lower():
                    chosen = value
                    break
        if isinstance(chosen, list) and chosen and isinstance(chosen[0], dict):
            keys = list(chosen[0].keys())
            return np.array([[row[k] for k in keys] for row in chosen]), keys
        return np.asarray(chosen), None


def _type_path(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def select_predictor(model: Any) -> ArtifactPredictor:
    """Pick the predictor for a loaded model object, as DRUM's predictor search does."""
    path = _type_path(model)
    if path.startswith("xgboost.") and path.endswith("Booster"):
        return XGBoostPredictor()
    if path.startswith("lightgbm.") and path.endswith("Booster"):
        return LightGBMPredictor()
    if path.startswith("onnxruntime."):
        return ONNXPredictor()
    if hasattr(model, "predict") and (hasattr(model, "get_params") or hasattr(model, "classes_")):
        return SKLearnPredictor()
    raise ModelLoadError(
        "Could not find any framework to handle loaded model and a score hook is not provided"
    )
