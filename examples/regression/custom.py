"""Regression example: a Ridge model on scikit-learn's bundled diabetes data, trained at load."""

from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge


def load_model(code_dir: str) -> Ridge:
    """Train a small deterministic model (nothing binary is committed)."""
    data = load_diabetes(as_frame=True)
    return Ridge(alpha=1.0).fit(data.data, data.target)
