"""What never leaves the process in the clear: credential-like query parameters.

Recordings and trace attributes keep a request's query string; a ``?token=...`` or
``?api_key=...`` would put a credential on disk or in a tracing backend. A parameter is
treated as a credential when its name is on OpenTelemetry's semantic-conventions list, is
named in ``DRUM_REDACT_QUERY_PARAMS`` (comma-separated, case-insensitive), or contains one of
:data:`CREDENTIAL_WORDS`. Its values are replaced by ``REDACTED``; the name stays, so a replay
still sends the same shape of request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

REDACTED = "REDACTED"
REDACT_ENV = "DRUM_REDACT_QUERY_PARAMS"

#: OpenTelemetry's list for ``url.query`` (exact names).
SEMCONV_QUERY_PARAMETERS = frozenset(
    {
        "AWSAccessKeyId",
        "Signature",
        "sig",
        "X-Goog-Signature",
        "X-Amz-Signature",
        "X-Amz-Credential",
        "X-Amz-Security-Token",
    }
)
#: A parameter whose lower-cased name contains any of these carries a credential.
CREDENTIAL_WORDS = (
    "token",
    "secret",
    "password",
    "passwd",
    "credential",
    "apikey",
    "api_key",
    "api-key",
    "auth",
    "session",
    "signature",
)


def configured_names(environ: Mapping[str, str] | None = None) -> frozenset[str]:
    """Extra parameter names from ``DRUM_REDACT_QUERY_PARAMS``, lower-cased."""
    from tandem.runtime_params import Params

    text = Params(environ).str(REDACT_ENV, "") or ""
    return frozenset(n.strip().lower() for n in text.split(",") if n.strip())


def is_credential_parameter(name: str, extra: Iterable[str] = ()) -> bool:
    """Whether a query parameter's values must never be stored or exported."""
    lowered = name.strip().lower()
    if name in SEMCONV_QUERY_PARAMETERS or lowered in {e.lower() for e in extra}:
        return True
    return any(word in lowered for word in CREDENTIAL_WORDS)


def redacted_pairs(
    pairs: Iterable[tuple[str, str]], extra: Iterable[str] = ()
) -> list[tuple[str, str]]:
    """``pairs`` with every credential parameter's value replaced by ``REDACTED``."""
    names = frozenset(extra)
    return [
        (name, REDACTED if is_credential_parameter(name, names) else value) for name, value in pairs
    ]


def redacted_values(name: str, values: list[str], extra: Iterable[str] = ()) -> list[str]:
    """A parameter's values as they may be stored: ``REDACTED`` for a credential's."""
    return [REDACTED] * len(values) if is_credential_parameter(name, extra) else values
