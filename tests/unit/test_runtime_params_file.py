"""``--runtime-params-file``: DRUM 1.18.1's loader, its checks and its messages, without trafaret.

Every message below was produced by DRUM's own ``RuntimeParametersLoader`` on the same files
(``bench/.drum-venv``) unless the test says it is Tandem's: those are the cases where DRUM stops
with a traceback (``AttributeError``, ``TypeError``...) instead of a message.
"""

from __future__ import annotations

import json
import logging
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tandem.cli import ENV_VALUES, build_parser, main, merge_env
from tandem.errors import ConfigError, RuntimeParameterError
from tandem.runtime_params import RuntimeParameters
from tandem.runtime_params_file import (
    ParameterDefinition,
    apply_runtime_params_file,
    load_runtime_params_file,
    read_definitions,
)
from tests.runtime_params_support import NAMES, build_model, load_recording

SECRET = "wJalrXUtnFEMI-not-real-SECRET"

DEFINITIONS = """\
runtimeParameterDefinitions:
  - fieldName: S
    type: string
    defaultValue: s-default
  - fieldName: N
    type: numeric
    minValue: 1
    maxValue: 10
    defaultValue: 3
  - fieldName: B
    type: boolean
    defaultValue: true
  - fieldName: C
    type: credential
    credentialType: s3
  - fieldName: D
    type: deployment
"""


def write(tmp_path: Path, metadata: str | None, values: str | bytes | None) -> tuple[Path, Path]:
    """A code dir with ``metadata`` as model-metadata.yaml (none if None) and a values file."""
    code_dir = tmp_path / "code"
    code_dir.mkdir(exist_ok=True)
    if metadata is not None:
        (code_dir / "model-metadata.yaml").write_text(textwrap.dedent(metadata), encoding="utf-8")
    values_file = tmp_path / "values.yaml"
    if isinstance(values, bytes):
        values_file.write_bytes(values)
    elif values is not None:
        values_file.write_text(textwrap.dedent(values), encoding="utf-8")
    return code_dir, values_file


def load(tmp_path: Path, metadata: str | None, values: str | bytes | None) -> dict[str, Any]:
    """The payloads exported for ``values`` (decoded from their JSON envelopes)."""
    code_dir, values_file = write(tmp_path, metadata, values)
    env = load_runtime_params_file(values_file, code_dir)
    return {key.removeprefix("MLOPS_RUNTIME_PARAM_"): json.loads(v) for key, v in env.items()}


def failure(tmp_path: Path, metadata: str | None, values: str | bytes | None) -> str:
    """The message of the RuntimeParameterError that loading raises."""
    code_dir, values_file = write(tmp_path, metadata, values)
    with pytest.raises(RuntimeParameterError) as err:
        load_runtime_params_file(values_file, code_dir)
    assert isinstance(err.value, ConfigError)  # so the CLI prints it and exits 1
    return str(err.value).replace(str(tmp_path), "<tmp>")


# -- what is exported ----------------------------------------------------------------------------


def test_every_type_and_the_defaults(tmp_path: Path) -> None:
    env = load(
        tmp_path,
        DEFINITIONS,
        """\
        S: hello
        N: 5
        C:
          credentialType: s3
          awsAccessKeyId: AK
          awsSecretAccessKey: SK
        D: dep-1
        """,
    )
    assert env == {
        "S": {"payload": "hello", "type": "string"},
        "N": {"payload": 5, "type": "numeric"},
        "B": {"payload": True, "type": "boolean"},  # defaultValue
        "C": {
            "payload": {"credentialType": "s3", "awsAccessKeyId": "AK", "awsSecretAccessKey": "SK"},
            "type": "credential",
        },
        "D": {"payload": "dep-1", "type": "deployment"},
    }


def test_envelope_text_is_drums(tmp_path: Path) -> None:
    code_dir, values_file = write(tmp_path, DEFINITIONS, "S: héllo\nN: 2.5\nB: false\n")
    assert load_runtime_params_file(values_file, code_dir) == {
        "MLOPS_RUNTIME_PARAM_S": '{"payload": "h\\u00e9llo", "type": "string"}',
        "MLOPS_RUNTIME_PARAM_N": '{"payload": 2.5, "type": "numeric"}',
        "MLOPS_RUNTIME_PARAM_B": '{"payload": false, "type": "boolean"}',
        "MLOPS_RUNTIME_PARAM_C": '{"payload": null, "type": "credential"}',
        "MLOPS_RUNTIME_PARAM_D": '{"payload": null, "type": "deployment"}',
    }


def test_null_in_the_file_wins_over_the_default(tmp_path: Path) -> None:
    env = load(tmp_path, DEFINITIONS, "S: null\nB: null\nN: null\n")
    assert env["S"]["payload"] is None
    assert env["B"]["payload"] is None
    assert env["N"]["payload"] is None


@pytest.mark.parametrize(
    ("value", "payload"),
    [
        ("5", 5),
        ("'5'", "5"),  # checked as a number, exported as written
        ("' 7 '", " 7 "),
        ("1.0e1", "1.0e1"),  # YAML 1.1 wants a signed exponent: this is a string
        ("1.0e+1", 10.0),
        ("0x0A", 10),
        ("true", True),  # trafaret's Float takes booleans (True == 1)
        (".nan", "NaN"),  # NaN passes both bounds
    ],
)
def test_numeric_values_are_exported_as_written(tmp_path: Path, value: str, payload: Any) -> None:
    code_dir, values_file = write(tmp_path, DEFINITIONS, f"N: {value}\n")
    raw = load_runtime_params_file(values_file, code_dir)["MLOPS_RUNTIME_PARAM_N"]
    if payload == "NaN":
        assert raw == '{"payload": NaN, "type": "numeric"}'
    else:
        assert json.loads(raw)["payload"] == payload
        assert type(json.loads(raw)["payload"]) is type(payload)


def test_credential_type_comes_first_then_the_rest_in_order(tmp_path: Path) -> None:
    env = load(tmp_path, DEFINITIONS, "C:\n  b: 1\n  credentialType: s3\n  a: [1, 2]\n")
    assert list(env["C"]["payload"]) == ["credentialType", "b", "a"]


def test_defaults_are_checked_like_values(tmp_path: Path) -> None:
    metadata = """\
    runtimeParameterDefinitions:
      - fieldName: N
        type: numeric
        maxValue: 2
        defaultValue: 5
    """
    assert failure(tmp_path, metadata, "OTHER: 1\n") == (
        "Failed to load runtime parameter 'N'. {'payload': DataError(\"{0: DataError('value "
        "should be None'), 1: DataError('value is greater than 2')}\")}"
    )


def test_apply_exports_and_replaces_existing_variables(tmp_path: Path) -> None:
    code_dir, values_file = write(tmp_path, DEFINITIONS, "S: from-file\n")
    environ = {"MLOPS_RUNTIME_PARAM_S": "old", "MLOPS_RUNTIME_PARAM_OTHER": "kept"}
    names = apply_runtime_params_file(values_file, code_dir, environ)
    assert names == ["S", "N", "B", "C", "D"]
    assert environ["MLOPS_RUNTIME_PARAM_S"] == '{"payload": "from-file", "type": "string"}'
    assert environ["MLOPS_RUNTIME_PARAM_OTHER"] == "kept"


def test_nothing_is_exported_when_a_later_value_fails(tmp_path: Path) -> None:
    code_dir, values_file = write(tmp_path, DEFINITIONS, "S: fine\nD: 5\n")
    environ: dict[str, str] = {}
    with pytest.raises(RuntimeParameterError):
        apply_runtime_params_file(values_file, code_dir, environ)
    assert environ == {}


# -- what DRUM lets through (Tandem warns, names only) -------------------------------------------


def test_unknown_keys_are_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    env = load(tmp_path, DEFINITIONS, f"S: a\nTYPO_S: {SECRET}\n")
    assert "TYPO_S" not in env
    assert "TYPO_S not declared in model-metadata.yaml runtimeParameterDefinitions" in caplog.text
    assert SECRET not in caplog.text


def test_wrong_credential_type_is_accepted_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    env = load(tmp_path, DEFINITIONS, f"C:\n  credentialType: basic\n  password: {SECRET}\n")
    assert env["C"]["payload"] == {"credentialType": "basic", "password": SECRET}
    assert "C has credentialType 'basic', but model-metadata.yaml declares 's3'" in caplog.text
    assert SECRET not in caplog.text


def test_allow_empty_false_is_not_enforced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    metadata = (
        "runtimeParameterDefinitions:\n  - fieldName: S\n    type: string\n    allowEmpty: false\n"
    )
    assert load(tmp_path, metadata, "OTHER: 1\n") == {"S": {"payload": None, "type": "string"}}
    assert "S is declared with allowEmpty: false but has no value" in caplog.text


# -- DRUM's failures, DRUM's words ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            "N: 11\n",
            "Failed to load runtime parameter 'N'. {'payload': DataError(\"{0: DataError('value "
            "should be None'), 1: DataError('value is greater than 10')}\")}",
        ),
        (
            "N: 0\n",
            "Failed to load runtime parameter 'N'. {'payload': DataError(\"{0: DataError('value "
            "should be None'), 1: DataError('value is less than 1')}\")}",
        ),
        (
            "N: .inf\n",
            "Failed to load runtime parameter 'N'. {'payload': DataError(\"{0: DataError('value "
            "should be None'), 1: DataError('value is greater than 10')}\")}",
        ),
        (
            "N: ten\n",
            "Failed to load runtime parameter 'N'. {'payload': DataError('{0: DataError(\\'value "
            "should be None\\'), 1: DataError(\"value can\\'t be converted to float\")}')}",
        ),
        (
            "N: [1]\n",
            "Failed to load runtime parameter 'N'. {'payload': DataError(\"{0: DataError('value "
            "should be None'), 1: DataError('value is not float')}\")}",
        ),
        (
            "S: 5\n",
            "Failed to load runtime parameter 'S'. {'payload': DataError(\"{0: DataError('value "
            "should be None'), 1: DataError('value is not a string')}\")}",
        ),
        (
            "S: yes\n",  # YAML 1.1: a boolean, not a string
            "Failed to load runtime parameter 'S'. {'payload': DataError(\"{0: DataError('value "
            "should be None'), 1: DataError('value is not a string')}\")}",
        ),
        (
            "S: ''\n",
            "Failed to load runtime parameter 'S'. {'payload': DataError(\"{0: DataError('value "
            "should be None'), 1: DataError('blank value is not allowed')}\")}",
        ),
        (
            "B: 'true'\n",
            "Failed to load runtime parameter 'B'. {'payload': DataError(\"{0: DataError('value "
            "should be None'), 1: DataError('value should be True or False')}\")}",
        ),
        (
            "B: 1\n",
            "Failed to load runtime parameter 'B'. {'payload': DataError(\"{0: DataError('value "
            "should be None'), 1: DataError('value should be True or False')}\")}",
        ),
        (
            f"C: {SECRET}\n",
            "Failed to load runtime parameter 'C'. {'payload': DataError(\"{0: DataError('value "
            "should be None'), 1: DataError('value is not a dict')}\")}",
        ),
        (
            f"C:\n  awsSecretAccessKey: {SECRET}\n",
            "Failed to load runtime parameter 'C'. {'payload': DataError('{0: DataError(\\'value "
            "should be None\\'), 1: DataError(\"{\\'credentialType\\': DataError(\\'is "
            "required\\')}\")}')}",
        ),
        (
            "C:\n  credentialType: ''\n",
            "Failed to load runtime parameter 'C'. {'payload': DataError('{0: DataError(\\'value "
            "should be None\\'), 1: DataError(\"{\\'credentialType\\': DataError(\\'blank value "
            "is not allowed\\')}\")}')}",
        ),
        (
            "D: ''\n",
            "Failed to load runtime parameter 'D'. {'payload': DataError(\"{0: DataError('value "
            "should be None'), 1: DataError('blank value is not allowed')}\")}",
        ),
        # The first failing parameter in definition order is the one reported.
        (
            "D: 5\nS: 5\n",
            "Failed to load runtime parameter 'S'. {'payload': DataError(\"{0: DataError('value "
            "should be None'), 1: DataError('value is not a string')}\")}",
        ),
    ],
)
def test_value_errors(tmp_path: Path, values: str, message: str) -> None:
    got = failure(tmp_path, DEFINITIONS, values)
    assert got == message
    assert SECRET not in got


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ("", "Runtime parameter values YAML file is empty!"),
        ("null\n", "Runtime parameter values YAML file is empty!"),
        ("{}\n", "Runtime parameter values YAML file is empty!"),
        ("0\n", "Runtime parameter values YAML file is empty!"),
        (
            "S: [oops\n",
            "Invalid runtime parameter values YAML content! while parsing a flow sequence\n"
            '  in "<tmp>/values.yaml", line 1, column 4\n'
            "expected ',' or ']', but got '<stream end>'\n"
            '  in "<tmp>/values.yaml", line 2, column 1',
        ),
        (
            f"S:\t{SECRET}\n",
            "Invalid runtime parameter values YAML content! while scanning for the next token\n"
            "found character '\\t' that cannot start any token\n"
            '  in "<tmp>/values.yaml", line 1, column 3',
        ),
        (None, "Runtime parameter values file does not exist! filepath: <tmp>/values.yaml"),
        # Tandem's: DRUM fails with AttributeError: 'list' object has no attribute 'get'.
        (
            "- S\n",
            "Invalid runtime parameter values YAML content! expected a mapping of parameter names "
            "to values, got a list (filepath: <tmp>/values.yaml)",
        ),
        # Tandem's: DRUM fails with UnicodeDecodeError.
        (
            b"S: \xff\n",
            "Invalid runtime parameter values YAML content! not UTF-8 text: invalid start byte "
            "at byte 3 of <tmp>/values.yaml",
        ),
    ],
)
def test_values_file_errors(tmp_path: Path, values: str | bytes | None, message: str) -> None:
    got = failure(tmp_path, DEFINITIONS, values)
    assert got == message
    assert SECRET not in got


def test_values_file_that_is_a_directory(tmp_path: Path) -> None:
    code_dir, _ = write(tmp_path, DEFINITIONS, None)
    with pytest.raises(RuntimeParameterError) as err:
        load_runtime_params_file(tmp_path, code_dir)
    assert str(err.value) == (
        f"Runtime parameter values file cannot be read! filepath: {tmp_path}: Is a directory"
    )


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        (None, "model-metadata.yaml must exist to use runtime parameters"),
        ("", "Model-metadata YAML file is empty!"),
        (
            "name: m\ntargetType: unstructured\n",
            "model-metadata.yaml: YAML file must contain at least one parameter definition in the "
            "section 'runtimeParameterDefinitions'",
        ),
        (
            "runtimeParameterDefinitions: []\n",
            "model-metadata.yaml: YAML file must contain at least one parameter definition in the "
            "section 'runtimeParameterDefinitions'",
        ),
        (
            "a: [\n",
            "Invalid model-metadata YAML content! while parsing a flow node\n"
            "expected the node content, but found '<stream end>'\n"
            '  in "<tmp>/code/model-metadata.yaml", line 2, column 1',
        ),
        (
            "runtimeParameterDefinitions:\n  - S\n",
            "Failed to load runtime parameter: value is not a dict",
        ),
        (
            "runtimeParameterDefinitions:\n  - description: x\n",
            "Failed to load runtime parameter: {'fieldName': DataError('is required'), 'type': "
            "DataError('is required')}",
        ),
        (
            "runtimeParameterDefinitions:\n  - fieldName: S\n    type: int\n",
            "Failed to load runtime parameter: {'type': DataError(\"value doesn't match any "
            'variant")}',
        ),
        (
            "runtimeParameterDefinitions:\n  - fieldName: S\n    type: STRING\n",
            "Failed to load runtime parameter: {'type': DataError(\"value doesn't match any "
            'variant")}',
        ),
        (
            "runtimeParameterDefinitions:\n  - fieldName: ''\n    type: string\n",
            "Failed to load runtime parameter: {'fieldName': DataError('blank value is not "
            "allowed')}",
        ),
        (
            "runtimeParameterDefinitions:\n  - fieldName: 5\n    type: string\n",
            "Failed to load runtime parameter: {'fieldName': DataError('value is not a string')}",
        ),
        (
            "runtimeParameterDefinitions:\n  - fieldName: S\n    type: string\n"
            "    allowEmpty: maybe\n",
            "Failed to load runtime parameter: {'allowEmpty': DataError('value should be True or "
            "False')}",
        ),
        (
            "runtimeParameterDefinitions:\n  - fieldName: N\n    type: numeric\n"
            "    minValue: low\n",
            "Failed to load runtime parameter: {'minValue': DataError('{0: DataError(\"value "
            "can\\'t be converted to float\"), 1: DataError(\\'value should be None\\')}')}",
        ),
        (
            "runtimeParameterDefinitions:\n  - fieldName: N\n    type: numeric\n"
            "    maxValue: [1]\n",
            "Failed to load runtime parameter: {'maxValue': DataError(\"{0: DataError('value is "
            "not float'), 1: DataError('value should be None')}\")}",
        ),
        (
            "runtimeParameterDefinitions:\n  - fieldName: S\n    type: string\n"
            "  - fieldName: S\n    type: numeric\n",
            "Failed to load runtime parameter [S], duplicated definition",
        ),
        # Tandem's: DRUM fails with AttributeError: 'list' object has no attribute 'get'.
        (
            "- a\n",
            "Invalid model-metadata YAML content! expected a mapping at the top level of "
            "<tmp>/code/model-metadata.yaml, got a list",
        ),
        # DRUM's message (it iterates the mapping's keys), then Tandem's explanation.
        (
            "runtimeParameterDefinitions: {S: string}\n",
            "Failed to load runtime parameter: value is not a dict ('runtimeParameterDefinitions' "
            "must be a list of definitions, got a mapping)",
        ),
    ],
)
def test_definition_errors(tmp_path: Path, metadata: str | None, message: str) -> None:
    assert failure(tmp_path, metadata, "S: a\n") == message


def test_definitions_are_checked_before_the_values_file(tmp_path: Path) -> None:
    assert failure(tmp_path, None, "S: [oops\n") == (
        "model-metadata.yaml must exist to use runtime parameters"
    )


def test_string_bound_is_a_message_not_a_type_error(tmp_path: Path) -> None:
    metadata = (
        "runtimeParameterDefinitions:\n  - fieldName: N\n    type: numeric\n    minValue: '2'\n"
    )
    # Tandem's: DRUM fails with TypeError: '<' not supported between 'float' and 'str'.
    assert failure(tmp_path, metadata, "N: 1\n") == (
        "Failed to load runtime parameter 'N'. its minValue/maxValue in model-metadata.yaml must "
        "be a number, not a string (DRUM fails with a TypeError here)"
    )
    # ...and, as in DRUM, only when a value is compared with it.
    assert load(tmp_path, metadata, "OTHER: 1\n") == {"N": {"payload": None, "type": "numeric"}}


def test_value_json_cannot_hold(tmp_path: Path) -> None:
    # Tandem's: DRUM fails with TypeError from json.dumps. The message names the type only.
    assert failure(tmp_path, DEFINITIONS, "C:\n  credentialType: s3\n  d: 2024-01-01\n") == (
        "Failed to load runtime parameter 'C'. its value cannot be written as JSON: Object of "
        "type date is not JSON serializable"
    )


def test_read_definitions_keeps_drums_fields(tmp_path: Path) -> None:
    code_dir, _ = write(tmp_path, DEFINITIONS, None)
    definitions = read_definitions(code_dir)
    assert list(definitions) == ["S", "N", "B", "C", "D"]
    assert definitions["N"] == ParameterDefinition(
        name="N", type="numeric", default=3, allow_empty=True, min_value=1, max_value=10
    )
    assert definitions["C"].credential_type == "s3"


# -- the same answers as DRUM's (recorded) -------------------------------------------------------


def test_exports_what_drum_exported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The recorded model and file give DRUM's variables, and Tandem's get() DRUM's values."""
    recorded = load_recording()["answer"]
    code_dir, values_file = build_model(tmp_path)
    env = load_runtime_params_file(values_file, code_dir)
    assert {k.removeprefix("MLOPS_RUNTIME_PARAM_"): v for k, v in env.items()} == recorded["env"]
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for name in NAMES:
        want = recorded["get"][name]
        assert RuntimeParameters.has(name) is want["has"], name
        if want["has"]:
            got = RuntimeParameters.get(name)
            assert (type(got).__name__, got) == (want["type"], want["value"]), name
        else:
            with pytest.raises(ValueError) as err:
                RuntimeParameters.get(name)
            assert f"ValueError: {err.value}" == want["error"]


# -- the command line ----------------------------------------------------------------------------


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """main() exports into os.environ and configures logging: both are undone afterwards."""
    monkeypatch.delenv("RUNTIME_PARAMS_FILE", raising=False)
    for name in ("DRUM_SERVER_TYPE", "SHOW_STACKTRACE"):
        monkeypatch.delenv(name, raising=False)
    before = set(os.environ)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    yield
    for key in set(os.environ) - before:
        del os.environ[key]
    root.handlers[:], _ = saved
    root.setLevel(saved[1])


def test_flag_and_env_twin() -> None:
    assert ENV_VALUES["runtime_params_file"] == "RUNTIME_PARAMS_FILE"
    args = build_parser().parse_args(["score", "--input", "x", "--code-dir", "d"])
    options = merge_env(args, {"RUNTIME_PARAMS_FILE": "/from/env.yaml"})
    assert options["runtime_params_file"] == "/from/env.yaml"


def test_flag_wins_over_env(tmp_path: Path) -> None:
    values_file = tmp_path / "v.yaml"
    values_file.write_text("S: a\n")
    args = build_parser().parse_args(["server", "--runtime-params-file", str(values_file)])
    options = merge_env(args, {"RUNTIME_PARAMS_FILE": "/from/env.yaml"})
    assert options["runtime_params_file"] == str(values_file.resolve())


@pytest.mark.parametrize("command", [["server"], ["score", "--input", "x"]])
def test_missing_file_is_drums_argparse_error(
    tmp_path: Path, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*command, "--runtime-params-file", str(missing)])
    assert exit_info.value.code == 2
    assert (
        f"error: argument --runtime-params-file: The file {missing} does not exist!"
        in capsys.readouterr().err
    )


def test_bad_file_stops_start_up_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cli_env: None
) -> None:
    code_dir, values_file = build_model(tmp_path, values="STR: [unclosed\n")
    rc = main(["server", "--code-dir", str(code_dir), "--runtime-params-file", str(values_file)])
    out, err = capsys.readouterr()
    assert rc == 1
    assert out == ""
    expected = load_recording()["bad_yaml"]["message"].format(values_file=values_file.resolve())
    assert err == f"tandem: error: {expected}\n"


def test_env_twin_with_missing_file(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    cli_env: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code_dir, _ = build_model(tmp_path)
    monkeypatch.setenv("RUNTIME_PARAMS_FILE", str(tmp_path / "missing.yaml"))
    assert main(["server", "--code-dir", str(code_dir)]) == 1
    assert capsys.readouterr().err == (
        "tandem: error: Runtime parameter values file does not exist! filepath: "
        f"{tmp_path / 'missing.yaml'}\n"
    )


def test_file_values_reach_server_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cli_env: None
) -> None:
    """Loaded before anything reads runtime parameters: the file can choose the stack."""
    code_dir, values_file = write(
        tmp_path,
        "targetType: unstructured\nruntimeParameterDefinitions:\n"
        "  - fieldName: DRUM_SERVER_TYPE\n    type: string\n",
        "DRUM_SERVER_TYPE: flask\n",
    )
    rc = main(
        ["server", "--code-dir", str(code_dir), "--runtime-params-file", str(values_file)]
        + ["--explain-server-type"]
    )
    assert rc == 0
    assert capsys.readouterr().out.startswith("server type: flask")


def test_score_sees_the_parameters(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    cli_env: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code_dir, values_file = build_model(tmp_path)
    data = tmp_path / "input.txt"
    data.write_text("x")
    monkeypatch.setenv("RUNTIME_PARAMS_FILE", str(values_file))
    rc = main(["score", "--code-dir", str(code_dir), "--input", str(data)])
    assert rc == 0
    assert json.loads(capsys.readouterr().out) == load_recording()["answer"]
