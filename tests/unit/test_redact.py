"""Which query parameters carry credentials, and how they are stored."""

from __future__ import annotations

import pytest

from tandem.observability.redact import (
    REDACTED,
    configured_names,
    is_credential_parameter,
    redacted_pairs,
    redacted_values,
)


@pytest.mark.parametrize(
    "name",
    [
        "token",
        "access_token",
        "API_KEY",
        "apikey",
        "client_secret",
        "password",
        "sig",
        "X-Amz-Signature",
        "auth",
        "sessionid",
        "X-Amz-Credential",
    ],
)
def test_credential_names(name: str) -> None:
    assert is_credential_parameter(name)


@pytest.mark.parametrize("name", ["i", "rows", "format", "target", "passthrough_columns"])
def test_ordinary_names(name: str) -> None:
    assert not is_credential_parameter(name)


def test_configured_names_are_added_case_insensitively() -> None:
    extra = configured_names({"DRUM_REDACT_QUERY_PARAMS": " Customer_PIN , otp"})
    assert extra == {"customer_pin", "otp"}
    assert is_credential_parameter("customer_pin", extra)
    assert is_credential_parameter("OTP", extra)
    assert not is_credential_parameter("customer", extra)


def test_values_are_replaced_names_kept() -> None:
    pairs = [("i", "1"), ("token", "t1"), ("token", "t2")]
    assert redacted_pairs(pairs) == [("i", "1"), ("token", REDACTED), ("token", REDACTED)]
    assert redacted_values("token", ["a", "b"]) == [REDACTED, REDACTED]
    assert redacted_values("i", ["1"]) == ["1"]
