"""Request payloads: Content-Type parsing, multipart form data, CSV and Matrix Market."""

from __future__ import annotations

import math

import pytest

from tandem.core.payload import (
    CSV_MIMETYPES,
    MTX_MIMETYPE,
    Form,
    mimetype_for_filename,
    parse_content_type,
    parse_multipart,
    read_dataframe,
    read_sparse_colnames,
)
from tandem.errors import InvalidInput

# -- Content-Type ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, ("", None)),
        ("", ("", None)),
        ("text/csv", ("text/csv", None)),
        ("TEXT/CSV", ("TEXT/CSV", None)),
        (" text/csv ", ("text/csv", None)),
        ("text/csv; charset=UTF-8", ("text/csv", "UTF-8")),
        ("text/plain;charset=utf-16", ("text/plain", "utf-16")),
        ("text/plain; Charset=latin-1", ("text/plain", "latin-1")),
        ("text/plain; CHARSET=x", ("text/plain", "x")),
        ('text/plain; charset="utf-8"', ("text/plain", "utf-8")),
        ('text/plain; charset="a;b"', ("text/plain", "a;b")),
        ("text/plain; charset=", ("text/plain", None)),
        ("text/plain;;;", ("text/plain", None)),
        ("text/plain; =x", ("text/plain", None)),
        ("text/plain; charset*=UTF-8''utf-16", ("text/plain", None)),
        ("text/plain; charset=utf-8; charset=latin-1", ("text/plain", "latin-1")),
        ("; charset=x", ("", "x")),
        (";", ("", None)),
        ("application/json; boundary=zz", ("application/json", None)),
        ("text/\u20ac", ("text/?", None)),
        ("text/plain; charset=\u20ac", ("text/plain", "?")),
    ],
)
def test_parse_content_type(header: str | None, expected: tuple[str, str | None]) -> None:
    assert parse_content_type(header) == expected


MALICIOUS = [
    "\x00",
    "text/plain; charset=\x00",
    'text/plain; charset="unterminated',
    'text/plain; charset="\\"\\\\"',
    "text/plain; " + "; ".join(f"p{i}=v{i}" for i in range(2000)),
    "a" * 100_000 + "; charset=b",
    "text/plain; charset=" + "x" * 100_000,
    "multipart/form-data; boundary=" + "-" * 5000,
    "text/plain;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;",
    "=;=;=;=",
    '"""";;;"""',
    "text/plain; charset=\r\nX-Injected: 1",
    "\u202etxt/lmth",
    "日本語/テキスト; charset=シフトJIS",
    "\ud800",
    "text/csv, text/plain",
    "text/csv\tcharset=utf-8",
    "*/*; q=0.5",
]


@pytest.mark.parametrize("header", MALICIOUS)
def test_parse_content_type_never_raises(header: str) -> None:
    mimetype, charset = parse_content_type(header)
    assert isinstance(mimetype, str)
    assert charset is None or isinstance(charset, str)


def test_csv_mimetypes() -> None:
    assert CSV_MIMETYPES == frozenset({"", "text/csv", "text/plain"})
    assert MTX_MIMETYPE == "text/mtx"


# -- multipart ---------------------------------------------------------------------------------

CT = "multipart/form-data; boundary=BND"


def part(headers: str, data: bytes) -> bytes:
    return b"--BND\r\n" + headers.encode("latin-1") + b"\r\n\r\n" + data + b"\r\n"


def body(*parts: bytes) -> bytes:
    return b"".join(parts) + b"--BND--\r\n"


def file_part(name: str, filename: str, data: bytes, ctype: str = "text/csv") -> bytes:
    return part(
        f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        f"Content-Type: {ctype}",
        data,
    )


def field_part(name: str, data: bytes) -> bytes:
    return part(f'Content-Disposition: form-data; name="{name}"', data)


def test_files_and_fields_are_separated() -> None:
    form = parse_multipart(
        body(
            file_part("X", "data.csv", b"a,b\n1,2\n"),
            file_part("X.colnames", "cols.txt", b"a\nb\n", "application/octet-stream"),
            field_part("note", b"hello"),
            field_part("y", b"not a file"),
        ),
        CT,
    )
    assert isinstance(form, Form)
    assert sorted(form.files) == ["X", "X.colnames"]
    assert sorted(form.fields) == ["note", "y"]
    assert form.files["X"].filename == "data.csv"
    assert form.files["X"].data == b"a,b\n1,2\n"
    assert form.files["X"].name == "X"
    assert form.files["X.colnames"].data == b"a\nb\n"
    assert form.fields["note"].filename is None
    assert form.fields["note"].data == b"hello"
    assert form.fields["y"].data == b"not a file"


def test_a_plain_field_named_x_is_not_a_file() -> None:
    form = parse_multipart(body(field_part("X", b"a\n1\n")), CT)
    assert form.files == {}
    assert form.fields["X"].data == b"a\n1\n"


def test_empty_filename_still_makes_a_file_part() -> None:
    form = parse_multipart(body(file_part("X", "", b"a\n1\n")), CT)
    assert form.files["X"].filename == ""
    assert form.fields == {}


def test_first_part_with_a_name_wins() -> None:
    form = parse_multipart(
        body(
            file_part("X", "first.csv", b"first"),
            file_part("X", "second.csv", b"second"),
            field_part("f", b"1"),
            field_part("f", b"2"),
        ),
        CT,
    )
    assert form.files["X"].data == b"first"
    assert form.files["X"].filename == "first.csv"
    assert form.fields["f"].data == b"1"


def test_part_without_a_name_is_ignored() -> None:
    form = parse_multipart(
        body(part("Content-Disposition: form-data", b"x"), part("X-Other: 1", b"y")), CT
    )
    assert form.files == {}
    assert form.fields == {}


def test_binary_data_and_crlf_inside_parts_survive() -> None:
    payload = bytes(range(256)) + b"\r\n--BN\r\n" + b"\r\n"
    form = parse_multipart(body(file_part("X", "blob.bin", payload)), CT)
    assert form.files["X"].data == payload


def test_utf8_names_and_filenames() -> None:
    form = parse_multipart(
        body(file_part("X", "d\u00e9j\u00e0.csv".encode().decode("latin-1"), b"a\n1\n")), CT
    )
    assert form.files["X"].filename == "d\u00e9j\u00e0.csv"


def test_quoted_boundary() -> None:
    form = parse_multipart(body(field_part("a", b"1")), 'multipart/form-data; boundary="BND"')
    assert form.fields["a"].data == b"1"


def test_empty_body_is_an_empty_form() -> None:
    form = parse_multipart(b"", CT)
    assert form.files == {}
    assert form.fields == {}


@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data",
        "multipart/form-data; boundary=",
        'multipart/form-data; boundary=""',
        "multipart/form-data; charset=utf-8",
        "",
    ],
)
def test_missing_boundary(content_type: str) -> None:
    # Werkzeug leaves such a body unparsed; DRUM then sees raw bytes of that mimetype.
    assert parse_multipart(body(field_part("a", b"1")), content_type) is None


@pytest.mark.parametrize(
    ("payload", "content_type"),
    [
        (b"garbage", CT),
        (b"preamble\r\n" + body(field_part("a", b"1")), CT),
        (body(field_part("a", b"1")).replace(b"BND", b"XYZ"), CT),
        (b"--BND\r\nNoColonHeader\r\n\r\ndata\r\n--BND--\r\n", CT),
        (body(field_part("a", b"1")), "multipart/form-data; boundary=" + "a" * 200),
        (body(field_part("a", b"1")), "multipart/form-data; boundary=\u20ac"),
    ],
)
def test_malformed_bodies_give_an_empty_form(payload: bytes, content_type: str) -> None:
    # Werkzeug consumes a malformed body and finds no parts (DRUM then answers 422).
    form = parse_multipart(payload, content_type)
    assert form is not None and form.files == {}


# -- file-part formats and colnames ------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("X.mtx", "text/mtx"),
        ("data.tar.mtx", "text/mtx"),
        ("X.MTX", None),
        ("X.csv", None),
        ("X.txt", None),
        ("mtx", None),
        ("", None),
    ],
)
def test_mimetype_for_filename(filename: str, expected: str | None) -> None:
    assert mimetype_for_filename(filename) == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"a\nb\nc\n", ["a", "b", "c"]),
        (b"a\r\nb\r\n", ["a", "b"]),
        (b" spaced \n\tx\n", ["spaced", "x"]),
        (b"last-without-newline", ["last-without-newline"]),
        (b"a\n\n", ["a", ""]),
        (b"", []),
        ("\u00e9t\u00e9\n\u65e5\n".encode(), ["\u00e9t\u00e9", "\u65e5"]),
    ],
)
def test_read_sparse_colnames(data: bytes, expected: list[str]) -> None:
    assert read_sparse_colnames(data) == expected


# -- CSV ---------------------------------------------------------------------------------------


def test_csv_basic() -> None:
    df = read_dataframe(b"a,b\n1,x\n2,y\n", "text/csv")
    assert list(df.columns) == ["a", "b"]
    assert df["a"].tolist() == [1, 2]
    assert df["b"].tolist() == ["x", "y"]


@pytest.mark.parametrize("mimetype", [None, "", "text/plain", "text/csv"])
def test_csv_is_the_default_format(mimetype: str | None) -> None:
    assert read_dataframe(b"a\n1\n", mimetype)["a"].tolist() == [1]


def test_single_column_keeps_blank_lines_as_missing_values() -> None:
    df = read_dataframe(b"a\n1\n\n2\n", "text/csv")
    values = df["a"].tolist()
    assert len(values) == 3
    assert values[0] == 1.0 and math.isnan(values[1]) and values[2] == 2.0


def test_single_column_of_blank_rows() -> None:
    df = read_dataframe(b"text\n\n\n", "text/csv")
    assert df.shape == (2, 1)
    assert df["text"].isna().all()


def test_multi_column_drops_blank_lines() -> None:
    df = read_dataframe(b"a,b\n1,2\n\n3,4\n", "text/csv")
    assert df.values.tolist() == [[1, 2], [3, 4]]


def test_unicode_column_names() -> None:
    df = read_dataframe("\u00e9t\u00e9,\u65e5\n1,2\n".encode(), "text/csv")
    assert list(df.columns) == ["\u00e9t\u00e9", "\u65e5"]


@pytest.mark.parametrize("data", [b"", b"\n\n", b"\n"])
def test_empty_csv(data: bytes) -> None:
    with pytest.raises(InvalidInput) as err:
        read_dataframe(data, "text/csv")
    assert str(err.value) == "No columns to parse from file"


@pytest.mark.parametrize("data", [b"caf\xe9\n1\n", b"\xff\xfea,b\n"])
def test_non_utf8_csv(data: bytes) -> None:
    with pytest.raises(InvalidInput) as err:
        read_dataframe(data, "text/csv")
    assert str(err.value) == "Supplied CSV input file encoding must be UTF-8."


@pytest.mark.parametrize("data", [b'a,b\n"1,2\n', b"a,b\n1,2\n3,4,5,6,7\n"])
def test_malformed_csv(data: bytes) -> None:
    with pytest.raises(InvalidInput) as err:
        read_dataframe(data, "text/csv")
    assert str(err.value) == f"Pandas failed to read input binary data {data!r}"


# -- Matrix Market -----------------------------------------------------------------------------

MTX = b"%%MatrixMarket matrix coordinate real general\n2 3 2\n1 1 1.5\n2 3 2.0\n"


def test_mtx_with_colnames() -> None:
    df = read_dataframe(MTX, MTX_MIMETYPE, ["x", "y", "z"])
    assert list(df.columns) == ["x", "y", "z"]
    assert all(str(dtype).startswith("Sparse[float64") for dtype in df.dtypes)
    assert df.sparse.to_dense().values.tolist() == [[1.5, 0.0, 0.0], [0.0, 0.0, 2.0]]


def test_mtx_without_colnames() -> None:
    df = read_dataframe(MTX, MTX_MIMETYPE)
    assert list(df.columns) == [0, 1, 2]
    assert df.shape == (2, 3)


@pytest.mark.parametrize("data", [b"not mtx", b"", b"a,b\n1,2\n"])
def test_bad_mtx(data: bytes) -> None:
    with pytest.raises(InvalidInput) as err:
        read_dataframe(data, MTX_MIMETYPE)
    assert str(err.value).startswith("Failed to read Matrix Market input: ")
