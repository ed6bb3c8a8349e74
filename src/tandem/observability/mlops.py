"""MLOps monitoring (``--monitor``): prediction reports through DataRobot's ``datarobot-mlops``.

DRUM reports every structured prediction to DataRobot MLOps from inside the request: deployment
stats (the number of predictions and the execution time), then the input features with the
predictions. Tandem reports the same records through the same library, but never on the request
path: a prediction puts references to its input bytes and its predictions on a bounded queue
(``put_nowait``), and a daemon thread in each worker process parses the features and calls the
library. A full queue drops the report and a failing channel (missing spool directory, full disk,
broker down) fails it; neither ever delays or fails the prediction, and both are counted in
``drum_mlops_reports_total{outcome="dropped"|"failed"}`` (``"sent"`` once the library accepted
both records).

Chat completions (``/chat/completions`` of a model with a ``chat`` hook) are reported as DRUM's
``BaseLanguagePredictor.chat`` reports them: deployment stats for one prediction, then the last
message's text as the ``promptText`` feature with the completion and the association id; a
streamed answer once its last chunk went out, with the whole text. A chat whose hook fails (or
whose stream breaks) reports deployment stats for zero predictions. The request only queues
references to its parameters and answer; the text is read on the reporting thread.

The app is built before the server forks its workers, so the queue, the thread and the library's
channel (an open spool file, a broker connection) are created lazily in each process, on its first
report. The library keeps its configuration in process-global state, so a process holds one
``MLOps`` instance. Workers sharing a filesystem spool directory take an exclusive ``lockf`` on
``<directory>/.tandem-spool.lock`` around every write, so their records never interleave.

With ``--monitor-embedded`` (unstructured models) the model reports by itself, as in DRUM:
``score_unstructured`` gets this process's ``MLOps`` instance as the ``mlops`` keyword argument,
and Tandem counts nothing.

The library is imported only when monitoring is on.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import logging
import os
import queue
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tandem.errors import ConfigError
from tandem.observability.batching import next_batch

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger("tandem.mlops")

INSTALL_HINT = "pip install 'tandem[monitor]'"
#: DRUM's start-up errors (``verify_monitoring_options``), without its ``Error:`` prefix.
UNSTRUCTURED_REFUSED = "MLOps monitoring can not be used in unstructured mode."
EMBEDDED_UNSTRUCTURED_ONLY = "MLOps embedded monitoring is supported for unstructured modes only."
OPTIONS_MISSING = "MLOps Monitoring requires all monitoring options to be present."
MUTUALLY_EXCLUSIVE = "argument --monitor-embedded: not allowed with argument --monitor"

#: ``outcome`` label values of ``drum_mlops_reports_total``.
OUTCOMES = ("sent", "failed", "dropped")
DEFAULT_QUEUE_SIZE = 1000
#: Input and prediction bytes a worker's queue may hold before new reports are dropped.
DEFAULT_QUEUE_BYTES = 64 * 1024 * 1024
#: Name of the lock file in a filesystem spool directory (the agent reads only ``fs_spool.*``).
SPOOL_LOCK = ".tandem-spool.lock"
#: The feature a chat's prompt is reported as (DRUM's ``DEFAULT_PROMPT_COLUMN_NAME``).
DEFAULT_PROMPT_COLUMN_NAME = "promptText"

_BATCH = 64
#: After the channel failed to open, reports fail without another attempt for this long.
_RETRY_SECONDS = 1.0
_EXIT_FLUSH_SECONDS = 5.0

#: Every reporter of this process, for :func:`flush_all`.
_REPORTERS: weakref.WeakSet[MLOpsReporter] = weakref.WeakSet()


@dataclass(frozen=True)
class MonitorSettings:
    """``--monitor``/``--monitor-embedded`` and their options, validated as DRUM does."""

    deployment_id: str
    model_id: str
    channel_config: str | None = None
    """``--monitor-settings``: the library's channel, e.g.
    ``spooler_type=filesystem;directory=/spool``."""
    embedded: bool = False
    """``--monitor-embedded``: the model reports through the ``mlops`` it is given."""
    webserver: str | None = None
    """``--webserver``: DataRobot's URL, for the API channel when no channel is configured."""
    api_token: str | None = field(default=None, repr=False)
    """``--api-token``, for the same."""

    @classmethod
    def from_options(cls, options: Mapping[str, Any], target_type: str) -> MonitorSettings | None:
        """DRUM's checks of the monitoring options; None when neither flag is on.

        Raises :class:`ConfigError` with DRUM's message for an unstructured model under
        ``--monitor``, a structured one under ``--monitor-embedded`` and missing options, and
        when the ``datarobot-mlops`` library is not installed.
        """
        monitor, embedded = bool(options.get("monitor")), bool(options.get("monitor_embedded"))
        if not (monitor or embedded):
            return None
        if monitor and embedded:
            raise ConfigError(MUTUALLY_EXCLUSIVE)
        missing = [
            flag
            for flag, key in (("--model-id", "model_id"), ("--deployment-id", "deployment_id"))
            if not options.get(key)
        ]
        if monitor:
            if target_type == "unstructured":
                raise ConfigError(UNSTRUCTURED_REFUSED)
            if not options.get("monitor_settings"):
                missing.append("--monitor-settings")
        else:
            if target_type != "unstructured":
                raise ConfigError(EMBEDDED_UNSTRUCTURED_ONLY)
            missing += [
                flag
                for flag, key in (("--webserver", "webserver"), ("--api-token", "api_token"))
                if not options.get(key)
            ]
        if missing:
            raise ConfigError(
                f"{OPTIONS_MISSING} Note: The following MLOps monitoring option(s) is/are "
                f"missing: {', '.join(missing)}. These options can also be obtained via "
                "environment variables."
            )
        require_library()
        return cls(
            deployment_id=str(options["deployment_id"]),
            model_id=str(options["model_id"]),
            channel_config=options.get("monitor_settings") or None,
            embedded=embedded,
            webserver=options.get("webserver"),
            api_token=options.get("api_token"),
        )


def require_library() -> None:
    """Raise a one-line :class:`ConfigError` naming the extra when the library is missing."""
    try:
        import datarobot_mlops.mlops  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"MLOps monitoring needs DataRobot's datarobot-mlops library ({exc}): {INSTALL_HINT}"
        ) from None


def configure(monitor: MonitorSettings) -> Any:
    """A configured, not yet initialised ``MLOps`` (DRUM's ``_init_mlops``/``_configure_mlops``).

    Replaces whatever library configuration this process held: it is process-global.
    """
    from datarobot_mlops.common import config
    from datarobot_mlops.mlops import MLOps

    config.clear_config()
    mlops = MLOps()
    mlops.set_deployment_id(monitor.deployment_id)
    mlops.set_model_id(monitor.model_id)
    if monitor.channel_config:
        mlops.set_channel_config(monitor.channel_config)
    else:
        mlops.set_api_spooler(
            mlops_service_url=monitor.webserver, mlops_api_token=monitor.api_token
        )
        mlops.set_async_reporting()
    return mlops


def spool_lock_path() -> str | None:
    """The lock file of the configured filesystem spool directory (None for other channels)."""
    from datarobot_mlops.common import config
    from datarobot_mlops.common.config import ConfigConstants

    if str(config.get_config_default(ConfigConstants.SPOOLER_TYPE, "")).upper() != "FILESYSTEM":
        return None
    directory = config.get_config_default(ConfigConstants.FILESYSTEM_DIRECTORY, None)
    return os.path.join(os.path.abspath(directory), SPOOL_LOCK) if directory else None


@contextlib.contextmanager
def spool_lock(path: str | None) -> Iterator[None]:
    """Hold the spool directory's exclusive lock (nothing to hold for other channels).

    Without a lock file (the directory is gone or read-only) the library goes ahead unlocked,
    and fails, if it must, with its own account of what is wrong with the directory.
    """
    fd = None
    if path is not None:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            pass
    if fd is None:
        yield
        return
    try:
        # A POSIX lock, not flock(): a child forked meanwhile (by the model, say) does not
        # inherit it, so it cannot outlive this block and stall every worker's reports.
        fcntl.lockf(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def check_channel(monitor: MonitorSettings) -> None:
    """Open and close the channel once, in the start-up process: DRUM does not start when the
    library cannot open it (a missing spool directory, an unknown setting).

    The API channel DRUM picks when no ``--monitor-settings`` is given reports from a background
    process of the library's own; only its settings are checked here, not the connection.
    """
    try:
        mlops = configure(monitor)
        if monitor.channel_config:
            mlops.init()
            mlops.shutdown()
    except Exception as exc:
        raise ConfigError(f"MLOps monitoring cannot start: {exc}") from None


def _count(outcome: str, n: int = 1) -> None:
    try:
        from tandem.observability.metrics import MLOPS_REPORTS

        MLOPS_REPORTS.labels(outcome).inc(n)
    except Exception:  # noqa: BLE001 - counting must never fail a caller
        pass


@dataclass
class _Report:
    """One answered prediction, as references to what the request already holds."""

    data: bytes
    mimetype: str | None
    colnames: list[str] | None
    predictions: pd.DataFrame | bytes
    """The prediction frame, or the rendered JSON body of the pandas-free fast path."""
    execution_ms: float
    size: int


@dataclass
class _ChatReport:
    """One chat request, as references to what the request already holds."""

    execution_ms: float
    size: int
    params: Mapping[str, Any] | None = None
    """The request's completion parameters; None for a chat that failed (stats only)."""
    completion: Any = None
    """A finished stream's text, or the ``chat.completion`` answer to read the text from."""
    association_id: Any = None


@dataclass
class _Prepared:
    """The library's arguments for one report: stats, then (when there are predictions) data."""

    count: int
    execution_ms: float
    features: pd.DataFrame | None = None
    predictions: list[Any] | None = None
    class_names: list[str] | None = None
    association_ids: list[Any] | None = None
    problem: str | None = None
    """Why the data record cannot be sent although the stats can (DRUM fails the request)."""


def prepare(item: _Report) -> _Prepared:
    """The library's arguments for one report, as DRUM's ``monitor`` builds them.

    Features are the request's input read again, as DRUM reads it; predictions are a list of
    values for one column (regression: ``[10, 12]``) and a list of rows with the column names
    as ``class_names`` otherwise (classification: ``[[0.5, 0.5], [0.7, 0.3]]``).
    """
    from tandem.core import payload

    class_names: list[str] | None = None
    if isinstance(item.predictions, bytes):
        import orjson

        values = orjson.loads(item.predictions)["predictions"]
        if values and isinstance(values[0], dict):
            names = list(values[0])
            class_names = [str(name) for name in names]
            predictions = [[row[name] for name in names] for row in values]
        else:
            predictions = list(values)
    else:
        frame = item.predictions
        if len(frame.columns) == 1:
            predictions = frame[frame.columns[0]].tolist()
        else:
            predictions = frame.values.tolist()
            class_names = [str(name) for name in frame.columns]
    features = payload.read_dataframe(item.data, item.mimetype, item.colnames)
    if hasattr(features, "sparse"):
        features = features.sparse.to_dense()
    return _Prepared(len(predictions), item.execution_ms, features, predictions, class_names)


def chat_prompt(params: Mapping[str, Any]) -> str | None:
    """The text DRUM reports as a chat's prompt: the last message's content.

    A list of content parts becomes one line per part (``text`` as it is, an image as
    ``Image URL: <url>``, audio as ``Audio Input, Format: <format>``); None for content of any
    other type, which DRUM does not report (it logs a warning). Raises, as DRUM does, when the
    parameters have no last message or a part lacks what its type needs.
    """
    content = params["messages"][-1]["content"]
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return None
    lines = []
    for part in content:
        kind = part["type"]
        if kind == "text":
            line = part["text"]
        elif kind == "image_url":
            line = f"Image URL: {part['image_url']['url']}"
        elif kind == "input_audio":
            line = f"Audio Input, Format: {part['input_audio']['format']}"
        else:
            line = f"Unhandled content type: {kind}"
        lines.append(line)
    return "\n".join(lines)


def prepare_chat(item: _ChatReport, prompt_column: str = DEFAULT_PROMPT_COLUMN_NAME) -> _Prepared:
    """The library's arguments for one chat, as DRUM's ``_mlops_report_chat_prediction`` and
    ``_mlops_report_error`` build them.

    A failed chat is stats for zero predictions. An answered one is stats for one prediction and
    the data: the prompt as the one feature ``prompt_column``, the completion text as the one
    prediction, the association id. Raises when an answer has no first choice to read the text
    from (DRUM fails the request before it reports anything).
    """
    import pandas as pd

    if item.params is None:
        return _Prepared(0, item.execution_ms)
    completion = item.completion
    if not isinstance(completion, str):
        completion = completion.choices[0].message.content
    prepared = _Prepared(1, item.execution_ms)
    try:
        prompt = chat_prompt(item.params)
    except Exception as exc:  # noqa: BLE001 - DRUM fails the request after the stats
        prepared.problem = f"the chat's last message could not be read for MLOps: {exc!r}"
        return prepared
    if prompt is None:
        content = item.params["messages"][-1]["content"]
        logger.warning("Unhandled prompt type: %s", type(content))
        return prepared
    prepared.features = pd.DataFrame([{prompt_column: prompt}])
    prepared.predictions = [completion]
    prepared.association_ids = [item.association_id]
    return prepared


class MLOpsReporter:
    """Reports predictions through ``datarobot-mlops`` off the request path (or, embedded,
    hands the model its ``MLOps`` instance)."""

    def __init__(
        self,
        monitor: MonitorSettings,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        queue_bytes: int = DEFAULT_QUEUE_BYTES,
    ) -> None:
        self.monitor = monitor
        self.queue_size = queue_size
        self.queue_bytes = queue_bytes
        self._forget_parent()
        os.register_at_fork(after_in_child=self._forget_parent)
        _REPORTERS.add(self)

    @classmethod
    def start_up(cls, monitor: MonitorSettings) -> MLOpsReporter:
        """Check the channel (see :func:`check_channel`) and return the reporter.

        Called once, before any fork. Under ``--monitor`` the outcome counters are created at 0,
        so ``/metrics`` shows that monitoring is on before the first prediction.
        """
        check_channel(monitor)
        reporter = cls(monitor)
        if not monitor.embedded:
            for outcome in OUTCOMES:
                _count(outcome, 0)
        logger.info(
            "MLOps monitoring on (%s): deployment %s, model %s",
            "embedded: the model reports" if monitor.embedded else "reported in the background",
            monitor.deployment_id,
            monitor.model_id,
        )
        return reporter

    @property
    def embedded(self) -> bool:
        """Whether the model reports by itself (``--monitor-embedded``)."""
        return self.monitor.embedded

    # -- request path ---------------------------------------------------------------------------

    def report(
        self,
        data: bytes,
        mimetype: str | None,
        colnames: list[str] | None,
        predictions: pd.DataFrame | bytes,
        started: float,
    ) -> None:
        """Queue one answered prediction (``started``: its ``perf_counter`` start); never blocks,
        never raises."""
        if self.monitor.embedded:
            return
        try:
            execution_ms = (time.perf_counter() - started) * 1000.0
            size = len(data) + (
                len(predictions) if isinstance(predictions, bytes) else 8 * predictions.size
            )
            self._put(_Report(data, mimetype, colnames, predictions, execution_ms, size))
        except Exception:  # noqa: BLE001 - reporting must never fail a prediction
            logger.debug("MLOps report not queued", exc_info=True)
            _count("dropped")

    def report_chat(
        self,
        params: Mapping[str, Any],
        completion: Any,
        association_id: Any,
        started: float,
        size: int = 0,
    ) -> None:
        """Queue one answered chat: ``completion`` is a finished stream's text or the
        ``chat.completion`` answer; ``size`` roughly what it holds in bytes (the request body).
        Never blocks, never raises.
        """
        if self.monitor.embedded:
            return
        try:
            execution_ms = (time.perf_counter() - started) * 1000.0
            if isinstance(completion, str):
                size += len(completion)
            self._put(_ChatReport(execution_ms, size, params, completion, association_id))
        except Exception:  # noqa: BLE001 - reporting must never fail a chat
            logger.debug("MLOps chat report not queued", exc_info=True)
            _count("dropped")

    def report_chat_error(self, started: float) -> None:
        """Queue the stats of one failed chat (zero predictions); never blocks, never raises."""
        if self.monitor.embedded:
            return
        try:
            self._put(_ChatReport((time.perf_counter() - started) * 1000.0, 0))
        except Exception:  # noqa: BLE001 - reporting must never fail a chat
            logger.debug("MLOps chat report not queued", exc_info=True)
            _count("dropped")

    def _put(self, item: _Report | _ChatReport) -> None:
        """Queue ``item`` within both bounds; count it dropped when either is reached."""
        q = self._queue
        if q is None or self._pid != os.getpid():
            q = self._start()
        with self._bytes_lock:
            if self._bytes + item.size > self.queue_bytes:
                _count("dropped")
                return
            self._bytes += item.size
        try:
            q.put_nowait(item)
        except queue.Full:
            with self._bytes_lock:
                self._bytes -= item.size
            _count("dropped")

    def model_mlops(self) -> Any | None:
        """This process's ``MLOps`` for a model that reports itself (``--monitor-embedded``).

        None when monitoring is not embedded, or when the channel cannot be opened (logged; the
        next request tries again after a second).
        """
        if not self.monitor.embedded:
            return None
        mlops = self._mlops
        if mlops is not None and self._mlops_pid == os.getpid():
            return mlops
        with self._start_lock:
            try:
                return self._process_mlops()
            except Exception:  # noqa: BLE001 - the model runs without it, as DRUM's would not start
                return None

    # -- per-process state ----------------------------------------------------------------------

    def _forget_parent(self) -> None:
        """Fresh per-process state (in a forked child, the parent's belongs to the parent)."""
        self._pid: int | None = None
        self._queue: queue.Queue[_Report | _ChatReport] | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._start_lock = threading.Lock()
        self._bytes_lock = threading.Lock()
        self._bytes = 0
        self._mlops: Any = None
        self._mlops_pid: int | None = None
        self._lock_path: str | None = None
        self._next_attempt = 0.0
        self._last_error: str | None = None
        self._failing = False
        self._exit_registered: int | None = None

    def _register_exit(self) -> None:
        pid = os.getpid()
        if self._exit_registered != pid:
            atexit.register(self._flush_at_exit, pid)
            self._exit_registered = pid

    def _start(self) -> queue.Queue[_Report | _ChatReport]:
        with self._start_lock:
            pid = os.getpid()
            if self._pid == pid and self._queue is not None:
                return self._queue
            q: queue.Queue[_Report | _ChatReport] = queue.Queue(maxsize=self.queue_size)
            self._queue = q
            self._stopping = threading.Event()
            thread = threading.Thread(
                target=self._run, args=(q, self._stopping), name="tandem-mlops", daemon=True
            )
            self._thread = thread
            thread.start()
            self._register_exit()
            self._pid = pid
            return q

    def _process_mlops(self) -> Any:
        """This process's initialised ``MLOps``, opened on first use (raises when it cannot be,
        without trying again for :data:`_RETRY_SECONDS`)."""
        pid = os.getpid()
        if self._mlops is not None and self._mlops_pid == pid:
            return self._mlops
        if time.monotonic() < self._next_attempt:
            raise RuntimeError(self._last_error or "the MLOps channel did not open")
        try:
            mlops = configure(self.monitor)
            self._lock_path = spool_lock_path()
            with spool_lock(self._lock_path):
                mlops.init()
        except Exception as exc:
            self._next_attempt = time.monotonic() + _RETRY_SECONDS
            self._last_error = f"{type(exc).__name__}: {exc}"
            self._note_failure(f"the MLOps channel did not open: {self._last_error}")
            raise
        self._mlops, self._mlops_pid = mlops, pid
        self._register_exit()
        return mlops

    # -- the reporting thread -----------------------------------------------------------------

    def _run(self, q: queue.Queue[_Report | _ChatReport], stopping: threading.Event) -> None:
        while (batch := next_batch(q, stopping, _BATCH)) is not None:
            with self._bytes_lock:
                self._bytes -= sum(item.size for item in batch)
            try:
                self._send(batch)
            except Exception:  # noqa: BLE001 - the reporting thread must survive anything
                logger.exception("MLOps reporting failed")
                _count("failed", len(batch))

    def _send(self, batch: list[_Report | _ChatReport]) -> None:
        prepared: list[_Prepared] = []
        for item in batch:
            try:
                prepared.append(prepare(item) if isinstance(item, _Report) else prepare_chat(item))
            except Exception as exc:  # noqa: BLE001
                what = "a prediction" if isinstance(item, _Report) else "a chat"
                self._note_failure(f"{what} could not be read for MLOps: {exc}")
                _count("failed")
        if not prepared:
            return
        try:
            mlops = self._process_mlops()
        except Exception:  # noqa: BLE001 - logged by _process_mlops when it first fails
            _count("failed", len(prepared))
            return
        sent = 0
        with spool_lock(self._lock_path):
            for report in prepared:
                try:
                    # DRUM's order: the stats, then the features with the predictions.
                    mlops.report_deployment_stats(
                        num_predictions=report.count, execution_time_ms=report.execution_ms
                    )
                    if report.problem is not None:
                        self._note_failure(report.problem)
                        _count("failed")
                        continue
                    if report.predictions is not None:
                        data: dict[str, Any] = {
                            "features_df": report.features,
                            "predictions": report.predictions,
                            "class_names": report.class_names,
                        }
                        if report.association_ids is not None:
                            data["association_ids"] = report.association_ids
                        mlops.report_predictions_data(**data)
                except Exception as exc:  # noqa: BLE001
                    self._note_failure(f"the MLOps library failed to report: {exc!r}")
                    _count("failed")
                else:
                    sent += 1
        if sent:
            _count("sent", sent)
            if self._failing:
                logger.warning("MLOps reporting works again")
                self._failing = False

    def _note_failure(self, text: str) -> None:
        """Log the first failure of a run of them at warning level, the rest at debug."""
        if self._failing:
            logger.debug(text)
            return
        logger.warning(
            "%s; failed and dropped reports are counted in drum_mlops_reports_total", text
        )
        self._failing = True

    # -- shutdown ------------------------------------------------------------------------------

    def _flush_at_exit(self, pid: int) -> None:
        if pid == os.getpid():
            self.flush(_EXIT_FLUSH_SECONDS)

    def flush(self, timeout: float = _EXIT_FLUSH_SECONDS) -> bool:
        """Report everything queued, then close this process's channel.

        Returns True when the queue was drained within ``timeout`` seconds. Safe to call from
        any shutdown path; a later report opens a new channel.
        """
        drained = True
        thread = self._thread
        if thread is not None and self._pid == os.getpid():
            self._stopping.set()
            thread.join(timeout)
            drained = not thread.is_alive()
            if drained:
                with self._start_lock:
                    self._pid = self._queue = self._thread = None
        mlops = self._mlops
        if drained and mlops is not None and self._mlops_pid == os.getpid():
            self._mlops = self._mlops_pid = None
            try:
                mlops.shutdown()
            except Exception:  # noqa: BLE001 - closing is best effort at exit
                logger.debug("MLOps shutdown failed", exc_info=True)
        return drained


def flush_all(timeout: float = _EXIT_FLUSH_SECONDS) -> bool:
    """Drain every reporter of this process (for exits that skip ``atexit``, like
    :func:`tandem.observability.recording.flush_all`)."""
    deadline = time.monotonic() + timeout
    ok = True
    for reporter in list(_REPORTERS):
        ok = reporter.flush(max(0.0, deadline - time.monotonic())) and ok
    return ok
