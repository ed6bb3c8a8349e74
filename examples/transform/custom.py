"""Transform example: standardises wine measurements with statistics learned at load time.

``load_model`` fits a ``StandardScaler`` on scikit-learn's bundled wine data (nothing binary is
committed). The ``transform`` hook rescales every numeric column the scaler knows to zero mean and
unit variance and passes every other column (such as the ``lot`` identifier) through unchanged.
A target sent as the multipart file ``y`` is returned unchanged by the server.
"""

from dataclasses import dataclass

import pandas as pd
from sklearn.datasets import load_wine
from sklearn.preprocessing import StandardScaler


@dataclass(frozen=True)
class Scaling:
    """Per-column mean and standard deviation of the training data."""

    mean: pd.Series
    scale: pd.Series


def load_model(code_dir: str) -> Scaling:
    """Learn each wine measurement's mean and standard deviation."""
    features = load_wine(as_frame=True).data
    scaler = StandardScaler().fit(features)
    columns = list(scaler.feature_names_in_)
    return Scaling(pd.Series(scaler.mean_, index=columns), pd.Series(scaler.scale_, index=columns))


def transform(data: pd.DataFrame, model: Scaling, y: pd.DataFrame | None = None) -> pd.DataFrame:
    """Standardise the known numeric columns (rounded to 6 decimals); keep the rest as sent."""
    out = data.copy()
    for column in data.columns:
        if column in model.mean.index and pd.api.types.is_numeric_dtype(data[column]):
            scaled = (data[column] - model.mean[column]) / model.scale[column]
            out[column] = scaled.round(6)
    return out
