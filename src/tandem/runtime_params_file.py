"""``--runtime-params-file``: runtime-parameter values from a YAML file, as DRUM 1.18.1 loads them.

DRUM's ``RuntimeParametersLoader`` (``datarobot_drum/runtime_parameters``) reads the code dir's
``model-metadata.yaml`` and the values file with ``yaml.safe_load``, checks each entry of
``runtimeParameterDefinitions`` and then each value with trafaret, and exports one
``MLOPS_RUNTIME_PARAM_<NAME>`` environment variable per *definition*, holding
``json.dumps({"payload": value, "type": type})``. This module does the same without trafaret; its
messages are DRUM's, including the text of trafaret's errors, so a user sees what DRUM would say.

What DRUM does, and so does this module:

* Definitions are read first, so a problem in ``model-metadata.yaml`` is reported before any
  problem in the values file; the first failing definition, then the first failing value (in
  definition order) is the one reported.
* Every definition is exported: the file's value, else its ``defaultValue``, else ``null``. A key
  present in the file with ``null`` exports ``null`` even when the definition has a default. An
  exported variable replaces one already in the environment.
* Values are checked, then exported as written: a numeric ``"5"`` stays a string and ``5`` an int
  (``minValue``/``maxValue`` are compared after ``float()``, NaN passes both); strings and
  deployments must be non-empty strings; booleans real booleans; credentials mappings with a
  non-empty string ``credentialType``, exported with that key first.
* Keys of the file that no definition names are ignored; a credential's ``credentialType`` is not
  compared with its definition's; ``allowEmpty`` is read but not enforced. Tandem logs a warning
  for each of these (names and credential types only), then goes on as DRUM does.

Where DRUM stops with a traceback instead of a message (a top-level YAML list, an unreadable file,
a value JSON cannot hold, a string ``minValue``), one :class:`RuntimeParameterError` says what is
wrong. No message or log line quotes a parameter's value: credentials are secrets.
"""

from __future__ import annotations

import json
import logging
import numbers
import os
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import yaml

from tandem.errors import RuntimeParameterError
from tandem.runtime_params import PREFIX

logger = logging.getLogger("tandem.runtime_params_file")

METADATA_FILE = "model-metadata.yaml"
#: The ``model-metadata.yaml`` section that declares runtime parameters.
SECTION = "runtimeParameterDefinitions"
#: DRUM's ``RuntimeParameterTypes``.
TYPES = ("string", "boolean", "credential", "deployment", "numeric")

_MISSING: Any = object()


class _DataError:
    """Prints as trafaret's ``DataError`` does, so DRUM's messages come out character for character.

    ``str`` is the error (a message, or a mapping of keys to nested errors); ``repr`` is
    ``DataError('<str>')``.
    """

    __slots__ = ("error",)

    def __init__(self, error: str | dict[Any, _DataError]) -> None:
        self.error = error

    def __str__(self) -> str:
        return str(self.error)

    def __repr__(self) -> str:
        return f"DataError({str(self)!r})"


class _Invalid(Exception):
    """A check failed; ``error`` is what trafaret would have raised."""

    def __init__(self, error: _DataError) -> None:
        super().__init__(str(error))
        self.error = error


def _fail(error: str | dict[Any, _DataError]) -> NoReturn:
    raise _Invalid(_DataError(error))


Check = Callable[[Any], Any]


def _null(value: Any) -> Any:
    if value is not None:
        _fail("value should be None")
    return value


def _string(value: Any) -> Any:
    if not isinstance(value, str):
        _fail("value is not a string")
    if value == "":
        _fail("blank value is not allowed")
    return value


def _boolean(value: Any) -> Any:
    if not isinstance(value, bool):
        _fail("value should be True or False")
    return value


def _to_float(value: Any) -> float:
    """trafaret's ``Float`` conversion: numbers and strings (or bytes) that ``float()`` takes."""
    if isinstance(value, float):
        return value
    if not isinstance(value, (str, bytes, numbers.Real)):
        _fail("value is not float")
    try:
        return float(value)
    except (ValueError, OverflowError):
        # DRUM lets OverflowError (an integer past 1e308) escape as a traceback.
        _fail("value can't be converted to float")


def _float(value: Any) -> Any:
    _to_float(value)
    return value


class _BoundNotANumber(Exception):
    """``minValue``/``maxValue`` cannot be compared with a number (DRUM: ``TypeError``)."""


def _numeric(minimum: Any, maximum: Any) -> Check:
    def check(value: Any) -> Any:
        number = _to_float(value)
        try:
            if minimum is not None and number < minimum:
                _fail("value is less than %s" % (minimum,))  # noqa: UP031 - trafaret's format
            if maximum is not None and number > maximum:
                _fail("value is greater than %s" % (maximum,))  # noqa: UP031
        except TypeError:
            raise _BoundNotANumber from None
        return value

    return check


def _credential(value: Any) -> Any:
    if not isinstance(value, Mapping):
        _fail("value is not a dict")
    if "credentialType" not in value:
        _fail({"credentialType": _DataError("is required")})
    try:
        _string(value["credentialType"])
    except _Invalid as exc:
        _fail({"credentialType": exc.error})
    # trafaret's Dict returns its declared key first, then the extra keys in their order.
    return {
        "credentialType": value["credentialType"],
        **{k: v for k, v in value.items() if k != "credentialType"},
    }


def _either(*checks: Check) -> Check:
    """trafaret's ``a | b``: the first check that passes; else every check's error, by index."""

    def check(value: Any) -> Any:
        errors: dict[Any, _DataError] = {}
        for index, one in enumerate(checks):
            try:
                return one(value)
            except _Invalid as exc:
                errors[index] = exc.error
        _fail(errors)

    return check


@dataclass(frozen=True)
class ParameterDefinition:
    """One entry of ``runtimeParameterDefinitions``, as DRUM keeps it."""

    name: str
    """``fieldName``: the parameter's name (``MLOPS_RUNTIME_PARAM_<name>``)."""
    type: str
    """One of :data:`TYPES`."""
    default: Any = None
    """``defaultValue`` (any YAML value; checked only when the file gives no value)."""
    allow_empty: bool = True
    """``allowEmpty`` (read, not enforced: DRUM does not enforce it either)."""
    min_value: Any = None
    """``minValue`` for numeric parameters, as written."""
    max_value: Any = None
    """``maxValue`` for numeric parameters, as written."""
    credential_type: str | None = None
    """``credentialType`` of a credential's definition (DRUM ignores it; Tandem warns on a
    mismatch)."""


def _type(value: Any) -> Any:
    if value not in TYPES:
        _fail("value doesn't match any variant")
    return value


def _anything(value: Any) -> Any:
    return value


#: DRUM's ``RuntimeParameterDefinitionTrafaret``: (key, attribute, required, default, check).
_DEFINITION_KEYS: tuple[tuple[str, str, bool, Any, Check], ...] = (
    ("fieldName", "name", True, _MISSING, _string),
    ("type", "type", True, _MISSING, _type),
    ("allowEmpty", "allow_empty", False, True, _boolean),
    ("defaultValue", "default", False, None, _anything),
    ("minValue", "min_value", False, None, _either(_float, _null)),
    ("maxValue", "max_value", False, None, _either(_float, _null)),
)


def check_definition(raw: Any) -> ParameterDefinition:
    """Check one definition as DRUM does; raise :class:`RuntimeParameterError` with its message."""
    try:
        if not isinstance(raw, Mapping):
            _fail("value is not a dict")
        fields: dict[str, Any] = {}
        errors: dict[Any, _DataError] = {}
        for key, attribute, required, default, check in _DEFINITION_KEYS:
            if key not in raw:
                if required:
                    errors[key] = _DataError("is required")
                else:
                    fields[attribute] = default
                continue
            try:
                fields[attribute] = check(raw[key])
            except _Invalid as exc:
                errors[key] = exc.error
        if errors:
            _fail(errors)
    except _Invalid as exc:
        raise RuntimeParameterError(f"Failed to load runtime parameter: {exc.error}") from None
    credential_type = raw.get("credentialType")
    return ParameterDefinition(
        **fields, credential_type=credential_type if isinstance(credential_type, str) else None
    )


def _read_yaml(path: Path) -> Any:
    """``yaml.safe_load`` of an open file, as DRUM does: its errors name the file and position but
    never quote the file's text (PyYAML prints a snippet only for in-memory strings)."""
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _kind(value: Any) -> str:
    """How a message names a YAML value's type (never the value itself)."""
    names = {"dict": "a mapping", "list": "a list", "str": "a string"}
    return names.get(type(value).__name__, type(value).__name__)


def read_definitions(code_dir: str | os.PathLike[str]) -> dict[str, ParameterDefinition]:
    """The runtime-parameter definitions of ``code_dir``'s ``model-metadata.yaml``, by name.

    Raises :class:`RuntimeParameterError` with DRUM's message when the file is missing, empty or
    not YAML, when it declares no parameter, or when a definition is invalid or duplicated.
    """
    path = Path(code_dir) / METADATA_FILE
    try:
        metadata = _read_yaml(path)
    except FileNotFoundError:
        raise RuntimeParameterError(
            f"{METADATA_FILE} must exist to use runtime parameters"
        ) from None
    except yaml.YAMLError as exc:
        raise RuntimeParameterError(f"Invalid model-metadata YAML content! {exc}") from None
    except UnicodeDecodeError as exc:
        raise RuntimeParameterError(
            f"Invalid model-metadata YAML content! not UTF-8 text: {exc.reason} at byte "
            f"{exc.start} of {path}"
        ) from None
    except OSError as exc:
        raise RuntimeParameterError(
            f"{METADATA_FILE} cannot be read: {path}: {exc.strerror or exc}"
        ) from None
    if not metadata:
        raise RuntimeParameterError("Model-metadata YAML file is empty!")
    if not isinstance(metadata, Mapping):
        raise RuntimeParameterError(
            f"Invalid model-metadata YAML content! expected a mapping at the top level of {path}, "
            f"got {_kind(metadata)}"
        )
    parameters = metadata.get(SECTION)
    if not parameters:
        raise RuntimeParameterError(
            f"{METADATA_FILE}: YAML file must contain at least one parameter definition in the "
            f"section '{SECTION}'"
        )
    if not isinstance(parameters, list):
        raise RuntimeParameterError(
            f"Failed to load runtime parameter: value is not a dict ('{SECTION}' must be a list "
            f"of definitions, got {_kind(parameters)})"
        )
    definitions: dict[str, ParameterDefinition] = {}
    for raw in parameters:
        definition = check_definition(raw)
        if definition.name in definitions:
            raise RuntimeParameterError(
                f"Failed to load runtime parameter [{definition.name}], duplicated definition"
            )
        definitions[definition.name] = definition
    return definitions


def read_values(values_file: str | os.PathLike[str]) -> dict[Any, Any]:
    """The parameter values of a runtime-parameter values file (a YAML mapping).

    Raises :class:`RuntimeParameterError` with DRUM's message when the file is missing, is not
    YAML or is empty, and with Tandem's when it cannot be read or is not a mapping.
    """
    path = Path(values_file)
    try:
        content = _read_yaml(path)
    except FileNotFoundError:
        raise RuntimeParameterError(
            f"Runtime parameter values file does not exist! filepath: {values_file}"
        ) from None
    except yaml.YAMLError as exc:
        raise RuntimeParameterError(
            f"Invalid runtime parameter values YAML content! {exc}"
        ) from None
    except UnicodeDecodeError as exc:
        raise RuntimeParameterError(
            f"Invalid runtime parameter values YAML content! not UTF-8 text: {exc.reason} at "
            f"byte {exc.start} of {values_file}"
        ) from None
    except OSError as exc:
        raise RuntimeParameterError(
            f"Runtime parameter values file cannot be read! filepath: {values_file}: "
            f"{exc.strerror or exc}"
        ) from None
    if not content:
        raise RuntimeParameterError("Runtime parameter values YAML file is empty!")
    if not isinstance(content, dict):
        raise RuntimeParameterError(
            "Invalid runtime parameter values YAML content! expected a mapping of parameter names "
            f"to values, got {_kind(content)} (filepath: {values_file})"
        )
    return content


def _value_check(definition: ParameterDefinition) -> Check:
    if definition.type == "numeric":
        return _numeric(definition.min_value, definition.max_value)
    return {
        "string": _string,
        "deployment": _string,
        "boolean": _boolean,
        "credential": _credential,
    }[definition.type]


def build_environment(
    definitions: Mapping[str, ParameterDefinition], values: Mapping[Any, Any]
) -> dict[str, str]:
    """``MLOPS_RUNTIME_PARAM_<NAME>`` -> DRUM's JSON envelope, one per definition.

    Raises :class:`RuntimeParameterError` for the first value (in definition order) that does not
    fit its definition, with DRUM's message.
    """
    environment: dict[str, str] = {}
    for name, definition in definitions.items():
        value = values[name] if name in values else definition.default
        try:
            payload = _either(_null, _value_check(definition))(value)
        except _Invalid as exc:
            error = _DataError({"payload": exc.error})
            raise RuntimeParameterError(
                f"Failed to load runtime parameter '{name}'. {error}"
            ) from None
        except _BoundNotANumber:
            raise RuntimeParameterError(
                f"Failed to load runtime parameter '{name}'. its minValue/maxValue in "
                f"{METADATA_FILE} must be a number, not a string (DRUM fails with a TypeError here)"
            ) from None
        try:
            environment[PREFIX + name] = json.dumps({"payload": payload, "type": definition.type})
        except (TypeError, ValueError) as exc:
            # Messages name the type ("Object of type date ..."), never the value.
            raise RuntimeParameterError(
                f"Failed to load runtime parameter '{name}'. its value cannot be written as JSON: "
                f"{exc}"
            ) from None
        _warn_about(definition, value)
    return environment


def _warn_about(definition: ParameterDefinition, value: Any) -> None:
    """Warnings for what DRUM accepts silently; they name parameters and types, not values."""
    if value is None and not definition.allow_empty:
        logger.warning(
            "runtime parameter %s is declared with allowEmpty: false but has no value; "
            "it is exported as null, as DRUM does",
            definition.name,
        )
    if (
        definition.type == "credential"
        and definition.credential_type is not None
        and isinstance(value, Mapping)
        and value.get("credentialType") != definition.credential_type
    ):
        logger.warning(
            "runtime parameter %s has credentialType %r, but %s declares %r; it is used as "
            "given, as DRUM does",
            definition.name,
            value.get("credentialType"),
            METADATA_FILE,
            definition.credential_type,
        )


def load_runtime_params_file(
    values_file: str | os.PathLike[str], code_dir: str | os.PathLike[str]
) -> dict[str, str]:
    """Check ``values_file`` against ``code_dir``'s definitions; return the variables to export.

    The result maps ``MLOPS_RUNTIME_PARAM_<NAME>`` to DRUM's JSON envelope for every definition.
    Nothing is exported here; every failure is a :class:`RuntimeParameterError`.
    """
    definitions = read_definitions(code_dir)
    values = read_values(values_file)
    environment = build_environment(definitions, values)
    unknown = [str(key) for key in values if key not in definitions]
    if unknown:
        logger.warning(
            "runtime parameter values file %s: %s not declared in %s %s; ignored, as DRUM does",
            values_file,
            ", ".join(unknown),
            METADATA_FILE,
            SECTION,
        )
    return environment


def apply_runtime_params_file(
    values_file: str | os.PathLike[str],
    code_dir: str | os.PathLike[str],
    environ: MutableMapping[str, str] | None = None,
) -> list[str]:
    """Load ``values_file`` and export its parameters into ``environ`` (``os.environ`` by default).

    Called once at start-up, before the model is loaded and before any worker process starts, so
    every worker of every stack inherits the variables. Nothing is exported unless every value
    checks out. Returns the names of the exported parameters.
    """
    environment = load_runtime_params_file(values_file, code_dir)
    target = os.environ if environ is None else environ
    target.update(environment)
    names = [key[len(PREFIX) :] for key in environment]
    logger.info("runtime parameters from %s: %s", values_file, ", ".join(names))
    return names
