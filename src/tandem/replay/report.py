"""The replay report: one JSON-ready document, rendered as terminal tables and as an HTML page."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tandem.quantiles import percentile
from tandem.replay.compare import CompareOptions
from tandem.replay.loader import BadLine
from tandem.replay.runner import ERROR, MATCH, NOT_COMPARED, Result
from tandem.version import __version__

REPORT_VERSION = 1


@dataclass(frozen=True)
class Thresholds:
    """What the exit status gates on."""

    min_match_rate: float = 100.0
    """Percent of compared requests that must match."""
    max_p99_ratio: float = 1.2
    """Candidate p99 over baseline p99, at most."""
    check_latency: bool = True
    """False in recording mode unless ``--max-p99-ratio`` was given: recorded latencies are
    server-side times, the candidate's are round trips, so their ratio is only informative."""


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return round(a / b, 4)


def _latency(values: list[float], source: str) -> dict[str, Any]:
    return {
        "source": source,
        "count": len(values),
        "p50_ms": _ms(percentile(values, 0.50)),
        "p95_ms": _ms(percentile(values, 0.95)),
        "p99_ms": _ms(percentile(values, 0.99)),
    }


def _rate(matched: int, compared: int) -> float | None:
    return None if compared == 0 else round(100.0 * matched / compared, 4)


def build_report(
    results: Sequence[Result],
    bad_lines: Sequence[BadLine],
    *,
    candidate_url: str,
    baseline_url: str | None,
    request_files: Sequence[str],
    options: CompareOptions,
    thresholds: Thresholds,
    max_differences: int = 20,
    concurrency: int = 10,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Everything about one replay, as a JSON-ready dict (``--output`` writes it as is)."""
    mode = "baseline" if baseline_url is not None else "recording"
    kinds = ("status", "content_type", "header", "body")
    totals: dict[str, int] = {
        "requests": len(results),
        "compared": 0,
        "matched": 0,
        "mismatched": 0,
        "errors": 0,
        "status_mismatches": 0,
        "content_type_mismatches": 0,
        "header_mismatches": 0,
        "body_mismatches": 0,
        "not_compared": 0,
        "bodies_not_compared": 0,
        "bad_lines": len(bad_lines),
    }
    routes: dict[str, dict[str, Any]] = {}
    route_latency: dict[str, tuple[list[float], list[float]]] = {}
    base_lat: list[float] = []
    cand_lat: list[float] = []
    differences: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for result in results:
        request = result.request
        key = request.route_key
        route = routes.setdefault(
            key,
            {
                "route": key,
                "requests": 0,
                "matched": 0,
                "mismatched": 0,
                "errors": 0,
                "status_mismatches": 0,
                "body_mismatches": 0,
                "not_compared": 0,
            },
        )
        lat_b, lat_c = route_latency.setdefault(key, ([], []))
        route["requests"] += 1
        if result.candidate.latency_seconds is not None:
            cand_lat.append(result.candidate.latency_seconds)
            lat_c.append(result.candidate.latency_seconds)
        if result.baseline_latency_seconds is not None:
            base_lat.append(result.baseline_latency_seconds)
            lat_b.append(result.baseline_latency_seconds)
        where = {
            "request": request.label,
            "method": request.method,
            "path": request.path,
            "route": key,
            "request_id": request.request_id,
        }
        if result.verdict == NOT_COMPARED:
            totals["not_compared"] += 1
            route["not_compared"] += 1
            continue
        totals["compared"] += 1
        if result.verdict == ERROR:
            totals["errors"] += 1
            route["errors"] += 1
            for side, outcome in (("candidate", result.candidate), ("baseline", result.baseline)):
                if outcome is not None and outcome.error is not None:
                    errors.append({**where, "side": side, "error": outcome.error})
            continue
        comparison = result.comparison
        assert comparison is not None
        if not comparison.body_compared:
            totals["bodies_not_compared"] += 1
        if result.verdict == MATCH:
            totals["matched"] += 1
            route["matched"] += 1
            continue
        totals["mismatched"] += 1
        route["mismatched"] += 1
        for kind in kinds:
            if kind in comparison.kinds:
                totals[f"{kind}_mismatches"] += 1
        if "status" in comparison.kinds:
            route["status_mismatches"] += 1
        if "body" in comparison.kinds:
            route["body_mismatches"] += 1
        for diff in comparison.differences:
            if len(differences) >= max_differences:
                break
            differences.append({**where, **diff.to_dict()})
    for key, route in routes.items():
        lat_b, lat_c = route_latency[key]
        route["match_rate"] = _rate(route["matched"], route["requests"] - route["not_compared"])
        route["baseline_p99_ms"] = _ms(percentile(lat_b, 0.99))
        route["candidate_p99_ms"] = _ms(percentile(lat_c, 0.99))

    baseline_source = "measured round trip" if mode == "baseline" else "recorded (server-side)"
    latency: dict[str, Any] = {
        "baseline": _latency(base_lat, baseline_source),
        "candidate": _latency(cand_lat, "measured round trip"),
    }
    for q in ("p50", "p95", "p99"):
        latency[f"{q}_ratio"] = _ratio(
            latency["candidate"][f"{q}_ms"], latency["baseline"][f"{q}_ms"]
        )
    match_rate = _rate(totals["matched"], totals["compared"])
    failures: list[str] = []
    if match_rate is None:
        failures.append("no request could be compared")
    elif match_rate < thresholds.min_match_rate:
        failures.append(
            f"match rate {match_rate:g} % is below the minimum of {thresholds.min_match_rate:g} %"
        )
    p99_ratio = latency["p99_ratio"]
    if thresholds.check_latency:
        if p99_ratio is None:
            failures.append("the p99 latency ratio could not be computed")
        elif p99_ratio > thresholds.max_p99_ratio:
            failures.append(
                f"p99 latency ratio {p99_ratio:g} is above the maximum of "
                f"{thresholds.max_p99_ratio:g}"
            )
    return {
        "report_version": REPORT_VERSION,
        "tandem_version": __version__,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": mode,
        "baseline": baseline_url if baseline_url is not None else "recorded responses",
        "candidate": candidate_url,
        "request_files": list(request_files),
        "settings": {
            "concurrency": concurrency,
            "timeout_seconds": timeout,
            "float_tolerance": options.float_tolerance,
            "significant_digits": options.significant_digits,
            "ignored_headers": sorted(options.ignored_headers),
            "ignored_fields": sorted(options.ignored_fields),
        },
        "totals": totals,
        "match_rate": match_rate,
        "latency": latency,
        "routes": sorted(routes.values(), key=lambda r: r["route"]),
        "differences": differences,
        "errors": errors[:max_differences],
        "bad_lines": [b.to_dict() for b in bad_lines],
        "thresholds": {
            "min_match_rate": thresholds.min_match_rate,
            "max_p99_ratio": thresholds.max_p99_ratio,
            "latency_checked": thresholds.check_latency,
        },
        "passed": not failures,
        "failures": failures,
    }


# -- rendering ------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return value
    import json

    return json.dumps(value, ensure_ascii=False, default=str)


def _clip(text: str, width: int = 80) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _summary_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    t = report["totals"]
    rate = report["match_rate"]
    rows = [
        ("Baseline", report["baseline"]),
        ("Candidate", report["candidate"]),
        ("Requests", str(t["requests"])),
        ("Compared", str(t["compared"])),
        ("Matched", str(t["matched"])),
        ("Match rate", "–" if rate is None else f"{rate:g} %"),
        ("Errors", str(t["errors"])),
        ("Status mismatches", str(t["status_mismatches"])),
        ("Content-type mismatches", str(t["content_type_mismatches"])),
        ("Header mismatches", str(t["header_mismatches"])),
        ("Body mismatches", str(t["body_mismatches"])),
        ("Bad lines skipped", str(t["bad_lines"])),
    ]
    if t["not_compared"]:
        rows.append(("Not compared (no expected answer)", str(t["not_compared"])))
    if t["bodies_not_compared"]:
        rows.append(("Bodies not compared (stream/not recorded)", str(t["bodies_not_compared"])))
    return rows


def _latency_rows(report: dict[str, Any]) -> list[tuple[str, ...]]:
    lat = report["latency"]
    rows: list[tuple[str, ...]] = []
    for side in ("baseline", "candidate"):
        s = lat[side]
        rows.append(
            (f"{side} ({s['source']})", _fmt(s["p50_ms"]), _fmt(s["p95_ms"]), _fmt(s["p99_ms"]))
        )
    rows.append(
        (
            "ratio candidate/baseline",
            _fmt(lat["p50_ratio"]),
            _fmt(lat["p95_ratio"]),
            _fmt(lat["p99_ratio"]),
        )
    )
    return rows


ROUTE_COLUMNS = (
    "Route",
    "Requests",
    "Matched",
    "Match %",
    "Errors",
    "Status",
    "Body",
    "p99 base ms",
    "p99 cand ms",
)
DIFF_COLUMNS = (
    "Request",
    "Route",
    "Kind",
    "Where",
    "Row",
    "Column",
    "Baseline",
    "Candidate",
    "Note",
)


def _route_rows(report: dict[str, Any]) -> list[tuple[str, ...]]:
    return [
        (
            r["route"],
            str(r["requests"]),
            str(r["matched"]),
            _fmt(r["match_rate"]),
            str(r["errors"]),
            str(r["status_mismatches"]),
            str(r["body_mismatches"]),
            _fmt(r["baseline_p99_ms"]),
            _fmt(r["candidate_p99_ms"]),
        )
        for r in report["routes"]
    ]


def _diff_rows(report: dict[str, Any], clip: int = 60) -> list[tuple[str, ...]]:
    return [
        (
            d["request"],
            d["route"],
            d["kind"],
            d["where"],
            _fmt(d["row"]),
            _fmt(d["column"]),
            _clip(_fmt(d["baseline"]), clip),
            _clip(_fmt(d["candidate"]), clip),
            d["note"],
        )
        for d in report["differences"]
    ]


def verdict_line(report: dict[str, Any]) -> str:
    """``PASS`` or ``FAIL: reason; reason``."""
    if report["passed"]:
        return "PASS"
    return "FAIL: " + "; ".join(report["failures"])


def print_report(report: dict[str, Any], console: Any) -> None:
    """Print the report as tables on a :class:`rich.console.Console`."""
    from rich.table import Table

    summary = Table(title="tandem replay", show_header=False)
    summary.add_column("", style="bold")
    summary.add_column("")
    for name, value in _summary_rows(report):
        summary.add_row(name, value)
    console.print(summary)

    latency = Table(title="Latency (ms)")
    for column in ("Side", "p50", "p95", "p99"):
        latency.add_column(column, justify="left" if column == "Side" else "right")
    for row in _latency_rows(report):
        latency.add_row(*row)
    console.print(latency)

    routes = Table(title="Per route")
    for column in ROUTE_COLUMNS:
        routes.add_column(column, justify="left" if column == "Route" else "right")
    for row in _route_rows(report):
        routes.add_row(*row)
    console.print(routes)

    if report["differences"]:
        diffs = Table(title=f"First {len(report['differences'])} differences")
        for column in DIFF_COLUMNS:
            diffs.add_column(column, overflow="fold")
        for row in _diff_rows(report):
            diffs.add_row(*row)
        console.print(diffs)
    if report["errors"]:
        errors = Table(title="Errors")
        for column in ("Request", "Side", "Error"):
            errors.add_column(column, overflow="fold")
        for e in report["errors"]:
            errors.add_row(e["request"], e["side"], e["error"])
        console.print(errors)
    if report["bad_lines"]:
        bad = Table(title="Skipped lines")
        for column in ("File", "Line", "Reason"):
            bad.add_column(column, overflow="fold")
        for b in report["bad_lines"]:
            bad.add_row(b["source"], str(b["line"]), b["reason"])
        console.print(bad)
    style = "bold green" if report["passed"] else "bold red"
    console.print(verdict_line(report), style=style, markup=False, highlight=False)


# -- HTML ----------------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1d2330}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0}
th,td{border:1px solid #d5d9e0;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f2f4f7}td.num{text-align:right;font-variant-numeric:tabular-nums}
code,td.val{font-family:ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap;
word-break:break-all;max-width:32rem}
.pass{color:#fff;background:#1a7f37;padding:.4rem .8rem;border-radius:4px;display:inline-block}
.fail{color:#fff;background:#cf222e;padding:.4rem .8rem;border-radius:4px;display:inline-block}
"""


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            cls = ' class="num"' if i in numeric else ""
            cells.append(f"<td{cls}>{html.escape(cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_html(report: dict[str, Any]) -> str:
    """A self-contained HTML page (inline CSS, no scripts, no external resources)."""
    verdict = verdict_line(report)
    badge = "pass" if report["passed"] else "fail"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>tandem replay report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>tandem replay report</h1>",
        f'<p class="{badge}">{html.escape(verdict)}</p>',
        f"<p>Generated {html.escape(report['generated_at'])} by tandem "
        f"{html.escape(report['tandem_version'])}; requests from "
        f"{html.escape(', '.join(report['request_files']))}.</p>",
        "<h2>Summary</h2>",
        _table(("", ""), _summary_rows(report), {1}),
        "<h2>Latency (ms)</h2>",
        _table(("Side", "p50", "p95", "p99"), _latency_rows(report), {1, 2, 3}),
        "<h2>Per route</h2>",
        _table(ROUTE_COLUMNS, _route_rows(report), set(range(1, 9))),
    ]
    if report["differences"]:
        parts += [
            f"<h2>First {len(report['differences'])} differences</h2>",
            _table(DIFF_COLUMNS, _diff_rows(report, clip=400), {4}),
        ]
    if report["errors"]:
        errors = [(e["request"], e["side"], e["error"]) for e in report["errors"]]
        parts += ["<h2>Errors</h2>", _table(("Request", "Side", "Error"), errors, set())]
    if report["bad_lines"]:
        bad = [(b["source"], str(b["line"]), b["reason"]) for b in report["bad_lines"]]
        parts += ["<h2>Skipped lines</h2>", _table(("File", "Line", "Reason"), bad, {1})]
    settings = [(k, _fmt(v)) for k, v in report["settings"].items()]
    settings += [(f"threshold {k}", _fmt(v)) for k, v in report["thresholds"].items()]
    parts += [
        "<h2>Settings</h2>",
        _table(("Setting", "Value"), settings, set()),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
