"""Binary example: a logistic regression on scikit-learn's bundled breast-cancer data.

The model is trained in ``load_model`` (nothing binary is committed) on string class labels, so
the built-in scikit-learn predictor returns one probability column per label. The labels the
server reports come from ``model-metadata.yaml``, so no label flags are needed.
"""

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler


def load_model(code_dir: str) -> Pipeline:
    """Train a small deterministic classifier with the labels ``malignant`` and ``benign``."""
    data = load_breast_cancer(as_frame=True)
    labels = np.asarray(data.target_names)[data.target]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return model.fit(data.data, labels)
