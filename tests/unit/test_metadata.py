"""model-metadata.yaml read as DRUM reads it: strictyaml typing, no implicit conversions."""

from __future__ import annotations

from pathlib import Path

import pytest

from tandem.errors import ConfigError
from tandem.metadata import METADATA_FILE, read_metadata


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    return tmp_path


def write(code_dir: Path, text: str) -> Path:
    path = code_dir / METADATA_FILE
    path.write_text(text, encoding="utf-8")
    return path


def test_file_name() -> None:
    assert METADATA_FILE == "model-metadata.yaml"


def test_no_file_is_none(code_dir: Path) -> None:
    assert read_metadata(code_dir) is None


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_empty_document_is_none(code_dir: Path, text: str) -> None:
    write(code_dir, text)
    assert read_metadata(code_dir) is None


def test_a_directory_named_like_the_file_is_ignored(code_dir: Path) -> None:
    (code_dir / METADATA_FILE).mkdir()
    assert read_metadata(code_dir) is None


def test_scalars_stay_strings(code_dir: Path) -> None:
    write(
        code_dir,
        "name: 5\n"
        "type: inference\n"
        "targetType: binary\n"
        "version: 1.0\n"
        "flag: yes\n"
        "nothing: null\n"
        "tilde: ~\n"
        "date: 2024-01-02\n"
        "octal: 0o17\n"
        "inferenceModel:\n"
        "  positiveClassLabel: yes\n"
        "  negativeClassLabel: no\n"
        "  targetName: 1e3\n"
        "customPredictor:\n"
        "  nested:\n"
        "    - 1\n"
        "    - true\n",
    )
    assert read_metadata(code_dir) == {
        "name": "5",
        "type": "inference",
        "targetType": "binary",
        "version": "1.0",
        "flag": "yes",
        "nothing": "null",
        "tilde": "~",
        "date": "2024-01-02",
        "octal": "0o17",
        "inferenceModel": {
            "positiveClassLabel": "yes",
            "negativeClassLabel": "no",
            "targetName": "1e3",
        },
        "customPredictor": {"nested": ["1", "true"]},
    }


def test_class_labels_stay_strings(code_dir: Path) -> None:
    write(code_dir, "inferenceModel:\n  classLabels: [0, 1, 2.5, yes]\n")
    assert read_metadata(code_dir) == {"inferenceModel": {"classLabels": ["0", "1", "2.5", "yes"]}}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("True", True),
        ("TRUE", True),
        ("yes", True),
        ("on", True),
        ("1", True),
        ("y", True),
        ("Y", True),
        ("false", False),
        ("False", False),
        ("no", False),
        ("off", False),
        ("0", False),
        ("n", False),
        ('"true"', True),
    ],
)
def test_major_version_is_a_bool(code_dir: Path, text: str, expected: bool) -> None:
    write(code_dir, f"name: m\nmajorVersion: {text}\n")
    doc = read_metadata(code_dir)
    assert doc is not None
    assert doc["majorVersion"] is expected
    assert doc["name"] == "m"


@pytest.mark.parametrize(
    ("text", "shown"),
    [("maybe", "'maybe'"), ("2", "'2'"), ('""', "''"), ("[1]", "['1']"), ("{a: b}", "{'a': 'b'}")],
)
def test_major_version_invalid(code_dir: Path, text: str, shown: str) -> None:
    write(code_dir, f"majorVersion: {text}\n")
    with pytest.raises(ConfigError) as err:
        read_metadata(code_dir)
    assert str(err.value) == f"model-metadata.yaml: majorVersion must be a boolean, got {shown}"


@pytest.mark.parametrize(
    ("text", "expected"), [("1", 1), ("0", 0), ("-3", -3), ("+7", 7), ("1_000", 1000)]
)
def test_prediction_threshold_is_an_int(code_dir: Path, text: str, expected: int) -> None:
    write(code_dir, f"inferenceModel:\n  predictionThreshold: {text}\n  targetName: t\n")
    doc = read_metadata(code_dir)
    assert doc == {"inferenceModel": {"predictionThreshold": expected, "targetName": "t"}}
    assert type(doc["inferenceModel"]["predictionThreshold"]) is int


@pytest.mark.parametrize(
    ("text", "shown"),
    [("0.5", "'0.5'"), ("high", "'high'"), ('""', "''"), ("[1]", "['1']")],
)
def test_prediction_threshold_invalid(code_dir: Path, text: str, shown: str) -> None:
    # strictyaml's Int: DRUM refuses 0.5 and exits.
    path = write(code_dir, f"inferenceModel:\n  predictionThreshold: {text}\n")
    with pytest.raises(ConfigError) as err:
        read_metadata(code_dir)
    assert str(err.value) == (
        f"{path}: inferenceModel.predictionThreshold must be an integer, got {shown}"
    )


def test_prediction_threshold_outside_inference_model_stays_a_string(code_dir: Path) -> None:
    write(code_dir, "predictionThreshold: 0.5\ninferenceModel: none\n")
    assert read_metadata(code_dir) == {"predictionThreshold": "0.5", "inferenceModel": "none"}


def test_invalid_yaml(code_dir: Path) -> None:
    path = write(code_dir, "name: [unclosed\n")
    with pytest.raises(ConfigError) as err:
        read_metadata(code_dir)
    assert str(err.value).startswith(f"{path}: invalid YAML: ")


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n"])
def test_top_level_must_be_a_mapping(code_dir: Path, text: str) -> None:
    path = write(code_dir, text)
    with pytest.raises(ConfigError) as err:
        read_metadata(code_dir)
    assert str(err.value) == f"{path}: expected a mapping at the top level"


def test_non_utf8_file_is_a_config_error(code_dir: Path) -> None:
    path = code_dir / METADATA_FILE
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ConfigError) as err:
        read_metadata(code_dir)
    assert str(err.value).startswith(f"{path}: not UTF-8 text: ")


def test_unicode_values(code_dir: Path) -> None:
    write(code_dir, "name: modèle ü\ndescription: 日本語\n")
    assert read_metadata(code_dir) == {"name": "modèle ü", "description": "日本語"}
