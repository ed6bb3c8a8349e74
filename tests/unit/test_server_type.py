"""Server type decision: explicit values, extension files, the deployment-level canary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tandem.errors import ConfigError, RuntimeParameterError
from tandem.runtime_params import Params
from tandem.server_type import (
    DEFAULT_SERVER_TYPE,
    FASTAPI_EXTENSION,
    FLASK_EXTENSION,
    ServerTypeDecision,
    decide_server_type,
    deployment_bucket,
    find_extensions,
    normalise_server_type,
)

VALID = "fastapi, flask, gunicorn, uvicorn, werkzeug"


def decide(env: dict[str, str], code_dir: Path | None = None) -> ServerTypeDecision:
    return decide_server_type(Params(env), code_dir)


# -- explicit DRUM_SERVER_TYPE -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("flask", "flask"),
        ("FLASK", "flask"),
        ("werkzeug", "flask"),
        ("WerkZeug", "flask"),
        ("gunicorn", "gunicorn"),
        ("GUNICORN", "gunicorn"),
        ("fastapi", "fastapi"),
        ("FastAPI", "fastapi"),
        ("uvicorn", "fastapi"),
        ("Uvicorn", "fastapi"),
        ("  flask\n", "flask"),
    ],
)
def test_normalise_values_and_aliases(value: str, expected: str) -> None:
    assert normalise_server_type(value) == expected


@pytest.mark.parametrize("value", ["tomcat", "", "flask2", "fast api", "gunicorn,flask"])
def test_unknown_value_lists_valid_values(value: str) -> None:
    with pytest.raises(ConfigError) as err:
        normalise_server_type(value)
    assert str(err.value) == (
        f"DRUM_SERVER_TYPE has invalid value {value!r}; valid values are: {VALID}"
    )
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("env", "server_type", "reason"),
    [
        (
            {"MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE": "gunicorn"},
            "gunicorn",
            "MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE=gunicorn",
        ),
        (
            {
                "MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE": json.dumps(
                    {"type": "string", "payload": "Werkzeug"}
                )
            },
            "flask",
            "MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE=Werkzeug",
        ),
        ({"DRUM_SERVER_TYPE": "UVICORN"}, "fastapi", "DRUM_SERVER_TYPE=UVICORN"),
        (
            {"MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE": "flask", "DRUM_SERVER_TYPE": "gunicorn"},
            "flask",
            "MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE=flask",
        ),
    ],
)
def test_explicit_decision(env: dict[str, str], server_type: str, reason: str) -> None:
    decision = decide(env)
    assert decision.server_type == server_type
    assert decision.reason == reason
    assert decision.inputs == {"DRUM_SERVER_TYPE": reason.split("=", 1)[1]}


def test_explicit_unknown_value_names_the_variable_it_came_from() -> None:
    with pytest.raises(ConfigError) as err:
        decide({"MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE": "Tomcat"})
    assert str(err.value) == (
        "MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE has invalid value 'Tomcat'; "
        f"valid values are: {VALID}"
    )


def test_null_payload_counts_as_unset() -> None:
    env = {"MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE": json.dumps({"type": "string", "payload": None})}
    assert decide(env).server_type == DEFAULT_SERVER_TYPE


def test_empty_bare_value_counts_as_unset() -> None:
    assert decide({"DRUM_SERVER_TYPE": ""}).server_type == "fastapi"


@pytest.mark.parametrize(
    ("server_type", "framework", "process_server"),
    [
        ("flask", "flask", "werkzeug"),
        ("gunicorn", "flask", "gunicorn"),
        ("fastapi", "fastapi", "uvicorn"),
    ],
)
def test_framework_and_process_server(
    server_type: str, framework: str, process_server: str
) -> None:
    decision = ServerTypeDecision(server_type, "why")
    assert decision.framework == framework
    assert decision.process_server == process_server
    assert decision.inputs == {}


# -- default -----------------------------------------------------------------------------------


def test_default_is_fastapi() -> None:
    assert DEFAULT_SERVER_TYPE == "fastapi"
    decision = decide({})
    assert decision == ServerTypeDecision(
        "fastapi", "DRUM_SERVER_TYPE unset; default is fastapi", {}
    )


# -- extension files ---------------------------------------------------------------------------


def make_dir(tmp_path: Path, *files: str) -> Path:
    code_dir = tmp_path / "code"
    code_dir.mkdir()
    for name in files:
        (code_dir / name).write_text("def init_app(app):\n    pass\n")
    return code_dir


def test_only_flask_extension_chooses_flask(tmp_path: Path) -> None:
    code_dir = make_dir(tmp_path, FLASK_EXTENSION, "custom.py")
    decision = decide({}, code_dir)
    assert decision.server_type == "flask"
    assert decision.reason == (
        "DRUM_SERVER_TYPE unset and the code dir has only custom_flask.py, which runs only on Flask"
    )
    assert decision.inputs == {"extension": str(code_dir / "custom_flask.py")}


def test_only_fastapi_extension_chooses_fastapi(tmp_path: Path) -> None:
    code_dir = make_dir(tmp_path, FASTAPI_EXTENSION)
    decision = decide({}, code_dir)
    assert decision.server_type == "fastapi"
    assert decision.reason == (
        "DRUM_SERVER_TYPE unset and the code dir has only custom_fastapi.py, "
        "which runs only on FastAPI"
    )
    assert decision.inputs == {"extension": str(code_dir / "custom_fastapi.py")}


def test_both_extensions_fall_through_to_default(tmp_path: Path) -> None:
    code_dir = make_dir(tmp_path, FLASK_EXTENSION, FASTAPI_EXTENSION)
    assert decide({}, code_dir).reason == "DRUM_SERVER_TYPE unset; default is fastapi"


def test_both_extensions_fall_through_to_canary(tmp_path: Path) -> None:
    code_dir = make_dir(tmp_path, FLASK_EXTENSION, FASTAPI_EXTENSION)
    decision = decide({"DRUM_FASTAPI_CANARY_PERCENT": "0"}, code_dir)
    assert decision.server_type == "flask"
    assert "DRUM_FASTAPI_CANARY_PERCENT" in decision.inputs


@pytest.mark.parametrize(
    ("ext", "expected"), [(FLASK_EXTENSION, "flask"), (FASTAPI_EXTENSION, "fastapi")]
)
def test_single_extension_beats_the_canary(tmp_path: Path, ext: str, expected: str) -> None:
    code_dir = make_dir(tmp_path, ext)
    for percent in ("0", "100"):
        assert decide({"DRUM_FASTAPI_CANARY_PERCENT": percent}, code_dir).server_type == expected


def test_explicit_type_beats_the_extension(tmp_path: Path) -> None:
    code_dir = make_dir(tmp_path, FLASK_EXTENSION)
    decision = decide({"DRUM_SERVER_TYPE": "fastapi"}, code_dir)
    assert decision.server_type == "fastapi"
    assert decision.reason == "DRUM_SERVER_TYPE=fastapi"


def test_extension_must_be_a_top_level_file(tmp_path: Path) -> None:
    code_dir = make_dir(tmp_path)
    (code_dir / FLASK_EXTENSION).mkdir()  # a directory, not a file
    (code_dir / "sub").mkdir()
    (code_dir / "sub" / FASTAPI_EXTENSION).write_text("")
    assert find_extensions(code_dir) == (None, None)
    assert decide({}, code_dir).server_type == "fastapi"


def test_find_extensions(tmp_path: Path) -> None:
    code_dir = make_dir(tmp_path, FLASK_EXTENSION, FASTAPI_EXTENSION)
    assert find_extensions(code_dir) == (
        code_dir / "custom_flask.py",
        code_dir / "custom_fastapi.py",
    )
    assert find_extensions(None) == (None, None)


# -- the canary --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("deployment_id", "bucket"),
    [("default", 51.7), ("dep-1", 52.14), ("dep-2", 59.8), ("dep-17", 0.63), ("", 83.66)],
)
def test_bucket_is_stable(deployment_id: str, bucket: float) -> None:
    # Pinned: changing the hash would move live deployments between stacks.
    assert deployment_bucket(deployment_id) == pytest.approx(bucket, abs=1e-9)


def test_buckets_are_in_range_with_hundredth_resolution() -> None:
    for i in range(2000):
        bucket = deployment_bucket(f"deployment-{i}")
        assert 0 <= bucket < 100
        assert round(bucket * 100) == pytest.approx(bucket * 100, abs=1e-6)


def test_buckets_are_roughly_uniform() -> None:
    ids = [f"deployment-{i}" for i in range(10_000)]
    share = sum(deployment_bucket(i) < 30 for i in ids) / len(ids)
    assert 0.28 < share < 0.32


def canary(percent: str, deployment_id: str | None) -> ServerTypeDecision:
    env = {"DRUM_FASTAPI_CANARY_PERCENT": percent}
    if deployment_id is not None:
        env["MLOPS_DEPLOYMENT_ID"] = deployment_id
    return decide(env)


def test_canary_reason_and_inputs() -> None:
    decision = canary("60", "dep-1")
    assert decision.server_type == "fastapi"
    assert decision.reason == (
        "DRUM_SERVER_TYPE unset; deployment 'dep-1' is in bucket 52.14 and "
        "DRUM_FASTAPI_CANARY_PERCENT=60, so it is inside the FastAPI canary"
    )
    assert decision.inputs == {
        "DRUM_FASTAPI_CANARY_PERCENT": "60",
        "MLOPS_DEPLOYMENT_ID": "dep-1",
        "bucket": "52.14",
    }
    outside = canary("12.5", "dep-1")
    assert outside.server_type == "flask"
    assert outside.reason == (
        "DRUM_SERVER_TYPE unset; deployment 'dep-1' is in bucket 52.14 and "
        "DRUM_FASTAPI_CANARY_PERCENT=12.5, so it is outside the FastAPI canary"
    )


@pytest.mark.parametrize("deployment_id", [None, ""])
def test_default_deployment_id(deployment_id: str | None) -> None:
    decision = canary("51.71", deployment_id)
    assert decision.inputs["MLOPS_DEPLOYMENT_ID"] == "default"
    assert decision.inputs["bucket"] == "51.70"
    assert decision.server_type == "fastapi"
    assert canary("51.7", deployment_id).server_type == "flask"


def test_deployment_id_from_runtime_parameter_wins() -> None:
    env = {
        "DRUM_FASTAPI_CANARY_PERCENT": "1",
        "MLOPS_RUNTIME_PARAM_MLOPS_DEPLOYMENT_ID": "dep-17",
        "MLOPS_DEPLOYMENT_ID": "dep-1",
    }
    decision = decide(env)
    assert decision.inputs["MLOPS_DEPLOYMENT_ID"] == "dep-17"
    assert decision.server_type == "fastapi"


def test_fractional_percent_uses_strict_bucket_boundary() -> None:
    # dep-17 sits in bucket 0.63: it joins the canary only above 0.63 %.
    assert canary("0.63", "dep-17").server_type == "flask"
    assert canary("0.631", "dep-17").server_type == "fastapi"
    assert canary("0.64", "dep-17").server_type == "fastapi"
    assert canary("0.5", "dep-17").server_type == "flask"


def test_canary_percent_as_runtime_parameter_envelope() -> None:
    env = {
        "MLOPS_RUNTIME_PARAM_DRUM_FASTAPI_CANARY_PERCENT": json.dumps(
            {"type": "numeric", "payload": 0.64}
        ),
        "DRUM_FASTAPI_CANARY_PERCENT": "0",
        "MLOPS_DEPLOYMENT_ID": "dep-17",
    }
    decision = decide(env)
    assert decision.server_type == "fastapi"
    assert decision.inputs["DRUM_FASTAPI_CANARY_PERCENT"] == "0.64"


def test_same_deployment_always_lands_on_the_same_side() -> None:
    for i in range(200):
        dep = f"deployment-{i}"
        first = canary("37.5", dep).server_type
        assert all(canary("37.5", dep).server_type == first for _ in range(3))


def test_zero_percent_is_all_flask_and_hundred_is_all_fastapi() -> None:
    ids = [f"deployment-{i}" for i in range(3000)] + ["default", "", "x" * 500, "ünïcode"]
    assert {canary("0", dep).server_type for dep in ids} == {"flask"}
    assert {canary("100", dep).server_type for dep in ids} == {"fastapi"}


PERCENTS = [0, 0.01, 0.5, 1, 2.5, 5, 10, 12.34, 25, 33.33, 50, 66.67, 75, 90, 99, 99.99, 100]


def test_raising_the_percentage_only_moves_flask_to_fastapi() -> None:
    ids = [f"deployment-{i}" for i in range(1500)]
    previous: dict[str, str] = {}
    moved = 0
    for percent in PERCENTS:
        for dep in ids:
            side = canary(repr(percent), dep).server_type
            if previous.get(dep) == "fastapi":
                assert side == "fastapi", (dep, percent)
            elif previous.get(dep) == "flask" and side == "fastapi":
                moved += 1
            previous[dep] = side
    # Everyone started on flask (0 %) and ended on fastapi (100 %).
    assert moved == len(ids)


@pytest.mark.parametrize("percent", [0, 5, 20, 50, 80, 95])
def test_share_on_fastapi_tracks_the_percentage(percent: int) -> None:
    ids = [f"deployment-{i}" for i in range(4000)]
    share = sum(canary(str(percent), dep).server_type == "fastapi" for dep in ids) / len(ids)
    assert abs(share - percent / 100) < 0.03


def test_explicit_type_wins_over_the_canary() -> None:
    env = {"DRUM_SERVER_TYPE": "flask", "DRUM_FASTAPI_CANARY_PERCENT": "100"}
    assert decide(env).server_type == "flask"
    env = {"DRUM_SERVER_TYPE": "gunicorn", "DRUM_FASTAPI_CANARY_PERCENT": "100"}
    assert decide(env).server_type == "gunicorn"
    env = {"MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE": "fastapi", "DRUM_FASTAPI_CANARY_PERCENT": "0"}
    assert decide(env).server_type == "fastapi"


def test_explicit_type_skips_a_broken_canary_value() -> None:
    env = {"DRUM_SERVER_TYPE": "flask", "DRUM_FASTAPI_CANARY_PERCENT": "lots"}
    assert decide(env).server_type == "flask"


@pytest.mark.parametrize(
    ("percent", "message"),
    [
        ("150", "DRUM_FASTAPI_CANARY_PERCENT has value '150'; expected a number in 0..100"),
        ("-1", "DRUM_FASTAPI_CANARY_PERCENT has value '-1'; expected a number in 0..100"),
        ("nan", "DRUM_FASTAPI_CANARY_PERCENT has value 'nan'; expected a number in 0..100"),
        ("10%", "DRUM_FASTAPI_CANARY_PERCENT has value '10%'; expected a number"),
    ],
)
def test_invalid_canary_percent(percent: str, message: str) -> None:
    with pytest.raises(RuntimeParameterError) as err:
        canary(percent, "dep-1")
    assert str(err.value) == message
