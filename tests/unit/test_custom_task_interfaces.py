"""``datarobot_drum.custom_task_interfaces`` (Tandem's stand-in) and loading ``CustomTask`` models.

The end-to-end tier (``tests/test_task_interfaces_e2e.py``) serves fitted task models on every
stack and compares them with DRUM; this tier checks the interface classes themselves and the
loader's decisions in-process, with tasks whose ``load`` needs no pickle.
"""

from __future__ import annotations

import ast
import json
import logging
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import _tandem_drum
from tandem.core.model import LoadedModel, task_interface_base
from tandem.errors import ModelLoadError
from tests.conformance import settings_for
from tests.conformance_cases import ModelSpec
from tests.support import REPO

_tandem_drum.install()

from datarobot_drum.custom_task_interfaces import (  # noqa: E402
    AnomalyEstimatorInterface,
    ApiTokenSecret,
    BasicSecret,
    BinaryEstimatorInterface,
    GCPSecret,
    MulticlassEstimatorInterface,
    RegressionEstimatorInterface,
    S3Secret,
    TransformerInterface,
    user_secrets,
)
from datarobot_drum.custom_task_interfaces.custom_task_interface import (  # noqa: E402
    CustomTaskInterface,
    secrets_injection_context,
)
from datarobot_drum.drum.exceptions import DrumSerializationError  # noqa: E402

DRUM_PACKAGE = REPO / "bench" / ".drum-venv" / "lib" / "python3.11" / "site-packages"


class Remembers(RegressionEstimatorInterface):
    """A module-level task, so pickle can find its class."""

    def fit(self, X: Any, y: Any, **kwargs: Any) -> Remembers:
        self.mean = float(y.mean())
        self.big = object()
        return self


# -- the interfaces --------------------------------------------------------------------------


def test_exports_are_drums() -> None:
    """The package exports what DRUM 1.18.1's does (read from its source when it is here)."""
    import datarobot_drum.custom_task_interfaces as ours

    expected = {
        "TransformerInterface",
        "BinaryEstimatorInterface",
        "RegressionEstimatorInterface",
        "MulticlassEstimatorInterface",
        "AnomalyEstimatorInterface",
        "AdlsGen2OauthSecret",
        "ApiTokenSecret",
        "AzureSecret",
        "AzureServicePrincipalSecret",
        "BasicSecret",
        "DatabricksAccessTokenAccountSecret",
        "GCPSecret",
        "OauthSecret",
        "S3Secret",
        "SnowflakeKeyPairUserAccountSecret",
        "SnowflakeOauthUserAccountSecret",
        "TableauAccessTokenSecret",
    }
    theirs = DRUM_PACKAGE / "datarobot_drum" / "custom_task_interfaces" / "__init__.py"
    if theirs.is_file():
        tree = ast.parse(theirs.read_text())
        expected = {a.name for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names}
    assert set(ours.__all__) == expected
    assert all(hasattr(ours, name) for name in expected)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    task = Remembers().fit(None, pd.Series([1.0, 2.0, 6.0]))
    assert task.save(tmp_path) is task
    assert (tmp_path / "drum_artifact.pkl").is_file()
    loaded = Remembers.load(str(tmp_path))
    assert isinstance(loaded, Remembers) and loaded.mean == 3.0
    assert loaded.secrets == {}


def test_save_task_excludes_and_restores(tmp_path: Path) -> None:
    task = Remembers().fit(None, pd.Series([1.0]))
    big = task.big
    task.save_task(tmp_path, exclude=["big"])
    assert task.big is big
    assert Remembers.load_task(tmp_path).big is None
    with pytest.raises(DrumSerializationError, match="The object named nope passed in exclude="):
        task.save_task(tmp_path, exclude=["big", "nope"])
    assert task.big is big


def test_load_task_wants_an_instance_of_the_class(tmp_path: Path) -> None:
    Remembers().fit(None, pd.Series([1.0])).save(tmp_path)
    with pytest.raises(DrumSerializationError, match="load_task method must return a Other class"):

        class Other(CustomTaskInterface):
            pass

        Other.load(tmp_path)


def test_default_methods_behave_as_drums() -> None:
    frame = pd.DataFrame({"a": [1]})
    with pytest.raises(NotImplementedError):
        RegressionEstimatorInterface().predict(frame)
    with pytest.raises(NotImplementedError):
        AnomalyEstimatorInterface().predict(frame)
    with pytest.raises(NotImplementedError):
        TransformerInterface().transform(frame)
    with pytest.raises(NotImplementedError):
        CustomTaskInterface().fit(frame, None)
    for classifier in (BinaryEstimatorInterface(), MulticlassEstimatorInterface()):
        assert classifier.predict(frame) is None
        with pytest.raises(NotImplementedError):
            classifier.predict_proba(frame)


def test_log_message_logs_on_drums_logger(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        CustomTaskInterface.log_message("hello")
    [record] = [r for r in caplog.records if r.getMessage() == "hello"]
    assert record.name == "drum.datarobot_drum.custom_task_interfaces.custom_task_interface"


# -- secrets -----------------------------------------------------------------------------------


@pytest.fixture
def scrubbing() -> Iterator[None]:
    """Undo any output scrubbing a test installs."""
    yield
    user_secrets.reset_outputs_to_allow_secrets()


def test_secrets_from_env_and_mount(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_TOKEN", json.dumps({"credential_type": "api_token", "api_token": "t"}))
    monkeypatch.setenv("MY_BOTH", json.dumps({"credential_type": "s3", "config_id": "c"}))
    (tmp_path / "BOTH").write_text(
        json.dumps({"credential_type": "BASIC", "username": "u", "password": "p", "x": 1})
    )
    (tmp_path / "gcp").write_text(
        json.dumps({"credential_type": "gcp", "gcp_key": {"type": "service_account"}})
    )
    found = user_secrets.load_secrets(str(tmp_path), "MY")
    assert found["TOKEN"] == ApiTokenSecret(api_token="t")
    assert found["BOTH"] == BasicSecret(username="u", password="p")  # the file wins
    assert isinstance(found["gcp"], GCPSecret) and found["gcp"].gcp_key is not None
    assert found["gcp"].gcp_key.type == "service_account"
    assert user_secrets.load_secrets(None, None) == {}
    assert S3Secret(config_id="c").is_partial_secret()
    assert not found["TOKEN"].is_partial_secret()
    assert repr(found["BOTH"]) == (
        "BasicSecret(username='*****', password='*****', snowflake_account_name=None)"
    )
    with pytest.raises(user_secrets.UnsupportedSecretError, match="'nope'"):
        user_secrets.secrets_factory({"credential_type": "nope"})


def test_secret_values_are_scrubbed_from_output(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, scrubbing: None
) -> None:
    task = Remembers()
    log = logging.getLogger("drum.test")  # DRUM filters the loggers that exist when it patches
    with caplog.at_level(logging.INFO):
        with secrets_injection_context(task, None, None):
            assert task.secrets == {}
        user_secrets.patch_outputs_to_scrub_secrets([BasicSecret("me", "hunter2")])
        print("password hunter2")
        log.info("user %s", "me")
        user_secrets.reset_outputs_to_allow_secrets()
        print("after hunter2")
    assert capsys.readouterr().out == "password *****\nafter hunter2\n"
    assert "user *****" in [r.getMessage() for r in caplog.records]


# -- loading a CustomTask ------------------------------------------------------------------------


def _code_dir(root: Path, source: str) -> Path:
    code_dir = root / "model"
    code_dir.mkdir()
    (code_dir / "custom.py").write_text(textwrap.dedent(source))
    return code_dir


def _load(code_dir: Path, *args: str) -> LoadedModel:
    spec = ModelSpec(code_dir.name, "prebuilt", args or ("--target-type", "regression"))
    return LoadedModel(settings_for(spec, code_dir, "fastapi"))


TASK = """\
    import pandas as pd
    from datarobot_drum.custom_task_interfaces import RegressionEstimatorInterface

    CALLS = []


    def score(data, model, **kwargs):  # a hook beside CustomTask: DRUM ignores it
        raise AssertionError("hooks are not used")


    class CustomTask(RegressionEstimatorInterface):
        @classmethod
        def load(cls, artifact_directory):
            CALLS.append(artifact_directory)
            return cls()

        def predict(self, X, **kwargs):
            CALLS.append(sorted(kwargs))
            return pd.DataFrame({"Predictions": X.sum(axis=1)})
"""


def test_custom_task_is_loaded_with_load_and_scored_with_predict(tmp_path: Path) -> None:
    code_dir = _code_dir(tmp_path, TASK)
    model = _load(code_dir)
    calls = sys.modules["custom"].CALLS
    assert calls == [str(code_dir)]
    assert model.hooks == {} and model.predictor_name is None and model.fast is None
    result = model.predict(b"a,b\n1,2\n3,4\n", "text/csv", None, None)
    assert result.predictions["Predictions"].tolist() == [3.0, 7.0]
    assert calls[-1] == ["binary_data", "charset", "mimetype", "sparse_colnames", "target_type"]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "class CustomTask:\n    pass\n",
            "The CustomTask class must inherit from the CustomTaskInterface",
        ),
        ("CustomTask = 5\n", "issubclass() arg 1 must be a class"),
        (
            "from datarobot_drum.custom_task_interfaces import RegressionEstimatorInterface\n"
            "class CustomTask(RegressionEstimatorInterface):\n    pass\n",
            "An error occurred when loading your artifact: Failed to load custom task class. "
            "Exception: FileNotFoundError(2, 'No such file or directory')",
        ),
        (
            # A look-alike of the interface that is not DRUM's
            "class CustomTaskInterface:\n    pass\n"
            "class CustomTask(CustomTaskInterface):\n    pass\n",
            "The CustomTask class must inherit from the CustomTaskInterface",
        ),
    ],
    ids=["not-inheriting", "not-a-class", "no-artifact", "look-alike"],
)
def test_start_up_errors(tmp_path: Path, source: str, message: str) -> None:
    with pytest.raises(ModelLoadError) as info:
        _load(_code_dir(tmp_path, source))
    assert str(info.value) == message


def test_a_falsy_custom_task_means_hooks(tmp_path: Path) -> None:
    """DRUM takes the task path only when ``CustomTask`` is truthy."""
    code_dir = _code_dir(tmp_path, "CustomTask = None\n\ndef score(data, model, **kw):\n    pass\n")
    assert "score" in _load(code_dir).hooks


def test_secrets_reach_the_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scrubbing: None
) -> None:
    """DRUM's USER_SECRETS_PREFIX and USER_SECRETS_MOUNT_PATH."""
    monkeypatch.setenv("USER_SECRETS_PREFIX", "TASKSECRET")
    monkeypatch.setenv(
        "TASKSECRET_API", json.dumps({"credential_type": "api_token", "api_token": "tok-1"})
    )
    mounted = tmp_path / "secrets"
    mounted.mkdir()
    (mounted / "db").write_text(
        json.dumps({"credential_type": "basic", "username": "u", "password": "pw-2"})
    )
    monkeypatch.setenv("USER_SECRETS_MOUNT_PATH", str(mounted))
    model = _load(_code_dir(tmp_path, TASK))
    assert model.task.secrets == {
        "API": ApiTokenSecret(api_token="tok-1"),
        "db": BasicSecret(username="u", password="pw-2"),
    }
    assert isinstance(sys.stdout, user_secrets.TextStreamSecretsScrubber)


# -- DataRobot's own package -------------------------------------------------------------------


@pytest.fixture
def real_drum(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A ``datarobot_drum`` on ``sys.path`` (as when DataRobot's is installed) whose interface
    is not Tandem's class, and whose ``load_secrets`` says it was called."""
    root = tmp_path / "site"
    package = root / "datarobot_drum" / "custom_task_interfaces"
    package.mkdir(parents=True)
    (root / "datarobot_drum" / "__init__.py").write_text("")
    (package / "__init__.py").write_text(
        "from .custom_task_interface import CustomTaskInterface\n\n"
        "class RegressionEstimatorInterface(CustomTaskInterface):\n    pass\n"
    )
    (package / "custom_task_interface.py").write_text(
        textwrap.dedent(
            """\
            def load_secrets(mount_path, env_var_prefix):
                return {"from": "datarobot"}

            def patch_outputs_to_scrub_secrets(secrets):
                pass

            class CustomTaskInterface:
                secrets = None

                @classmethod
                def load(cls, artifact_directory):
                    return cls()
            """
        )
    )
    saved = {k: v for k, v in sys.modules.items() if k.startswith("datarobot_drum")}
    for name in saved:
        del sys.modules[name]
    monkeypatch.syspath_prepend(str(root))
    yield root
    for name in [k for k in sys.modules if k.startswith("datarobot_drum")]:
        del sys.modules[name]
    sys.modules.update(saved)


def test_tasks_on_datarobots_interface_are_recognised(tmp_path: Path, real_drum: Path) -> None:
    model = _load(_code_dir(tmp_path, TASK))
    interface = sys.modules["datarobot_drum.custom_task_interfaces.custom_task_interface"]
    assert str(real_drum) in str(interface.__file__)
    assert task_interface_base(type(model.task)) is interface.CustomTaskInterface
    assert model.task.secrets == {"from": "datarobot"}
    result = model.predict(b"a\n5\n", "text/csv", None, None)
    assert result.predictions["Predictions"].tolist() == [5.0]
