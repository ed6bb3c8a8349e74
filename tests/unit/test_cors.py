"""The CORS policy read from DRUM_CORS_* (off by default, restrictive when on)."""

from __future__ import annotations

from tandem.core.cors import Cors
from tandem.runtime_params import Params


def test_off_by_default() -> None:
    assert Cors.from_params(Params({})) is None
    assert Cors.from_params(Params({"DRUM_CORS_ENABLED": "false"})) is None


def test_any_origin_by_default_when_on_and_never_credentials() -> None:
    cors = Cors.from_params(Params({"DRUM_CORS_ENABLED": "true"}))
    assert cors is not None and cors.any_origin
    assert cors.headers_for("https://a.example") == [("Access-Control-Allow-Origin", "*")]
    assert cors.headers_for(None) == []


def test_explicit_origins_allow_credentials_for_them_only() -> None:
    env = {"DRUM_CORS_ENABLED": "1", "DRUM_CORS_ORIGINS": "https://a.example/, https://b.example"}
    cors = Cors.from_params(Params(env))
    assert cors is not None and cors.origins == ("https://a.example", "https://b.example")
    assert ("Access-Control-Allow-Credentials", "true") in cors.headers_for("https://b.example")
    assert cors.headers_for("https://c.example") == []
