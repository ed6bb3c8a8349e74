"""Tandem's error tree.

::

    TandemError
    ├── ConfigError            bad CLI option, environment variable or runtime parameter (start-up)
    │   └── RuntimeParameterError
    ├── ModelLoadError         the code dir cannot be turned into a model (start-up)
    └── RequestError           something about one request; carries the HTTP status it maps to
        ├── UnprocessableInput        422 {"message": "ERROR: ..."}
        │   └── InvalidInput          422 the client's data: unreadable, or refused by the model's
        │                             own input validation (DRUM answers these 500)
        ├── SchemaValidationError     422 with "is_schema_validation_error": true
        ├── NotSupported              404 (chat / models on a model that has none)
        ├── BadRequest                400 {"error": ...} (DRUM's Werkzeug-style 400)
        ├── PlainBadRequest           400 {"message": ...} without the "ERROR: " prefix
        ├── PayloadTooLarge           413
        ├── RequestTimeout            504 (the model outran DRUM_CLIENT_REQUEST_TIMEOUT)
        ├── IncompleteBody            400 (body cut short or malformed chunked framing)
        └── ModelError                500 (the model or its output is at fault)

User code raises :class:`CustomHTTPError` (re-exported as ``datarobot_drum.CustomHTTPError``); its
status and message reach the client unchanged, with ``X-Drum-User-Http-Error: true``.
"""

from __future__ import annotations


class TandemError(Exception):
    """Root of every error Tandem raises on purpose."""


class ConfigError(TandemError):
    """A start-up setting is invalid; the message names the setting and the bad value."""


class RuntimeParameterError(ConfigError):
    """A ``MLOPS_RUNTIME_PARAM_*`` value cannot be parsed or has the wrong type."""


class ModelLoadError(TandemError):
    """The code dir could not be loaded into a servable model."""


#: Longest error message a client (or the log) gets; past it the text is cut, since messages
#: that quote the input (pandas' parse errors, a model's exception) can be as large as it.
MAX_MESSAGE_CHARS = 2000


def capped(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text``, cut to ``limit`` characters with a note saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters not shown)"


def echo(data: bytes, limit: int = 256) -> str:
    """How an error message quotes request bytes: DRUM's ``repr``, of the first ``limit``."""
    if len(data) <= limit:
        return repr(data)
    return f"{data[:limit]!r}... ({len(data)} bytes in all)"


class RequestError(TandemError):
    """An error tied to one request. ``status`` is the HTTP status it is answered with."""

    status = 500

    def __init__(self, message: str) -> None:
        message = capped(message)
        super().__init__(message)
        self.message = message


class UnprocessableInput(RequestError):
    """The request cannot be scored as sent (missing samples, unsupported format, wrong route)."""

    status = 422


class InvalidInput(UnprocessableInput):
    """The request's data is at fault: it cannot be parsed (malformed CSV or Matrix Market, not
    UTF-8, no columns), or a served artifact's own input validation rejects it (NaN or inf where
    the model takes none, missing columns, no rows).

    DRUM answers these 500 with the same text; a 4xx keeps client garbage out of the 5xx rate
    that the rollout's error triggers and alerts read.
    """


class SchemaValidationError(RequestError):
    """A transform's output violates the model's ``typeSchema.output_requirements``."""

    status = 422


class NotSupported(RequestError):
    """The model does not implement the requested interface (chat, model list)."""

    status = 404


class BadRequest(RequestError):
    """A malformed request; rendered as DRUM renders Werkzeug's 400s: ``{"error": ...}``."""

    status = 400


class PlainBadRequest(RequestError):
    """A 400 rendered as ``{"message": ...}`` without the ``ERROR:`` prefix (direct access)."""

    status = 400


class PayloadTooLarge(RequestError):
    """The request body exceeds the configured limit."""

    status = 413


class RequestTimeout(RequestError):
    """The model did not answer within ``DRUM_CLIENT_REQUEST_TIMEOUT``."""

    status = 504


class IncompleteBody(RequestError):
    """The request body ended before its declared end, or its chunked framing is malformed.

    One message on every stack (the servers' own reasons differ): nothing of it was scored.
    """

    status = 400

    def __init__(
        self,
        message: str = "Request body is incomplete: the client stopped sending before its end, "
        "or its chunked encoding is malformed.",
    ) -> None:
        super().__init__(message)


class ModelError(RequestError):
    """The model, a hook or the model's output failed; answered with 500."""

    status = 500


class BaseCustomUserError(Exception):
    """Base class for errors raised on purpose by user model code (DRUM's name)."""

    status_code = 400


class CustomHTTPError(BaseCustomUserError):
    """Raise this from a hook to answer with a specific HTTP status and message."""

    def __init__(
        self, message: str = "User's HTTP error in custom model", status_code: int = 400
    ) -> None:
        super().__init__(message)
        self.status_code = status_code


class QueryKeyError(KeyError):
    """A hook indexed a query parameter the request does not have (Werkzeug's 400 in DRUM)."""


#: Every class whose instances are a model's deliberate errors: Tandem's own and, once a model has
#: imported it, DataRobot's ``datarobot_drum`` when that package is installed beside Tandem.
_user_error_types: tuple[type[BaseException], ...] = (BaseCustomUserError,)


def adopt_drum_user_errors() -> None:
    """Treat DataRobot's ``BaseCustomUserError`` as Tandem's own, if a model imported it.

    With ``datarobot-drum`` installed, ``from datarobot_drum import CustomHTTPError`` in a model
    gives DataRobot's class, not Tandem's; its status and message must still reach the client.
    """
    global _user_error_types
    import sys

    module = sys.modules.get("datarobot_drum.drum.exceptions")
    base = getattr(module, "BaseCustomUserError", None)
    if isinstance(base, type) and issubclass(base, BaseException) and base not in _user_error_types:
        _user_error_types = (*_user_error_types, base)


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` was raised on purpose by the model (``CustomHTTPError`` and kin)."""
    return isinstance(exc, _user_error_types)
