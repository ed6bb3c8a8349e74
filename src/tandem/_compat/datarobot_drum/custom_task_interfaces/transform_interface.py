"""``TransformerInterface``: a custom task that transforms features (target type ``transform``)."""

from typing import Any

from .custom_task_interface import CustomTaskInterface


class TransformerInterface(CustomTaskInterface):
    """Base of a transform ``CustomTask``: ``/transform/`` answers with ``transform(X)``."""

    def transform(self, X: Any) -> Any:
        """Return the transformed ``X`` (a DataFrame with as many rows as ``X``)."""
        raise NotImplementedError()
