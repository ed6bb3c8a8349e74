"""Runtime parameters: ``MLOPS_RUNTIME_PARAM_<NAME>`` environment variables.

DRUM only accepts the JSON envelope ``{"type": "string", "payload": "fastapi"}``; a plain value
crashes it at start-up (drum_contract.md §4.1). Tandem accepts both: a value that starts with ``{``
must be a valid envelope, anything else is taken as a plain string payload. For operator
convenience (Kubernetes ConfigMaps, the rollback plan's examples) Tandem's own server parameters
also fall back to a bare environment variable of the same name; the prefixed one always wins.
"""

from __future__ import annotations

import builtins
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from tandem.errors import RuntimeParameterError

PREFIX = "MLOPS_RUNTIME_PARAM_"

_TRUE = {"1", "true", "yes", "y", "t", "on"}
_FALSE = {"0", "false", "no", "n", "f", "off"}


def _validate_envelope(name: str, raw: str, doc: Any) -> Any:
    if not isinstance(doc, dict) or "type" not in doc or "payload" not in doc:
        raise RuntimeParameterError(
            f"Invalid runtime parameter! env_value={raw}, exception: "
            "expected an object with 'type' and 'payload'"
        )
    kind, payload = doc["type"], doc["payload"]
    if payload is None:
        return None
    if kind in ("string", "deployment"):
        if not isinstance(payload, str) or (kind == "string" and payload == ""):
            raise RuntimeParameterError(
                f"Invalid runtime parameter! env_value={raw}, exception: value is not a "
                "non-empty string"
            )
        return payload
    if kind == "boolean":
        if not isinstance(payload, bool):
            raise RuntimeParameterError(
                f"Invalid runtime parameter! env_value={raw}, exception: value should be True "
                "or False"
            )
        return payload
    if kind == "numeric":
        if isinstance(payload, bool):
            # DRUM's trafaret Float takes every real number, booleans included, and returns it
            # unchanged; ``--runtime-params-file`` exports a YAML ``true`` for a numeric as such.
            return payload
        if not isinstance(payload, (int, float, str)):
            raise RuntimeParameterError(
                f"Invalid runtime parameter! env_value={raw}, exception: value can't be "
                "converted to float"
            )
        try:
            float(payload)
        except (ValueError, OverflowError) as exc:
            raise RuntimeParameterError(
                f"Invalid runtime parameter! env_value={raw}, exception: value can't be "
                "converted to float"
            ) from exc
        return payload
    if kind == "credential":
        if not isinstance(payload, dict) or not payload.get("credentialType"):
            raise RuntimeParameterError(
                f"Invalid runtime parameter! env_value={raw}, exception: credential payload "
                "needs a non-empty 'credentialType'"
            )
        return payload
    raise RuntimeParameterError(
        f"Invalid runtime parameter! env_value={raw}, exception: unknown type {kind!r}"
    )


def parse_value(name: str, raw: str) -> Any:
    """Parse one runtime parameter's raw environment value into its payload."""
    if raw.lstrip().startswith("{"):
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise RuntimeParameterError(
                f"Invalid runtime parameter json payload. payload={raw}"
            ) from exc
        return _validate_envelope(name, raw, doc)
    return raw


class RuntimeParameters:
    """DRUM-compatible reader of runtime parameters (``from datarobot_drum import ...``)."""

    @staticmethod
    def namespaced_param_name(name: str) -> str:
        """Return the environment variable that holds parameter ``name``."""
        return PREFIX + name

    @classmethod
    def has(cls, name: str) -> bool:
        """Whether parameter ``name`` is set."""
        return cls.namespaced_param_name(name) in os.environ

    @classmethod
    def get(cls, name: str) -> Any:
        """Return the payload of parameter ``name``; ``ValueError`` when it is not set."""
        key = cls.namespaced_param_name(name)
        if key not in os.environ:
            raise ValueError(f"Runtime parameter '{name}' does not exist!")
        return parse_value(name, os.environ[key])


class Params:
    """Typed access to runtime parameters over one environment mapping.

    Used by Tandem itself (never by user code) so that every setting has a default and every bad
    value fails with a message naming the parameter and the value.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._env = os.environ if environ is None else environ

    def raw(self, name: str) -> tuple[Any, str] | None:
        """Return ``(payload, source)`` for ``name`` or ``None`` when it is unset.

        The source is the environment variable the value came from.
        """
        key = PREFIX + name
        if key in self._env:
            return parse_value(name, self._env[key]), key
        if name in self._env and self._env[name] != "":
            return parse_value(name, self._env[name]), name
        return None

    def has(self, name: str) -> bool:
        """Whether ``name`` is set (prefixed or bare)."""
        return self.raw(name) is not None

    def str(self, name: str, default: str | None = None) -> str | None:
        """A string parameter."""
        got = self.raw(name)
        if got is None or got[0] is None:
            return default
        return str(got[0])

    def choice(
        self, name: builtins.str, choices: Sequence[builtins.str], default: builtins.str
    ) -> builtins.str:
        """A string parameter that must be one of ``choices`` (compared case-insensitively)."""
        got = self.raw(name)
        if got is None or got[0] is None:
            return default
        value, source = got
        text = str(value).strip().lower()
        if text not in choices:
            raise RuntimeParameterError(
                f"{source} has value {value!r}; expected one of {', '.join(choices)}"
            )
        return text

    def bool(self, name: builtins.str, default: bool = False) -> bool:
        """A boolean parameter; accepts JSON booleans and 1/true/yes/on, 0/false/no/off."""
        got = self.raw(name)
        if got is None or got[0] is None:
            return default
        value, source = got
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise RuntimeParameterError(
            f"{source} has value {value!r}; expected a boolean (true/false, 1/0, yes/no, on/off)"
        )

    def float(
        self,
        name: builtins.str,
        default: float | None = None,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> float | None:
        """A numeric parameter checked against an inclusive range."""
        got = self.raw(name)
        if got is None or got[0] is None:
            return default
        value, source = got
        if isinstance(value, bool):
            # A real number to DRUM (True is 1), but never what a Tandem setting means.
            raise RuntimeParameterError(f"{source} has value {value!r}; expected a number")
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            raise RuntimeParameterError(
                f"{source} has value {value!r}; expected a number"
            ) from None
        if (
            math.isnan(number)
            or (minimum is not None and number < minimum)
            or (maximum is not None and number > maximum)
        ):
            low = "-inf" if minimum is None else f"{minimum:g}"
            high = "inf" if maximum is None else f"{maximum:g}"
            span = f"{low}..{high}"
            raise RuntimeParameterError(
                f"{source} has value {value!r}; expected a number in {span}"
            )
        return number

    def int(
        self,
        name: builtins.str,
        default: int | None = None,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        """An integer parameter checked against an inclusive range.

        A value that is not a whole number (``2.5``, ``inf``) fails with a message naming the
        variable and the value as given.
        """
        number = self.float(name, None, minimum=minimum, maximum=maximum)
        if number is None:
            return default
        if not number.is_integer():
            value, source = self.raw(name)  # type: ignore[misc]
            raise RuntimeParameterError(f"{source} has value {value!r}; expected a whole number")
        return int(number)
