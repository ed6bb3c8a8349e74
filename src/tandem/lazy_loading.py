"""DRUM's lazy loading: artifacts fetched into place before the model loads.

DataRobot describes the files in ``MLOPS_LAZY_LOADING_DATA`` (JSON: ``files`` with ``remotePath``,
``localPath``, ``repositoryId``; ``repositories`` with ``repositoryId``, ``bucketName``,
``credentialId``, ``endpointUrl``) and each repository's credentials in
``MLOPS_REPOSITORY_SECRET_<CREDENTIAL_ID>``; ``--lazy-loading-file`` (``LAZY_LOADING_FILE``) is a
YAML file of the same plus ``credentials``, which DRUM turns into those variables. Tandem reads
both exactly as DRUM does.

Storage kinds: a repository whose ``endpointUrl`` is a ``file://`` URL is a local folder (the
bucket is a sub-folder), which Tandem copies from. DRUM's S3 repositories need DataRobot's
``datarobot-storage`` client, which Tandem does not ship: they stop start-up with a clear error.
Every file is written under a temporary name and renamed into place, so a failed or interrupted
copy never leaves a partial artifact for the model to load.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tandem.errors import ConfigError, ModelLoadError

logger = logging.getLogger(__name__)

DATA_ENV = "MLOPS_LAZY_LOADING_DATA"
SECRET_PREFIX = "MLOPS_REPOSITORY_SECRET"


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.capitalize() for part in rest)


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", alias_generator=_camel, populate_by_name=True)


class LazyFile(_Model):
    """One artifact: where it lives in its repository and where the model expects it."""

    remote_path: str = Field(min_length=1)
    local_path: str = Field(min_length=1)
    repository_id: str = Field(min_length=1)


class Repository(_Model):
    """A storage location; ``endpoint_url`` ``file://…`` is a local folder."""

    repository_id: str = Field(min_length=1)
    bucket_name: str = Field(min_length=1)
    credential_id: str = Field(min_length=1)
    endpoint_url: str | None = None
    verify_certificate: bool | None = None

    @property
    def local_root(self) -> Path | None:
        """The folder of a ``file://`` repository (bucket included), else None."""
        if not self.endpoint_url or urlsplit(self.endpoint_url).scheme != "file":
            return None
        return Path(unquote(urlsplit(self.endpoint_url).path)) / self.bucket_name


class LazyLoadingData(_Model):
    """What ``MLOPS_LAZY_LOADING_DATA`` holds."""

    files: list[LazyFile] = Field(min_length=1)
    repositories: list[Repository] = Field(min_length=1)


class Credential(_Model):
    """One ``credentials`` entry of the lazy-loading file (its secret fields stay opaque)."""

    model_config = ConfigDict(extra="allow", alias_generator=_camel, populate_by_name=True)
    id: str = Field(min_length=1)
    credential_type: str = Field(min_length=1)


class LazyLoadingFileContent(LazyLoadingData):
    """The ``--lazy-loading-file`` YAML: the data plus the repositories' credentials."""

    credentials: list[Credential]


def export_file(path: str | Path, environ: MutableMapping[str, str] | None = None) -> None:
    """Turn ``--lazy-loading-file`` into DRUM's environment variables (DRUM's messages)."""
    env = os.environ if environ is None else environ
    try:
        with open(path) as f:
            doc = yaml.safe_load(f)
    except yaml.YAMLError as exc:
        raise ConfigError(f"Invalid lazy loading YAML file content. {exc}") from None
    try:
        content = LazyLoadingFileContent.model_validate(doc if isinstance(doc, dict) else {})
    except ValidationError as exc:
        raise ConfigError(f"Invalid lazy loading content. {_errors(exc)}") from None
    env[DATA_ENV] = content.model_dump_json(by_alias=True, exclude={"credentials"})
    for credential in content.credentials:
        secret = credential.model_dump(by_alias=True, exclude={"id"})
        env[f"{SECRET_PREFIX}_{credential.id.upper()}"] = json.dumps(secret)


def _errors(exc: ValidationError) -> str:
    """Where and what, without echoing input values (they may be credentials)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in exc.errors()
    )


def fetch(environ: MutableMapping[str, str] | None = None) -> int:
    """Copy every lazily loaded file into place; returns how many. No-op without the variable."""
    env = os.environ if environ is None else environ
    raw = env.get(DATA_ENV)
    if raw is None:
        return 0
    try:
        data = LazyLoadingData.model_validate_json(raw)
    except ValidationError as exc:
        raise ConfigError(f"Invalid {DATA_ENV}. {_errors(exc)}") from None
    repositories = {r.repository_id: r for r in data.repositories}
    for repository in data.repositories:
        key = f"{SECRET_PREFIX}_{repository.credential_id.upper()}"
        if repository.local_root is None and key not in env:
            raise ConfigError(
                f"Missing credential for repository {repository.repository_id}, "
                f"credential_id: {repository.credential_id}"
            )
    logger.info("Start downloading lazy loading files")
    for item in data.files:
        if item.repository_id not in repositories:
            raise ConfigError(
                f"Lazy loading file {item.remote_path} names repository {item.repository_id}, "
                "which is not defined"
            )
        _fetch_one(item, repositories[item.repository_id], env)
    logger.info("Lazy loading files have been downloaded")
    return len(data.files)


def _fetch_one(item: LazyFile, repository: Repository, env: MutableMapping[str, str]) -> None:
    root = repository.local_root
    if root is None:
        kind = _credential_type(env, repository)
        raise ConfigError(
            f"Lazy loading repository {repository.repository_id} is {kind} storage, which needs "
            "DataRobot's datarobot-storage client; Tandem fetches only from file:// repositories. "
            "Run this model with DataRobot's drum, or mount the files and point endpointUrl at "
            "them (file:///path)."
        )
    source = root / item.remote_path
    target = Path(item.local_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, source.open("rb") as src:
            shutil.copyfileobj(src, out)
        os.replace(partial, target)
    except OSError as exc:
        Path(partial).unlink(missing_ok=True)
        raise ModelLoadError(
            f"Lazy loading of {item.remote_path} from repository {repository.repository_id} "
            f"into {item.local_path} failed: {exc.strerror or exc}"
        ) from None
    logger.info("Lazy loaded %s into %s", item.remote_path, item.local_path)


def _credential_type(env: MutableMapping[str, str], repository: Repository) -> str:
    raw = env.get(f"{SECRET_PREFIX}_{repository.credential_id.upper()}", "{}")
    try:
        doc: Any = json.loads(raw)
    except json.JSONDecodeError:
        return "remote"
    kind = doc.get("credentialType") if isinstance(doc, dict) else None
    return str(kind).upper() if kind else "remote"
