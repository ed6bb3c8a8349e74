"""User credentials of a custom task, and scrubbing their values from output (DRUM's behaviour).

Secrets come from JSON: one file per secret in a mounted directory (``USER_SECRETS_MOUNT_PATH``),
or one environment variable per secret named ``<USER_SECRETS_PREFIX>_<KEY>``; a file wins over a
variable of the same key. Each JSON object's ``credential_type`` selects its class. Once loaded,
every secret value printed or logged is replaced by ``*****``.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, Self, TextIO

SCRUBBED = "*****"


def reduce_kwargs(input_dict: dict[str, Any], target_class: type) -> dict[str, Any]:
    """``input_dict`` without the keys that are not fields of the dataclass ``target_class``."""
    if not is_dataclass(target_class):
        return input_dict
    names = {f.name for f in fields(target_class)}
    return {k: v for k, v in input_dict.items() if k in names}


@dataclass
class ScrubReprMixin:
    """A ``repr`` that shows every string field as ``*****``."""

    def __repr__(self) -> str:
        args = ", ".join(f"{f.name}={self._scrubbed(f.name)!r}" for f in fields(self))
        return f"{type(self).__name__}({args})"

    def _scrubbed(self, name: str) -> Any:
        value = getattr(self, name)
        return SCRUBBED if isinstance(value, str) else value


@dataclass(repr=False)
class AbstractSecret(ScrubReprMixin):
    """Base of the secret classes."""

    def is_partial_secret(self) -> bool:
        """Whether part of the credential is admin-owned configuration the task does not get."""
        return any(getattr(self, key, None) for key in ("config_id", "oauth_config_id"))

    @classmethod
    def from_dict(cls, input_dict: dict[str, Any]) -> Self:
        """Build from a JSON object, ignoring keys that are not fields."""
        return cls(**reduce_kwargs(input_dict, cls))


@dataclass(repr=False)
class BasicSecret(AbstractSecret):
    """Username and password."""

    username: str
    password: str
    snowflake_account_name: str | None = None


@dataclass(repr=False)
class OauthSecret(AbstractSecret):
    """An OAuth token pair."""

    token: str
    refresh_token: str


@dataclass(repr=False)
class S3Secret(AbstractSecret):
    """AWS keys."""

    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None
    config_id: str | None = None


@dataclass(repr=False)
class AzureSecret(AbstractSecret):
    """An Azure connection string."""

    azure_connection_string: str


@dataclass(repr=False)
class AzureServicePrincipalSecret(AbstractSecret):
    """An Azure service principal."""

    client_id: str
    client_secret: str
    azure_tenant_id: str


@dataclass(repr=False)
class SnowflakeOauthUserAccountSecret(AbstractSecret):
    """Snowflake OAuth client credentials."""

    client_id: str | None
    client_secret: str | None
    snowflake_account_name: str | None
    oauth_issuer_type: str | None = None
    oauth_issuer_url: str | None = None
    oauth_scopes: str | None = None
    oauth_config_id: str | None = None


@dataclass(repr=False)
class SnowflakeKeyPairUserAccountSecret(AbstractSecret):
    """A Snowflake key pair."""

    username: str | None
    private_key_str: str | None
    passphrase: str | None = None
    config_id: str | None = None


@dataclass(repr=False)
class AdlsGen2OauthSecret(AbstractSecret):
    """ADLS Gen2 OAuth client credentials."""

    client_id: str
    client_secret: str
    oauth_scopes: str


@dataclass(repr=False)
class TableauAccessTokenSecret(AbstractSecret):
    """A Tableau personal access token."""

    token_name: str
    personal_access_token: str


@dataclass(repr=False)
class DatabricksAccessTokenAccountSecret(AbstractSecret):
    """A Databricks access token."""

    databricks_access_token: str


@dataclass(repr=False)
class ApiTokenSecret(AbstractSecret):
    """An API token."""

    api_token: str


@dataclass(repr=False)
class GCPKey(ScrubReprMixin):
    """A Google Cloud service-account key."""

    type: str
    project_id: str | None = None
    private_key_id: str | None = None
    private_key: str | None = None
    client_email: str | None = None
    client_id: str | None = None
    auth_uri: str | None = None
    token_uri: str | None = None
    auth_provider_x509_cert_url: str | None = None
    client_x509_cert_url: str | None = None

    @classmethod
    def from_dict(cls, input_dict: dict[str, Any]) -> GCPKey:
        """Build from a JSON object, ignoring keys that are not fields."""
        return cls(**reduce_kwargs(input_dict, cls))


@dataclass(repr=False)
class GCPSecret(AbstractSecret):
    """A Google Cloud key."""

    gcp_key: GCPKey | None = None
    config_id: str | None = None

    @classmethod
    def from_dict(cls, input_dict: dict[str, Any]) -> Self:
        """Build from a JSON object; a ``gcp_key`` object becomes a :class:`GCPKey`."""
        reduced = reduce_kwargs(input_dict, cls)
        if isinstance(reduced.get("gcp_key"), dict):
            reduced["gcp_key"] = GCPKey.from_dict(reduced["gcp_key"])
        return cls(**reduced)


class UnsupportedSecretError(Exception):
    """A secret's ``credential_type`` is not one of :class:`SecretType`."""


class SecretType(enum.Enum):
    """The ``credential_type`` values, case-insensitive."""

    BASIC = enum.auto()
    OAUTH = enum.auto()
    GCP = enum.auto()
    S3 = enum.auto()
    AZURE = enum.auto()
    AZURE_SERVICE_PRINCIPAL = enum.auto()
    SNOWFLAKE_OAUTH_USER_ACCOUNT = enum.auto()
    SNOWFLAKE_KEY_PAIR_USER_ACCOUNT = enum.auto()
    ADLS_GEN2_OAUTH = enum.auto()
    TABLEAU_ACCESS_TOKEN = enum.auto()
    DATABRICKS_ACCESS_TOKEN_ACCOUNT = enum.auto()
    API_TOKEN = enum.auto()

    @classmethod
    def from_string(cls, input_string: str) -> SecretType:
        """The member named ``input_string`` (any case)."""
        try:
            return cls[input_string.upper()]
        except KeyError:
            raise UnsupportedSecretError(f"Unsupported secret type: {input_string!r}") from None

    def get_secret_class(self) -> type[AbstractSecret]:
        """The class that holds secrets of this type."""
        return _SECRET_CLASSES[self.name]


_SECRET_CLASSES: dict[str, type[AbstractSecret]] = {
    "BASIC": BasicSecret,
    "OAUTH": OauthSecret,
    "GCP": GCPSecret,
    "S3": S3Secret,
    "AZURE": AzureSecret,
    "AZURE_SERVICE_PRINCIPAL": AzureServicePrincipalSecret,
    "SNOWFLAKE_OAUTH_USER_ACCOUNT": SnowflakeOauthUserAccountSecret,
    "SNOWFLAKE_KEY_PAIR_USER_ACCOUNT": SnowflakeKeyPairUserAccountSecret,
    "ADLS_GEN2_OAUTH": AdlsGen2OauthSecret,
    "TABLEAU_ACCESS_TOKEN": TableauAccessTokenSecret,
    "DATABRICKS_ACCESS_TOKEN_ACCOUNT": DatabricksAccessTokenAccountSecret,
    "API_TOKEN": ApiTokenSecret,
}


def secrets_factory(input_dict: dict[str, Any]) -> AbstractSecret:
    """The secret a JSON object describes; raises :class:`UnsupportedSecretError`."""
    secret_type = SecretType.from_string(input_dict["credential_type"])
    return secret_type.get_secret_class().from_dict(input_dict)


def load_secrets(mount_path: str | None, env_var_prefix: str | None) -> dict[str, AbstractSecret]:
    """Secrets from ``<env_var_prefix>_*`` variables, then files in ``mount_path`` (they win)."""
    found: dict[str, Any] = {}
    if env_var_prefix:
        prefix = f"{env_var_prefix}_"
        found.update(
            {
                k.replace(prefix, ""): json.loads(v)
                for k, v in os.environ.items()
                if k.startswith(prefix)
            }
        )
    if mount_path is not None:
        for path in Path(mount_path).glob("*"):
            if path.is_file():
                with path.open() as fp:
                    found[path.name] = json.load(fp)
    return {key: secrets_factory(value) for key, value in found.items()}


def _values(value: Any) -> set[str]:
    if not value:
        return set()
    if isinstance(value, dict):
        return set().union(*(_values(v) for v in value.values()))
    return {value}


def get_ordered_sensitive_values(secrets: Iterable[AbstractSecret]) -> list[str]:
    """Every secret value (nested ones too), longest first so substrings are scrubbed last."""
    values: set[str] = set().union(*(_values(asdict(s)) for s in secrets))
    return sorted(values, key=lambda v: (-len(v), v))


def scrub_values_from_string(sensitive_values: list[str], input_str: str) -> str:
    """``input_str`` with every sensitive value replaced by ``*****``."""
    for value in sensitive_values:
        input_str = input_str.replace(value, SCRUBBED)
    return input_str


class TextStreamSecretsScrubber:
    """A text stream that writes through to ``stream`` with secret values scrubbed."""

    def __init__(self, secrets: Iterable[AbstractSecret], stream: TextIO) -> None:
        self.stream = stream
        self.sensitive_data = get_ordered_sensitive_values(secrets)

    def write(self, text: str) -> int:
        """Write ``text`` scrubbed."""
        return self.stream.write(scrub_values_from_string(self.sensitive_data, text))

    def writelines(self, lines: Iterable[str]) -> None:
        """Write each line scrubbed."""
        self.stream.writelines(scrub_values_from_string(self.sensitive_data, t) for t in lines)

    def __getattr__(self, item: str) -> Any:
        return getattr(self.stream, item)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TextStreamSecretsScrubber) and (
            (self.stream, self.sensitive_data) == (other.stream, other.sensitive_data)
        )

    __hash__ = None  # type: ignore[assignment]


class SecretsScrubberFilter(logging.Filter):
    """A logging filter that scrubs secret values from a record's message and arguments."""

    def __init__(self, secrets: Iterable[AbstractSecret]) -> None:
        super().__init__()
        self.sensitive_data = get_ordered_sensitive_values(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        """Scrub ``record`` in place; never drops it."""
        record.msg = self.transform(record.msg)
        args: Any = record.args
        if isinstance(args, dict):
            record.args = {k: self.transform(v) for k, v in args.items()}
        elif isinstance(args, tuple):
            record.args = tuple(self.transform(a) for a in args)
        else:
            record.args = self.transform(args)
        return True

    def transform(self, element: Any) -> Any:
        """A string scrubbed; anything else unchanged."""
        if isinstance(element, str):
            return scrub_values_from_string(self.sensitive_data, element)
        return element

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, SecretsScrubberFilter) and self.sensitive_data == other.sensitive_data
        )

    __hash__ = None  # type: ignore[assignment]


def _loggers() -> list[Any]:
    manager = logging.root.manager
    return [logging.root, *manager.loggerDict.values()]


def patch_outputs_to_scrub_secrets(secrets: Iterable[AbstractSecret]) -> None:
    """Scrub secret values from ``sys.stdout``, ``sys.stderr`` and every logger from now on."""
    secrets = list(secrets)
    if not secrets:
        return
    sys.stdout = TextStreamSecretsScrubber(secrets, sys.stdout)  # type: ignore[assignment]
    sys.stderr = TextStreamSecretsScrubber(secrets, sys.stderr)  # type: ignore[assignment]
    scrubber = SecretsScrubberFilter(secrets)
    for logger in _loggers():
        if hasattr(logger, "addFilter"):
            logger.addFilter(scrubber)


def reset_outputs_to_allow_secrets() -> None:
    """Undo :func:`patch_outputs_to_scrub_secrets`."""
    if isinstance(sys.stdout, TextStreamSecretsScrubber):
        sys.stdout = sys.stdout.stream
    if isinstance(sys.stderr, TextStreamSecretsScrubber):
        sys.stderr = sys.stderr.stream
    for logger in _loggers():
        for found in list(getattr(logger, "filters", ())):
            if isinstance(found, SecretsScrubberFilter):
                logger.removeFilter(found)


__all__ = [
    "AbstractSecret",
    "AdlsGen2OauthSecret",
    "ApiTokenSecret",
    "AzureSecret",
    "AzureServicePrincipalSecret",
    "BasicSecret",
    "DatabricksAccessTokenAccountSecret",
    "GCPKey",
    "GCPSecret",
    "OauthSecret",
    "S3Secret",
    "SecretType",
    "SecretsScrubberFilter",
    "SnowflakeKeyPairUserAccountSecret",
    "SnowflakeOauthUserAccountSecret",
    "TableauAccessTokenSecret",
    "TextStreamSecretsScrubber",
    "UnsupportedSecretError",
    "get_ordered_sensitive_values",
    "load_secrets",
    "patch_outputs_to_scrub_secrets",
    "reset_outputs_to_allow_secrets",
    "scrub_values_from_string",
    "secrets_factory",
]
