"""``CustomTaskInterface``: the base of every ``CustomTask`` (fit, save/load, secrets).

``save`` pickles the whole task object into ``<code dir>/drum_artifact.pkl``; at start-up the
server calls ``CustomTask.load(code_dir)``, which unpickles it. A task that keeps something
unpicklable overrides both, using ``save_task(..., exclude=[...])`` and ``load_task``.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Self

from ..drum.common import get_drum_logger
from ..drum.exceptions import DrumSerializationError
from .user_secrets import (
    load_secrets,
    patch_outputs_to_scrub_secrets,
    reset_outputs_to_allow_secrets,
)

logger = get_drum_logger(__name__)


class Serializable:
    """Saving a task object to a directory and loading it back, as one pickle file."""

    default_artifact_filename = "drum_artifact.pkl"

    def save(self, artifact_directory: str | os.PathLike[str]) -> Self:
        """Pickle this object into ``artifact_directory``; returns ``self`` for chaining."""
        self.save_task(artifact_directory)
        return self

    def save_task(
        self, artifact_directory: str | os.PathLike[str], exclude: Sequence[str] | None = None
    ) -> None:
        """Pickle this object with the attributes named in ``exclude`` set to None meanwhile."""
        kept: dict[str, Any] = {}
        try:
            for name in exclude or ():
                try:
                    kept[name] = getattr(self, name)
                except AttributeError:
                    raise DrumSerializationError(
                        f"The object named {name} passed in exclude= was not found"
                    ) from None
                setattr(self, name, None)
            path = os.path.join(artifact_directory, Serializable.default_artifact_filename)
            with open(path, "wb") as fp:
                pickle.dump(self, fp)
        finally:
            for name, value in kept.items():
                setattr(self, name, value)

    @classmethod
    def load(cls, artifact_directory: str | os.PathLike[str]) -> Self:
        """The object :meth:`save` wrote into ``artifact_directory``."""
        return cls.load_task(artifact_directory)

    @classmethod
    def load_task(cls, artifact_directory: str | os.PathLike[str]) -> Self:
        """Unpickle ``drum_artifact.pkl``; it must hold an instance of ``cls``."""
        path = os.path.join(artifact_directory, Serializable.default_artifact_filename)
        with open(path, "rb") as fp:
            task = pickle.load(fp)
        if not isinstance(task, cls):
            raise DrumSerializationError(f"load_task method must return a {cls.__name__} class")
        return task


class CustomTaskInterface(Serializable):
    """What every ``CustomTask`` inherits: ``fit``, persistence, secrets and ``log_message``."""

    _secrets: dict[str, Any] | None = None

    @property
    def secrets(self) -> dict[str, Any]:
        """The user credentials (``userCredentialSpecifications``) by key; ``{}`` when none."""
        return self._secrets or {}

    @secrets.setter
    def secrets(self, secrets: dict[str, Any] | None) -> None:
        self._secrets = secrets

    def fit(
        self,
        X: Any,
        y: Any,
        parameters: dict[str, Any] | None = None,
        row_weights: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Train on ``X`` (a DataFrame) and ``y`` (a Series, None for unsupervised tasks)."""
        raise NotImplementedError()

    @staticmethod
    def log_message(message: str) -> None:
        """Log ``message`` at INFO (deprecated in DRUM: use ``logging``)."""
        logger.info(message)


@contextmanager
def secrets_injection_context(
    interface: CustomTaskInterface, mount_path: str | None, env_var_prefix: str | None
) -> Iterator[None]:
    """Give ``interface`` its secrets, with their values scrubbed from output, for a block."""
    secrets = load_secrets(mount_path=mount_path, env_var_prefix=env_var_prefix)
    interface.secrets = secrets
    try:
        patch_outputs_to_scrub_secrets(secrets.values())
        yield
    finally:
        interface.secrets = None
        reset_outputs_to_allow_secrets()


__all__ = [
    "CustomTaskInterface",
    "Serializable",
    "load_secrets",
    "patch_outputs_to_scrub_secrets",
    "secrets_injection_context",
]
