"""Post-rollback verification: the rollback plan's checklist, run against a live server.

:func:`run_checks` is the reusable core (the ``tandem verify`` command and ``tandem rollback`` are
thin wrappers, and a rollout controller can call it directly). It never raises for a failing
server: every item of the checklist becomes a :class:`CheckResult` with a status, what was seen
and how long it took, grouped as the seed's "Verification After Rollback" groups them:

- **Immediate**: ``/ping`` 200, ``/health/`` 200, ``/info/`` reports the expected stack, and (with a
  log file) "Starting <Framework> server" is the last start line and no errors of the other stack
  or tracebacks follow it.
- **Functional**: a single-row and a batch prediction succeed (and match ``--expected``),
  ``/stats/`` is valid JSON with ``mem_info``, the ``/metrics`` request counters moved by the test
  requests, and (when the server runs with ``--monitor``) its MLOps reports flow: the
  ``drum_mlops_reports_total`` counters show the test predictions sent and none failed or dropped.
- **Full** (``full=True``): a bounded load test (error rate under 0.1 %, P99 reported), every code
  dir answers on its target type's route, declared extension routes answer as declared, and the
  server's own OTLP exporter counters show spans exported and no export failures.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx

from tandem.ops import framework_of, normalize_stack, stack_from_info
from tandem.ops.logscan import LogScan, scan_log
from tandem.ops.promtext import parse_samples, total
from tandem.ops.samples import (
    TRANSFORM,
    UNSTRUCTURED,
    Sample,
    SampleError,
    code_dir_sample,
    compare_expected,
    default_unstructured_sample,
    expected_rows,
    file_sample,
    route_for,
)
from tandem.quantiles import percentile

IMMEDIATE = "Immediate"
FUNCTIONAL = "Functional"
FULL = "Full"
#: Group names, in report order, with the seed's time budget for each.
GROUPS: dict[str, str] = {
    IMMEDIATE: "Immediate checks (< 5 minutes)",
    FUNCTIONAL: "Functional checks (< 15 minutes)",
    FULL: "Full verification (< 1 hour)",
}

#: Route templates (the ``endpoint`` label of ``drum_requests_total``) that score a model.
PREDICTION_ENDPOINTS = frozenset(
    {
        "/predict/",
        "/predictions/",
        "/invocations",
        "/transform/",
        "/predictUnstructured/",
        "/predictionsUnstructured/",
    }
)
REQUESTS_METRIC = "drum_requests_total"
SPANS_EXPORTED_METRIC = "drum_otel_spans_exported_total"
EXPORT_FAILURES_METRIC = "drum_otel_export_failures_total"
MLOPS_REPORTS_METRIC = "drum_mlops_reports_total"
FRAMEWORK_NAMES = {"flask": "Flask", "fastapi": "FastAPI"}
OTHER_STACK_NAMES = {"flask": "FastAPI/Uvicorn", "fastapi": "Flask/Gunicorn/Werkzeug"}


class Status(StrEnum):
    """Outcome of one checklist item."""

    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"


@dataclass
class CheckResult:
    """One checklist item: pass/fail/skip, what was seen and how long it took."""

    group: str
    name: str
    """Stable identifier (``ping``, ``predict_single``, ``model:regression`` ...)."""
    title: str
    status: Status
    observed: str
    seconds: float
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "group": self.group,
            "name": self.name,
            "title": self.title,
            "status": str(self.status),
            "observed": self.observed,
            "seconds": round(self.seconds, 4),
            "data": self.data,
        }


@dataclass(frozen=True)
class CodeDirSpec:
    """A code dir to check, and the URL of the server that serves it (default: the main URL)."""

    path: Path
    url: str | None = None

    @classmethod
    def parse(cls, value: str) -> CodeDirSpec:
        """``DIR`` or ``DIR=http://host:port`` (a server of its own)."""
        for scheme in ("=http://", "=https://"):
            index = value.find(scheme)
            if index > 0:
                return cls(Path(value[:index]), value[index + 1 :].rstrip("/"))
        return cls(Path(value))


@dataclass(frozen=True)
class ExtensionRoute:
    """An extension route and the status it must answer."""

    path: str
    status: int
    method: str = "GET"

    @classmethod
    def parse(cls, value: str) -> ExtensionRoute:
        """``PATH=STATUS`` or ``METHOD PATH=STATUS`` (``POST /custom/hook=200``)."""
        spec, sep, status = value.rpartition("=")
        if not sep or not status.strip().isdigit():
            raise ValueError(f"expected PATH=STATUS, got {value!r}")
        method, _, path = spec.strip().rpartition(" ")
        path = path.strip()
        if not path.startswith("/"):
            raise ValueError(f"the path must start with '/', got {path!r}")
        return cls(path, int(status), (method.strip() or "GET").upper())


def parse_header(value: str) -> tuple[str, str]:
    """``'Name: value'`` as a pair; raises ``ValueError`` when there is no colon or no name."""
    name, sep, text = value.partition(":")
    if not sep or not name.strip():
        raise ValueError(f"expected 'Name: value', got {value!r}")
    return name.strip(), text.strip()


@dataclass
class VerifyOptions:
    """What to verify beyond the basics (every field is optional)."""

    expect_server: str | None = None
    """``flask``, ``gunicorn`` or ``fastapi`` (aliases ``werkzeug``, ``uvicorn``); ``flask`` and
    ``fastapi`` are checked against ``/info/`` ``drumServer``, ``gunicorn`` also against
    ``processServer``."""
    log_file: Path | None = None
    payload: Path | None = None
    payload_content_type: str | None = None
    code_dirs: list[CodeDirSpec] = field(default_factory=list)
    expected: Path | None = None
    tolerance: float = 0.0
    full: bool = False
    load_seconds: float = 30.0
    load_requests: int = 20_000
    load_concurrency: int = 4
    max_error_rate: float = 0.001
    extension_routes: list[ExtensionRoute] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    require_traces: bool = False
    trace_wait: float = 15.0
    require_mlops: bool = False
    """Fail (instead of skip) the MLOps item when the server does not run with ``--monitor``."""
    mlops_wait: float = 15.0
    """Seconds to wait for the server's background reporting to catch up with the test
    predictions."""
    timeout: float = 10.0
    batch_rows: int = 100


@dataclass
class VerifyReport:
    """The outcome of :func:`run_checks`."""

    url: str
    checks: list[CheckResult]
    started_at: float
    """Epoch seconds."""
    seconds: float
    expect_server: str | None
    full: bool

    @property
    def ok(self) -> bool:
        """No item failed (skipped items do not fail verification)."""
        return not self.failed

    @property
    def failed(self) -> list[CheckResult]:
        """Items that failed."""
        return [c for c in self.checks if c.status is Status.FAIL]

    @property
    def passed(self) -> list[CheckResult]:
        """Items that passed."""
        return [c for c in self.checks if c.status is Status.PASS]

    @property
    def skipped(self) -> list[CheckResult]:
        """Items that were skipped."""
        return [c for c in self.checks if c.status is Status.SKIP]

    def check(self, name: str) -> CheckResult | None:
        """The item called ``name``, if it ran."""
        return next((c for c in self.checks if c.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``tandem verify --json``)."""
        return {
            "url": self.url,
            "ok": self.ok,
            "expect_server": self.expect_server,
            "full": self.full,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_at)),
            "seconds": round(self.seconds, 3),
            "summary": {
                "passed": len(self.passed),
                "failed": len(self.failed),
                "skipped": len(self.skipped),
            },
            "failed": [c.name for c in self.failed],
            "checks": [c.to_dict() for c in self.checks],
        }


Outcome = tuple[Status, str, dict[str, Any]]
Progress = Callable[[str, CheckResult | None], None]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _snippet(response: httpx.Response, limit: int = 80) -> str:
    try:
        text = response.content.decode("utf-8", errors="replace")
    except httpx.HTTPError:
        return ""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _strict_json(data: bytes) -> Any:
    """JSON that refuses ``NaN``/``Infinity`` (``/stats/`` must be valid JSON)."""

    def reject(constant: str) -> Any:
        raise ValueError(f"invalid JSON constant {constant}")

    return json.loads(data, parse_constant=reject)


class _Verifier:
    """One verification run: shared state between the checklist items."""

    def __init__(self, url: str, options: VerifyOptions, progress: Progress | None) -> None:
        self.url = url.rstrip("/")
        self.options = options
        self.progress = progress
        self.client = httpx.Client(headers=options.headers, timeout=options.timeout)
        self.checks: list[CheckResult] = []
        self.expected_stack = normalize_stack(options.expect_server)
        self.info: dict[str, Any] | None = None
        self.target_type: str | None = None
        self.log_scan: LogScan | None = None
        self.sample: Sample | None = None
        self.sample_error: str | None = None
        self.responses: dict[str, httpx.Response] = {}
        self.predictions_answered = 0
        self.baseline: list[tuple[str, dict[str, str], float]] | None = None
        self.baseline_error: str | None = None

    # -- plumbing ----------------------------------------------------------------------------

    def request(
        self, method: str, path: str, base: str | None = None, **kwargs: Any
    ) -> tuple[httpx.Response | None, str, float]:
        """``(response, error, seconds)``; ``error`` is empty when an answer came back."""
        started = time.perf_counter()
        try:
            response = self.client.request(method, (base or self.url) + path, **kwargs)
            return response, "", time.perf_counter() - started
        except httpx.TimeoutException:
            return (
                None,
                f"no answer within {self.options.timeout:g} s",
                time.perf_counter() - started,
            )
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}", time.perf_counter() - started

    def run(self, group: str, name: str, title: str, check: Callable[[], Outcome]) -> CheckResult:
        """Run one item; an unexpected exception fails the item, never the run."""
        if self.progress is not None:
            self.progress(title, None)
        started = time.perf_counter()
        try:
            status, observed, data = check()
        except Exception as exc:  # a broken check must not hide the others
            status, observed, data = Status.FAIL, f"{type(exc).__name__}: {exc}", {}
        result = CheckResult(
            group, name, title, status, observed, time.perf_counter() - started, data
        )
        self.checks.append(result)
        if self.progress is not None:
            self.progress(title, result)
        return result

    def scrape(self, base: str | None = None) -> list[tuple[str, dict[str, str], float]]:
        """The samples of ``/metrics``; raises ``RuntimeError`` with a reason when unavailable."""
        response, error, _ = self.request("GET", "/metrics", base)
        if response is None:
            raise RuntimeError(f"cannot scrape /metrics: {error}")
        if response.status_code != 200:
            raise RuntimeError(
                f"/metrics answered {response.status_code} {_snippet(response)}".rstrip()
            )
        return parse_samples(response.text)

    # -- Immediate -------------------------------------------------------------------------

    def _status_200(self, path: str) -> Outcome:
        response, error, _ = self.request("GET", path)
        if response is None:
            return Status.FAIL, error, {}
        data = {"status_code": response.status_code}
        observed = f"{response.status_code} {_snippet(response)}"
        return (Status.PASS if response.status_code == 200 else Status.FAIL), observed, data

    def check_info(self) -> Outcome:
        response, error, _ = self.request("GET", "/info/")
        if response is None:
            return Status.FAIL, error, {}
        if response.status_code != 200:
            return Status.FAIL, f"{response.status_code} {_snippet(response)}", {}
        try:
            info = response.json()
        except ValueError:
            return Status.FAIL, f"200 but not JSON: {_snippet(response)}", {}
        if not isinstance(info, dict):
            return Status.FAIL, f"200 but not a JSON object: {_snippet(response)}", {}
        self.info = info
        self.target_type = info.get("targetType")
        framework = info.get("drumServer") or info.get("drum_server")
        process = info.get("processServer")
        data = {
            "drumServer": framework,
            "processServer": process,
            "targetType": self.target_type,
            "stack": stack_from_info(info),
        }
        seen = f"drumServer={framework}, processServer={process}, targetType={self.target_type}"
        expected = self.expected_stack
        if expected is None:
            return Status.PASS, f"{seen} (no --expect-server)", data
        want = framework_of(expected)
        problems = []
        if str(framework).lower() != want:
            problems.append(f"drumServer is {framework}, expected {want}")
        if expected == "gunicorn" and str(process).lower() != "gunicorn":
            problems.append(f"processServer is {process}, expected gunicorn")
        if problems:
            return Status.FAIL, f"{'; '.join(problems)} ({seen})", data
        return Status.PASS, f"{seen}", data

    def check_logs(self) -> Outcome:
        path = self.options.log_file
        if path is None:
            return Status.SKIP, "no --log-file given", {}
        expected = self.expected_stack
        framework = (
            framework_of(expected)
            if expected
            else str((self.info or {}).get("drumServer") or "").lower() or None
        )
        try:
            scan = scan_log(path, framework)
        except OSError as exc:
            return Status.FAIL, f"cannot read {path}: {exc.strerror or exc}", {}
        self.log_scan = scan
        data: dict[str, Any] = {
            "start_line": scan.start_line_no,
            "start_text": scan.start_text,
            "lines_scanned": scan.lines_scanned,
            "other_stack_errors": [f.__dict__ for f in scan.other_stack_errors],
            "tracebacks": [f.__dict__ for f in scan.tracebacks],
            "other_errors": len(scan.errors),
        }
        problems: list[str] = []
        if expected is not None:
            want = FRAMEWORK_NAMES[framework_of(expected)]
            if scan.start_line_no is None:
                problems.append(f"no 'Starting {want} server' line in {path.name}")
            elif scan.start_framework != want.lower():
                problems.append(
                    f"the last start is not 'Starting {want} server' (line {scan.start_line_no})"
                )
            elif expected == "gunicorn" and scan.start_process != "gunicorn":
                problems.append(f"the last start is not on gunicorn (line {scan.start_line_no})")
        other = OTHER_STACK_NAMES.get(framework or "", "other-stack")
        if scan.other_stack_errors:
            first = scan.other_stack_errors[0]
            problems.append(
                f"{len(scan.other_stack_errors)} {other} error(s), first at line "
                f"{first.line_no}: {first.text}"
            )
        if scan.tracebacks:
            first = scan.tracebacks[0]
            problems.append(
                f"{len(scan.tracebacks)} traceback(s), first at line {first.line_no}: {first.text}"
            )
        since = (
            f"since line {scan.start_line_no} ({_start_summary(scan.start_text)})"
            if scan.start_line_no is not None
            else "whole file (no start line)"
        )
        if problems:
            return Status.FAIL, f"{since}: " + "; ".join(problems), data
        extra = f"; {len(scan.errors)} other error line(s)" if scan.errors else ""
        return (
            Status.PASS,
            f"{since}: no {other} errors, no tracebacks in {scan.lines_scanned} lines{extra}",
            data,
        )

    # -- Functional ------------------------------------------------------------------------

    def resolve_sample(self) -> None:
        """Choose the prediction payload: --payload, the code dir's data, or /info/'s code dir."""
        options = self.options
        target = self.target_type
        if target is None:
            target = _declared_target(
                next((s.path for s in options.code_dirs if s.url in (None, self.url)), None)
            )
            self.target_type = target
        try:
            if options.payload is not None:
                sample = file_sample(options.payload, target, options.batch_rows)
            else:
                own = next((s for s in options.code_dirs if s.url in (None, self.url)), None)
                if own is not None:
                    sample = code_dir_sample(own.path, target, options.batch_rows)
                else:
                    sample = self._sample_from_info(target)
            if options.payload_content_type:
                sample = Sample(
                    sample.source,
                    options.payload_content_type,
                    sample.single,
                    sample.batch,
                    sample.single_rows,
                    sample.batch_rows,
                )
            self.sample = sample
        except SampleError as exc:
            self.sample_error = str(exc)

    def _sample_from_info(self, target: str | None) -> Sample:
        code_dir = (self.info or {}).get("codeDir")
        if code_dir and Path(code_dir).is_dir():
            sample = code_dir_sample(Path(code_dir), target, self.options.batch_rows)
            return Sample(
                f"{sample.source} (code dir from /info/)",
                sample.content_type,
                sample.single,
                sample.batch,
                sample.single_rows,
                sample.batch_rows,
            )
        if target == UNSTRUCTURED:
            return default_unstructured_sample("no --payload, --code-dir or readable code dir")
        where = (
            f"the server's code dir {code_dir} (from /info/) is not readable here"
            if code_dir
            else "/info/ did not name a readable code dir"
        )
        raise SampleError(
            f"no sample data: pass --payload FILE or --code-dir DIR with a data.csv ({where})"
        )

    def validate(
        self, response: httpx.Response, target: str | None, rows: int | None
    ) -> tuple[bool, str]:
        """Whether a scoring response is a success of the right shape, and what it showed."""
        status = response.status_code
        content_type = response.headers.get("content-type", "")
        if status != 200:
            return False, f"{status} {_snippet(response, 160)}"
        if target == TRANSFORM:
            if not content_type.startswith("multipart/form-data"):
                return False, f"200 but {content_type or 'no content type'}, expected multipart"
            return True, f"200 multipart answer, {len(response.content)} bytes"
        if target == UNSTRUCTURED:
            return True, f"200 {content_type or 'no content type'}, {len(response.content)} bytes"
        try:
            body = response.json()
        except ValueError:
            return False, f"200 but not JSON: {_snippet(response)}"
        predictions = body.get("predictions") if isinstance(body, dict) else None
        if not isinstance(predictions, list):
            return False, f"200 but no predictions list: {_snippet(response)}"
        if rows is not None and len(predictions) != rows:
            return False, f"200 with {len(predictions)} predictions for {rows} rows"
        return True, f"200, {len(predictions)} prediction(s)"

    def check_prediction(self, kind: str) -> Outcome:
        if self.sample is None:
            return Status.FAIL, self.sample_error or "no sample payload", {}
        sample = self.sample
        if kind == "batch" and sample.single == sample.batch:
            why = (
                "unstructured: the single request is the whole payload"
                if self.target_type == UNSTRUCTURED
                else "the payload cannot be split into rows"
            )
            return Status.SKIP, why, {}
        body = sample.single if kind == "single" else sample.batch
        rows = sample.single_rows if kind == "single" else sample.batch_rows
        route = route_for(self.target_type)
        response, error, _ = self.request(
            "POST", route, content=body, headers={"Content-Type": sample.content_type}
        )
        data: dict[str, Any] = {"route": route, "rows": rows, "source": sample.source}
        if response is None:
            return Status.FAIL, f"POST {route}: {error}", data
        self.predictions_answered += 1
        self.responses[kind] = response
        data["status_code"] = response.status_code
        ok, seen = self.validate(response, self.target_type, rows)
        observed = f"POST {route} ({_rows(rows)} from {_short_source(sample.source)}): {seen}"
        return (Status.PASS if ok else Status.FAIL), observed, data

    def check_expected(self) -> Outcome:
        path = self.options.expected
        if path is None:
            return Status.SKIP, "no --expected given", {}
        wanted_rows = expected_rows(path)
        kind = "batch"
        if "batch" not in self.responses or (
            wanted_rows is not None
            and self.sample is not None
            and wanted_rows == self.sample.single_rows
            and wanted_rows != self.sample.batch_rows
        ):
            kind = "single"
        response = self.responses.get(kind)
        if response is None:
            return Status.FAIL, "no prediction response to compare (see the prediction items)", {}
        if response.status_code != 200:
            return Status.FAIL, f"the {kind} prediction answered {response.status_code}", {}
        structured = self.target_type not in (UNSTRUCTURED, TRANSFORM)
        result = compare_expected(path, response.content, structured, self.options.tolerance)
        status = Status.PASS if result.ok else Status.FAIL
        return status, f"{kind} prediction: {result.detail}", {"compared": kind}

    def check_stats(self) -> Outcome:
        response, error, _ = self.request("GET", "/stats/")
        if response is None:
            return Status.FAIL, error, {}
        if response.status_code != 200:
            return Status.FAIL, f"{response.status_code} {_snippet(response)}", {}
        try:
            doc = _strict_json(response.content)
        except ValueError as exc:
            return Status.FAIL, f"200 but not valid JSON: {exc}", {}
        mem = doc.get("mem_info") if isinstance(doc, dict) else None
        if not isinstance(mem, dict) or not mem:
            return Status.FAIL, "200 JSON without a mem_info object", {}
        parts = [f"{key} {mem[key]}" for key in ("drum_rss", "total", "avail") if key in mem]
        processes = doc.get("drum_info")
        count = f", {len(processes)} process(es)" if isinstance(processes, list) else ""
        data = {"mem_info": mem}
        return Status.PASS, f"mem_info: {', '.join(parts)} MiB{count}", data

    def check_metrics(self) -> Outcome:
        if self.baseline is None:
            return Status.FAIL, self.baseline_error or "no baseline scrape", {}
        try:
            after = self.scrape()
        except RuntimeError as exc:
            return Status.FAIL, str(exc), {}
        names = {name for name, _, _ in after}
        if REQUESTS_METRIC not in names:
            return Status.FAIL, f"no {REQUESTS_METRIC} in /metrics", {}

        def counts(samples: list[tuple[str, dict[str, str], float]]) -> tuple[float, float]:
            requests = [
                (labels, value) for name, labels, value in samples if name == REQUESTS_METRIC
            ]
            everything = sum(v for labels, v in requests if labels.get("endpoint") != "/metrics")
            scoring = sum(
                v for labels, v in requests if labels.get("endpoint") in PREDICTION_ENDPOINTS
            )
            return everything, scoring

        before_all, before_scoring = counts(self.baseline)
        after_all, after_scoring = counts(after)
        moved, scored = after_all - before_all, after_scoring - before_scoring
        data = {
            "requests_delta": moved,
            "prediction_requests_delta": scored,
            "prediction_requests_sent": self.predictions_answered,
        }
        observed = (
            f"{REQUESTS_METRIC} +{moved:g} (prediction routes +{scored:g} for "
            f"{self.predictions_answered} sent)"
        )
        if moved < 1 or scored < self.predictions_answered:
            return Status.FAIL, f"counters did not move as expected: {observed}", data
        return Status.PASS, observed, data

    def check_mlops(self) -> Outcome:
        """The rollback plan's "MLOps metrics are flowing": test predictions reported, none failed.

        Reports leave the server off the request path, so this waits (``mlops_wait``) until
        ``drum_mlops_reports_total{outcome="sent"}`` has moved by at least the structured
        predictions that answered 200 since the first scrape, and fails as soon as a report failed
        or was dropped in that time.
        """
        if self.baseline is None:
            return Status.FAIL, self.baseline_error or "no baseline scrape", {}

        def outcomes(samples: list[tuple[str, dict[str, str], float]]) -> dict[str, float]:
            counts = {"sent": 0.0, "failed": 0.0, "dropped": 0.0}
            for name, labels, value in samples:
                if name == MLOPS_REPORTS_METRIC and labels.get("outcome") in counts:
                    counts[labels["outcome"]] += value
            return counts

        before = outcomes(self.baseline)
        expected = 0
        if self.target_type not in (TRANSFORM, UNSTRUCTURED):
            expected = sum(1 for r in self.responses.values() if r.status_code == 200)
        deadline = time.monotonic() + self.options.mlops_wait
        while True:
            try:
                samples = self.scrape()
            except RuntimeError as exc:
                return Status.FAIL, str(exc), {}
            if not any(name == MLOPS_REPORTS_METRIC for name, _, _ in samples):
                message = f"monitoring not on (no {MLOPS_REPORTS_METRIC} in /metrics)"
                if self.options.require_mlops:
                    return Status.FAIL, f"{message}; --require-mlops was given", {}
                return Status.SKIP, message, {}
            after = outcomes(samples)
            delta = {key: after[key] - before[key] for key in after}
            data = {"delta": delta, "totals": after, "predictions_sent": expected}
            seen = (
                f"{MLOPS_REPORTS_METRIC} sent +{delta['sent']:g} for {expected} prediction(s), "
                f"failed +{delta['failed']:g}, dropped +{delta['dropped']:g}"
            )
            if delta["failed"] > 0 or delta["dropped"] > 0:
                return Status.FAIL, f"{seen}: reports are not reaching the MLOps channel", data
            if self.target_type in (TRANSFORM, UNSTRUCTURED):
                return (
                    Status.SKIP,
                    f"{self.target_type} predictions are not reported (as in DRUM); {seen}",
                    data,
                )
            if expected == 0:
                return Status.SKIP, f"{seen}: no prediction succeeded, so none to check", data
            if delta["sent"] >= expected:
                return Status.PASS, seen, data
            if time.monotonic() >= deadline:
                return (
                    Status.FAIL,
                    f"{seen} after waiting {self.options.mlops_wait:g} s: the reports did not "
                    "reach the channel",
                    data,
                )
            time.sleep(0.25)

    # -- Full ------------------------------------------------------------------------------

    def check_load(self) -> Outcome:
        if self.sample is None:
            return Status.FAIL, f"no payload to load-test with: {self.sample_error}", {}
        options = self.options
        route = route_for(self.target_type)
        url = self.url + route
        body, content_type = self.sample.single, self.sample.content_type
        deadline = time.monotonic() + options.load_seconds
        lock = threading.Lock()
        issued = 0
        latencies: list[float] = []
        errors: Counter[str] = Counter()

        def worker() -> None:
            nonlocal issued
            with httpx.Client(headers=options.headers, timeout=options.timeout) as client:
                while True:
                    with lock:
                        if issued >= options.load_requests or time.monotonic() >= deadline:
                            return
                        issued += 1
                    started = time.perf_counter()
                    failure = None
                    try:
                        response = client.post(
                            url, content=body, headers={"Content-Type": content_type}
                        )
                        if not 200 <= response.status_code < 300:
                            failure = str(response.status_code)
                    except httpx.HTTPError as exc:
                        failure = type(exc).__name__
                    elapsed = time.perf_counter() - started
                    with lock:
                        latencies.append(elapsed)
                        if failure is not None:
                            errors[failure] += 1

        started = time.perf_counter()
        workers = max(1, options.load_concurrency)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tandem-load") as pool:
            for future in [pool.submit(worker) for _ in range(workers)]:
                future.result()
        wall = time.perf_counter() - started
        count = len(latencies)
        failed = sum(errors.values())
        rate = failed / count if count else 1.0
        p50, p95, p99 = (percentile(latencies, q) for q in (0.50, 0.95, 0.99))
        data = {
            "route": route,
            "requests": count,
            "errors": failed,
            "error_rate": rate,
            "errors_by_kind": dict(errors),
            "seconds": round(wall, 3),
            "requests_per_second": round(count / wall, 1) if wall else None,
            "concurrency": workers,
            "p50_ms": None if p50 is None else round(p50 * 1000, 2),
            "p95_ms": None if p95 is None else round(p95 * 1000, 2),
            "p99_ms": None if p99 is None else round(p99 * 1000, 2),
        }
        if count == 0:
            return Status.FAIL, "no request was sent", data
        kinds = ", ".join(f"{kind}×{n}" for kind, n in errors.most_common(3))
        observed = (
            f"{count} requests to {route} in {wall:.1f} s ({count / wall:.0f}/s, {workers} "
            f"clients): errors {failed} ({rate * 100:.3f} %{'; ' + kinds if kinds else ''}), "
            f"p50 {_ms(p50 or 0)}, p95 {_ms(p95 or 0)}, p99 {_ms(p99 or 0)}"
        )
        limit = options.max_error_rate
        if rate >= limit:
            return Status.FAIL, f"{observed}; error rate must stay under {limit * 100:g} %", data
        return Status.PASS, observed, data

    def check_code_dir(self, spec: CodeDirSpec) -> Outcome:
        base = spec.url or self.url
        if base == self.url and self.info is not None:
            info: Any = self.info
        else:
            response, error, _ = self.request("GET", "/info/", base)
            if response is None:
                return Status.FAIL, f"{base}/info/: {error}", {}
            if response.status_code != 200:
                return Status.FAIL, f"{base}/info/ answered {response.status_code}", {}
            info = response.json()
        target = info.get("targetType") if isinstance(info, dict) else None
        declared = _declared_target(spec.path)
        data: dict[str, Any] = {"url": base, "targetType": target, "declared": declared}
        if declared and target and declared.lower() != str(target).lower():
            return (
                Status.FAIL,
                f"{base} serves targetType={target} but {spec.path} declares {declared}",
                data,
            )
        try:
            sample = code_dir_sample(spec.path, target, self.options.batch_rows)
        except SampleError as exc:
            return Status.FAIL, str(exc), data
        route = route_for(target)
        response, error, _ = self.request(
            "POST", route, base, content=sample.batch, headers={"Content-Type": sample.content_type}
        )
        if response is None:
            return Status.FAIL, f"POST {route}: {error}", data
        ok, seen = self.validate(response, target, sample.batch_rows)
        where = "" if base == self.url else f" at {base}"
        observed = f"targetType={target}: POST {route}{where}: {seen}"
        return (Status.PASS if ok else Status.FAIL), observed, data

    def check_extension_route(self, route: ExtensionRoute) -> Outcome:
        response, error, _ = self.request(route.method, route.path)
        if response is None:
            return Status.FAIL, f"{route.method} {route.path}: {error}", {}
        data = {"status_code": response.status_code, "declared": route.status}
        observed = (
            f"{route.method} {route.path} answered {response.status_code} {_snippet(response)} "
            f"(declared {route.status})"
        )
        return (
            (Status.PASS if response.status_code == route.status else Status.FAIL),
            observed,
            data,
        )

    def check_extensions_loaded(self) -> Outcome:
        scan = self.log_scan
        if scan is not None and scan.extensions_loaded:
            return Status.PASS, f"log: loaded extensions from {scan.extensions_loaded[-1]}", {}
        return Status.SKIP, "no --extension-route given", {}

    def check_traces(self) -> Outcome:
        deadline = time.monotonic() + self.options.trace_wait
        while True:
            try:
                samples = self.scrape()
            except RuntimeError as exc:
                return Status.FAIL, str(exc), {}
            names = {name for name, _, _ in samples}
            if SPANS_EXPORTED_METRIC not in names and EXPORT_FAILURES_METRIC not in names:
                message = f"tracing not configured (no {SPANS_EXPORTED_METRIC} in /metrics)"
                if self.options.require_traces:
                    return Status.FAIL, f"{message}; --require-traces was given", {}
                return Status.SKIP, message, {}
            exported = total(samples, SPANS_EXPORTED_METRIC)
            failures = total(samples, EXPORT_FAILURES_METRIC)
            data = {"spans_exported": exported, "export_failures": failures}
            seen = f"{SPANS_EXPORTED_METRIC}={exported:g}, {EXPORT_FAILURES_METRIC}={failures:g}"
            if failures > 0:
                return Status.FAIL, f"{seen}: the exporter failed to deliver spans", data
            if exported > 0:
                return Status.PASS, seen, data
            if time.monotonic() >= deadline:
                return (
                    Status.FAIL,
                    f"{seen} after waiting {self.options.trace_wait:g} s: no span reached the "
                    "collector",
                    data,
                )
            time.sleep(0.5)

    # -- the checklist -----------------------------------------------------------------------

    def execute(self) -> None:
        """Run every item in the seed's order."""
        try:
            self.baseline = self.scrape()
        except RuntimeError as exc:
            self.baseline_error = str(exc)
        self.run(IMMEDIATE, "ping", "/ping returns 200", lambda: self._status_200("/ping"))
        self.run(IMMEDIATE, "health", "/health/ returns 200", lambda: self._status_200("/health/"))
        expected = self.expected_stack
        info_title = (
            f"/info/ reports {_stack_label(expected)}" if expected else "/info/ reports the stack"
        )
        self.run(IMMEDIATE, "info", info_title, self.check_info)
        framework = framework_of(expected) if expected else None
        logs_title = (
            f"no {OTHER_STACK_NAMES[framework]} errors in the log since the last start"
            if framework
            else "no other-stack errors or tracebacks in the log since the last start"
        )
        self.run(IMMEDIATE, "logs", logs_title, self.check_logs)

        self.resolve_sample()
        self.run(FUNCTIONAL, "predict_single", "single-row prediction succeeds", self._single)
        self.run(FUNCTIONAL, "predict_batch", "batch prediction succeeds", self._batch)
        self.run(FUNCTIONAL, "expected_output", "predictions match --expected", self.check_expected)
        self.run(FUNCTIONAL, "stats", "/stats/ returns valid metrics", self.check_stats)
        self.run(
            FUNCTIONAL,
            "metrics",
            "/metrics counters move after the test requests",
            self.check_metrics,
        )
        self.run(FUNCTIONAL, "mlops", "MLOps metrics are flowing", self.check_mlops)

        options = self.options
        if options.full:
            self.run(
                FULL,
                "load_test",
                f"load test ({options.load_seconds:g} s, error rate < "
                f"{options.max_error_rate * 100:g} %)",
                self.check_load,
            )
            if options.code_dirs:
                for spec in options.code_dirs:
                    self.run(
                        FULL,
                        f"model:{spec.path.name}",
                        f"{spec.path.name} answers on its target type's route",
                        functools.partial(self.check_code_dir, spec),
                    )
            else:
                self.run(
                    FULL,
                    "model_types",
                    "every model type answers",
                    lambda: (Status.SKIP, "no --code-dir given", {}),
                )
            if options.extension_routes:
                for route in options.extension_routes:
                    self.run(
                        FULL,
                        f"extension_route:{route.path}",
                        f"extension route {route.method} {route.path} answers {route.status}",
                        functools.partial(self.check_extension_route, route),
                    )
            else:
                self.run(FULL, "extensions", "custom extensions load", self.check_extensions_loaded)
        if options.full or options.require_traces:
            self.run(FULL, "traces", "OTel traces reach the collector", self.check_traces)

    def _single(self) -> Outcome:
        return self.check_prediction("single")

    def _batch(self) -> Outcome:
        return self.check_prediction("batch")


def _rows(rows: int | None) -> str:
    if rows is None:
        return "whole payload"
    return f"{rows} row" if rows == 1 else f"{rows} rows"


def _short_source(source: str) -> str:
    head, _, tail = source.partition(" (")
    name = Path(head).name if "/" in head else head
    return f"{name} ({tail}" if tail else name


def _start_summary(text: str | None) -> str:
    if not text:
        return ""
    index = text.find("Starting ")
    summary = text[index:] if index >= 0 else text
    summary = summary.split(" — ")[0]
    return summary if len(summary) <= 70 else summary[:69] + "…"


def _stack_label(stack: str) -> str:
    if stack == "gunicorn":
        return 'drumServer "flask" on gunicorn'
    return f'drumServer "{framework_of(stack)}"'


def _declared_target(code_dir: Path | None) -> str | None:
    if code_dir is None:
        return None
    try:
        from tandem.metadata import read_metadata

        metadata = read_metadata(code_dir)
    except Exception:  # an unreadable metadata file just declares nothing
        return None
    value = (metadata or {}).get("targetType")
    return str(value).lower() if value else None


def run_checks(
    url: str, options: VerifyOptions | None = None, progress: Progress | None = None
) -> VerifyReport:
    """Run the verification checklist against the server at ``url`` and return the report.

    ``progress`` (optional) is called with ``(title, None)`` when an item starts and
    ``(title, result)`` when it ends. The function never raises for an unhealthy server; it
    raises ``ValueError`` only for an unknown ``expect_server``.
    """
    options = options or VerifyOptions()
    if options.expect_server is not None and normalize_stack(options.expect_server) is None:
        raise ValueError(
            f"unknown server type {options.expect_server!r}: expected flask, gunicorn or fastapi"
        )
    started_at = time.time()
    started = time.perf_counter()
    verifier = _Verifier(url, options, progress)
    try:
        verifier.execute()
    finally:
        verifier.client.close()
    return VerifyReport(
        url=verifier.url,
        checks=verifier.checks,
        started_at=started_at,
        seconds=time.perf_counter() - started,
        expect_server=normalize_stack(options.expect_server),
        full=options.full,
    )


def verify_for_controller(
    url: str,
    expect_server: str | None = None,
    code_dir: Path | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """The rollout controller's entry point: :func:`run_checks` as a JSON-able dict.

    Returns ``passed``, ``summary`` (one line), ``items`` (``name``, ``passed``, ``saw``, plus
    ``status``, ``group``, ``seconds``) and the full ``report``. ``overrides`` are
    :class:`VerifyOptions` fields.
    """
    options = VerifyOptions(
        expect_server=expect_server,
        code_dirs=[CodeDirSpec(Path(code_dir))] if code_dir is not None else [],
        **overrides,
    )
    report = run_checks(url, options)
    failed = [check.name for check in report.failed]
    return {
        "passed": report.ok,
        "summary": "all checks passed" if not failed else "failed: " + ", ".join(failed),
        "items": [
            {
                "name": check.name,
                "passed": check.status is not Status.FAIL,
                "saw": check.observed,
                "status": str(check.status),
                "group": check.group,
                "seconds": round(check.seconds, 4),
            }
            for check in report.checks
        ],
        "report": report.to_dict(),
    }
