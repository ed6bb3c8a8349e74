"""The estimator interfaces: what ``/predict/`` calls on a ``CustomTask``, per target type.

Regression and anomaly tasks are scored with ``predict`` (one ``Predictions`` column); binary
and multiclass tasks with ``predict_proba`` (one probability column per class label), and their
``predict`` does nothing, as in DRUM.
"""

from typing import Any

from .custom_task_interface import CustomTaskInterface


class EstimatorInterface(CustomTaskInterface):
    """Base of the estimator tasks."""

    def predict(self, X: Any, **kwargs: Any) -> Any:
        """Return a DataFrame of predictions for ``X`` (regression: one ``Predictions`` column)."""
        raise NotImplementedError()


class BinaryEstimatorInterface(EstimatorInterface):
    """A binary classifier: ``predict_proba`` returns both classes' probabilities."""

    def predict(self, X: Any, **kwargs: Any) -> Any:
        """Not used: binary tasks are scored with :meth:`predict_proba`."""
        return None

    def predict_proba(self, X: Any, **kwargs: Any) -> Any:
        """Return a DataFrame with one probability column per class, named by class label."""
        raise NotImplementedError()


class RegressionEstimatorInterface(EstimatorInterface):
    """A regressor: ``predict`` returns a ``Predictions`` column."""


class MulticlassEstimatorInterface(EstimatorInterface):
    """A multiclass classifier: ``predict_proba`` returns every class's probability."""

    def predict(self, X: Any, **kwargs: Any) -> Any:
        """Not used: multiclass tasks are scored with :meth:`predict_proba`."""
        return None

    def predict_proba(self, X: Any, **kwargs: Any) -> Any:
        """Return a DataFrame with one probability column per class, named by class label."""
        raise NotImplementedError()


class AnomalyEstimatorInterface(EstimatorInterface):
    """An anomaly detector: ``predict`` returns a ``Predictions`` column of scores."""
