"""Hypothesis properties of the request parsers (issue 13, section 4): CSV, Matrix Market and
multipart never fail in an unplanned way, and the fast paths agree with pandas exactly."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tandem.core import fastpath, payload
from tandem.core.fastjson import format_floats
from tandem.errors import InvalidInput

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
names = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,8}", fullmatch=True)


@st.composite
def numeric_tables(draw: st.DrawFn, min_rows: int = 1) -> tuple[list[str], list[list[float]]]:
    width = draw(st.integers(2, 6))
    header = draw(st.lists(names, min_size=width, max_size=width, unique=True))
    rows = draw(
        st.lists(st.lists(finite, min_size=width, max_size=width), min_size=min_rows, max_size=40)
    )
    return header, rows


def _csv(header: list[str], rows: list[list[float]]) -> bytes:
    lines = [",".join(header)] + [",".join(repr(float(v)) for v in row) for row in rows]
    return ("\n".join(lines) + "\n").encode()


@PROPERTY
@given(numeric_tables())
def test_fast_numeric_csv_is_what_pandas_reads(table: tuple[list[str], list[list[float]]]) -> None:
    data = _csv(*table)
    fast = payload.fast_numeric_csv(data)
    frame = pd.read_csv(io.BytesIO(data))
    if fast is not None:  # it may decline; when it answers it must be pandas' answer
        header, values = fast
        assert header == list(frame.columns)
        assert np.array_equal(values, frame.to_numpy(dtype=np.float64))


@PROPERTY
@given(numeric_tables())
def test_large_body_reader_is_what_pandas_reads(table: tuple[list[str], list[list[float]]]) -> None:
    data = _csv(*table)
    got = fastpath._read_large(data)
    frame = pd.read_csv(io.BytesIO(data))
    if got is not None:
        header, values = got
        assert header == [str(c) for c in frame.columns]
        assert np.array_equal(values, frame.to_numpy(dtype=np.float64))


@PROPERTY
@given(st.lists(st.floats(width=64), min_size=1, max_size=50))
def test_float_formatting_is_pandas_json(values: list[float]) -> None:
    expected = pd.Series(values, dtype=np.float64).to_json(orient="records", double_precision=10)
    assert format_floats(values) == expected


@PROPERTY
@given(st.binary(max_size=400))
def test_any_csv_body_parses_or_is_the_clients_fault(data: bytes) -> None:
    try:
        payload.read_dataframe(data, "text/csv")
    except InvalidInput:
        pass
    payload.fast_numeric_csv(data)  # declines (None) or parses; never raises


@PROPERTY
@given(st.binary(max_size=400))
def test_any_mtx_body_parses_or_is_the_clients_fault(data: bytes) -> None:
    try:
        payload.read_dataframe(data, payload.MTX_MIMETYPE)
    except InvalidInput:
        pass


@PROPERTY
@given(
    st.lists(
        st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=2, max_size=4),
        min_size=1,
        max_size=10,
    ).filter(lambda rows: len({len(r) for r in rows}) == 1)
)
def test_matrix_market_round_trip(rows: list[list[float]]) -> None:
    from scipy.io import mmwrite
    from scipy.sparse import csr_matrix

    dense = np.array(rows, dtype=np.float64)
    out = io.BytesIO()
    mmwrite(out, csr_matrix(dense), precision=17)
    frame = payload.read_dataframe(out.getvalue(), payload.MTX_MIMETYPE)
    assert np.array_equal(frame.sparse.to_dense().to_numpy(), dense)


boundaries = st.from_regex(r"[A-Za-z0-9'()+_,./:=?-]{1,40}", fullmatch=True)


@PROPERTY
@given(boundaries, st.binary(max_size=400))
def test_any_multipart_body_parses_without_raising(boundary: str, body: bytes) -> None:
    form = payload.parse_multipart(body, f"multipart/form-data; boundary={boundary}")
    assert form is not None


@PROPERTY
@given(
    st.binary(max_size=2000),
    st.from_regex(r"[a-z]{1,10}\.csv", fullmatch=True),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=30),
)
def test_multipart_file_part_round_trips(content: bytes, filename: str, field: str) -> None:
    import httpx

    request = httpx.Request(
        "POST", "http://x/", files={"X": (filename, content)}, data={"note": field}
    )
    body = request.read()
    form = payload.parse_multipart(body, request.headers["content-type"])
    assert form is not None
    assert form.files["X"].data == content
    assert form.files["X"].filename == filename
    assert form.fields["note"].data.decode() == field


@pytest.mark.parametrize("value", [0.1, 1e-300, 1e300, -0.0, math.pi])
def test_float_formatting_examples(value: float) -> None:
    expected = pd.Series([value]).to_json(orient="records", double_precision=10)
    assert format_floats([value]) == expected
