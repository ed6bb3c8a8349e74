"""Prometheus metrics, identical in name, labels and meaning on every stack.

With several worker processes prometheus-client's multi-process mode is used (the launcher
sets ``PROMETHEUS_MULTIPROC_DIR`` before this module is imported), so a scrape answered by any
worker covers the whole server. Memory, restarts, OOM kills and the model info are computed at
scrape time by a custom collector from the server's processes and the supervisor's events.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import psutil
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from tandem.observability.state import Events, server_processes, state_dir

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: 1 ms to 60 s.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR" in os.environ

_registry = CollectorRegistry()

REQUESTS = Counter(
    "drum_requests_total",
    "HTTP requests answered, by route template and status.",
    ["method", "endpoint", "status", "server_type"],
    registry=_registry,
)
DURATION = Histogram(
    "drum_request_duration_seconds",
    "Time to produce the response (streams: until the first byte is ready).",
    ["endpoint", "server_type"],
    buckets=BUCKETS,
    registry=_registry,
)
IN_PROGRESS = Gauge(
    "drum_predictions_in_progress",
    "Model requests (predict, transform, unstructured, chat) being handled now.",
    multiprocess_mode="livesum",
    registry=_registry,
)
RECORDING_DROPPED = Counter(
    "drum_recording_dropped",
    "Recorded requests dropped because the queue was full or the disk write failed.",
    registry=_registry,
)
MLOPS_REPORTS = Counter(
    "drum_mlops_reports",
    "Prediction reports to DataRobot MLOps (--monitor), by outcome: sent (the library took the "
    "stats and the prediction data), failed (reading the data, opening the channel or the "
    "library's report raised), dropped (the worker's report queue was full).",
    ["outcome"],
    registry=_registry,
)


class ServerCollector(Collector):
    """Scrape-time metrics about the server as a whole."""

    def __init__(self, server_type: str, model_info: dict[str, str]) -> None:
        self.server_type = server_type
        self.model_info = model_info

    def collect(self) -> Iterator[Any]:
        master, workers = server_processes()
        rss = vms = worker_rss = worker_vms = 0
        for proc in [master, *workers]:
            try:
                mem = proc.memory_info()
            except psutil.Error:
                continue
            rss += mem.rss
            vms += mem.vms
            if proc is not master or not workers:
                worker_rss += mem.rss
                worker_vms += mem.vms
        memory = GaugeMetricFamily(
            "drum_memory_bytes", "Memory of all server processes.", labels=["type", "server_type"]
        )
        memory.add_metric(["rss", self.server_type], rss)
        memory.add_metric(["vms", self.server_type], vms)
        yield memory
        # Per worker, comparable across stacks: a supervised server's master holds the preloaded
        # model too, and a single-process server (Flask's development server) has none, so
        # "all processes / workers" would make a supervised stack look twice as big.
        worker_memory = GaugeMetricFamily(
            "drum_worker_memory_bytes",
            "Memory of the processes that serve requests (the server itself when it has no "
            "separate workers).",
            labels=["type", "server_type"],
        )
        worker_memory.add_metric(["rss", self.server_type], worker_rss)
        worker_memory.add_metric(["vms", self.server_type], worker_vms)
        yield worker_memory
        workers_g = GaugeMetricFamily(
            "drum_workers", "Worker processes currently alive.", labels=["server_type"]
        )
        workers_g.add_metric([self.server_type], max(len(workers), 1))
        yield workers_g
        events = Events(state_dir()).read()
        restarts = CounterMetricFamily(
            "drum_worker_restarts",
            "Worker processes replaced since start.",
            labels=["server_type"],
        )
        restarts.add_metric([self.server_type], events["worker_restarts"])
        yield restarts
        ooms = CounterMetricFamily(
            "drum_oom_kills",
            "Worker processes the kernel's OOM killer killed since start (on its evidence).",
            labels=["server_type"],
        )
        ooms.add_metric([self.server_type], events["oom_kills"])
        yield ooms
        kills = CounterMetricFamily(
            "drum_worker_kills",
            "Worker processes killed by SIGKILL with no sign of the OOM killer since start.",
            labels=["server_type"],
        )
        kills.add_metric([self.server_type], events["worker_kills"])
        yield kills
        info = InfoMetricFamily("drum_model", "The model being served.")
        info.add_metric([], self.model_info)
        yield info


class Metrics:
    """The request-side metric API the core calls, bound to one server type."""

    def __init__(self, server_type: str, model_info: dict[str, str]) -> None:
        self.server_type = server_type
        self._collector = ServerCollector(server_type, model_info)

    def observe(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        REQUESTS.labels(method, endpoint, str(status), self.server_type).inc()
        DURATION.labels(endpoint, self.server_type).observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition for the whole server."""
        registry = CollectorRegistry()
        if MULTIPROCESS:
            MultiProcessCollector(registry)
        else:
            for collector in (
                REQUESTS,
                DURATION,
                IN_PROGRESS,
                RECORDING_DROPPED,
                MLOPS_REPORTS,
                OTEL_SPANS_ENDED,
                OTEL_SPANS_EXPORTED,
                OTEL_EXPORT_FAILURES,
            ):
                registry.register(collector)
        registry.register(self._collector)
        return generate_latest(registry)


def mark_worker_dead(pid: int) -> None:
    """Drop a dead worker's live gauges (supervisor side)."""
    if MULTIPROCESS:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


# -- OpenTelemetry exporter health (fed by tandem.observability.tracing) -------------------------

OTEL_SPANS_ENDED = Counter(
    "drum_otel_spans_ended",
    "Sampled spans that ended and were handed to the span processor for export: each traced "
    "request's server span, its parse/score/serialise children and spans user code opened "
    "under it. drum_otel_spans_exported_total catches up once the batch processor has sent "
    "them (OTEL_BSP_SCHEDULE_DELAY later); a lasting difference is spans lost (export failed, "
    "queue full, process killed).",
    ["server_type"],
    registry=_registry,
)
OTEL_SPANS_EXPORTED = Counter(
    "drum_otel_spans_exported",
    "Spans the OTLP exporter delivered to the collector.",
    ["server_type"],
    registry=_registry,
)
OTEL_EXPORT_FAILURES = Counter(
    "drum_otel_export_failures",
    "OTLP span export calls that failed (their spans were dropped).",
    ["server_type"],
    registry=_registry,
)


#: ``otel_totals()`` keys, by sample name.
_OTEL_TOTALS = {
    "drum_otel_spans_ended_total": "spans_ended",
    "drum_otel_spans_exported_total": "spans_exported",
    "drum_otel_export_failures_total": "export_failures",
}


def otel_totals() -> dict[str, int] | None:
    """The ``drum_otel_*`` counters summed over the whole server (every worker, live or dead).

    ``{"spans_ended", "spans_exported", "export_failures"}``, or None while no process of the
    server has set tracing up (tracing off, or no traced request yet): the same "no series" a
    Prometheus scrape of ``/metrics`` would show.
    """
    if MULTIPROCESS:
        import glob

        path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
        # Only the counter files: the histograms are most of the data and are not needed here.
        families: Iterator[Any] = iter(
            MultiProcessCollector.merge(glob.glob(os.path.join(path, "counter_*.db")))
        )
    else:
        families = (
            family
            for counter in (OTEL_SPANS_ENDED, OTEL_SPANS_EXPORTED, OTEL_EXPORT_FAILURES)
            for family in counter.collect()
        )
    totals: dict[str, float] = {}
    for family in families:
        for sample in family.samples:
            key = _OTEL_TOTALS.get(sample.name)
            if key is not None:
                totals[key] = totals.get(key, 0.0) + sample.value
    if "spans_ended" not in totals:
        return None
    return {key: round(totals.get(key, 0.0)) for key in _OTEL_TOTALS.values()}
