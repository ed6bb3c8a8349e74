"""Runtime parameters: DRUM's JSON envelopes, plain values and Tandem's typed ``Params``."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tandem.errors import ConfigError, RuntimeParameterError
from tandem.runtime_params import PREFIX, Params, RuntimeParameters, parse_value


def envelope(kind: str, payload: Any) -> str:
    return json.dumps({"type": kind, "payload": payload})


# -- parse_value: DRUM's envelopes -------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (envelope("string", "fastapi"), "fastapi"),
        (envelope("string", None), None),
        (envelope("string", " spaced "), " spaced "),
        (envelope("deployment", "65f0c0ffee"), "65f0c0ffee"),
        (envelope("deployment", ""), ""),
        (envelope("deployment", None), None),
        (envelope("boolean", True), True),
        (envelope("boolean", False), False),
        (envelope("boolean", None), None),
        (envelope("numeric", 1), 1),
        (envelope("numeric", 2.5), 2.5),
        (envelope("numeric", "123"), "123"),
        (envelope("numeric", -7), -7),
        (envelope("numeric", None), None),
        # DRUM's trafaret Float takes booleans (real numbers) and returns them unchanged.
        (envelope("numeric", True), True),
        (
            envelope("credential", {"credentialType": "s3", "awsAccessKeyId": "AK"}),
            {"credentialType": "s3", "awsAccessKeyId": "AK"},
        ),
        (envelope("credential", None), None),
        ('  {"type": "string", "payload": "lead"}', "lead"),
    ],
)
def test_envelope_payloads(raw: str, expected: Any) -> None:
    got = parse_value("P", raw)
    assert got == expected
    assert type(got) is type(expected)


def test_numeric_int_stays_int_and_string_stays_string() -> None:
    # DRUM returns the original JSON value: int stays int, "123" stays a string.
    assert type(parse_value("P", envelope("numeric", 3))) is int
    assert parse_value("P", envelope("numeric", "1e3")) == "1e3"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (envelope("string", ""), "value is not a non-empty string"),
        (envelope("string", 5), "value is not a non-empty string"),
        (envelope("string", ["a"]), "value is not a non-empty string"),
        (envelope("deployment", 5), "value is not a non-empty string"),
        (envelope("boolean", "true"), "value should be True or False"),
        (envelope("boolean", 1), "value should be True or False"),
        (envelope("numeric", "abc"), "value can't be converted to float"),
        (envelope("numeric", [1]), "value can't be converted to float"),
        (envelope("numeric", {"a": 1}), "value can't be converted to float"),
        ('{"type": "numeric", "payload": ' + "9" * 400 + "}", "value can't be converted to float"),
        (envelope("credential", {}), "credential payload needs a non-empty 'credentialType'"),
        (
            envelope("credential", {"credentialType": ""}),
            "credential payload needs a non-empty 'credentialType'",
        ),
        (envelope("credential", "s3"), "credential payload needs a non-empty 'credentialType'"),
        (envelope("weird", "x"), "unknown type 'weird'"),
        ('{"type": "string"}', "expected an object with 'type' and 'payload'"),
        ('{"payload": "x"}', "expected an object with 'type' and 'payload'"),
        ("{}", "expected an object with 'type' and 'payload'"),
    ],
)
def test_invalid_envelopes_use_drums_message(raw: str, reason: str) -> None:
    with pytest.raises(RuntimeParameterError) as err:
        parse_value("P", raw)
    assert str(err.value) == f"Invalid runtime parameter! env_value={raw}, exception: {reason}"


@pytest.mark.parametrize("raw", ["{not json", '{"type": "string", "payload": "x"', "{'a': 1}"])
def test_invalid_json_uses_drums_message(raw: str) -> None:
    with pytest.raises(RuntimeParameterError) as err:
        parse_value("P", raw)
    assert str(err.value) == f"Invalid runtime parameter json payload. payload={raw}"


def test_runtime_parameter_error_is_a_config_error() -> None:
    # The CLI turns ConfigError into a one-line start-up error.
    assert issubclass(RuntimeParameterError, ConfigError)


# -- parse_value: plain values (Tandem accepts what DRUM crashes on) ---------------------------


@pytest.mark.parametrize(
    "raw", ["fastapi", "gunicorn", "", "123", "true", '"quoted"', "[1, 2]", "a {b}", "  spaced"]
)
def test_plain_values_are_returned_verbatim(raw: str) -> None:
    assert parse_value("P", raw) == raw


# -- RuntimeParameters (the datarobot_drum API) ------------------------------------------------


def test_runtime_parameters_get_and_has(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_RUNTIME_PARAM_TOKEN", envelope("string", "s3cret"))
    monkeypatch.setenv("MLOPS_RUNTIME_PARAM_PLAIN", "hello")
    assert RuntimeParameters.namespaced_param_name("TOKEN") == "MLOPS_RUNTIME_PARAM_TOKEN"
    assert RuntimeParameters.has("TOKEN") is True
    assert RuntimeParameters.get("TOKEN") == "s3cret"
    assert RuntimeParameters.get("PLAIN") == "hello"
    assert RuntimeParameters.has("ABSENT") is False
    # The name is used verbatim: no upper-casing.
    assert RuntimeParameters.has("token") is False


def test_runtime_parameters_missing_message(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError) as err:
        RuntimeParameters.get("ABSENT")
    assert str(err.value) == "Runtime parameter 'ABSENT' does not exist!"


def test_runtime_parameters_has_is_true_for_invalid_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_RUNTIME_PARAM_BAD", envelope("boolean", "yes"))
    assert RuntimeParameters.has("BAD") is True
    with pytest.raises(RuntimeParameterError):
        RuntimeParameters.get("BAD")


def test_datarobot_drum_shim_exports_the_same_class() -> None:
    import _tandem_drum

    _tandem_drum.install()
    import datarobot_drum

    assert datarobot_drum.RuntimeParameters is RuntimeParameters


# -- Params: sources and precedence ------------------------------------------------------------


def test_prefix_constant() -> None:
    assert PREFIX == "MLOPS_RUNTIME_PARAM_"


def test_prefixed_wins_over_bare() -> None:
    env = {"MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE": "gunicorn", "DRUM_SERVER_TYPE": "flask"}
    assert Params(env).raw("DRUM_SERVER_TYPE") == (
        "gunicorn",
        "MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE",
    )


def test_bare_variable_is_the_fallback() -> None:
    assert Params({"DRUM_SERVER_TYPE": "flask"}).raw("DRUM_SERVER_TYPE") == (
        "flask",
        "DRUM_SERVER_TYPE",
    )


def test_bare_variable_may_hold_an_envelope() -> None:
    env = {"CUSTOM_MODEL_WORKERS": envelope("numeric", 3)}
    assert Params(env).raw("CUSTOM_MODEL_WORKERS") == (3, "CUSTOM_MODEL_WORKERS")


def test_empty_bare_variable_counts_as_unset() -> None:
    params = Params({"DRUM_SERVER_TYPE": ""})
    assert params.raw("DRUM_SERVER_TYPE") is None
    assert params.has("DRUM_SERVER_TYPE") is False
    assert params.str("DRUM_SERVER_TYPE", "dflt") == "dflt"


def test_unset_everywhere() -> None:
    params = Params({})
    assert params.raw("X") is None
    assert params.has("X") is False


def test_params_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_RUNTIME_PARAM_SOME_FLAG", envelope("boolean", True))
    assert Params().bool("SOME_FLAG") is True
    monkeypatch.delenv("MLOPS_RUNTIME_PARAM_SOME_FLAG")
    assert Params().bool("SOME_FLAG") is False


def test_params_propagates_envelope_errors() -> None:
    with pytest.raises(RuntimeParameterError, match=r"^Invalid runtime parameter json payload"):
        Params({"MLOPS_RUNTIME_PARAM_X": "{oops"}).str("X")


# -- Params.str --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "dflt"),
        ({"MLOPS_RUNTIME_PARAM_X": envelope("string", None)}, "dflt"),
        ({"MLOPS_RUNTIME_PARAM_X": envelope("string", "v")}, "v"),
        ({"MLOPS_RUNTIME_PARAM_X": envelope("numeric", 5)}, "5"),
        ({"MLOPS_RUNTIME_PARAM_X": "plain"}, "plain"),
        ({"X": "bare"}, "bare"),
    ],
)
def test_str(env: dict[str, str], expected: str) -> None:
    assert Params(env).str("X", "dflt") == expected


# -- Params.bool -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["1", "true", "TRUE", "True", "yes", "Y", "t", "on", " On ", envelope("boolean", True)]
)
def test_bool_true(text: str) -> None:
    assert Params({"MLOPS_RUNTIME_PARAM_F": text}).bool("F") is True
    assert Params({"F": text}).bool("F", default=False) is True


@pytest.mark.parametrize(
    "text", ["0", "false", "FALSE", "no", "N", "f", "off", " OFF ", envelope("boolean", False)]
)
def test_bool_false(text: str) -> None:
    assert Params({"MLOPS_RUNTIME_PARAM_F": text}).bool("F", default=True) is False


@pytest.mark.parametrize("default", [True, False])
def test_bool_default_when_unset_or_null(default: bool) -> None:
    assert Params({}).bool("F", default) is default
    assert Params({"MLOPS_RUNTIME_PARAM_F": envelope("boolean", None)}).bool("F", default) is (
        default
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"MLOPS_RUNTIME_PARAM_F": "maybe"},
            "MLOPS_RUNTIME_PARAM_F has value 'maybe'; expected a boolean "
            "(true/false, 1/0, yes/no, on/off)",
        ),
        (
            {"F": "2"},
            "F has value '2'; expected a boolean (true/false, 1/0, yes/no, on/off)",
        ),
        (
            {"MLOPS_RUNTIME_PARAM_F": envelope("numeric", 2)},
            "MLOPS_RUNTIME_PARAM_F has value 2; expected a boolean "
            "(true/false, 1/0, yes/no, on/off)",
        ),
    ],
)
def test_bool_error_names_variable_and_value(env: dict[str, str], message: str) -> None:
    with pytest.raises(RuntimeParameterError) as err:
        Params(env).bool("F")
    assert str(err.value) == message


# -- Params.float ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0", 0.0),
        ("12.5", 12.5),
        ("100", 100.0),
        (" 7 ", 7.0),
        ("1e1", 10.0),
        (envelope("numeric", 33), 33.0),
        (envelope("numeric", "0.25"), 0.25),
    ],
)
def test_float_in_range(raw: str, expected: float) -> None:
    got = Params({"MLOPS_RUNTIME_PARAM_N": raw}).float("N", minimum=0.0, maximum=100.0)
    assert got == expected
    assert isinstance(got, float)


def test_float_range_is_inclusive() -> None:
    params = Params({"A": "0", "B": "100"})
    assert params.float("A", minimum=0, maximum=100) == 0.0
    assert params.float("B", minimum=0, maximum=100) == 100.0


def test_float_default_when_unset_or_null() -> None:
    assert Params({}).float("N", 4.5) == 4.5
    assert Params({"MLOPS_RUNTIME_PARAM_N": envelope("numeric", None)}).float("N", 1.5) == 1.5
    assert Params({}).float("N") is None


@pytest.mark.parametrize(
    ("env", "minimum", "maximum", "message"),
    [
        ({"N": "101"}, 0, 100, "N has value '101'; expected a number in 0..100"),
        ({"N": "-0.5"}, 0, 100, "N has value '-0.5'; expected a number in 0..100"),
        ({"N": "nan"}, 0, 100, "N has value 'nan'; expected a number in 0..100"),
        ({"N": "inf"}, 0, 100, "N has value 'inf'; expected a number in 0..100"),
        ({"N": "6"}, None, 5, "N has value '6'; expected a number in -inf..5"),
        ({"N": "0.5"}, 1, None, "N has value '0.5'; expected a number in 1..inf"),
        ({"N": "nan"}, None, None, "N has value 'nan'; expected a number in -inf..inf"),
        ({"N": "0.5"}, 0.75, 1.5, "N has value '0.5'; expected a number in 0.75..1.5"),
        ({"N": "ten"}, 0, 100, "N has value 'ten'; expected a number"),
        ({"N": ""}, 0, 100, None),
        (
            {"MLOPS_RUNTIME_PARAM_N": envelope("numeric", 250)},
            0,
            100,
            "MLOPS_RUNTIME_PARAM_N has value 250; expected a number in 0..100",
        ),
        (
            {"MLOPS_RUNTIME_PARAM_N": envelope("credential", {"credentialType": "s3"})},
            0,
            100,
            "MLOPS_RUNTIME_PARAM_N has value {'credentialType': 's3'}; expected a number",
        ),
        (
            {"MLOPS_RUNTIME_PARAM_N": envelope("numeric", True)},
            0,
            100,
            "MLOPS_RUNTIME_PARAM_N has value True; expected a number",
        ),
    ],
)
def test_float_errors(
    env: dict[str, str], minimum: float | None, maximum: float | None, message: str | None
) -> None:
    params = Params(env)
    if message is None:  # an empty bare variable is unset, not an error
        assert params.float("N", 3.0, minimum=minimum, maximum=maximum) == 3.0
        return
    with pytest.raises(RuntimeParameterError) as err:
        params.float("N", minimum=minimum, maximum=maximum)
    assert str(err.value) == message


# -- Params.int --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", 1),
        ("199", 199),
        ("3.0", 3),
        (envelope("numeric", 4), 4),
        (envelope("numeric", "8"), 8),
    ],
)
def test_int_values(raw: str, expected: int) -> None:
    got = Params({"MLOPS_RUNTIME_PARAM_W": raw}).int("W", minimum=1, maximum=199)
    assert got == expected
    assert type(got) is int


def test_int_default_when_unset() -> None:
    assert Params({}).int("W", 7, minimum=1) == 7
    assert Params({}).int("W") is None


@pytest.mark.parametrize(
    ("raw", "minimum", "maximum", "message"),
    [
        ("0", 1, 199, "CUSTOM_MODEL_WORKERS has value '0'; expected a number in 1..199"),
        ("200", 1, 199, "CUSTOM_MODEL_WORKERS has value '200'; expected a number in 1..199"),
        ("2.5", 1, 199, "CUSTOM_MODEL_WORKERS has value '2.5'; expected a whole number"),
        ("two", 1, 199, "CUSTOM_MODEL_WORKERS has value 'two'; expected a number"),
        # Unbounded above: infinity must fail cleanly, not with OverflowError.
        ("inf", 1, None, "CUSTOM_MODEL_WORKERS has value 'inf'; expected a whole number"),
        (
            "1" * 400,
            1,
            None,
            f"CUSTOM_MODEL_WORKERS has value '{'1' * 400}'; expected a whole number",
        ),
    ],
)
def test_int_errors(raw: str, minimum: int, maximum: int | None, message: str) -> None:
    with pytest.raises(RuntimeParameterError) as err:
        Params({"CUSTOM_MODEL_WORKERS": raw}).int(
            "CUSTOM_MODEL_WORKERS", minimum=minimum, maximum=maximum
        )
    assert str(err.value) == message


def test_int_error_names_prefixed_source() -> None:
    env = {"MLOPS_RUNTIME_PARAM_W": envelope("numeric", 1.5), "W": "2"}
    with pytest.raises(RuntimeParameterError) as err:
        Params(env).int("W")
    assert str(err.value) == "MLOPS_RUNTIME_PARAM_W has value 1.5; expected a whole number"


def test_choice_accepts_any_case_and_defaults_when_unset() -> None:
    choices = ("asyncio", "uvloop", "auto")
    assert Params({}).choice("L", choices, "asyncio") == "asyncio"
    assert Params({"L": " UVLoop "}).choice("L", choices, "asyncio") == "uvloop"
    assert (
        Params({"MLOPS_RUNTIME_PARAM_L": envelope("string", "auto")}).choice(
            "L", choices, "asyncio"
        )
        == "auto"
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"L": "tokio"}, "L has value 'tokio'; expected one of asyncio, uvloop, auto"),
        (
            {"MLOPS_RUNTIME_PARAM_L": envelope("numeric", 3)},
            "MLOPS_RUNTIME_PARAM_L has value 3; expected one of asyncio, uvloop, auto",
        ),
    ],
)
def test_choice_names_the_variable_and_the_choices(env: dict[str, str], message: str) -> None:
    with pytest.raises(RuntimeParameterError) as info:
        Params(env).choice("L", ("asyncio", "uvloop", "auto"), "asyncio")
    assert str(info.value) == message
