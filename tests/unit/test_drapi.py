"""``--allow-dr-api-access``: options, the API URL rule and what the model's process gets."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tandem.core.drapi import ApiAccess, api_url
from tandem.errors import ConfigError


def test_off_unless_allowed() -> None:
    assert ApiAccess.from_options(False, "https://dr", "tok") is None


@pytest.mark.parametrize(
    ("webserver", "token", "missing"),
    [
        (None, "t", "--webserver"),
        ("https://dr", None, "--api-token"),
        (None, None, "--webserver and --api-token"),
    ],
)
def test_both_flags_are_required(webserver: str | None, token: str | None, missing: str) -> None:
    with pytest.raises(ConfigError) as err:
        ApiAccess.from_options(True, webserver, token)
    assert str(err.value) == (
        f"--allow-dr-api-access needs {missing} (or their environment variables "
        "EXTERNAL_WEB_SERVER_URL and API_TOKEN)"
    )


@pytest.mark.parametrize(
    ("webserver", "url"),
    [
        ("https://app.example", "https://app.example/api/v2"),
        ("https://app.example/api/v2", "https://app.example/api/v2"),
    ],
)
def test_api_url_follows_drum(webserver: str, url: str) -> None:
    assert api_url(webserver) == url


def test_the_token_is_never_in_the_repr() -> None:
    assert "s3cret" not in repr(ApiAccess("https://x/api/v2", "s3cret"))


def test_apply_exports_variables_and_configures_the_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "datarobot.py").write_text(
        "CALLS = []\n\ndef Client(**kwargs):\n    CALLS.append(kwargs)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "datarobot", raising=False)
    env: dict[str, str] = {}
    ApiAccess("https://x/api/v2", "tok").apply(env)
    assert env == {"DATAROBOT_ENDPOINT": "https://x/api/v2", "DATAROBOT_API_TOKEN": "tok"}
    import datarobot

    assert datarobot.CALLS == [{"token": "tok", "endpoint": "https://x/api/v2"}]
