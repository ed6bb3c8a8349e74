"""Artifact-only models in-process: detection, loading, predictor choice, labels, errors.

Every model is trained at test time in ``tmp_path`` (see ``tests/artifact_models.py``).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from tandem.cli import main as cli_main
from tandem.core import artifacts
from tandem.core.model import LoadedModel
from tandem.errors import ModelLoadError
from tandem.settings import ServeSettings
from tests.artifact_models import (
    BINARY_YES_NO,
    CASES,
    QUERY,
    QUERY_CSV,
    REGRESSION,
    TRAIN,
    Y_BIN01,
    Y_REG,
    ArtifactCase,
    check_predictions,
    dump_pickle,
)
from tests.conformance import settings_for
from tests.conformance_cases import ModelSpec
from tests.support import FRAMEWORKS, in_process_client

CSV = (("Content-Type", "text/csv"),)


def settings(code_dir: Path, args: tuple[str, ...], framework: str = "fastapi") -> ServeSettings:
    """Settings as ``tandem server --code-dir code_dir *args`` builds them."""
    return settings_for(ModelSpec(code_dir.name, "prebuilt", args), code_dir, framework)


@contextlib.contextmanager
def clients(code_dir: Path, args: tuple[str, ...]) -> Iterator[dict[str, httpx.Client]]:
    """An in-process client per framework (Flask and FastAPI) for one code dir."""
    opened = {fw: in_process_client(fw, settings(code_dir, args, fw)) for fw in FRAMEWORKS}
    try:
        yield opened
    finally:
        for client in opened.values():
            client.close()


def predict_everywhere(code_dir: Path, args: tuple[str, ...]) -> tuple[int, bytes]:
    """POST :data:`QUERY` to ``/predict/`` on every framework; the answers must be identical."""
    answers = {}
    with clients(code_dir, args) as by_fw:
        for fw, client in by_fw.items():
            resp = client.post("/predict/", content=QUERY_CSV, headers=dict(CSV))
            answers[fw] = (resp.status_code, resp.content)
    first = next(iter(answers.values()))
    for fw, answer in answers.items():
        assert answer == first, f"{fw}: {answer!r} != {first!r}"
    return first


def load_error(code_dir: Path, args: tuple[str, ...] = REGRESSION) -> str:
    """The start-up error loading ``code_dir`` raises."""
    with pytest.raises(ModelLoadError) as info:
        LoadedModel(settings(code_dir, args))
    return str(info.value)


def require_modules(case: ArtifactCase) -> None:
    for module in case.requires:
        pytest.importorskip(module)


def hide(monkeypatch: pytest.MonkeyPatch, package: str) -> None:
    """Make ``package`` (and its submodules) unimportable for the rest of the test."""
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, package, None)


# -- every framework, served --------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_artifact_predictions(case: ArtifactCase, tmp_path: Path) -> None:
    """Framework's own predict/predict_proba == served predictions; labels as DRUM assigns."""
    require_modules(case)
    code_dir, expected = case.build(tmp_path)
    assert not (code_dir / "custom.py").exists()

    model = LoadedModel(settings(code_dir, case.args))
    assert model.predictor_name == case.predictor
    result = model.predict(QUERY_CSV, "text/csv", None, None)
    frame = result.predictions
    if expected.columns is None:
        assert list(frame.columns) == ["Predictions"]
        got = frame["Predictions"].to_numpy()
    else:
        assert list(frame.columns) == expected.columns
        got = frame.to_numpy()
    np.testing.assert_allclose(got, expected.values, rtol=1e-5, atol=expected.atol)

    status, body = predict_everywhere(code_dir, case.args)
    assert status == 200, body
    check_predictions(body, expected, case.id)


@pytest.mark.parametrize("case_id", ["sk-binary-pkl", "xgb-booster-binary", "onnx-regression"])
def test_info_names_the_predictor(case_id: str, tmp_path: Path) -> None:
    case = next(c for c in CASES if c.id == case_id)
    require_modules(case)
    code_dir, _ = case.build(tmp_path)
    with clients(code_dir, case.args) as by_fw:
        for client in by_fw.values():
            assert client.get("/info/").json()["predictor"] == case.predictor


def test_upper_case_extension_is_an_artifact(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    from sklearn.linear_model import Ridge

    model = Ridge().fit(TRAIN, Y_REG)
    dump_pickle(model, tmp_path / "MODEL.PKL")
    assert artifacts.find_artifact(tmp_path) == tmp_path / "MODEL.PKL"
    status, body = predict_everywhere(tmp_path, REGRESSION)
    assert status == 200
    np.testing.assert_allclose(json.loads(body)["predictions"], model.predict(QUERY), atol=1e-6)


def test_wrong_configured_labels_are_a_500_naming_both(tmp_path: Path) -> None:
    """Model labels (classes_ [0, 1]) must match the configured labels as a set."""
    xgboost = pytest.importorskip("xgboost")
    model = xgboost.XGBClassifier(n_estimators=3, n_jobs=1).fit(TRAIN, Y_BIN01)
    dump_pickle(model, tmp_path / "model.pkl")
    args = ("--target-type", "binary", "--positive-class-label", "dog")
    status, body = predict_everywhere(tmp_path, (*args, "--negative-class-label", "cat"))
    assert status == 500
    assert json.loads(body) == {
        "message": "ERROR: Expected predictions to have columns ['dog', 'cat'], but "
        "encountered [np.int64(0), np.int64(1)]"
    }


def test_boolean_like_labels_match_zero_one_classes(tmp_path: Path) -> None:
    """DRUM normalises labels: yes/no compare equal to classes_ 1/0 (trafaret ToBool)."""
    xgboost = pytest.importorskip("xgboost")
    model = xgboost.XGBClassifier(n_estimators=3, n_jobs=1).fit(TRAIN, Y_BIN01)
    dump_pickle(model, tmp_path / "model.pkl")
    status, body = predict_everywhere(tmp_path, BINARY_YES_NO)
    assert status == 200, body
    proba = model.predict_proba(QUERY)
    rows = json.loads(body)["predictions"]
    assert [list(r) for r in rows] == [["no", "yes"]] * len(QUERY)
    np.testing.assert_allclose([[r["no"], r["yes"]] for r in rows], proba, rtol=1e-6)


def test_native_booster_with_too_many_labels(tmp_path: Path) -> None:
    xgboost = pytest.importorskip("xgboost")
    booster = xgboost.train(
        {"objective": "binary:logistic", "nthread": 1},
        xgboost.DMatrix(TRAIN, label=Y_BIN01),
        num_boost_round=2,
    )
    dump_pickle(booster, tmp_path / "model.pkl")
    status, body = predict_everywhere(
        tmp_path, ("--target-type", "multiclass", "--class-labels", "a", "b", "c")
    )
    assert status == 500
    assert "Only one dimension of probability returned, but there are 3 class labels" in str(body)


# -- custom.py without load_model/score ------------------------------------------------------


def test_custom_py_without_load_model_or_score_uses_the_artifact(tmp_path: Path) -> None:
    """init + transform hooks only: the artifact is still found, loaded and predicted."""
    pytest.importorskip("sklearn")
    from sklearn.linear_model import Ridge

    model = Ridge().fit(TRAIN, Y_REG)
    dump_pickle(model, tmp_path / "model.pkl")
    (tmp_path / "custom.py").write_text(
        textwrap.dedent(
            """
            SHIFT = {}

            def init(code_dir):
                SHIFT["x0"] = 1.0

            def transform(data, model):
                data = data.copy()
                data["x0"] = data["x0"] + SHIFT["x0"]
                return data
            """
        )
    )
    loaded = LoadedModel(settings(tmp_path, REGRESSION))
    assert loaded.predictor_name == "scikit-learn"
    shifted = QUERY.assign(x0=QUERY["x0"] + 1.0)
    status, body = predict_everywhere(tmp_path, REGRESSION)
    assert status == 200, body
    np.testing.assert_allclose(json.loads(body)["predictions"], model.predict(shifted), atol=1e-6)


def test_load_model_without_score_picks_the_predictor_from_the_object(tmp_path: Path) -> None:
    """load_model returns a native Booster read from JSON; no score hook -> XGBoost predictor."""
    xgboost = pytest.importorskip("xgboost")
    booster = xgboost.train(
        {"objective": "reg:squarederror", "nthread": 1},
        xgboost.DMatrix(TRAIN, label=Y_REG),
        num_boost_round=4,
    )
    booster.save_model(str(tmp_path / "booster.json"))
    (tmp_path / "custom.py").write_text(
        textwrap.dedent(
            """
            import os
            import xgboost

            def load_model(code_dir):
                booster = xgboost.Booster()
                booster.load_model(os.path.join(code_dir, "booster.json"))
                return booster
            """
        )
    )
    assert LoadedModel(settings(tmp_path, REGRESSION)).predictor_name == "xgboost"
    status, body = predict_everywhere(tmp_path, REGRESSION)
    assert status == 200, body
    expected = booster.predict(xgboost.DMatrix(QUERY))
    np.testing.assert_allclose(json.loads(body)["predictions"], expected, rtol=1e-6)


# -- start-up errors ------------------------------------------------------------------------------


def test_no_artifact(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no model here")
    (tmp_path / "sub").mkdir()
    dump_pickle({"nested": "not top level"}, tmp_path / "sub" / "model.pkl")
    message = load_error(tmp_path)
    assert message.startswith("An error occurred when loading your artifact: ")
    assert f"Could not find model artifact file in: {tmp_path}" in message
    assert "readme.txt | sub" in message


def test_no_artifact_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``tandem server`` exits 1 with the DRUM error text, before binding anything."""
    # The launcher exports its state dir to the environment; keep it out of later tests (a
    # server started by a later test would inherit and share it).
    for name in ("TANDEM_STATE_DIR", "PROMETHEUS_MULTIPROC_DIR", "TANDEM_MASTER_PID"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    code = cli_main(["server", "--code-dir", str(tmp_path), "--target-type", "regression"])
    assert code == 1
    assert "Could not find model artifact file" in capsys.readouterr().err


def test_custom_py_without_hooks_and_no_artifact(tmp_path: Path) -> None:
    (tmp_path / "custom.py").write_text("def init(code_dir):\n    pass\n")
    assert "Could not find model artifact file" in load_error(tmp_path)


def test_two_artifacts(tmp_path: Path) -> None:
    dump_pickle({}, tmp_path / "a.pkl")
    (tmp_path / "b.joblib").write_bytes(b"")
    message = load_error(tmp_path)
    assert "Multiple serialized model files found" in message
    assert "a.pkl | b.joblib" in message


def test_object_no_predictor_handles(tmp_path: Path) -> None:
    dump_pickle({"weights": [1, 2, 3]}, tmp_path / "model.pkl")
    assert load_error(tmp_path) == (
        "Could not find any framework to handle loaded model and a score hook is not provided"
    )


def test_object_no_predictor_handles_is_fine_with_a_score_hook(tmp_path: Path) -> None:
    dump_pickle({"weights": [1, 2, 3]}, tmp_path / "model.pkl")
    (tmp_path / "custom.py").write_text(
        "import pandas as pd\n\n"
        "def score(data, model, **kwargs):\n"
        "    return pd.DataFrame({'Predictions': [sum(model['weights'])] * len(data)})\n"
    )
    status, body = predict_everywhere(tmp_path, REGRESSION)
    assert (status, json.loads(body)) == (200, {"predictions": [6.0] * len(QUERY)})


@pytest.fixture
def throwaway_pickle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A code dir whose model.pkl needs a module that has since been uninstalled."""
    libs = tmp_path / "libs"
    libs.mkdir()
    (libs / "tandem_throwaway_lib.py").write_text(
        "class Scaler:\n    def predict(self, X):\n        return X.sum(axis=1)\n"
    )
    monkeypatch.syspath_prepend(str(libs))
    module = importlib.import_module("tandem_throwaway_lib")
    code_dir = tmp_path / "model"
    code_dir.mkdir()
    dump_pickle(module.Scaler(), code_dir / "model.pkl")
    # "Uninstall" it.
    monkeypatch.delitem(sys.modules, "tandem_throwaway_lib")
    sys.path.remove(str(libs))
    (libs / "tandem_throwaway_lib.py").unlink()
    importlib.invalidate_caches()
    return code_dir


def test_pickle_needing_an_uninstalled_module(throwaway_pickle: Path) -> None:
    assert load_error(throwaway_pickle) == (
        "Loading model.pkl needs the Python package tandem_throwaway_lib "
        "(pip install tandem_throwaway_lib), which is not installed."
    )


def test_missing_package_with_error_server(throwaway_pickle: Path) -> None:
    """--with-error-server: the load error is served, identically on every framework."""
    args = (*REGRESSION, "--with-error-server")
    answers = {}
    with clients(throwaway_pickle, args) as by_fw:
        for fw, client in by_fw.items():
            ping = client.get("/ping")
            predict = client.post("/predict/", content=QUERY_CSV, headers=dict(CSV))
            answers[fw] = (ping.status_code, ping.content, predict.status_code, predict.content)
    first = next(iter(answers.values()))
    assert all(a == first for a in answers.values()), answers
    assert first[0] == 200 and first[2] == 513
    assert b"needs the Python package tandem_throwaway_lib" in first[1]
    assert b"needs the Python package tandem_throwaway_lib" in first[3]


@pytest.mark.parametrize(
    ("framework", "hint"),
    [
        ("xgboost", "xgboost (pip install 'tandem[xgboost]')"),
        ("lightgbm", "lightgbm (pip install 'tandem[lightgbm]')"),
        ("sklearn", "scikit-learn (pip install 'tandem[sklearn]')"),
    ],
)
def test_pickle_of_a_hidden_framework(
    framework: str, hint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip(framework)
    if framework == "xgboost":
        import xgboost

        model: Any = xgboost.train(
            {"nthread": 1}, xgboost.DMatrix(TRAIN, label=Y_REG), num_boost_round=1
        )
    elif framework == "lightgbm":
        import lightgbm

        model = lightgbm.LGBMRegressor(n_estimators=2, verbose=-1).fit(TRAIN, Y_REG)
    else:
        from sklearn.linear_model import Ridge

        model = Ridge().fit(TRAIN, Y_REG)
    dump_pickle(model, tmp_path / "model.pkl")
    hide(monkeypatch, framework)
    assert load_error(tmp_path) == (
        f"Loading model.pkl needs the Python package {hint}, which is not installed."
    )


def test_onnx_without_onnxruntime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07")
    hide(monkeypatch, "onnxruntime")
    assert load_error(tmp_path) == (
        "This model needs the Python package onnxruntime (pip install 'tandem[onnx]'), which "
        "is not installed."
    )


def test_joblib_without_joblib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "model.joblib").write_bytes(b"")
    hide(monkeypatch, "joblib")
    assert "needs the Python package joblib (pip install 'tandem[sklearn]')" in load_error(tmp_path)


def test_pickle_from_another_version_of_an_installed_package(tmp_path: Path) -> None:
    """The package is installed but lacks the pickled module: say so, not 'not installed'."""
    sklearn = pytest.importorskip("sklearn")
    (tmp_path / "model.pkl").write_bytes(b"csklearn.no_such_module\nThing\n.")
    assert load_error(tmp_path) == (
        "Loading model.pkl needs the module sklearn.no_such_module, which the installed "
        f"scikit-learn {sklearn.__version__} does not have; the model was probably saved with "
        "another version of scikit-learn."
    )


@pytest.mark.parametrize(
    ("content", "exception"),
    [
        (b"this is not a pickle", "UnpicklingError"),
        (b"cpandas\nNoSuchClass\n.", "AttributeError"),
    ],
)
def test_unloadable_pickle(content: bytes, exception: str, tmp_path: Path) -> None:
    (tmp_path / "model.pkl").write_bytes(content)
    message = load_error(tmp_path)
    assert message.startswith(
        f"Could not load model from artifact file model.pkl. Exception: {exception}("
    ), message


def test_corrupt_onnx(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    (tmp_path / "model.onnx").write_bytes(b"garbage")
    assert load_error(tmp_path).startswith(
        "Could not load model from artifact file model.onnx. Exception: "
    )


# -- units --------------------------------------------------------------------------------------


def test_require(monkeypatch: pytest.MonkeyPatch) -> None:
    assert artifacts.require("json") is json
    hide(monkeypatch, "lightgbm")
    with pytest.raises(ModelLoadError, match=r"lightgbm \(pip install 'tandem\[lightgbm\]'\)"):
        artifacts.require("lightgbm")
    with pytest.raises(ModelLoadError, match=r"not_a_real_pkg \(pip install not_a_real_pkg\)"):
        artifacts.require("not_a_real_pkg.sub")


def test_require_reraises_a_missing_dependency_of_an_installed_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tandem_pkg_with_bad_dep.py").write_text("import tandem_dep_that_is_missing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="tandem_dep_that_is_missing"):
        artifacts.require("tandem_pkg_with_bad_dep")


def _fake_class(module: str, name: str, **attrs: Any) -> type:
    cls = type(name, (), attrs)
    cls.__module__ = module
    return cls


def test_predictor_search_order_and_lookalikes() -> None:
    keras_model = _fake_class("keras.src.models.model", "Model", predict=lambda s, x: x)
    torch_module = _fake_class("torch.nn.modules.module", "Module")
    # A user subclass of a framework class is still that framework's model.
    torch_subclass = type("Net", (torch_module,), {})
    booster = _fake_class("xgboost.core", "Booster", predict=lambda s, x: x)
    lgb_booster = _fake_class("lightgbm.basic", "Booster", predict=lambda s, x: x)
    session = _fake_class("onnxruntime.capi.onnxruntime_inference_collection", "InferenceSession")
    duck = _fake_class("mylib", "Model", predict=lambda s, x: x, get_params=lambda s: {})
    not_a_model = _fake_class("mylib", "Thing", predict=lambda s, x: x)
    impostor = _fake_class("not_xgboost.core", "Booster", predict=lambda s, x: x)

    def name(obj: Any) -> str:
        return artifacts.select_predictor(obj).name

    assert name(keras_model()) == "keras"
    assert name(torch_subclass()) == "torch"
    assert name(booster()) == "xgboost"
    assert name(lgb_booster()) == "lightgbm"
    assert name(session()) == "onnx"
    assert name(duck()) == "scikit-learn"
    for obj in (not_a_model(), impostor(), None, {"a": 1}, [1, 2]):
        with pytest.raises(ModelLoadError, match="Could not find any framework"):
            artifacts.select_predictor(obj)


def test_pipelines_are_chosen_by_their_final_step() -> None:
    pytest.importorskip("sklearn")
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    keras_model = _fake_class("keras.src.models.model", "Model", predict=lambda s, x: x)
    assert (
        artifacts.select_predictor(
            Pipeline([("scale", StandardScaler()), ("net", keras_model())])
        ).name
        == "keras"
    )
    assert (
        artifacts.select_predictor(Pipeline([("scale", StandardScaler()), ("ridge", Ridge())])).name
        == "scikit-learn"
    )


def test_keras_predictor_gives_no_labels() -> None:
    keras_model = _fake_class(
        "keras.src.models.model", "Model", predict=lambda s, x: x.to_numpy()[:, :1] / 10
    )
    raw, labels = artifacts.KerasPredictor().predict(QUERY, keras_model(), "binary")
    assert labels is None
    np.testing.assert_allclose(raw, QUERY[["x0"]].to_numpy() / 10)


def test_torch_predictor_feeds_float32_without_grad(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    class Tensor:
        def __init__(self, array: np.ndarray) -> None:
            self.array = array

        def cpu(self) -> Tensor:
            return self

        def numpy(self) -> np.ndarray:
            return self.array

    @contextlib.contextmanager
    def no_grad() -> Iterator[None]:
        calls.append("no_grad")
        yield

    fake_torch = types.SimpleNamespace(from_numpy=Tensor, no_grad=no_grad)
    monkeypatch.setitem(sys.modules, "torch", fake_torch)

    def forward(self: Any, tensor: Tensor) -> Tensor:
        assert tensor.array.dtype == np.float32
        calls.append("forward")
        return Tensor(tensor.array.sum(axis=1, keepdims=True))

    net = _fake_class("torch.nn.modules.module", "Module", __call__=forward)()
    raw, labels = artifacts.select_predictor(net).predict(QUERY, net, "regression")
    assert labels is None and calls == ["no_grad", "forward"]
    np.testing.assert_allclose(raw[:, 0], QUERY.sum(axis=1), rtol=1e-6)


class _FakeSession:
    """An onnxruntime-like session with fixed outputs."""

    def __init__(self, outputs: dict[str, Any], input_type: str = "tensor(float)") -> None:
        self.outputs = outputs
        self.input_type = input_type
        self.fed: np.ndarray | None = None

    def get_inputs(self) -> list[Any]:
        return [types.SimpleNamespace(name="input", type=self.input_type)]

    def get_outputs(self) -> list[Any]:
        return [types.SimpleNamespace(name=n) for n in self.outputs]

    def run(self, names: Any, feed: dict[str, np.ndarray]) -> list[Any]:
        self.fed = feed["input"]
        return list(self.outputs.values())


def test_onnx_output_choice() -> None:
    predictor = artifacts.ONNXPredictor()
    labels = np.array(["a", "b"])
    proba = np.array([[0.25, 0.75], [0.5, 0.5]], dtype=np.float32)
    session = _FakeSession({"label": labels, "Probabilities": proba})
    raw, model_labels = predictor.predict(QUERY.iloc[:2], session, "binary")
    assert model_labels is None
    np.testing.assert_array_equal(raw, proba)
    assert session.fed is not None and session.fed.dtype == np.float32
    # Regression never looks for a probability output: the first output.
    raw, _ = predictor.predict(QUERY.iloc[:2], session, "regression")
    np.testing.assert_array_equal(raw, labels)
    # No "prob" output: the first.
    raw, _ = predictor.predict(QUERY.iloc[:2], _FakeSession({"y": labels, "z": proba}), "binary")
    np.testing.assert_array_equal(raw, labels)
    # ZipMap: a list of dicts becomes a matrix in key order.
    zipped = [{"b": 0.75, "a": 0.25}, {"b": 0.5, "a": 0.5}]
    raw, model_labels = predictor.predict(
        QUERY.iloc[:2], _FakeSession({"label": labels, "output_probability": zipped}), "binary"
    )
    assert model_labels is None
    np.testing.assert_array_equal(raw, [[0.75, 0.25], [0.5, 0.5]])
    with pytest.raises(ValueError, match="at least 1 output"):
        predictor.predict(QUERY, _FakeSession({}), "regression")


def test_onnx_input_dtype_follows_the_model() -> None:
    session = _FakeSession({"y": np.zeros(len(QUERY))}, input_type="tensor(double)")
    artifacts.ONNXPredictor().predict(QUERY, session, "regression")
    assert session.fed is not None and session.fed.dtype == np.float64


@pytest.mark.parametrize("target", ["transform", "textgeneration", "unstructured"])
def test_predictors_reject_targets_they_cannot_serve(target: str) -> None:
    model = _fake_class("mylib", "Model", predict=lambda s, x: np.zeros(len(x)))()
    with pytest.raises(ValueError, match="is not supported by 'SKLearnPredictor' predictor"):
        artifacts.SKLearnPredictor().predict(QUERY, model, target)


def test_sklearn_predictor_labels_are_classes_as_drum_lists_them() -> None:
    """``list(classes_)``: numpy scalars, which DRUM's label-mismatch message quotes as such."""
    model = _fake_class(
        "mylib",
        "Model",
        classes_=np.array([0, 1]),
        predict_proba=lambda s, x: np.tile([0.5, 0.5], (len(x), 1)),
    )()
    _, labels = artifacts.SKLearnPredictor().predict(QUERY, model, "binary")
    assert labels == [0, 1] and all(type(v) is np.int64 for v in labels)
    no_classes = _fake_class(
        "mylib", "Model", predict_proba=lambda s, x: np.tile([0.5, 0.5], (len(x), 1))
    )()
    assert artifacts.SKLearnPredictor().predict(QUERY, no_classes, "binary")[1] is None


def test_python2_style_pickle_falls_back_to_latin1(tmp_path: Path) -> None:
    # A protocol-2 pickle with a non-ASCII 8-bit str, as Python 2 wrote it.
    (tmp_path / "model.pkl").write_bytes(b"\x80\x02U\x04caf\xe9q\x00.")
    assert artifacts.load_artifact(tmp_path / "model.pkl") == "caf\xe9"


def test_find_artifact_ignores_directories_and_other_files(tmp_path: Path) -> None:
    (tmp_path / "model.pkl.bak").write_text("")
    (tmp_path / "weights.onnx").mkdir()
    (tmp_path / "model.Joblib").write_bytes(b"")
    assert artifacts.find_artifact(tmp_path) == tmp_path / "model.Joblib"


def test_loaded_frame_is_what_the_predictor_sees(tmp_path: Path) -> None:
    """Column names reach the model (a model fitted with feature names needs them)."""
    pytest.importorskip("sklearn")
    from sklearn.linear_model import Ridge

    model = Ridge().fit(TRAIN, Y_REG)
    assert list(model.feature_names_in_) == list(TRAIN.columns)
    dump_pickle(model, tmp_path / "model.pkl")
    bad = pd.DataFrame({"a": [1.0], "b": [2.0], "c": [3.0]}).to_csv(index=False).encode()
    with clients(tmp_path, REGRESSION) as by_fw:
        bodies = {
            fw: c.post("/predict/", content=bad, headers=dict(CSV)) for fw, c in by_fw.items()
        }
    # The model refuses columns it was not fitted with: the client's data, so 422 (DRUM: 500).
    assert {r.status_code for r in bodies.values()} == {422}
    assert len({r.content for r in bodies.values()}) == 1
    assert b"Failure when making predictions" in bodies["flask"].content
    assert b"feature names" in bodies["flask"].content


_FORK_CHILD = """
import faulthandler, os, sys
from pathlib import Path
import pandas as pd
from tandem.core import artifacts
path, kind = Path(sys.argv[1]), sys.argv[2]
model = artifacts.load_artifact(path)  # in the parent, as gunicorn's master does
predictor = artifacts.select_predictor(model)
frame = pd.read_csv(sys.argv[3])
pid = os.fork()
if pid == 0:
    faulthandler.dump_traceback_later(20, exit=True)
    raw, _ = predictor.predict(frame, model, kind)
    print(len(raw), flush=True)
    os._exit(0)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.parametrize(
    "case_id",
    [
        "xgb-booster-binary",
        "xgb-classifier-multiclass",
        "lgbm-booster-regression",
        "lgbm-classifier-binary",
        "sk-multiclass-joblib",
        "xgb-regressor-joblib-compressed",
    ],
)
def test_loaded_model_predicts_in_a_forked_worker(case_id: str, tmp_path: Path) -> None:
    """Loading must not leave an OpenMP thread pool behind: forked workers would hang."""
    case = next(c for c in CASES if c.id == case_id)
    require_modules(case)
    code_dir, _ = case.build(tmp_path)
    (tmp_path / "query.csv").write_bytes(QUERY_CSV)
    kind = case.args[1]
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _FORK_CHILD,
            str(artifacts.find_artifact(code_dir)),
            kind,
            str(tmp_path / "query.csv"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(len(QUERY))


@pytest.mark.parametrize("r_file", ["custom.R", "model.rds"])
def test_an_r_model_is_refused_at_start_up_not_served_from_a_pickle_beside_it(
    tmp_path: Path, r_file: str
) -> None:
    """Issue 10: DRUM serves R models; Tandem must say it does not, not fall back to a pickle."""
    pytest.importorskip("sklearn")
    from sklearn.linear_model import Ridge

    dump_pickle(Ridge().fit(TRAIN, Y_REG), tmp_path / "model.pkl")
    (tmp_path / r_file).write_text("# an R model\n")
    with pytest.raises(ModelLoadError, match=rf"R model \({r_file}\) and no custom.py"):
        LoadedModel(settings(tmp_path, REGRESSION))
