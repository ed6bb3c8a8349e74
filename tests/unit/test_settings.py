"""build_settings: target type, class labels, workers, TARGET_NAME, URL_PREFIX, address."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tandem.errors import ConfigError, RuntimeParameterError
from tandem.settings import (
    DEFAULT_MAX_BODY_SIZE,
    TARGET_TYPES,
    ServeSettings,
    build_settings,
    normalise_url_prefix,
    parse_address,
)

BINARY_MISSING = (
    "Positive/negative class labels are missing. They must be provided with either one: "
    "--positive-class-label/--negative-class-label arguments, environment variables, model "
    "config file."
)
BINARY_MISMATCH = (
    "Positive/negative class labels provided with command arguments or environment variable "
    "don't match values from model config file. Use either one of them or make them match."
)
LABELS_MISSING = (
    "Class labels are missing. They must be provided with either one: "
    "--class-labels/--class-labels-file arguments, environment variables, model config file."
)
LABELS_MISMATCH = (
    "Class labels provided with command arguments or environment variable don't match values "
    "from model config file. Use either one of them or make them match."
)


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    path = tmp_path / "model"
    path.mkdir()
    return path


def metadata(code_dir: Path, text: str) -> None:
    (code_dir / "model-metadata.yaml").write_text(text, encoding="utf-8")


def build(code_dir: Path, env: dict[str, str] | None = None, **cli: Any) -> ServeSettings:
    options: dict[str, Any] = {"code_dir": str(code_dir)}
    options.update(cli)
    return build_settings(options, env or {})


def error(code_dir: Path, env: dict[str, str] | None = None, **cli: Any) -> str:
    with pytest.raises(ConfigError) as err:
        build(code_dir, env, **cli)
    return str(err.value)


# -- code dir ----------------------------------------------------------------------------------


def test_code_dir_required() -> None:
    with pytest.raises(ConfigError) as err:
        build_settings({"target_type": "regression"}, {})
    assert str(err.value) == "--code-dir (or CODE_DIR) is required"


def test_code_dir_must_be_a_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    assert (
        error(missing, target_type="regression")
        == f"--code-dir {str(missing)!r} is not a directory"
    )
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert (
        error(a_file, target_type="regression") == f"--code-dir {str(a_file)!r} is not a directory"
    )


def test_code_dir_is_absolute_and_symlink_resolved(
    code_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    link = tmp_path / "link"
    link.symlink_to(code_dir)
    monkeypatch.chdir(tmp_path)
    settings = build(Path("link"), target_type="regression")
    assert settings.code_dir == code_dir.resolve()
    assert settings.code_dir.is_absolute()


# -- target type -------------------------------------------------------------------------------


def test_target_type_from_cli(code_dir: Path) -> None:
    assert build(code_dir, target_type="anomaly").target_type == "anomaly"


def test_target_type_is_case_insensitive(code_dir: Path) -> None:
    assert build(code_dir, target_type="REGRESSION").target_type == "regression"


def test_target_type_from_metadata(code_dir: Path) -> None:
    metadata(code_dir, "name: m\ntype: inference\ntargetType: unstructured\n")
    settings = build(code_dir)
    assert settings.target_type == "unstructured"
    assert settings.metadata == {"name": "m", "type": "inference", "targetType": "unstructured"}


def test_target_type_cli_matching_metadata(code_dir: Path) -> None:
    metadata(code_dir, "targetType: regression\n")
    assert build(code_dir, target_type="Regression").target_type == "regression"


def test_target_type_mismatch(code_dir: Path) -> None:
    metadata(code_dir, "targetType: binary\n")
    assert error(code_dir, target_type="regression") == (
        "Target type provided in --target-type argument doesn't match target type from model "
        "config file. Use either one of them or make them match. (Tandem: --target-type "
        "regression, targetType binary in model-metadata.yaml.)"
    )


def test_target_type_missing(code_dir: Path) -> None:
    assert error(code_dir) == (
        "Target type is missing. It must be provided in --target-type argument, TARGET_TYPE env "
        "var or model config file. (Tandem: or set targetType in model-metadata.yaml.)"
    )


def test_target_type_invalid(code_dir: Path) -> None:
    assert error(code_dir, target_type="classification") == (
        "--target-type has invalid value 'classification'; valid values are: "
        + ", ".join(TARGET_TYPES)
    )


def test_every_drum_target_type_is_accepted() -> None:
    assert set(TARGET_TYPES) == {
        "binary",
        "regression",
        "anomaly",
        "unstructured",
        "multiclass",
        "transform",
        "textgeneration",
        "geopoint",
        "vectordatabase",
        "agenticworkflow",
        "multilabel",
    }


# -- binary labels -----------------------------------------------------------------------------


def test_binary_labels_from_cli(code_dir: Path) -> None:
    settings = build(
        code_dir, target_type="binary", positive_class_label="yes", negative_class_label="no"
    )
    assert (settings.positive_class_label, settings.negative_class_label) == ("yes", "no")
    assert settings.class_labels is None
    assert settings.class_ordering == ["no", "yes"]


def test_binary_labels_are_strings(code_dir: Path) -> None:
    settings = build(code_dir, target_type="binary", positive_class_label=1, negative_class_label=0)
    assert settings.class_ordering == ["0", "1"]


def test_binary_labels_from_metadata_stay_strings(code_dir: Path) -> None:
    metadata(
        code_dir,
        "targetType: binary\ninferenceModel:\n  positiveClassLabel: 1\n  negativeClassLabel: 0\n",
    )
    settings = build(code_dir)
    assert (settings.positive_class_label, settings.negative_class_label) == ("1", "0")


def test_binary_labels_missing(code_dir: Path) -> None:
    assert error(code_dir, target_type="binary") == BINARY_MISSING


def test_binary_labels_half_in_metadata_are_missing(code_dir: Path) -> None:
    metadata(code_dir, "targetType: binary\ninferenceModel:\n  positiveClassLabel: yes\n")
    assert error(code_dir) == BINARY_MISSING


def test_binary_labels_must_come_together(code_dir: Path) -> None:
    msg = "--positive-class-label and --negative-class-label must be given together"
    assert error(code_dir, target_type="binary", positive_class_label="yes") == msg
    assert error(code_dir, target_type="binary", negative_class_label="no") == msg


def test_binary_cli_labels_must_match_metadata(code_dir: Path) -> None:
    metadata(
        code_dir,
        "targetType: binary\ninferenceModel:\n  positiveClassLabel: yes\n"
        "  negativeClassLabel: no\n",
    )
    assert error(code_dir, positive_class_label="no", negative_class_label="yes") == BINARY_MISMATCH
    assert error(code_dir, positive_class_label="Yes", negative_class_label="no") == BINARY_MISMATCH
    settings = build(code_dir, positive_class_label="yes", negative_class_label="no")
    assert settings.class_ordering == ["no", "yes"]


def test_binary_cli_labels_win_when_metadata_has_none(code_dir: Path) -> None:
    metadata(code_dir, "targetType: binary\ninferenceModel:\n  targetName: y\n")
    settings = build(code_dir, positive_class_label="a", negative_class_label="b")
    assert settings.class_ordering == ["b", "a"]


# -- multiclass / multilabel labels ------------------------------------------------------------


@pytest.mark.parametrize("target", ["multiclass", "multilabel"])
def test_class_labels_from_cli(code_dir: Path, target: str) -> None:
    settings = build(code_dir, target_type=target, class_labels=["c", "a", "b"])
    assert settings.class_labels == ("c", "a", "b")
    assert settings.class_ordering == ["c", "a", "b"]
    assert settings.positive_class_label is None


def test_class_labels_are_strings(code_dir: Path) -> None:
    settings = build(code_dir, target_type="multiclass", class_labels=[2, 1, 0])
    assert settings.class_labels == ("2", "1", "0")


def test_class_labels_file(code_dir: Path, tmp_path: Path) -> None:
    labels_file = tmp_path / "labels.txt"
    labels_file.write_text("setosa\n\n versicolor \r\nvirginica\n\n", encoding="utf-8")
    settings = build(code_dir, target_type="multiclass", class_labels_file=str(labels_file))
    assert settings.class_labels == ("setosa", "versicolor", "virginica")


def test_class_labels_file_unreadable(code_dir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt"
    msg = error(code_dir, target_type="multiclass", class_labels_file=str(missing))
    assert msg.startswith(f"cannot read class labels file {str(missing)!r}: ")
    assert "No such file or directory" in msg


def test_class_labels_and_file_are_exclusive(code_dir: Path, tmp_path: Path) -> None:
    labels_file = tmp_path / "labels.txt"
    labels_file.write_text("a\nb\n")
    assert error(
        code_dir,
        target_type="multiclass",
        class_labels=["a", "b"],
        class_labels_file=str(labels_file),
    ) == ("--class-labels and --class-labels-file are mutually exclusive")


def test_class_labels_from_metadata(code_dir: Path) -> None:
    metadata(
        code_dir,
        "targetType: multiclass\ninferenceModel:\n  classLabels:\n    - 1\n    - 2\n    - 3\n",
    )
    assert build(code_dir).class_labels == ("1", "2", "3")


def test_class_labels_file_from_metadata_is_relative_to_cwd(
    code_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cls.txt").write_text("x\ny\nz\n")
    metadata(code_dir, "targetType: multilabel\ninferenceModel:\n  classLabelsFile: cls.txt\n")
    monkeypatch.chdir(tmp_path)
    assert build(code_dir).class_labels == ("x", "y", "z")


@pytest.mark.parametrize("target", ["multiclass", "multilabel"])
def test_class_labels_missing(code_dir: Path, target: str) -> None:
    assert error(code_dir, target_type=target) == LABELS_MISSING


def test_class_labels_need_two(code_dir: Path) -> None:
    assert error(code_dir, target_type="multiclass", class_labels=["only"]) == (
        "multiclass models need at least 2 class labels, got ('only',)"
    )


def test_class_labels_cli_must_match_metadata_as_a_set(code_dir: Path) -> None:
    metadata(
        code_dir,
        "targetType: multiclass\ninferenceModel:\n  classLabels: [a, b, c]\n",
    )
    assert error(code_dir, class_labels=["a", "b"]) == LABELS_MISMATCH
    assert error(code_dir, class_labels=["a", "b", "d"]) == LABELS_MISMATCH
    # Same set in another order: allowed, and the command line's order is the model's order.
    assert build(code_dir, class_labels=["c", "a", "b"]).class_labels == ("c", "a", "b")


def test_class_labels_cli_must_match_the_metadata_labels_file(
    code_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 10: classLabelsFile is checked like classLabels, at start-up."""
    (tmp_path / "cls.txt").write_text("a\nb\nc\n")
    metadata(code_dir, "targetType: multiclass\ninferenceModel:\n  classLabelsFile: cls.txt\n")
    monkeypatch.chdir(tmp_path)
    assert error(code_dir, class_labels=["a", "b", "d"]) == LABELS_MISMATCH
    assert build(code_dir, class_labels=["b", "a", "c"]).class_labels == ("b", "a", "c")


def test_labels_ignored_for_other_targets(code_dir: Path) -> None:
    settings = build(
        code_dir,
        target_type="regression",
        positive_class_label="yes",
        negative_class_label="no",
    )
    assert settings.positive_class_label is None
    assert settings.negative_class_label is None
    assert settings.class_labels is None
    assert settings.class_ordering is None


# -- workers -----------------------------------------------------------------------------------


def test_workers_default_to_one(code_dir: Path) -> None:
    assert build(code_dir, target_type="regression").workers == 1


def test_workers_from_max_workers(code_dir: Path) -> None:
    assert build(code_dir, target_type="regression", max_workers=3).workers == 3


@pytest.mark.parametrize(
    "env",
    [
        {"MLOPS_RUNTIME_PARAM_CUSTOM_MODEL_WORKERS": '{"type": "numeric", "payload": 5}'},
        {"MLOPS_RUNTIME_PARAM_CUSTOM_MODEL_WORKERS": "5"},
        {"CUSTOM_MODEL_WORKERS": "5"},
        {"MLOPS_RUNTIME_PARAM_CUSTOM_MODEL_WORKERS": "5", "CUSTOM_MODEL_WORKERS": "9"},
    ],
)
def test_custom_model_workers_wins_over_max_workers(code_dir: Path, env: dict[str, str]) -> None:
    assert build(code_dir, env, target_type="regression", max_workers=3).workers == 5


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "CUSTOM_MODEL_WORKERS has value '0'; expected a number in 1..199"),
        ("200", "CUSTOM_MODEL_WORKERS has value '200'; expected a number in 1..199"),
        ("2.5", "CUSTOM_MODEL_WORKERS has value '2.5'; expected a whole number"),
        ("many", "CUSTOM_MODEL_WORKERS has value 'many'; expected a number"),
    ],
)
def test_custom_model_workers_invalid(code_dir: Path, value: str, message: str) -> None:
    with pytest.raises(RuntimeParameterError) as err:
        build(code_dir, {"CUSTOM_MODEL_WORKERS": value}, target_type="regression")
    assert str(err.value) == message


@pytest.mark.parametrize("value", [0, -2])
def test_max_workers_must_be_positive(code_dir: Path, value: int) -> None:
    assert error(code_dir, target_type="regression", max_workers=value) == (
        "--max-workers must be > 0"
    )


def test_production_requires_max_workers(code_dir: Path) -> None:
    assert error(code_dir, target_type="regression", production=True) == (
        "--production requires --max-workers > 0"
    )
    assert build(code_dir, target_type="regression", production=True, max_workers=2).workers == 2


def test_production_with_custom_model_workers_still_requires_max_workers(code_dir: Path) -> None:
    env = {"CUSTOM_MODEL_WORKERS": "4"}
    assert error(code_dir, env, target_type="regression", production=True) == (
        "--production requires --max-workers > 0"
    )


# -- TARGET_NAME -------------------------------------------------------------------------------

TARGET_NAME_MISSING = (
    "Unexpected empty target name for text generation, vector database, or agentic workflow "
    "target. Set TARGET_NAME or --target-name."
)


@pytest.mark.parametrize("target", ["textgeneration", "vectordatabase", "agenticworkflow"])
def test_target_name_required(code_dir: Path, target: str) -> None:
    assert error(code_dir, target_type=target) == TARGET_NAME_MISSING
    assert error(code_dir, {"TARGET_NAME": ""}, target_type=target) == TARGET_NAME_MISSING


@pytest.mark.parametrize("target", ["textgeneration", "vectordatabase", "agenticworkflow"])
def test_target_name_from_env_or_cli(code_dir: Path, target: str) -> None:
    assert build(code_dir, {"TARGET_NAME": "answer"}, target_type=target).target_name == "answer"
    assert build(code_dir, target_type=target, target_name="resp").target_name == "resp"


def test_target_name_flag_wins_over_env(code_dir: Path) -> None:
    settings = build(
        code_dir, {"TARGET_NAME": "from_env"}, target_type="textgeneration", target_name="flag"
    )
    assert settings.target_name == "flag"


@pytest.mark.parametrize("target", ["regression", "anomaly", "geopoint", "unstructured"])
def test_target_name_unused_for_other_targets(code_dir: Path, target: str) -> None:
    # DataRobot sets TARGET_NAME on every deployment; a regression model's prediction column is
    # still "Predictions" (drum_contract.md §2.7).
    settings = build(code_dir, {"TARGET_NAME": "price"}, target_type=target)
    assert settings.target_name is None


# -- URL_PREFIX --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, ""),
        ("", ""),
        ("/", ""),
        ("//", ""),
        ("  ", ""),
        ("pfx", "/pfx"),
        ("/pfx", "/pfx"),
        ("/pfx/", "/pfx"),
        ("pfx/", "/pfx"),
        (" /a/b/ ", "/a/b"),
        ("//x//", "/x"),
    ],
)
def test_normalise_url_prefix(raw: str | None, expected: str) -> None:
    assert normalise_url_prefix(raw) == expected


def test_url_prefix_from_environment(code_dir: Path) -> None:
    assert build(code_dir, {"URL_PREFIX": "/model/v1/"}, target_type="regression").url_prefix == (
        "/model/v1"
    )
    assert build(code_dir, target_type="regression").url_prefix == ""


# -- address -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("0.0.0.0:8080", ("0.0.0.0", 8080)),
        ("127.0.0.1:6789", ("127.0.0.1", 6789)),
        ("localhost", ("localhost", 8080)),
        ("example.com:80", ("example.com", 80)),
        (":9000", ("127.0.0.1", 9000)),
        ("[::1]:5000", ("::1", 5000)),
        ("[::]:0", ("::", 0)),
        ("h:65535", ("h", 65535)),
    ],
)
def test_parse_address(address: str, expected: tuple[str, int]) -> None:
    assert parse_address(address) == expected


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("host:abc", "--address has invalid port in 'host:abc'"),
        ("host:", "--address has invalid port in 'host:'"),
        ("host:80.5", "--address has invalid port in 'host:80.5'"),
        ("host:65536", "--address port must be 0..65535, got 65536"),
        ("host:-1", "--address port must be 0..65535, got -1"),
        ("host:99999999999", "--address port must be 0..65535, got 99999999999"),
    ],
)
def test_parse_address_errors(address: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_address(address)
    assert str(err.value) == message


def test_address_default_and_cli(code_dir: Path) -> None:
    settings = build(code_dir, target_type="regression")
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    settings = build(code_dir, target_type="regression", address="0.0.0.0:9999")
    assert (settings.host, settings.port) == ("0.0.0.0", 9999)


# -- everything else ---------------------------------------------------------------------------


def test_defaults(code_dir: Path) -> None:
    settings = build(code_dir, target_type="regression")
    assert settings.with_error_server is False
    assert settings.logging_level == "warning"
    assert settings.show_perf is False
    assert settings.executor_workers == 1
    assert settings.max_body_size == DEFAULT_MAX_BODY_SIZE == 100 * 1024 * 1024
    assert settings.metadata is None
    assert settings.server.server_type == "fastapi"


def test_flags_pass_through(code_dir: Path) -> None:
    settings = build(
        code_dir,
        target_type="regression",
        with_error_server=True,
        logging_level="debug",
        show_perf=True,
    )
    assert (settings.with_error_server, settings.logging_level, settings.show_perf) == (
        True,
        "debug",
        True,
    )


def test_server_decision_uses_the_given_environment(code_dir: Path) -> None:
    settings = build(code_dir, {"DRUM_SERVER_TYPE": "werkzeug"}, target_type="regression")
    assert settings.server.server_type == "flask"
    assert settings.server.reason == "DRUM_SERVER_TYPE=werkzeug"


def test_server_decision_sees_the_code_dirs_extensions(code_dir: Path) -> None:
    (code_dir / "custom_flask.py").write_text("def init_app(app):\n    pass\n")
    assert build(code_dir, target_type="regression").server.server_type == "flask"


def test_bad_server_type_fails_build(code_dir: Path) -> None:
    assert error(code_dir, {"DRUM_SERVER_TYPE": "iis"}, target_type="regression") == (
        "DRUM_SERVER_TYPE has invalid value 'iis'; valid values are: "
        "fastapi, flask, gunicorn, uvicorn, werkzeug"
    )


def test_build_settings_reads_os_environ_by_default(
    code_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE", "gunicorn")
    monkeypatch.setenv("URL_PREFIX", "p")
    settings = build_settings({"code_dir": str(code_dir), "target_type": "regression"})
    assert settings.server.server_type == "gunicorn"
    assert settings.url_prefix == "/p"


def test_executor_workers(code_dir: Path) -> None:
    env = {"DRUM_FASTAPI_EXECUTOR_WORKERS": "4"}
    assert build(code_dir, env, target_type="regression").executor_workers == 4
    with pytest.raises(RuntimeParameterError) as err:
        build(code_dir, {"DRUM_FASTAPI_EXECUTOR_WORKERS": "0"}, target_type="regression")
    assert (
        str(err.value) == "DRUM_FASTAPI_EXECUTOR_WORKERS has value '0'; expected a number in 1..256"
    )


def test_max_body_size(code_dir: Path) -> None:
    env = {"DRUM_FASTAPI_MAX_UPLOAD_SIZE": "1024"}
    assert build(code_dir, env, target_type="regression").max_body_size == 1024
    env = {"DRUM_FASTAPI_MAX_UPLOAD_SIZE": "1024", "DRUM_MAX_BODY_SIZE": "2048"}
    assert build(code_dir, env, target_type="regression").max_body_size == 2048


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "DRUM_MAX_BODY_SIZE has value '0'; expected a number in 1..inf"),
        ("inf", "DRUM_MAX_BODY_SIZE has value 'inf'; expected a whole number"),
        ("1.5", "DRUM_MAX_BODY_SIZE has value '1.5'; expected a whole number"),
    ],
)
def test_max_body_size_invalid(code_dir: Path, value: str, message: str) -> None:
    with pytest.raises(RuntimeParameterError) as err:
        build(code_dir, {"DRUM_MAX_BODY_SIZE": value}, target_type="regression")
    assert str(err.value) == message
