"""Multiclass example: a logistic regression on scikit-learn's bundled iris data.

The model is trained in ``load_model`` (nothing binary is committed) on the species names, so the
built-in scikit-learn predictor returns one probability column per species. The class labels the
server reports come from ``model-metadata.yaml`` (``inferenceModel.classLabels``).
"""

import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler


def load_model(code_dir: str) -> Pipeline:
    """Train a small deterministic classifier with the labels setosa, versicolor, virginica."""
    data = load_iris(as_frame=True)
    labels = np.asarray(data.target_names)[data.target]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return model.fit(data.data, labels)
