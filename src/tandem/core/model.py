"""Loading a DRUM code dir (``custom.py`` hooks and/or an artifact) and running its hooks."""

from __future__ import annotations

import enum
import importlib.util
import inspect
import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd

from tandem.core import artifacts, fastpath, marshal, payload
from tandem.errors import (
    InvalidInput,
    ModelError,
    ModelLoadError,
    adopt_drum_user_errors,
    is_user_error,
)
from tandem.settings import ServeSettings

logger = logging.getLogger("tandem.model")

HOOKS = (
    "init",
    "read_input_data",
    "load_model",
    "transform",
    "score",
    "score_unstructured",
    "post_process",
    "chat",
    "get_supported_llm_models",
)
UNSTRUCTURED_HOOKS = ("init", "load_model", "score_unstructured")
#: The class ``custom.py`` defines to use DRUM's custom task interfaces instead of hooks.
CUSTOM_TASK_CLASS = "CustomTask"
#: Where DRUM's ``CustomTaskInterface`` lives: DataRobot's package, or Tandem's stand-in served
#: under the same name (also importable as ``tandem._compat.datarobot_drum``).
_TASK_INTERFACE_MODULES = (
    "datarobot_drum.custom_task_interfaces.",
    "tandem._compat.datarobot_drum.custom_task_interfaces.",
)
_SKIP_DIRS = {"__pycache__", "site-packages", "node_modules"}


class TargetType(enum.StrEnum):
    """DRUM's target types; passed to ``score`` as ``target_type`` (compares equal to str)."""

    BINARY = "binary"
    REGRESSION = "regression"
    ANOMALY = "anomaly"
    UNSTRUCTURED = "unstructured"
    MULTICLASS = "multiclass"
    TRANSFORM = "transform"
    TEXT_GENERATION = "textgeneration"
    GEO_POINT = "geopoint"
    VECTOR_DATABASE = "vectordatabase"
    AGENTIC_WORKFLOW = "agenticworkflow"
    MULTILABEL = "multilabel"

    def __str__(self) -> str:
        return f"TargetType.{self.name}"

    __format__ = object.__format__  # type: ignore[assignment]  # keep "{}".format() == str(), as DRUM's messages embed it


def find_custom_file(code_dir: Path) -> Path | None:
    """``custom.py`` anywhere under the code dir (DRUM searches recursively); one at most."""
    found = [
        p
        for p in code_dir.rglob("custom.py")
        if not any(
            part.startswith(".") or part in _SKIP_DIRS
            for part in p.relative_to(code_dir).parts[:-1]
        )
    ]
    if len(found) > 1:
        raise ModelLoadError(f"Found too many custom hook files: {sorted(map(str, found))}")
    return found[0] if found else None


def _refuse_r_model(code_dir: Path) -> None:
    """An R model (``custom.R`` or an ``.rds`` artifact) with no ``custom.py`` is refused at
    start-up, rather than served from some other file lying beside it."""
    r_files = sorted(
        p.name for p in code_dir.iterdir() if p.name.lower() == "custom.r" or p.suffix == ".rds"
    )
    if r_files:
        raise ModelLoadError(
            f"The code dir holds an R model ({', '.join(r_files)}) and no custom.py. Tandem "
            "serves Python models only: run R models with DataRobot's drum, or add a custom.py."
        )


def import_file(path: Path, module_name: str) -> ModuleType:
    """Import a user file as ``module_name`` with its folder first on ``sys.path``."""
    folder = str(path.parent)
    if folder in sys.path:
        sys.path.remove(folder)
    sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def drum_target_type(value: str) -> Any:
    """``target_type`` for the ``score`` hook, as the model's own ``TargetType`` if it has one.

    A model that imported DataRobot's ``datarobot_drum.drum.enum`` compares ``target_type`` with
    that module's ``TargetType`` (a plain Enum, unequal to Tandem's), so it gets that one.
    """
    module = sys.modules.get("datarobot_drum.drum.enum")
    theirs = getattr(module, "TargetType", None)
    if isinstance(theirs, type) and theirs is not TargetType:
        try:
            return theirs(value)
        except ValueError:
            pass
    return TargetType(value)


def task_interface_base(cls: Any) -> type | None:
    """The ``CustomTaskInterface`` class ``cls`` inherits, or None if it inherits none.

    Matched by name and module along the MRO, so a task built on DataRobot's real
    ``datarobot_drum`` classes is recognised as well as one built on Tandem's stand-ins. DRUM's
    own check is ``issubclass``, which fails for anything that is not a class.
    """
    if not isinstance(cls, type):
        raise ModelLoadError("issubclass() arg 1 must be a class")
    for base in cls.__mro__:
        if base.__name__ == "CustomTaskInterface" and base.__module__.startswith(
            _TASK_INTERFACE_MODULES
        ):
            return base
    return None


def hook_error(exc: BaseException, message: str) -> BaseException:
    """Wrap a hook failure as DRUM does; user HTTP errors pass through unchanged."""
    if is_user_error(exc):
        return exc
    return ModelError(f"{message} Exception: {exc!r}")


@dataclass
class StructuredResult:
    """Validated predictions plus optional extra model output."""

    predictions: pd.DataFrame
    extra: pd.DataFrame | None


class LoadedModel:
    """A code dir turned into something that can score requests. Built once per process."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.target_type = settings.target_type
        self.hooks: dict[str, Callable[..., Any]] = {}
        self.model: Any = None
        self.task: Any = None
        """The ``CustomTask`` instance when ``custom.py`` uses DRUM's task interfaces."""
        self.predictor: artifacts.ArtifactPredictor | None = None
        self.fast: fastpath.FastPlan | None = None
        self._target_type_value: Any = TargetType(self.target_type)
        self._load()

    # -- loading ---------------------------------------------------------------------------

    def _load(self) -> None:
        code_dir = self.settings.code_dir
        # `import datarobot_drum` in the model: DataRobot's package if installed, else Tandem's.
        import _tandem_drum

        _tandem_drum.install()
        if str(code_dir) not in sys.path:
            sys.path.append(str(code_dir))
        custom_file = find_custom_file(code_dir)
        if custom_file is None:
            _refuse_r_model(code_dir)
        if custom_file is not None:
            try:
                module = import_file(custom_file, "custom")
            except Exception as exc:
                raise ModelLoadError(
                    "\n\nRunning environment language: Python.\nFailed loading hooks from "
                    f"[{custom_file}] : {exc}"
                ) from exc
            adopt_drum_user_errors()
            self._target_type_value = drum_target_type(self.target_type)
            task_class = getattr(module, CUSTOM_TASK_CLASS, None)
            if task_class:
                # DRUM's "new" interface: no hooks, no artifact search, no built-in predictor.
                self._load_task(task_class, code_dir)
                return
            names = UNSTRUCTURED_HOOKS if self.target_type == "unstructured" else HOOKS
            self.hooks = {
                n: getattr(module, n) for n in names if callable(getattr(module, n, None))
            }
            logger.info("Loaded hooks %s from %s", sorted(self.hooks), custom_file)
        if self.target_type == "unstructured" and "score_unstructured" not in self.hooks:
            raise ModelLoadError(
                "In 'unstructured' mode hook 'score_unstructured' must be provided."
            )

        if "init" in self.hooks:
            try:
                self.hooks["init"](code_dir=str(code_dir))
            except Exception as exc:
                raise ModelLoadError(f"Model 'init' hook failed: {exc!r}") from exc

        if "load_model" in self.hooks:
            try:
                self.model = self.hooks["load_model"](str(code_dir))
            except Exception as exc:
                raise ModelLoadError(
                    f"Model 'load_model' hook failed to load model. Exception: {exc!r}"
                ) from exc
            if self.model is None:
                raise ModelLoadError("'load_model' hook failed to load model, None is returned.")
        else:
            try:
                path = artifacts.find_artifact(code_dir)
            except ModelLoadError as exc:
                if self._needs_no_artifact():
                    path = None
                else:
                    raise ModelLoadError(
                        f"An error occurred when loading your artifact: {exc}"
                    ) from exc
            if path is not None:
                self.model = artifacts.load_artifact(path)

        if (
            "score" not in self.hooks
            and "chat" not in self.hooks
            and self.target_type not in ("unstructured", "transform")
        ):
            self.predictor = artifacts.select_predictor(self.model)
        self.fast = fastpath.plan_for(
            self.model,
            self.predictor_name,
            self.target_type,
            self.hooks,
            self.settings.class_ordering,
        )

    def _load_task(self, task_class: Any, code_dir: Path) -> None:
        """``CustomTask.load(code_dir)`` plus the user secrets, as DRUM loads a custom task."""
        base = task_interface_base(task_class)
        if base is None:
            raise ModelLoadError("The CustomTask class must inherit from the CustomTaskInterface")
        artifact = code_dir / "drum_artifact.pkl"  # what the default ``save`` writes
        try:
            # An XGBoost/LightGBM estimator inside must not leave an OpenMP pool behind (forks).
            with artifacts.openmp_safe_loading(artifact):
                task = task_class.load(str(code_dir))
            # The interface's own module (DataRobot's or Tandem's) makes secrets of its classes.
            interface = sys.modules[base.__module__]
            secrets = interface.load_secrets(*self._user_secrets_sources())
            interface.patch_outputs_to_scrub_secrets(secrets.values())
            task.secrets = secrets
        except Exception as exc:
            raise ModelLoadError(
                "An error occurred when loading your artifact: Failed to load custom task "
                f"class. Exception: {exc!r}"
            ) from exc
        self.task = self.model = task
        logger.info("Loaded custom task %s from %s", type(task).__qualname__, code_dir)

    def _user_secrets_sources(self) -> tuple[str | None, str | None]:
        """DRUM's ``--user-secrets-mount-path`` and ``--user-secrets-prefix`` (or their
        ``USER_SECRETS_*`` variables, which the CLI has merged into the settings)."""
        return self.settings.user_secrets_mount_path, self.settings.user_secrets_prefix

    def _needs_no_artifact(self) -> bool:
        """Hook-only models (score/chat/unstructured) may ship no artifact and no load_model."""
        return any(h in self.hooks for h in ("score", "score_unstructured", "chat")) or (
            self.target_type == "transform" and "transform" in self.hooks
        )

    # -- introspection ---------------------------------------------------------------------

    @property
    def predictor_name(self) -> str | None:
        """Framework of the built-in predictor in use, or None when hooks score."""
        return self.predictor.name if self.predictor is not None else None

    @property
    def supports_chat(self) -> bool:
        """Whether ``custom.py`` defines ``chat``."""
        return "chat" in self.hooks

    @property
    def has_read_input_data(self) -> bool:
        """Whether ``custom.py`` defines ``read_input_data`` (which lifts the format check)."""
        return "read_input_data" in self.hooks

    # -- structured ------------------------------------------------------------------------

    def read_input(
        self, data: bytes, mimetype: str | None, sparse_colnames: list[str] | None
    ) -> Any:
        """Apply ``read_input_data`` or the built-in CSV/MTX reader."""
        hook = self.hooks.get("read_input_data")
        if hook is None:
            return payload.read_dataframe(data, mimetype, sparse_colnames)
        try:
            return hook(data)
        except Exception as exc:
            raise hook_error(
                exc, "Model 'read_input_data' hook failed to read input data."
            ) from exc

    def _score_kwargs(
        self, data: bytes, mimetype: str | None, charset: str | None, colnames: list[str] | None
    ) -> dict[str, Any]:
        s = self.settings
        kwargs: dict[str, Any] = {
            "binary_data": data,
            "mimetype": mimetype,
            "charset": charset,
            "sparse_colnames": colnames,
            "target_type": self._target_type_value,
        }
        if self.target_type == "binary":
            kwargs["positive_class_label"] = s.positive_class_label
            kwargs["negative_class_label"] = s.negative_class_label
        elif s.class_labels:
            kwargs["class_labels"] = list(s.class_labels)
        return kwargs

    def predict(
        self,
        data: bytes,
        mimetype: str | None,
        charset: str | None,
        sparse_colnames: list[str] | None,
    ) -> StructuredResult:
        """read_input_data -> transform -> score (or built-in predictor) -> post_process."""
        frame = self.read_input(data, mimetype, sparse_colnames)
        return self.predict_frame(frame, data, mimetype, charset, sparse_colnames)

    def predict_frame(
        self,
        frame: Any,
        data: bytes,
        mimetype: str | None,
        charset: str | None,
        sparse_colnames: list[str] | None,
    ) -> StructuredResult:
        """Everything after reading the input: transform, score, post_process, validation."""
        transform = self.hooks.get("transform")
        if transform is not None:
            try:
                frame = transform(frame, self.model)
            except Exception as exc:
                raise hook_error(
                    exc, "Model 'transform hook' failed to transform dataset."
                ) from exc
            _check_frame(frame, "transform")

        labels = self.settings.class_ordering
        extra = None
        model_labels: Sequence[Any] | None
        score = self.hooks.get("score")
        if self.task is not None:
            raw, model_labels = self._task_predict(
                frame, self._score_kwargs(data, mimetype, charset, sparse_colnames)
            )
        elif score is not None:
            try:
                out = score(
                    frame,
                    self.model,
                    **self._score_kwargs(data, mimetype, charset, sparse_colnames),
                )
            except Exception as exc:
                raise hook_error(exc, "Model 'score' hook failed to make predictions.") from exc
            if not isinstance(out, pd.DataFrame):
                raise ModelError(f"score must return a dataframe, but received {type(out)}")
            out, extra = marshal.split_extra_output(out, labels, self.settings.target_name)
            # The columns themselves (a pandas Index), as DRUM quotes them in a label mismatch.
            raw, model_labels = out.values, out.columns
        else:
            assert self.predictor is not None
            try:
                raw, model_labels = self.predictor.predict(frame, self.model, self.target_type)
            except ValueError as exc:
                # The served artifact's own input validation (scikit-learn and the boosting
                # libraries raise ValueError for NaN/inf, missing or extra columns, no rows):
                # the client's data is at fault, not the model.
                raise InvalidInput(f"Failure when making predictions. Exception: {exc!r}") from exc
            except Exception as exc:
                raise hook_error(exc, "Failure when making predictions.") from exc
        if (
            self.target_type not in marshal.CLASSIFICATION
            and self.target_type in marshal.SINGLE_COLUMN
        ):
            model_labels = None

        post = self.hooks.get("post_process")
        if post is not None:
            marshalled = marshal.marshal_predictions(self.target_type, raw, labels, model_labels)
            try:
                out = post(marshalled, self.model)
            except Exception as exc:
                raise hook_error(
                    exc, "Model 'post_process' hook failed to post-process predictions."
                ) from exc
            if not isinstance(out, pd.DataFrame):
                raise ModelError(
                    f"Output of post_process hook must be a dataframe, not a {type(out)}"
                )
            # The columns themselves (a pandas Index), as DRUM quotes them in a label mismatch.
            raw, model_labels = out.values, out.columns
            if self.target_type in marshal.SINGLE_COLUMN:
                model_labels = None

        predictions = marshal.marshal_predictions(self.target_type, raw, labels, model_labels)
        if self.target_type not in marshal.NON_NUMERIC:
            predictions = marshal.to_float(predictions)
        return StructuredResult(predictions, extra)

    def _task_predict(self, frame: Any, kwargs: dict[str, Any]) -> tuple[Any, Sequence[Any] | None]:
        """A custom task's DataFrame: ``predict_proba`` for classification, else ``predict``.

        As in DRUM, the output is neither split into extra model output nor post-processed;
        its values and column names go straight to marshalling.
        """
        try:
            if self.target_type in marshal.CLASSIFICATION:
                out = self.task.predict_proba(frame, **kwargs)
            else:
                out = self.task.predict(frame, **kwargs)
            _require_frame(out, "score")
        except Exception as exc:
            raise hook_error(exc, "Model 'score' hook failed to make predictions.") from exc
        # The columns themselves (a pandas Index), as DRUM quotes them in a label mismatch.
        return out.values, out.columns

    def _task_transform(self, frame: Any) -> pd.DataFrame:
        """A custom task's ``transform(X)``, checked as DRUM checks it."""
        try:
            out = self.task.transform(frame)
            _require_frame(out, "transform")
            if out.shape[0] != frame.shape[0]:
                raise ValueError(
                    "Transformation resulted in different number of rows than original data"
                )
        except Exception as exc:
            raise hook_error(exc, "Model 'transform' hook failed to transform dataset.") from exc
        return out

    # -- transform target ------------------------------------------------------------------

    def transform(
        self,
        data: bytes,
        mimetype: str | None,
        sparse_colnames: list[str] | None,
        target: bytes | None,
        target_mimetype: str | None,
    ) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        """The ``transform`` target: features (and optional target) in, transformed out."""
        frame = self.read_input(data, mimetype, sparse_colnames)
        y = payload.read_dataframe(target, target_mimetype) if target else None
        if self.task is not None:
            return self._task_transform(frame), y
        hook = self.hooks.get("transform")
        if hook is not None:
            try:
                params = inspect.signature(hook).parameters
                out = hook(frame, self.model, y) if len(params) == 3 else hook(frame, self.model)
                if isinstance(out, tuple):
                    raise ModelError(
                        "Transformation of the target variable is not supported by DRUM."
                    )
            except Exception as exc:
                raise hook_error(
                    exc, "Model 'transform hook' failed to transform dataset."
                ) from exc
        elif "sklearn" in str(type(self.model)):
            try:
                out = self.model.transform(frame)
            except Exception as exc:
                raise hook_error(
                    exc, "Model 'transform hook' failed to transform dataset."
                ) from exc
            out = _sklearn_output_frame(out, frame)
        else:
            raise ModelError(
                "A transform task requires a user-defined transform hook for non-sklearn "
                "transformers"
            )
        _check_frame(out, "transform")
        if len(out) != len(frame):
            raise ModelError(
                f"Transformation resulted in different number of rows than original data "
                f"(original: {len(frame)}, transformed: {len(out)})"
            )
        return out, y

    # -- unstructured ----------------------------------------------------------------------

    def score_unstructured(self, data: str | bytes, **kwargs: Any) -> Any:
        """Call ``score_unstructured``; output checks happen in the caller."""
        hook = self.hooks.get("score_unstructured")
        if hook is None:
            raise ModelError("'NoneType' object is not callable")
        return hook(self.model, data, **kwargs)

    # -- chat --------------------------------------------------------------------------------

    def chat(self, params: dict[str, Any], headers: Any) -> Any:
        """Call ``chat``, passing ``headers=`` when the hook takes more than two parameters."""
        hook = self.hooks["chat"]
        if len(inspect.signature(hook).parameters) > 2:
            return hook(params, self.model, headers=headers)
        return hook(params, self.model)

    def supported_llm_models(self) -> Iterable[Any] | None:
        """``get_supported_llm_models(model)``, or None when the hook is absent."""
        hook = self.hooks.get("get_supported_llm_models")
        return None if hook is None else hook(self.model)


def _require_frame(frame: Any, hook: str) -> None:
    """DRUM's check of a custom task's output; raised inside the call, so it is wrapped."""
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{hook} must return a dataframe, but received {type(frame)}")


def _check_frame(frame: Any, hook: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise ModelError(f"{hook} must return a dataframe, but received {type(frame)}")


def _sklearn_output_frame(out: Any, original: pd.DataFrame) -> pd.DataFrame:
    from scipy import sparse

    if sparse.issparse(out):
        names = [f"feature_{i}" for i in range(out.shape[1])]
        return pd.DataFrame.sparse.from_spmatrix(out, columns=names)
    if isinstance(out, pd.DataFrame):
        return out
    return pd.DataFrame(out, index=original.index)
