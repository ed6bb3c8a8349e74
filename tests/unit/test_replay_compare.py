"""The replay comparer: statuses, content types, headers, JSON structure, streams, bytes."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from tandem.replay.compare import (
    Answer,
    CompareOptions,
    compare,
    locate,
    normalise_content_type,
    numbers_equal,
    parse_event_stream,
    render_path,
)

JSON = "application/json"


def _json(doc: Any, status: int = 200, headers: list[tuple[str, str]] | None = None) -> Answer:
    return Answer(status, JSON, headers or [], json.dumps(doc).encode())


BINARY = {
    "predictions": [
        {"no": 0.01798621, "yes": 0.98201379},
        {"no": 0.5, "yes": 0.5},
    ]
}


def _shifted(doc: dict[str, Any], row: int, column: str, delta: float) -> dict[str, Any]:
    out = json.loads(json.dumps(doc))
    out["predictions"][row][column] += delta
    return out


@pytest.mark.parametrize(
    ("a", "b", "tolerance", "digits", "equal"),
    [
        (1.0, 1.0, None, None, True),
        (6, 6.0, None, None, True),
        (0.98201379, 0.98203379, None, None, False),
        (0.98201379, 0.98203379, 1e-4, None, True),
        (0.98201379, 0.98203379, 1e-5, None, False),
        (0.98201379, 0.98203379, None, 4, True),
        (0.98201379, 0.98203379, None, 5, False),
        (15.0, 15.00003, None, 5, True),
        (15.0, 15.00003, None, 7, False),
        (0.01798621, 0.01796621, None, 3, True),
        (0.01798621, 0.01796621, None, 4, False),
        (-2.5, 2.5, 1.0, 3, False),
        (0.0, 1e-12, None, 3, False),
        (0.0, 1e-12, 1e-9, None, True),
        (math.nan, math.nan, None, None, True),
        (math.nan, 1.0, 1e9, 1, False),
        (math.inf, math.inf, None, None, True),
        (math.inf, 1e308, 1e300, 1, False),
    ],
)
def test_numbers_equal(
    a: float, b: float, tolerance: float | None, digits: int | None, equal: bool
) -> None:
    assert numbers_equal(a, b, tolerance, digits) is equal
    assert numbers_equal(b, a, tolerance, digits) is equal


def test_identical_answers_match() -> None:
    result = compare(_json(BINARY), _json(BINARY), CompareOptions())
    assert result.matched and result.count == 0 and result.body_compared


def test_fifth_decimal_is_reported_with_row_class_and_both_values() -> None:
    candidate = _shifted(BINARY, 0, "yes", 2e-5)
    result = compare(_json(BINARY), _json(candidate), CompareOptions())
    assert result.kinds == {"body"}
    (diff,) = result.differences
    assert diff.where == "predictions[0].yes"
    assert (diff.row, diff.column) == (0, "yes")
    assert diff.baseline == 0.98201379
    assert diff.candidate == pytest.approx(0.98203379)


def test_tolerance_and_significant_digits_accept_small_changes() -> None:
    candidate = _shifted(BINARY, 0, "yes", 2e-5)
    assert compare(_json(BINARY), _json(candidate), CompareOptions(float_tolerance=1e-4)).matched
    assert compare(_json(BINARY), _json(candidate), CompareOptions(significant_digits=4)).matched
    assert not compare(
        _json(BINARY), _json(candidate), CompareOptions(significant_digits=6)
    ).matched


def test_status_mismatch_is_reported_alone() -> None:
    result = compare(_json(BINARY), _json({"message": "ERROR: boom"}, 500), CompareOptions())
    assert result.kinds == {"status"}
    (diff,) = result.differences
    assert (diff.where, diff.baseline, diff.candidate) == ("status", 200, 500)


def test_content_type_compared_after_normalising_spacing_and_case() -> None:
    a = Answer(200, "text/csv; charset=UTF-8", [], b"x")
    assert compare(a, Answer(200, "Text/CSV;charset=UTF-8", [], b"x"), CompareOptions()).matched
    result = compare(a, Answer(200, "text/csv", [], b"x"), CompareOptions())
    assert result.kinds == {"content_type"}
    assert normalise_content_type(None) is None


def test_headers_ignored_by_default_and_configurable() -> None:
    a = _json(BINARY, headers=[("X-Drum-Version", "1.0"), ("X-Request-ID", "a"), ("Date", "x")])
    b = _json(BINARY, headers=[("x-drum-version", "2.0"), ("x-request-id", "b"), ("date", "y")])
    assert compare(a, b, CompareOptions()).matched
    strict = CompareOptions(ignored_headers=frozenset({"date", "x-request-id"}))
    result = compare(a, b, strict)
    assert result.kinds == {"header"}
    assert [(d.where, d.baseline, d.candidate) for d in result.differences] == [
        ("x-drum-version", "1.0", "2.0")
    ]


def test_missing_header_and_credential_headers() -> None:
    a = _json(BINARY, headers=[("X-Drum-User-Http-Error", "true"), ("Set-Cookie", "a=1")])
    b = _json(BINARY, headers=[("Set-Cookie", "a=2")])
    result = compare(a, b, CompareOptions())
    assert [(d.where, d.baseline, d.candidate) for d in result.differences] == [
        ("x-drum-user-http-error", "true", "(missing)")
    ]


def test_unknown_headers_or_body_are_not_compared() -> None:
    recorded = Answer(200, JSON, None, None)
    result = compare(recorded, _json({"anything": 1}), CompareOptions())
    assert result.matched and not result.body_compared


def test_added_removed_and_type_changes() -> None:
    a = {"predictions": [1.0, 2.0], "meta": {"x": 1}}
    b = {"predictions": [1.0, 2.0, 3.0], "meta": {"x": "1", "y": True}}
    result = compare(_json(a), _json(b), CompareOptions())
    found = {(d.where, d.note) for d in result.differences}
    assert found == {
        ("predictions[2]", "only in candidate"),
        ("meta.y", "only in candidate"),
        ("meta.x", "type changed: number -> string"),
    }
    removed = compare(_json(b), _json(a), CompareOptions())
    assert ("predictions[2]", "only in baseline") in {
        (d.where, d.note) for d in removed.differences
    }
    only = next(d for d in removed.differences if d.where == "predictions[2]")
    assert (only.baseline, only.candidate, only.row) == (3.0, "(missing)", 2)


def test_regression_rows_and_extra_output_columns() -> None:
    a = {
        "predictions": [1.5, 2.5, 3.5],
        "extraModelOutput": {"columns": ["c1", "c2"], "index": [0, 1], "data": [[1, 2], [3, 4]]},
    }
    b = json.loads(json.dumps(a))
    b["predictions"][2] = 3.6
    b["extraModelOutput"]["data"][1][1] = 5
    result = compare(_json(a), _json(b), CompareOptions())
    found = {(d.where, d.row, d.column, d.baseline, d.candidate) for d in result.differences}
    assert found == {
        ("predictions[2]", 2, None, 3.5, 3.6),
        ("extraModelOutput.data[1][1]", 1, "c2", 4, 5),
    }


def test_nan_equals_nan_and_ignored_fields() -> None:
    a = Answer(200, JSON, [], b'{"v":NaN,"datarobot_association_id":"a","x":[1]}')
    b = Answer(200, JSON, [], b'{"v":NaN,"datarobot_association_id":"b","x":[1]}')
    assert compare(a, b, CompareOptions()).matched
    strict = CompareOptions(ignored_fields=frozenset())
    result = compare(a, b, strict)
    assert [d.where for d in result.differences] == ["datarobot_association_id"]


def test_difference_count_is_exact_but_kept_differences_are_capped() -> None:
    a = {"predictions": list(range(100))}
    b = {"predictions": [v + 1 for v in range(100)]}
    result = compare(_json(a), _json(b), CompareOptions(max_differences=5))
    assert result.count == 100
    assert len(result.differences) == 5


def test_non_json_bodies_compare_byte_for_byte() -> None:
    a = Answer(200, "text/csv", [], b"a,b\n1,2\n")
    result = compare(a, Answer(200, "text/csv", [], b"a,b\n1,3\n"), CompareOptions())
    (diff,) = result.differences
    assert diff.where == "bytes"
    assert "byte 6" in diff.note and "lengths 8 and 8" in diff.note
    # JSON-looking text under a non-JSON type is still compared byte for byte.
    c = Answer(200, "text/plain", [], b'{"a": 1}')
    assert not compare(c, Answer(200, "text/plain", [], b'{"a":1}'), CompareOptions()).matched
    # A JSON content type with a body that is not JSON falls back to bytes.
    d = Answer(200, JSON, [], b"not json")
    assert compare(d, Answer(200, JSON, [], b"not json"), CompareOptions()).matched


def test_event_streams_compare_per_event() -> None:
    def stream(words: list[str], association: str) -> bytes:
        out = b""
        for w in words:
            doc = {"choices": [{"delta": {"content": w}}], "datarobot_association_id": association}
            out += b"data: " + json.dumps(doc).encode() + b"\n\n"
        return out + b"data: [DONE]\n\n"

    ct = "text/event-stream; charset=utf-8"
    a = Answer(200, ct, [], stream(["Echo:", "hi"], "x"))
    assert compare(a, Answer(200, ct, [], stream(["Echo:", "hi"], "y")), CompareOptions()).matched
    result = compare(a, Answer(200, ct, [], stream(["Echo:", "ho"], "y")), CompareOptions())
    (diff,) = result.differences
    assert diff.where == "events[1].choices[0].delta.content"
    assert (diff.baseline, diff.candidate) == ("hi", "ho")
    assert parse_event_stream(b"data: [DONE]\n\n") == ["[DONE]"]


def test_paths_and_locations() -> None:
    assert render_path([]) == "$"
    assert render_path(["predictions", 3, "yes"]) == "predictions[3].yes"
    assert render_path(["a b", 0]) == "['a b'][0]"
    assert locate(["predictions", 3, "yes"], {}) == (3, "yes")
    assert locate(["predictions", 3], {}) == (3, None)
    assert locate(["choices", 0, "message", "content"], {}) == (0, "content")
    assert locate(["extraModelOutput", "data", 1, 0], {}) == (1, "0")
    assert locate(["datarobot_association_id"], {}) == (None, "datarobot_association_id")
