"""Rendering a :class:`~tandem.ops.verify.VerifyReport`: ``rich`` tables for people, JSON."""

from __future__ import annotations

import json
import sys
from typing import IO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tandem.ops.verify import GROUPS, Status, VerifyReport

_STYLE = {Status.PASS: "bold green", Status.FAIL: "bold red", Status.SKIP: "yellow"}
_LABEL = {Status.PASS: "PASS", Status.FAIL: "FAIL", Status.SKIP: "SKIP"}


def make_console(file: IO[str] | None = None) -> Console:
    """A console for reports: the terminal's width, or 140 columns when writing to a file/pipe."""
    stream = file or sys.stdout
    is_tty = hasattr(stream, "isatty") and stream.isatty()
    return Console(file=stream, width=None if is_tty else 140, soft_wrap=False, highlight=False)


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.1f} s"


def report_table(report: VerifyReport) -> Table:
    """One table, a section per group (Immediate, Functional, Full)."""
    table = Table(expand=False, show_lines=False)
    table.add_column("Result", no_wrap=True)
    table.add_column("Check", overflow="fold")
    table.add_column("Observed", overflow="fold")
    table.add_column("Time", justify="right", no_wrap=True)
    first = True
    for group, title in GROUPS.items():
        checks = [check for check in report.checks if check.group == group]
        if not checks:
            continue
        if not first:
            table.add_section()
        first = False
        table.add_row("", Text(title, style="bold"), "", "")
        for check in checks:
            table.add_row(
                Text(_LABEL[check.status], style=_STYLE[check.status]),
                Text(check.title),
                Text(check.observed),
                _duration(check.seconds),
            )
    return table


def summary_line(report: VerifyReport) -> str:
    """One line: verdict, counts, duration, target."""
    verdict = "PASSED" if report.ok else "FAILED"
    stack = f" (expected {report.expect_server})" if report.expect_server else ""
    line = (
        f"Verification {verdict}: {len(report.passed)} passed, {len(report.failed)} failed, "
        f"{len(report.skipped)} skipped in {report.seconds:.1f} s against {report.url}{stack}"
    )
    if report.failed:
        line += "\nFailed: " + ", ".join(check.name for check in report.failed)
    return line


def print_report(report: VerifyReport, console: Console | None = None) -> None:
    """The report as one table per group, then the summary line."""
    console = console or make_console()
    console.print(report_table(report))
    if not report.full:
        console.print(
            Text(
                "Full verification not run (add --full for the load test, model types, "
                "extension routes and traces).",
                style="dim",
            )
        )
    style = "bold green" if report.ok else "bold red"
    console.print(Text(summary_line(report), style=style))


def report_json(report: VerifyReport) -> str:
    """The report as indented JSON."""
    return json.dumps(report.to_dict(), indent=2, sort_keys=False, default=str)
