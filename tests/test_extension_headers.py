"""Answers produced by an extension (not the core) still carry DRUM's standard headers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conformance import settings_for
from tests.conformance_cases import ModelSpec
from tests.support import EXAMPLES, FRAMEWORKS, in_process_client


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_extension_401_has_version_and_request_id(
    framework: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code_dir = tmp_path / "extension_auth"
    shutil.copytree(EXAMPLES / "extension_auth", code_dir)
    monkeypatch.setenv("EXAMPLE_AUTH_TOKEN", "s3cret")
    spec = ModelSpec("extension_auth", "unused", ("--target-type", "regression"))
    client = in_process_client(framework, settings_for(spec, code_dir, framework))
    denied = client.get("/info/", headers={"X-Request-ID": "rid-ext"})
    assert denied.status_code == 401
    assert denied.headers["x-drum-version"]
    assert denied.headers["x-request-id"] == "rid-ext"
    allowed = client.get("/info/", headers={"X-Request-ID": "rid-ok", "X-Auth": "s3cret"})
    assert allowed.status_code == 200
    assert allowed.headers["x-request-id"] == "rid-ok"
    # The core's own headers are not duplicated.
    assert len(allowed.headers.get_list("x-drum-version")) == 1


def test_prediction_lanes_only_without_extensions(tmp_path: Path) -> None:
    """Predictions skip the frameworks' dispatch only when no extension hooks could run."""
    from tandem.core.service import PredictionService
    from tandem.servers import fastapi_app, flask_app

    plain = tmp_path / "plain"
    shutil.copytree(EXAMPLES / "regression", plain)
    spec = ModelSpec("plain", "unused", ("--target-type", "regression"))
    service = PredictionService.load(settings_for(spec, plain, "gunicorn"))
    outer = flask_app.create_app(service).wsgi_app
    assert isinstance(outer, flask_app.WholeBody)
    assert isinstance(outer.app, flask_app.PredictLane)
    fast = fastapi_app.create_app(PredictionService.load(settings_for(spec, plain, "fastapi")))
    assert isinstance(fast, fastapi_app.TandemFastAPI)
    assert isinstance(fast.lane, fastapi_app.PredictLane)


def test_no_prediction_lane_with_an_extension(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tandem.core.service import PredictionService
    from tandem.servers import fastapi_app, flask_app

    code_dir = tmp_path / "extension_auth"
    shutil.copytree(EXAMPLES / "extension_auth", code_dir)
    monkeypatch.setenv("EXAMPLE_AUTH_TOKEN", "s3cret")
    spec = ModelSpec("extension_auth", "unused", ("--target-type", "regression"))
    app = flask_app.create_app(PredictionService.load(settings_for(spec, code_dir, "gunicorn")))
    assert isinstance(app.wsgi_app, flask_app.WholeBody)
    assert not isinstance(app.wsgi_app.app, flask_app.PredictLane)
    fast = fastapi_app.create_app(PredictionService.load(settings_for(spec, code_dir, "fastapi")))
    assert fast.lane is None
