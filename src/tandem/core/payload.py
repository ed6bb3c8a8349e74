"""Request payloads: Content-Type parsing, multipart form data, CSV and Matrix Market reading."""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from tandem.errors import InvalidInput, echo

CSV_MIMETYPES = frozenset({"", "text/csv", "text/plain"})
MTX_MIMETYPE = "text/mtx"


def _latin1(header: str) -> str:
    """HTTP header values are latin-1; replace anything else so parsing never raises."""
    return header.encode("latin-1", "replace").decode("latin-1")


def parse_content_type(header: str | None) -> tuple[str, str | None]:
    """Split a Content-Type header into (mimetype as sent, charset or None).

    The mimetype keeps its case, as DRUM's does: the structured-format check and the
    unstructured hook see ``Text/CSV`` as the client wrote it. Compare with ``.lower()``
    where Werkzeug itself is case-insensitive (form bodies, JSON).
    """
    if not header:
        return "", None
    latin = _latin1(header)
    _, options = parse_options_header(latin)
    charset = options.get(b"charset")
    return (
        latin.split(";", 1)[0].strip(),
        charset.decode("latin-1").strip() if charset else None,
    )


@dataclass
class FormPart:
    """One multipart part."""

    name: str
    filename: str | None
    data: bytes


@dataclass
class Form:
    """Parsed multipart/form-data body: file parts and plain fields by name (first wins)."""

    files: dict[str, FormPart] = field(default_factory=dict)
    fields: dict[str, FormPart] = field(default_factory=dict)


def parse_multipart(body: bytes, content_type: str) -> Form | None:
    """Parse a multipart/form-data body as Werkzeug (so DRUM) does.

    No boundary: None, and the caller treats the body as raw bytes. A malformed body: an empty
    form (Werkzeug consumes it and finds no parts), so the request gets DRUM's "Samples should
    be provided as" answer. Never raises.
    """
    _, options = parse_options_header(_latin1(content_type))
    boundary = options.get(b"boundary")
    if not boundary:
        return None
    form = Form()
    header_field = bytearray()
    header_value = bytearray()
    headers: dict[bytes, bytes] = {}
    chunks: list[bytes] = []

    def on_part_begin() -> None:
        headers.clear()
        chunks.clear()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        headers[bytes(header_field).lower()] = bytes(header_value)
        header_field.clear()
        header_value.clear()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        chunks.append(data[start:end])

    def on_part_end() -> None:
        _, disp = parse_options_header(headers.get(b"content-disposition", b""))
        raw_name = disp.get(b"name")
        if raw_name is None:
            return
        name = raw_name.decode("utf-8", "replace")
        raw_filename = disp.get(b"filename")
        filename = raw_filename.decode("utf-8", "replace") if raw_filename is not None else None
        part = FormPart(name, filename, b"".join(chunks))
        target = form.files if filename is not None else form.fields
        target.setdefault(name, part)

    try:
        parser = MultipartParser(
            boundary,
            {
                "on_part_begin": on_part_begin,
                "on_header_field": on_header_field,
                "on_header_value": on_header_value,
                "on_header_end": on_header_end,
                "on_part_data": on_part_data,
                "on_part_end": on_part_end,
            },
        )
        parser.write(body)
        parser.finalize()
    except (MultipartParseError, ValueError):
        return Form()
    return form


def mimetype_for_filename(filename: str) -> str | None:
    """DRUM derives a file part's format only from its extension: ``.mtx`` or CSV (None)."""
    return MTX_MIMETYPE if filename.endswith(".mtx") else None


def read_sparse_colnames(data: bytes) -> list[str]:
    """``X.colnames``: one UTF-8 column name per line."""
    return [line.strip().decode("utf-8") for line in io.BytesIO(data).readlines()]


#: Bytes that make pandas read a CSV differently from a plain split (quotes, spaces, comments).
_FAST_FORBIDDEN = b"\"'\t #_"
#: An integer cell too long for float64 to hold exactly (pandas may keep it as text).
_LONG_INTEGER = re.compile(rb"(?:^|,)[+-]?\d{16,}(?=,|\r?$)", re.MULTILINE)


@functools.lru_cache(maxsize=256)
def _plain_header(line: str) -> tuple[str, ...] | None:
    """The column names when pandas takes the header line as it is: unique, set, not numbers.

    Cached: a client sends the same header on every request, and the checks (a float parse
    per name) cost more than the rest of a one-row parse.
    """
    header = tuple(line.split(","))
    if len(header) < 2 or len(set(header)) != len(header) or "" in header:
        return None
    for name in header:
        try:
            float(name)
        except ValueError:
            continue
        return None
    return header


def _float_literal(cell: str) -> bool:
    return "." in cell or "e" in cell or "E" in cell


def fast_numeric_csv(data: bytes) -> tuple[list[str], np.ndarray] | None:
    """Parse a plain all-numeric CSV without pandas, or return None to use pandas.

    Only inputs where the result is provably what ``pandas.read_csv`` would give after the
    float64 conversion every numeric model applies: ASCII, a header of unique names, at least
    one data row and two columns, no quotes, spaces, comments, BOM or empty cells, every cell a
    finite number. pandas 3's parser rounds decimal strings exactly like ``float()`` (checked
    on a million values in the tests), so the floats are identical.
    """
    if not data or not data.isascii() or len(data.translate(None, _FAST_FORBIDDEN)) != len(data):
        return None
    if _LONG_INTEGER.search(data):
        return None
    text = data.decode("ascii")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) < 2:
        return None
    if text.find("\r") != -1:
        lines = [ln[:-1] if ln.endswith("\r") else ln for ln in lines]
    header = _plain_header(lines[0])
    if header is None:
        return None
    width = len(header)
    cells = [ln.split(",") for ln in lines[1:]]
    try:
        values = np.array(cells, dtype=np.float64)
    except ValueError:
        return None
    if values.ndim != 2 or values.shape[1] != width or not np.isfinite(values).all():
        return None
    # pandas reads a column of integer literals as int64, and scikit-learn then computes on
    # integers differently (numpy's generic loop, not BLAS): a column needs one cell written
    # as a float ("1.0", "1e3") or it is left to the general path.
    pending: Sequence[int] = range(width)
    for row in cells:
        pending = [col for col in pending if not _float_literal(row[col])]
        if not pending:
            return list(header), values
    return None


def read_dataframe(
    data: bytes, mimetype: str | None, sparse_colnames: list[str] | None = None
) -> pd.DataFrame:
    """Read CSV (default) or Matrix Market bytes into a DataFrame, with DRUM's error texts."""
    if mimetype == MTX_MIMETYPE:
        from scipy.io import mmread
        from scipy.sparse import csr_matrix

        try:
            matrix = mmread(io.BytesIO(data))
        except Exception as exc:
            raise InvalidInput(f"Failed to read Matrix Market input: {exc}") from None
        return pd.DataFrame.sparse.from_spmatrix(csr_matrix(matrix), columns=sparse_colnames)
    try:
        df = pd.read_csv(io.BytesIO(data))
        if df.shape[1] == 1:
            # A single-column CSV keeps blank lines as missing values (DRUM does the same).
            df = pd.read_csv(io.BytesIO(data), skip_blank_lines=False)
    except UnicodeDecodeError:
        raise InvalidInput("Supplied CSV input file encoding must be UTF-8.") from None
    except pd.errors.EmptyDataError as exc:
        raise InvalidInput(str(exc)) from None
    except pd.errors.ParserError:
        raise InvalidInput(f"Pandas failed to read input binary data {echo(data)}") from None
    return df
