"""Fit and pickle the benchmark models from the harness's training data.

Run by ``bench/run.py`` with DRUM's venv python (and, only when the two venvs have different
scikit-learn versions, once more with Tandem's python for a per-side copy). It needs scikit-learn
and pandas, and nothing from Tandem or DRUM, so the same file works on both sides:

    python bench/build_models.py --data DIR --out DIR

``DIR`` (``--data``) holds ``train.csv`` (columns ``f0``..``f9``, ``y_reg``, ``y_bin``) written by
the harness with the standard library; ``--out`` receives ``regression/model.pkl`` and
``binary/model.pkl`` (artifact-only code dirs, no ``custom.py``) and prints a JSON summary
(library versions and each pickle's SHA-256) on stdout. With ``--check-dir OTHER
--check-payload CSV`` it also unpickles the models built under ``OTHER`` (by the other venv) and
predicts the CSV with them, to show this venv can load them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import sys
from pathlib import Path

FEATURES = [f"f{i}" for i in range(10)]


def build(data_dir: Path, out_dir: Path) -> dict[str, object]:
    """Fit Ridge and LogisticRegression on ``train.csv`` and pickle them under ``out_dir``."""
    import pandas as pd
    import sklearn
    from sklearn.linear_model import LogisticRegression, Ridge

    train = pd.read_csv(data_dir / "train.csv")
    features = train[FEATURES]
    models = {
        "regression": Ridge(alpha=1.0).fit(features, train["y_reg"]),
        "binary": LogisticRegression(max_iter=1000).fit(features, train["y_bin"].astype(str)),
    }
    hashes = {}
    for name, model in models.items():
        code_dir = out_dir / name
        code_dir.mkdir(parents=True, exist_ok=True)
        blob = pickle.dumps(model, protocol=4)
        (code_dir / "model.pkl").write_bytes(blob)
        hashes[name] = hashlib.sha256(blob).hexdigest()
    from importlib import metadata

    installed = {}
    for dist in ("tandem", "datarobot-drum"):
        try:
            installed[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return {
        "python": sys.version.split()[0],
        "sklearn": sklearn.__version__,
        "pandas": pd.__version__,
        "numpy": __import__("numpy").__version__,
        "installed": installed,
        "sha256": hashes,
        "binary_classes": [str(c) for c in models["binary"].classes_],
    }


def check(models_dir: Path, payload: Path) -> dict[str, object]:
    """Unpickle the models under ``models_dir`` (built elsewhere) and predict ``payload``.

    Any warning (such as scikit-learn's InconsistentVersionWarning) counts as a failure.
    """
    import warnings

    import pandas as pd

    out: dict[str, object] = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            features = pd.read_csv(payload)
            for name in ("regression", "binary"):
                with open(models_dir / name / "model.pkl", "rb") as fh:
                    model = pickle.load(fh)
                pred = (
                    model.predict_proba(features) if name == "binary" else model.predict(features)
                )
                out[name] = [float(v) for v in pred.ravel()]
        out["ok"] = True
    except Exception as exc:  # report, do not crash: the harness then builds per-side copies
        out["ok"] = False
        out["error"] = repr(exc)
    return out


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with train.csv")
    parser.add_argument("--out", type=Path, required=True, help="folder for the code dirs")
    parser.add_argument("--check-dir", type=Path, help="also load the pickles in this folder")
    parser.add_argument("--check-payload", type=Path, help="CSV to predict with --check-dir")
    args = parser.parse_args()
    summary = build(args.data, args.out)
    if args.check_dir is not None:
        summary["check"] = check(args.check_dir, args.check_payload)
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
