"""The command line: DRUM's environment variables, --explain-server-type, errors, ``score``."""

from __future__ import annotations

import json
import logging
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tandem.cli import ENV_FALLBACKS, ENV_FLAGS, ENV_VALUES, build_parser, main, merge_env
from tandem.errors import ConfigError
from tandem.version import DRUM_COMPAT_VERSION, __version__

VALID = "fastapi, flask, gunicorn, uvicorn, werkzeug"

_ENV_READ = (
    *ENV_VALUES.values(),
    *ENV_FALLBACKS.values(),
    *ENV_FLAGS.values(),
    "CUSTOM_MODEL_WORKERS",
    "DRUM_JSON_LOGGING",
    "DRUM_FASTAPI_EXECUTOR_WORKERS",
    "DRUM_MAX_BODY_SIZE",
    "DRUM_FASTAPI_MAX_UPLOAD_SIZE",
)
_LOGGERS = (
    "",
    "tandem.start",
    "tandem.access",
    "werkzeug",
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "gunicorn.error",
    "gunicorn.access",
)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No DRUM variable leaks in; main()'s logging set-up is undone afterwards."""
    for name in _ENV_READ:
        monkeypatch.delenv(name, raising=False)
    saved = {}
    for name in _LOGGERS:
        lg = logging.getLogger(name)
        saved[name] = (lg.handlers[:], lg.level, lg.propagate)
    yield
    for name, (handlers, level, propagate) in saved.items():
        lg = logging.getLogger(name)
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate


def parse(*argv: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    return merge_env(build_parser().parse_args(list(argv)), env or {})


# -- DRUM's environment variables --------------------------------------------------------------


def test_env_values_fill_absent_options() -> None:
    env = {
        "CODE_DIR": "/opt/code",
        "TARGET_TYPE": "binary",
        "ADDRESS": "0.0.0.0:8080",
        "POSITIVE_CLASS_LABEL": "yes",
        "NEGATIVE_CLASS_LABEL": "no",
        "CLASS_LABELS_FILE": "/opt/labels.txt",
        "MAX_WORKERS": "4",
    }
    options = parse("server", env=env)
    assert options["code_dir"] == "/opt/code"
    assert options["target_type"] == "binary"
    assert options["address"] == "0.0.0.0:8080"
    assert options["positive_class_label"] == "yes"
    assert options["negative_class_label"] == "no"
    assert options["class_labels_file"] == "/opt/labels.txt"
    assert options["max_workers"] == 4


def test_flags_win_over_env_values() -> None:
    env = {
        "CODE_DIR": "/env/code",
        "TARGET_TYPE": "binary",
        "ADDRESS": "0.0.0.0:1",
        "MAX_WORKERS": "4",
        "CLASS_LABELS": "x y",
    }
    options = parse(
        "server",
        "--code-dir",
        "/cli/code",
        "--target-type",
        "regression",
        "--address",
        "127.0.0.1:2",
        "--max-workers",
        "2",
        "--class-labels",
        "a",
        "b",
        env=env,
    )
    assert options["code_dir"] == "/cli/code"
    assert options["target_type"] == "regression"
    assert options["address"] == "127.0.0.1:2"
    assert options["max_workers"] == 2
    assert options["class_labels"] == ["a", "b"]


def test_short_code_dir_flag() -> None:
    assert parse("server", "-cd", "/m", env={"CODE_DIR": "/e"})["code_dir"] == "/m"


def test_empty_env_values_are_ignored() -> None:
    options = parse("server", env={"CODE_DIR": "", "TARGET_TYPE": "", "MAX_WORKERS": ""})
    assert options["code_dir"] is None
    assert options["target_type"] is None
    assert options["max_workers"] is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a b c", ["a", "b", "c"]),
        ("  a\tb\n c  ", ["a", "b", "c"]),
        ("one", ["one"]),
        ("Iris-setosa Iris-versicolor", ["Iris-setosa", "Iris-versicolor"]),
    ],
)
def test_class_labels_env_is_whitespace_split(raw: str, expected: list[str]) -> None:
    assert parse("server", env={"CLASS_LABELS": raw})["class_labels"] == expected


def test_max_workers_env_must_be_an_integer() -> None:
    with pytest.raises(ConfigError) as err:
        parse("server", env={"MAX_WORKERS": "lots"})
    assert str(err.value) == "MAX_WORKERS has invalid value 'lots'"


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "yes", "Y", "t", "on", " On "])
@pytest.mark.parametrize(
    ("option", "variable"),
    [
        ("with_error_server", "WITH_ERROR_SERVER"),
        ("production", "PRODUCTION"),
        ("show_stacktrace", "SHOW_STACKTRACE"),
    ],
)
def test_bool_env_true(option: str, variable: str, value: str) -> None:
    assert parse("server", env={variable: value})[option] is True


@pytest.mark.parametrize("value", ["0", "false", "no", "off", "", "nope", "2"])
@pytest.mark.parametrize(
    ("option", "variable"),
    [
        ("with_error_server", "WITH_ERROR_SERVER"),
        ("production", "PRODUCTION"),
        ("show_stacktrace", "SHOW_STACKTRACE"),
    ],
)
def test_bool_env_false(option: str, variable: str, value: str) -> None:
    assert parse("server", env={variable: value})[option] is False


def test_bool_flag_on_the_command_line_wins() -> None:
    options = parse("server", "--with-error-server", "--production", env={"WITH_ERROR_SERVER": "0"})
    assert options["with_error_server"] is True
    assert options["production"] is True


def test_unset_bool_env_is_false() -> None:
    options = parse("server")
    assert options["with_error_server"] is False
    assert options["production"] is False
    assert options["show_stacktrace"] is False


def test_logging_level_default() -> None:
    assert parse("server")["logging_level"] == "warning"
    assert parse("server", "--logging-level", "debug")["logging_level"] == "debug"


def test_score_ignores_server_only_variables() -> None:
    options = parse(
        "score",
        "--input",
        "x.csv",
        env={"ADDRESS": "0.0.0.0:1", "MAX_WORKERS": "3", "WITH_ERROR_SERVER": "1"},
    )
    assert "address" not in options
    assert "max_workers" not in options
    assert "with_error_server" not in options


def test_env_tables_match_drum() -> None:
    assert ENV_VALUES == {
        "code_dir": "CODE_DIR",
        "target_type": "TARGET_TYPE",
        "positive_class_label": "POSITIVE_CLASS_LABEL",
        "negative_class_label": "NEGATIVE_CLASS_LABEL",
        "class_labels_file": "CLASS_LABELS_FILE",
        "class_labels": "CLASS_LABELS",
        "address": "ADDRESS",
        "max_workers": "MAX_WORKERS",
        "runtime_params_file": "RUNTIME_PARAMS_FILE",
        "deployment_config": "DEPLOYMENT_CONFIG",
        "webserver": "EXTERNAL_WEB_SERVER_URL",
        "api_token": "API_TOKEN",
        "lazy_loading_file": "LAZY_LOADING_FILE",
        "deployment_id": "DEPLOYMENT_ID",
        "model_id": "MODEL_ID",
        "monitor_settings": "MONITOR_SETTINGS",
        "user_secrets_mount_path": "USER_SECRETS_MOUNT_PATH",
        "user_secrets_prefix": "USER_SECRETS_PREFIX",
    }
    assert ENV_FALLBACKS == {"deployment_id": "MLOPS_DEPLOYMENT_ID", "model_id": "MLOPS_MODEL_ID"}
    assert ENV_FLAGS == {
        "with_error_server": "WITH_ERROR_SERVER",
        "production": "PRODUCTION",
        "show_stacktrace": "SHOW_STACKTRACE",
        "allow_dr_api_access": "ALLOW_DR_API_ACCESS_FOR_ALL_CUSTOM_MODELS",
        "monitor": "MONITOR",
        "monitor_embedded": "MLOPS_REPORTING_FROM_UNSTRUCTURED_MODELS",
    }


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"tandem {__version__} (drum {DRUM_COMPAT_VERSION})\n"


# -- --explain-server-type ---------------------------------------------------------------------


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    path = tmp_path / "model"
    path.mkdir()
    return path


def explain(code_dir: Path, capsys: pytest.CaptureFixture[str]) -> str:
    rc = main(
        [
            "server",
            "--code-dir",
            str(code_dir),
            "--target-type",
            "regression",
            "--explain-server-type",
        ]
    )
    out, err = capsys.readouterr()
    assert rc == 0
    assert err == ""
    return out


def test_explain_default(code_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert explain(code_dir, capsys) == (
        "server type: fastapi (fastapi on uvicorn)\n"
        "reason: DRUM_SERVER_TYPE unset; default is fastapi\n"
    )


def test_explain_explicit(
    code_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE", '{"type": "string", "payload": "Gunicorn"}'
    )
    assert explain(code_dir, capsys) == (
        "server type: gunicorn (flask on gunicorn)\n"
        "reason: MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE=Gunicorn\n"
        "  DRUM_SERVER_TYPE = Gunicorn\n"
    )


def test_explain_bare_alias(
    code_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRUM_SERVER_TYPE", "werkzeug")
    assert explain(code_dir, capsys) == (
        "server type: flask (flask on werkzeug)\n"
        "reason: DRUM_SERVER_TYPE=werkzeug\n"
        "  DRUM_SERVER_TYPE = werkzeug\n"
    )


def test_explain_canary(
    code_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRUM_FASTAPI_CANARY_PERCENT", "50")
    monkeypatch.setenv("MLOPS_DEPLOYMENT_ID", "dep-1")
    assert explain(code_dir, capsys) == (
        "server type: flask (flask on werkzeug)\n"
        "reason: DRUM_SERVER_TYPE unset; deployment 'dep-1' is in bucket 52.14 and "
        "DRUM_FASTAPI_CANARY_PERCENT=50, so it is outside the FastAPI canary\n"
        "  DRUM_FASTAPI_CANARY_PERCENT = 50\n"
        "  MLOPS_DEPLOYMENT_ID = dep-1\n"
        "  bucket = 52.14\n"
    )


def test_explain_extension(code_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (code_dir / "custom_flask.py").write_text("def init_app(app):\n    pass\n")
    assert explain(code_dir, capsys) == (
        "server type: flask (flask on werkzeug)\n"
        "reason: DRUM_SERVER_TYPE unset and the code dir has only custom_flask.py, which runs "
        "only on Flask\n"
        f"  extension = {code_dir.resolve() / 'custom_flask.py'}\n"
    )


# -- start-up errors ---------------------------------------------------------------------------


def run_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 1
    assert out == ""
    assert err.endswith("\n")
    assert err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("variable", ["DRUM_SERVER_TYPE", "MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE"])
def test_bad_server_type(
    code_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
) -> None:
    monkeypatch.setenv(variable, "tomcat")
    err = run_error(["server", "--code-dir", str(code_dir), "--target-type", "regression"], capsys)
    assert err == (
        f"tandem: error: {variable} has invalid value 'tomcat'; valid values are: {VALID}\n"
    )


def test_bad_server_type_even_with_explain(
    code_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRUM_SERVER_TYPE", "Flask2")
    argv = ["server", "--code-dir", str(code_dir), "--target-type", "regression"]
    err = run_error([*argv, "--explain-server-type"], capsys)
    assert err == (
        f"tandem: error: DRUM_SERVER_TYPE has invalid value 'Flask2'; valid values are: {VALID}\n"
    )


def test_missing_code_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "does-not-exist"
    err = run_error(["server", "--code-dir", str(missing), "--target-type", "regression"], capsys)
    assert err == f"tandem: error: --code-dir {str(missing)!r} is not a directory\n"


def test_missing_code_dir_from_env(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "gone"
    monkeypatch.setenv("CODE_DIR", str(missing))
    monkeypatch.setenv("TARGET_TYPE", "regression")
    err = run_error(["server", "--explain-server-type"], capsys)
    assert err == f"tandem: error: --code-dir {str(missing)!r} is not a directory\n"


def test_no_code_dir_at_all(capsys: pytest.CaptureFixture[str]) -> None:
    err = run_error(["server", "--target-type", "regression"], capsys)
    assert err == "tandem: error: --code-dir (or CODE_DIR) is required\n"


def test_bad_max_workers_env(
    code_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAX_WORKERS", "lots")
    err = run_error(["server", "--code-dir", str(code_dir), "--target-type", "regression"], capsys)
    assert err == "tandem: error: MAX_WORKERS has invalid value 'lots'\n"


@pytest.mark.parametrize("value", ["1", "true", " Yes "])
def test_show_stacktrace_env_raises(
    code_dir: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("SHOW_STACKTRACE", value)
    monkeypatch.setenv("DRUM_SERVER_TYPE", "tomcat")
    with pytest.raises(ConfigError, match="DRUM_SERVER_TYPE has invalid value 'tomcat'"):
        main(["server", "--code-dir", str(code_dir), "--target-type", "regression"])


def test_show_stacktrace_flag_raises(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a directory"):
        main(["server", "--code-dir", str(tmp_path / "x"), "--show-stacktrace"])


# -- tandem score ------------------------------------------------------------------------------

REGRESSION = """
    import pandas as pd

    def load_model(code_dir):
        return "sum"

    def score(data, model, **kwargs):
        return pd.DataFrame({"Predictions": data.sum(axis=1)})
"""

EXTRA = """
    import pandas as pd

    def load_model(code_dir):
        return "extra"

    def score(data, model, **kwargs):
        n = len(data)
        return pd.DataFrame({"Predictions": [1.5] * n, "e1": [1] * n, "e2": ["x"] * n})
"""

BINARY = """
    import pandas as pd

    def load_model(code_dir):
        return "fixed"

    def score(data, model, **kwargs):
        p = data["x"].astype(float)
        return pd.DataFrame({kwargs["positive_class_label"]: p,
                             kwargs["negative_class_label"]: 1 - p})
"""

UNSTRUCTURED = """
    def load_model(code_dir):
        return "echo"

    def score_unstructured(model, data, **kwargs):
        return data.upper() + "|" + kwargs["mimetype"] + "|" + kwargs["charset"]
"""

WRONG_COLUMNS = """
    import pandas as pd

    def load_model(code_dir):
        return "bad"

    def score(data, model, **kwargs):
        return pd.DataFrame({"a": [1.0] * len(data), "b": [2.0] * len(data)})
"""


def model_dir(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "code"
    path.mkdir()
    (path / "custom.py").write_text(textwrap.dedent(source), encoding="utf-8")
    return path


def score(
    tmp_path: Path, source: str, data: str, output: str | None, *extra: str
) -> tuple[int, Path | None]:
    code = model_dir(tmp_path, source)
    input_file = tmp_path / "input.csv"
    input_file.write_text(data, encoding="utf-8")
    argv = ["score", "--code-dir", str(code), "--input", str(input_file), *extra]
    out_path = None
    if output is not None:
        out_path = tmp_path / output
        argv += ["--output", str(out_path)]
    return main(argv), out_path


def test_score_regression_csv(tmp_path: Path) -> None:
    rc, out = score(
        tmp_path, REGRESSION, "a,b\n1,2\n3,4.5\n", "out.csv", "--target-type", "regression"
    )
    assert rc == 0
    assert out is not None
    assert out.read_text() == "Predictions\n3.0\n7.5\n"


def test_score_regression_json(tmp_path: Path) -> None:
    rc, out = score(
        tmp_path, REGRESSION, "a,b\n1,2\n3,4.5\n", "out.json", "--target-type", "regression"
    )
    assert rc == 0
    assert out is not None
    assert out.read_bytes() == b'{"predictions":[3.0,7.5]}'


def test_score_extra_output_csv(tmp_path: Path) -> None:
    rc, out = score(tmp_path, EXTRA, "a\n1\n2\n", "out.csv", "--target-type", "regression")
    assert rc == 0
    assert out is not None
    assert out.read_text() == "Predictions,e1,e2\n1.5,1,x\n1.5,1,x\n"


def test_score_extra_output_json_is_the_servers_body(tmp_path: Path) -> None:
    # drum_contract.md §1.6: the exact body DRUM's server answers for this output.
    rc, out = score(tmp_path, EXTRA, "a\n1\n2\n", "out.json", "--target-type", "regression")
    assert rc == 0
    assert out is not None
    assert out.read_bytes() == (
        b'{"predictions":[1.5,1.5],'
        b'"extraModelOutput":{"columns":["e1","e2"],"index":[0,1],"data":[[1,"x"],[1,"x"]]}}'
    )


def test_score_binary_json(tmp_path: Path) -> None:
    rc, out = score(
        tmp_path,
        BINARY,
        "x\n0.75\n0.5\n",
        "out.json",
        "--target-type",
        "binary",
        "--positive-class-label",
        "yes",
        "--negative-class-label",
        "no",
    )
    assert rc == 0
    assert out is not None
    assert json.loads(out.read_bytes()) == {
        "predictions": [{"yes": 0.75, "no": 0.25}, {"yes": 0.5, "no": 0.5}]
    }
    assert out.read_bytes() == b'{"predictions":[{"yes":0.75,"no":0.25},{"yes":0.5,"no":0.5}]}'


def test_score_binary_csv_from_env_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TARGET_TYPE", "binary")
    monkeypatch.setenv("POSITIVE_CLASS_LABEL", "yes")
    monkeypatch.setenv("NEGATIVE_CLASS_LABEL", "no")
    rc, out = score(tmp_path, BINARY, "x\n0.75\n", "out.csv")
    assert rc == 0
    assert out is not None
    assert out.read_text() == "yes,no\n0.75,0.25\n"


def test_score_to_stdout(tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    rc, _ = score(tmp_path, REGRESSION, "a\n1\n2\n", None, "--target-type", "regression")
    assert rc == 0
    assert capsysbinary.readouterr().out == b"Predictions\n1.0\n2.0\n"


def test_score_unstructured(tmp_path: Path) -> None:
    """DRUM's default for `drum score`: text/plain; charset=utf8 (the charset as DRUM spells it)."""
    rc, out = score(tmp_path, UNSTRUCTURED, "héllo", "out.txt", "--target-type", "unstructured")
    assert rc == 0
    assert out is not None
    assert out.read_text(encoding="utf-8") == "HÉLLO|text/plain|utf8"


def test_score_missing_input_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = model_dir(tmp_path, REGRESSION)
    missing = tmp_path / "nope.csv"
    err = run_error(
        ["score", "--code-dir", str(code), "--target-type", "regression", "--input", str(missing)],
        capsys,
    )
    assert err == (
        f"tandem: error: --input {str(missing)!r} cannot be read: No such file or directory\n"
    )


def test_score_model_error_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = model_dir(tmp_path, WRONG_COLUMNS)
    input_file = tmp_path / "in.csv"
    input_file.write_text("a\n1\n")
    err = run_error(
        [
            "score",
            "--code-dir",
            str(code),
            "--target-type",
            "regression",
            "--input",
            str(input_file),
        ],
        capsys,
    )
    # DRUM's wording: pandas' own KeyError text.
    assert err == "tandem: error: \"['Predictions'] not found in axis\"\n"


def test_operator_commands_without_the_ops_extra_say_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bare server install has no httpx/rich/deepdiff; ``tandem replay`` then says so."""
    import builtins

    from tandem import cli

    real_import = builtins.__import__

    def no_rich(name: str, *args: object, **kwargs: object) -> object:
        if name == "rich" or name.startswith("rich."):
            raise ModuleNotFoundError(f"No module named {name!r}", name="rich")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_rich)
    code = cli.main(["rollout", "status", "--state", "/nonexistent/state.db"])
    assert code == 1
    assert "pip install 'tandem[ops]'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--docker", "my-image"], "--docker"),
        (["--memory", "2g"], "--memory"),
        (["--skip-deps-install"], "--skip-deps-install"),
        (["--gpu-predictor", "nim"], "--gpu-predictor"),
        (["--triton-host", "localhost"], "--triton-host"),
        (["--triton-http-port", "8000"], "--triton-http-port"),
        (["--triton-grpc-port", "8001"], "--triton-grpc-port"),
        (["--sidecar"], "--sidecar"),
    ],
)
@pytest.mark.parametrize("command", ["server", "score"])
def test_datarobot_build_flags_are_accepted_then_refused_in_one_line(
    command: str, argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 10: never 'unrecognized arguments'; a one-line error saying what to do instead."""
    from tandem import cli

    extra = ["--input", "/nonexistent.csv"] if command == "score" else []
    base = [command, "--code-dir", "/nonexistent", "--target-type", "regression", *extra]
    code = cli.main([*base, *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert "unrecognized arguments" not in err
    assert err.startswith(f"tandem: error: {flag} only works in DataRobot's own drum build; ")
    assert err.count("\n") == 1
