"""DRUM's lazy loading: the file's checks, DRUM's variables, copying from file:// repositories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tandem import lazy_loading
from tandem.errors import ConfigError, ModelLoadError


def spec(tmp_path: Path, endpoint: str | None, local: Path) -> dict[str, object]:
    repo: dict[str, object] = {"repositoryId": "r1", "bucketName": "b", "credentialId": "c1"}
    if endpoint is not None:
        repo["endpointUrl"] = endpoint
    return {
        "files": [{"remotePath": "m/model.bin", "localPath": str(local), "repositoryId": "r1"}],
        "repositories": [repo],
        "credentials": [
            {"id": "c1", "credentialType": "s3", "awsAccessKeyId": "AK", "awsSecretAccessKey": "SK"}
        ],
    }


def export(tmp_path: Path, doc: object) -> dict[str, str]:
    path = tmp_path / "lazy.yaml"
    path.write_text(yaml.safe_dump(doc))
    env: dict[str, str] = {}
    lazy_loading.export_file(path, env)
    return env


def test_file_becomes_drums_variables(tmp_path: Path) -> None:
    env = export(tmp_path, spec(tmp_path, None, tmp_path / "out.bin"))
    assert set(env) == {"MLOPS_LAZY_LOADING_DATA", "MLOPS_REPOSITORY_SECRET_C1"}
    data = json.loads(env["MLOPS_LAZY_LOADING_DATA"])
    assert data["files"][0]["remotePath"] == "m/model.bin"
    assert "credentials" not in data
    assert json.loads(env["MLOPS_REPOSITORY_SECRET_C1"])["awsSecretAccessKey"] == "SK"


def test_bad_yaml_has_drums_message(tmp_path: Path) -> None:
    path = tmp_path / "lazy.yaml"
    path.write_text("files: [unclosed\n")
    with pytest.raises(ConfigError, match=r"^Invalid lazy loading YAML file content\. "):
        lazy_loading.export_file(path, {})


def test_invalid_content_names_the_field_not_the_secret(tmp_path: Path) -> None:
    doc = spec(tmp_path, None, tmp_path / "x")
    doc["files"] = []
    doc["credentials"][0]["awsSecretAccessKey"] = 12345  # type: ignore[index]
    with pytest.raises(ConfigError) as err:
        export(tmp_path, doc)
    assert str(err.value).startswith("Invalid lazy loading content. files: ")
    assert "12345" not in str(err.value)


def test_file_repository_is_copied_into_place(tmp_path: Path) -> None:
    (tmp_path / "store" / "b" / "m").mkdir(parents=True)
    (tmp_path / "store" / "b" / "m" / "model.bin").write_bytes(b"weights")
    local = tmp_path / "code" / "sub" / "model.bin"
    env = export(tmp_path, spec(tmp_path, (tmp_path / "store").as_uri(), local))
    assert lazy_loading.fetch(env) == 1
    assert local.read_bytes() == b"weights"
    assert [p.name for p in local.parent.iterdir()] == ["model.bin"]


def test_a_failed_copy_leaves_no_partial_file(tmp_path: Path) -> None:
    local = tmp_path / "code" / "model.bin"
    env = export(tmp_path, spec(tmp_path, (tmp_path / "missing").as_uri(), local))
    with pytest.raises(ModelLoadError, match="Lazy loading of m/model.bin from repository r1"):
        lazy_loading.fetch(env)
    assert list(local.parent.iterdir()) == []


def test_s3_repository_says_what_is_missing(tmp_path: Path) -> None:
    env = export(tmp_path, spec(tmp_path, "https://s3.example", tmp_path / "m.bin"))
    with pytest.raises(ConfigError) as err:
        lazy_loading.fetch(env)
    assert "repository r1 is S3 storage, which needs DataRobot's datarobot-storage client" in str(
        err.value
    )


def test_missing_credential_has_drums_message(tmp_path: Path) -> None:
    env = export(tmp_path, spec(tmp_path, None, tmp_path / "m.bin"))
    del env["MLOPS_REPOSITORY_SECRET_C1"]
    with pytest.raises(ConfigError) as err:
        lazy_loading.fetch(env)
    assert str(err.value) == "Missing credential for repository r1, credential_id: c1"


def test_nothing_to_do_without_the_variable() -> None:
    assert lazy_loading.fetch({}) == 0
