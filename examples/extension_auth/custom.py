"""Authenticated regression example: the diabetes Ridge model behind token authentication.

The model is the one of ``examples/regression`` (trained at load, nothing binary committed). The
authentication lives in ``custom_flask.py`` (Flask and Gunicorn) and ``custom_fastapi.py``
(FastAPI), which share ``token_auth.py`` so that every stack answers the same bytes.
"""

from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge


def load_model(code_dir: str) -> Ridge:
    """Train a small deterministic model (nothing binary is committed)."""
    data = load_diabetes(as_frame=True)
    return Ridge(alpha=1.0).fit(data.data, data.target)
