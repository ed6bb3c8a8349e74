"""MLOps monitoring: DRUM's flag checks, and reporting that never touches a prediction.

The flags are checked as DRUM 1.18.1's ``verify_monitoring_options`` checks them; reports go
through DataRobot's ``datarobot-mlops`` library (a test dependency) from a background thread,
and a failing, slow or full channel is counted, never felt by the request.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tandem.cli import ENV_FALLBACKS, ENV_FLAGS, ENV_VALUES, build_parser, main, merge_env
from tandem.errors import ConfigError
from tandem.observability import mlops
from tandem.observability.metrics import MLOPS_REPORTS
from tandem.observability.mlops import (
    EMBEDDED_UNSTRUCTURED_ONLY,
    OPTIONS_MISSING,
    UNSTRUCTURED_REFUSED,
    MLOpsReporter,
    MonitorSettings,
    prepare,
)
from tests.mlops_support import channel, of_type, read_spool
from tests.support import build_sklearn_artifact

_LOGGERS = ("", "tandem.start", "tandem.access", "tandem.mlops")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No DRUM variable leaks in; main()'s logging set-up and any reporter are undone."""
    for name in (*ENV_VALUES.values(), *ENV_FLAGS.values(), *ENV_FALLBACKS.values()):
        monkeypatch.delenv(name, raising=False)
    saved = {}
    for name in _LOGGERS:
        lg = logging.getLogger(name)
        saved[name] = (lg.handlers[:], lg.level, lg.propagate)
    yield
    mlops.flush_all(5.0)
    for name, (handlers, level, propagate) in saved.items():
        lg = logging.getLogger(name)
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate


def parse(*argv: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    return merge_env(build_parser().parse_args(list(argv)), env or {})


def count(outcome: str) -> float:
    return float(MLOPS_REPORTS.labels(outcome)._value.get())


MONITOR = ["--monitor", "--deployment-id", "D", "--model-id", "M", "--monitor-settings", "x=y"]
EMBEDDED = [
    "--monitor-embedded",
    "--deployment-id",
    "D",
    "--model-id",
    "M",
    "--webserver",
    "http://dr",
    "--api-token",
    "t",
]


# -- the flags and their environment variables ----------------------------------------------------


def test_flags_on_server_and_score() -> None:
    for command in (["server"], ["score", "--input", "x.csv"]):
        options = parse(*command, *MONITOR)
        assert options["monitor"] is True
        assert (options["deployment_id"], options["model_id"]) == ("D", "M")
        assert options["monitor_settings"] == "x=y"
        assert parse(*command, *EMBEDDED)["monitor_embedded"] is True


def test_env_twins_as_drum_reads_them() -> None:
    env = {
        "MONITOR": "true",
        "DEPLOYMENT_ID": "dep",
        "MODEL_ID": "mod",
        "MONITOR_SETTINGS": "spooler_type=stdout",
    }
    options = parse("server", env=env)
    assert options["monitor"] is True
    assert (options["deployment_id"], options["model_id"]) == ("dep", "mod")
    assert options["monitor_settings"] == "spooler_type=stdout"
    # DRUM's --monitor-embedded variable is not MONITOR_EMBEDDED.
    embedded = parse("server", env={"MLOPS_REPORTING_FROM_UNSTRUCTURED_MODELS": "1"})
    assert embedded["monitor_embedded"] is True
    assert parse("server", env={"MONITOR_EMBEDDED": "1"})["monitor_embedded"] is False
    # MLOPS_DEPLOYMENT_ID / MLOPS_MODEL_ID when DEPLOYMENT_ID / MODEL_ID are unset.
    fallback = parse("server", env={"MLOPS_DEPLOYMENT_ID": "d2", "MLOPS_MODEL_ID": "m2"})
    assert (fallback["deployment_id"], fallback["model_id"]) == ("d2", "m2")
    both = parse("server", env={"DEPLOYMENT_ID": "d1", "MLOPS_DEPLOYMENT_ID": "d2"})
    assert both["deployment_id"] == "d1"
    assert parse("server", "--deployment-id", "cli", env=env)["deployment_id"] == "cli"


def test_monitor_and_embedded_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["server", "--monitor", "--monitor-embedded"])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="not allowed with argument --monitor"):
        MonitorSettings.from_options({"monitor": True, "monitor_embedded": True}, "regression")


# -- DRUM's checks --------------------------------------------------------------------------------


def test_off_unless_a_flag_is_given() -> None:
    assert MonitorSettings.from_options({"deployment_id": "D", "model_id": "M"}, "binary") is None


def test_monitor_settings_built() -> None:
    got = MonitorSettings.from_options(
        {"monitor": True, "deployment_id": "D", "model_id": "M", "monitor_settings": "a=b"},
        "regression",
    )
    assert got == MonitorSettings("D", "M", "a=b")
    embedded = MonitorSettings.from_options(
        {
            "monitor_embedded": True,
            "deployment_id": "D",
            "model_id": "M",
            "webserver": "http://dr",
            "api_token": "secret",
        },
        "unstructured",
    )
    assert embedded is not None and embedded.embedded and embedded.channel_config is None
    assert "secret" not in repr(embedded)


@pytest.mark.parametrize(
    ("options", "missing"),
    [
        ({"monitor": True}, "--model-id, --deployment-id, --monitor-settings"),
        ({"monitor": True, "model_id": "M", "deployment_id": "D"}, "--monitor-settings"),
        ({"monitor": True, "monitor_settings": "a=b", "model_id": "M"}, "--deployment-id"),
        ({"monitor": True, "monitor_settings": "a=b", "deployment_id": "D"}, "--model-id"),
    ],
)
def test_missing_monitor_options_are_listed(options: dict[str, Any], missing: str) -> None:
    with pytest.raises(ConfigError) as err:
        MonitorSettings.from_options(options, "regression")
    text = str(err.value)
    assert text.startswith(OPTIONS_MISSING)
    assert "Note: The following MLOps monitoring option(s) is/are missing: " + missing in text
    assert "These options can also be obtained via environment variables" in text
    assert "\n" not in text


def test_missing_embedded_options_are_listed() -> None:
    with pytest.raises(ConfigError) as err:
        MonitorSettings.from_options({"monitor_embedded": True}, "unstructured")
    assert "missing: --model-id, --deployment-id, --webserver, --api-token." in str(err.value)


def test_monitor_refuses_unstructured_before_listing_missing_options() -> None:
    with pytest.raises(ConfigError) as err:
        MonitorSettings.from_options({"monitor": True}, "unstructured")
    assert str(err.value) == UNSTRUCTURED_REFUSED
    assert UNSTRUCTURED_REFUSED == "MLOps monitoring can not be used in unstructured mode."


@pytest.mark.parametrize("target_type", ["regression", "binary", "textgeneration", "transform"])
def test_embedded_is_for_unstructured_only(target_type: str) -> None:
    with pytest.raises(ConfigError) as err:
        MonitorSettings.from_options({"monitor_embedded": True}, target_type)
    assert str(err.value) == EMBEDDED_UNSTRUCTURED_ONLY
    assert EMBEDDED_UNSTRUCTURED_ONLY == (
        "MLOps embedded monitoring is supported for unstructured modes only."
    )


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    return build_sklearn_artifact(tmp_path / "model", "regression")


def run_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """``main(argv)`` must fail with one line on stderr."""
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1, err
    return err


def test_cli_messages_are_drums(code_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["server", "--code-dir", str(code_dir), "--explain-server-type"]
    err = run_error([*base, "--target-type", "unstructured", *MONITOR], capsys)
    assert err == "tandem: error: MLOps monitoring can not be used in unstructured mode.\n"
    err = run_error([*base, "--target-type", "regression", *EMBEDDED], capsys)
    assert err == (
        "tandem: error: MLOps embedded monitoring is supported for unstructured modes only.\n"
    )
    err = run_error([*base, "--target-type", "regression", "--monitor"], capsys)
    assert err.startswith(
        "tandem: error: MLOps Monitoring requires all monitoring options to be present. "
    )
    assert main([*base, "--target-type", "regression", *MONITOR]) == 0


def test_env_only_configuration_is_checked_too(
    code_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MONITOR", "1")
    monkeypatch.setenv("MLOPS_DEPLOYMENT_ID", "D")
    err = run_error(["server", "--code-dir", str(code_dir), "--target-type", "regression"], capsys)
    assert "missing: --model-id, --monitor-settings." in err


def test_without_the_library_start_up_fails_in_one_line(
    code_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "datarobot_mlops.mlops", None)
    argv = ["server", "--code-dir", str(code_dir), "--target-type", "regression", *MONITOR]
    err = run_error([*argv, "--explain-server-type"], capsys)
    assert err.startswith("tandem: error: MLOps monitoring needs DataRobot's datarobot-mlops")
    assert err.endswith(": pip install 'tandem[monitor]'\n")


def score_argv(code_dir: Path, tmp_path: Path, settings: str) -> list[str]:
    data = tmp_path / "in.csv"
    data.write_text("a,b,c\n1,2,3\n4,5,6\n7,8,9\n")
    return [
        "score",
        "--code-dir",
        str(code_dir),
        "--target-type",
        "regression",
        "--input",
        str(data),
        "--output",
        str(tmp_path / "out.csv"),
        "--monitor",
        "--deployment-id",
        "D",
        "--model-id",
        "M",
        "--monitor-settings",
        settings,
    ]


def test_a_channel_that_cannot_open_stops_start_up(
    code_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # DRUM does not start either: the library refuses a spool directory that does not exist.
    missing = tmp_path / "no-such-dir"
    err = run_error(score_argv(code_dir, tmp_path, channel(missing)), capsys)
    assert err.startswith("tandem: error: MLOps monitoring cannot start: ")
    assert "does not exist" in err
    err = run_error(score_argv(code_dir, tmp_path, "spooler_type=filesystem;colour=blue"), capsys)
    assert err.startswith("tandem: error: MLOps monitoring cannot start: ")
    assert "colour" in err


def test_score_reports_before_it_writes(code_dir: Path, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    assert main(score_argv(code_dir, tmp_path, channel(spool))) == 0
    records = read_spool(spool)
    stats = of_type(records, "DEPLOYMENT_STATS")
    assert [(s["modelId"], s["numPredictions"]) for s in stats] == [("M", 3)]
    assert stats[0]["executionTime"] > 0
    (data,) = of_type(records, "PREDICTIONS_DATA")
    assert data["features"] == {"a": [1, 4, 7], "b": [2, 5, 8], "c": [3, 6, 9]}
    written = pd.read_csv(tmp_path / "out.csv")["Predictions"].tolist()
    assert data["predictions"] == pytest.approx(written)
    assert {r.deployment_id for r in records} == {"D"}


# -- what the library is given --------------------------------------------------------------------


def report(predictions: pd.DataFrame | bytes, data: bytes = b"x,y\n1,2\n3,4\n") -> Any:
    return prepare(mlops._Report(data, "text/csv", None, predictions, 1.5, 0))


def test_prepare_regression_frame_and_fast_body() -> None:
    frame = pd.DataFrame({"Predictions": [1.5, 2.5]})
    for got in (report(frame), report(b'{"predictions":[1.5,2.5]}')):
        assert (got.count, got.predictions, got.class_names) == (2, [1.5, 2.5], None)
        assert got.features.to_dict(orient="list") == {"x": [1, 3], "y": [2, 4]}
        assert got.execution_ms == 1.5


def test_prepare_classification_frame_and_fast_body() -> None:
    frame = pd.DataFrame({"no": [0.25, 0.5], "yes": [0.75, 0.5]})
    body = b'{"predictions":[{"no":0.25,"yes":0.75},{"no":0.5,"yes":0.5}]}'
    for got in (report(frame), report(body)):
        assert got.predictions == [[0.25, 0.75], [0.5, 0.5]]
        assert got.class_names == ["no", "yes"]


def test_the_library_takes_both_paths_classification(tmp_path: Path) -> None:
    """The real library, in this process: a probability frame and a fast-path body."""
    spool = tmp_path / "spool"
    spool.mkdir()
    reporter = MLOpsReporter.start_up(MonitorSettings("D", "M", channel(spool)))
    frame = pd.DataFrame({"no": [0.25, 0.5], "yes": [0.75, 0.5]})
    body = b'{"predictions":[{"no":0.125,"yes":0.875}]}'
    reporter.report(b"x,y\n1,2\n3,4\n", "text/csv", None, frame, time.perf_counter())
    reporter.report(b"x,y\n5,6\n", "text/csv", None, body, time.perf_counter())
    assert reporter.flush(10.0)
    records = read_spool(spool)
    assert [s["numPredictions"] for s in of_type(records, "DEPLOYMENT_STATS")] == [2, 1]
    first, second = of_type(records, "PREDICTIONS_DATA")
    assert first["classNames"] == second["classNames"] == ["no", "yes"]
    assert first["predictions"] == [[0.25, 0.75], [0.5, 0.5]]
    assert second["predictions"] == [[0.125, 0.875]]
    assert second["features"] == {"x": [5], "y": [6]}


# -- the reporter never touches a prediction ------------------------------------------------------


class FakeMLOps:
    """The library's reporting calls, recorded; ``gate`` holds each call until it is set."""

    def __init__(self, fail: bool = False, gate: threading.Event | None = None) -> None:
        self.fail = fail
        self.gate = gate
        self.calls: list[tuple[str, Any]] = []

    def init(self) -> FakeMLOps:
        return self

    def report_deployment_stats(self, num_predictions: int, execution_time_ms: float) -> None:
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail:
            raise OSError("No space left on device")
        self.calls.append(("stats", num_predictions))

    def report_predictions_data(self, **kwargs: Any) -> None:
        self.calls.append(("data", kwargs["predictions"]))

    def shutdown(self) -> None:
        self.calls.append(("shutdown", None))


def fake_reporter(
    monkeypatch: pytest.MonkeyPatch, fake: FakeMLOps | Exception, **kwargs: Any
) -> MLOpsReporter:
    def configure(monitor: MonitorSettings) -> Any:
        if isinstance(fake, Exception):
            raise fake
        return fake

    monkeypatch.setattr(mlops, "configure", configure)
    monkeypatch.setattr(mlops, "spool_lock_path", lambda: None)
    return MLOpsReporter(MonitorSettings("D", "M", "spooler_type=filesystem"), **kwargs)


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


FRAME = pd.DataFrame({"Predictions": [1.0, 2.0]})


def test_reports_are_sent_in_the_background(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeMLOps()
    reporter = fake_reporter(monkeypatch, fake)
    sent = count("sent")
    for _ in range(3):
        reporter.report(b"x,y\n1,2\n3,4\n", "text/csv", None, FRAME, time.perf_counter())
    wait_for(lambda: count("sent") - sent == 3)
    assert fake.calls[:2] == [("stats", 2), ("data", [1.0, 2.0])]
    assert reporter.flush(5.0)
    assert fake.calls[-1] == ("shutdown", None)


def test_a_stuck_channel_never_delays_a_prediction(monkeypatch: pytest.MonkeyPatch) -> None:
    gate = threading.Event()
    reporter = fake_reporter(monkeypatch, FakeMLOps(gate=gate), queue_size=2)
    dropped = count("dropped")
    try:
        started = time.perf_counter()
        for _ in range(20):
            reporter.report(b"x,y\n1,2\n3,4\n", "text/csv", None, FRAME, time.perf_counter())
        assert time.perf_counter() - started < 1.0
        # One report is with the stuck library, two wait in the queue; the rest were dropped.
        assert count("dropped") - dropped >= 20 - 3
    finally:
        gate.set()


def test_the_byte_budget_bounds_the_queue_too(monkeypatch: pytest.MonkeyPatch) -> None:
    gate = threading.Event()
    reporter = fake_reporter(monkeypatch, FakeMLOps(gate=gate), queue_bytes=100)
    dropped = count("dropped")
    try:
        reporter.report(b"x" * 200, "text/csv", None, FRAME, time.perf_counter())
        assert count("dropped") - dropped == 1
    finally:
        gate.set()


def test_a_failing_channel_is_counted_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    reporter = fake_reporter(monkeypatch, FakeMLOps(fail=True))
    failed, sent = count("failed"), count("sent")
    reporter.report(b"x,y\n1,2\n3,4\n", "text/csv", None, FRAME, time.perf_counter())
    wait_for(lambda: count("failed") - failed == 1)
    assert count("sent") == sent


def test_unreadable_input_fails_the_report_only(monkeypatch: pytest.MonkeyPatch) -> None:
    reporter = fake_reporter(monkeypatch, FakeMLOps())
    failed = count("failed")
    reporter.report(b"\xff\xfe", "text/csv", None, FRAME, time.perf_counter())
    wait_for(lambda: count("failed") - failed == 1)


def test_a_channel_that_stops_opening_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mlops, "_RETRY_SECONDS", 0.2)
    reporter = fake_reporter(monkeypatch, OSError("spool directory is gone"))
    failed, sent = count("failed"), count("sent")
    reporter.report(b"x,y\n1,2\n", "text/csv", None, FRAME.head(1), time.perf_counter())
    wait_for(lambda: count("failed") - failed == 1)
    fake = FakeMLOps()
    monkeypatch.setattr(mlops, "configure", lambda monitor: fake)
    time.sleep(0.25)
    reporter.report(b"x,y\n1,2\n", "text/csv", None, FRAME.head(1), time.perf_counter())
    wait_for(lambda: count("sent") - sent == 1)
    assert fake.calls[0] == ("stats", 1)


def test_workers_take_turns_on_a_spool_directory(tmp_path: Path) -> None:
    """The spool lock excludes other processes (each worker writes whole records)."""
    import os

    lock = str(tmp_path / mlops.SPOOL_LOCK)
    held = tmp_path / "held"
    pid = os.fork()
    if pid == 0:  # another worker, writing for half a second
        try:
            with mlops.spool_lock(lock):
                held.touch()
                time.sleep(0.5)
        finally:
            os._exit(0)
    wait_for(held.exists)
    started = time.monotonic()
    with mlops.spool_lock(lock):
        waited = time.monotonic() - started
    os.waitpid(pid, 0)
    assert waited > 0.2


def test_embedded_mode_hands_the_model_its_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeMLOps()
    monkeypatch.setattr(mlops, "configure", lambda monitor: fake)
    monkeypatch.setattr(mlops, "spool_lock_path", lambda: None)
    reporter = MLOpsReporter(MonitorSettings("D", "M", "a=b", embedded=True))
    assert reporter.model_mlops() is fake
    assert reporter.model_mlops() is fake  # one per process
    sent = count("sent")
    reporter.report(b"x\n1\n", "text/csv", None, FRAME, time.perf_counter())  # not ours to send
    assert fake.calls == [] and count("sent") == sent
    plain = fake_reporter(monkeypatch, FakeMLOps())
    assert plain.model_mlops() is None


# -- chat completions -----------------------------------------------------------------------------


def completion(text: str | None) -> Any:
    """A ``chat.completion`` answer, as the reporting thread reads it."""
    from openai.types.chat import ChatCompletion

    return ChatCompletion.model_validate(
        {
            "id": "c",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": text},
                }
            ],
        }
    )


def chat_params(content: Any) -> dict[str, Any]:
    return {
        "messages": [{"role": "system", "content": "ignored"}, {"role": "user", "content": content}]
    }


def test_chat_prompt_is_the_last_messages_text_as_drum_builds_it() -> None:
    assert mlops.chat_prompt(chat_params("Hello")) == "Hello"
    parts = [
        {"type": "text", "text": "Describe"},
        {"type": "image_url", "image_url": {"url": "https://x/cat.png"}},
        {"type": "input_audio", "input_audio": {"data": "AA==", "format": "mp3"}},
        {"type": "file", "file": {"file_id": "f"}},
    ]
    assert mlops.chat_prompt(chat_params(parts)) == (
        "Describe\nImage URL: https://x/cat.png\nAudio Input, Format: mp3\n"
        "Unhandled content type: file"
    )
    # Content DRUM does not report (it logs "Unhandled prompt type").
    assert mlops.chat_prompt(chat_params(None)) is None
    assert mlops.chat_prompt(chat_params({"text": "x"})) is None
    for broken in ({}, {"messages": []}, chat_params([{"text": "no type"}])):
        with pytest.raises((KeyError, IndexError)):
            mlops.chat_prompt(broken)


def chat_report(params: Any = None, answer: Any = None, association_id: Any = None) -> Any:
    return mlops.prepare_chat(mlops._ChatReport(2.5, 0, params, answer, association_id))


def test_prepare_chat_answered_streamed_and_failed() -> None:
    for answer in (completion("Echo: Hello"), "Echo: Hello"):
        got = chat_report(chat_params("Hello"), answer, "a-1")
        assert (got.count, got.execution_ms) == (1, 2.5)
        assert got.features is not None
        assert got.features.to_dict(orient="list") == {"promptText": ["Hello"]}
        assert got.predictions == ["Echo: Hello"]
        assert got.association_ids == ["a-1"] and got.class_names is None
        assert got.problem is None
    failed = chat_report()
    assert (failed.count, failed.predictions, failed.problem) == (0, None, None)
    # A prompt of another type: the stats only, as DRUM.
    unhandled = chat_report(chat_params(7), "x", "a-2")
    assert (unhandled.count, unhandled.predictions, unhandled.problem) == (1, None, None)
    # No last message: DRUM fails the request after the stats; here the stats go, the data fails.
    broken = chat_report({"messages": []}, "x", "a-3")
    assert broken.count == 1 and broken.predictions is None
    assert broken.problem is not None and "IndexError" in broken.problem
    # No first choice to read: DRUM fails before it reports; nothing can be sent.
    from openai.types.chat import ChatCompletion

    empty = ChatCompletion(id="c", object="chat.completion", created=0, model="m", choices=[])
    with pytest.raises(IndexError):
        chat_report(chat_params("Hello"), empty, "a-4")


def test_the_library_spools_chats_as_drum_does(tmp_path: Path) -> None:
    """The real library, in this process: an answer, a stream's text and a failed chat."""
    spool = tmp_path / "spool"
    spool.mkdir()
    reporter = MLOpsReporter.start_up(MonitorSettings("D", "M", channel(spool)))
    reporter.report_chat(chat_params("Hi"), completion("Echo: Hi"), "a-1", time.perf_counter())
    reporter.report_chat(chat_params("Go"), "Echo: Go", "a-2", time.perf_counter(), 10)
    reporter.report_chat_error(time.perf_counter())
    assert reporter.flush(10.0)
    records = read_spool(spool)
    assert [r.data_type for r in records] == [
        "DEPLOYMENT_STATS",
        "PREDICTIONS_DATA",
        "DEPLOYMENT_STATS",
        "PREDICTIONS_DATA",
        "DEPLOYMENT_STATS",
    ]
    assert [s["numPredictions"] for s in of_type(records, "DEPLOYMENT_STATS")] == [1, 1, 0]
    first, second = of_type(records, "PREDICTIONS_DATA")
    assert first["features"] == {"promptText": ["Hi"]}
    assert first["predictions"] == ["Echo: Hi"] and first["associationIds"] == ["a-1"]
    assert second["predictions"] == ["Echo: Go"] and second["associationIds"] == ["a-2"]
    assert "classNames" not in first


def test_a_chat_whose_prompt_cannot_be_read_sends_the_stats_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeMLOps()
    reporter = fake_reporter(monkeypatch, fake)
    failed, sent = count("failed"), count("sent")
    reporter.report_chat({"messages": []}, "text", "a", time.perf_counter())
    wait_for(lambda: count("failed") - failed == 1)
    reporter.report_chat(chat_params("Hi"), "Echo: Hi", "b", time.perf_counter())
    wait_for(lambda: count("sent") - sent == 1)
    assert fake.calls == [("stats", 1), ("stats", 1), ("data", ["Echo: Hi"])]


def test_embedded_mode_reports_no_chat(monkeypatch: pytest.MonkeyPatch) -> None:
    """DRUM serves no chat to an unstructured model, the only kind ``--monitor-embedded`` takes."""
    monkeypatch.setattr(mlops, "configure", lambda monitor: FakeMLOps())
    reporter = MLOpsReporter(MonitorSettings("D", "M", "a=b", embedded=True))
    reporter.report_chat(chat_params("Hi"), "x", "a", time.perf_counter())
    reporter.report_chat_error(time.perf_counter())
    assert reporter._queue is None


# -- the chat route hands the reporter what DRUM reports ------------------------------------------


class RecordingReporter:
    """The reporter's chat calls, recorded on the request path."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def report_chat(
        self, params: Any, completion: Any, association_id: Any, started: float, size: int = 0
    ) -> None:
        text = completion if isinstance(completion, str) else completion.choices[0].message.content
        self.calls.append(("chat", params["messages"][-1]["content"], text, association_id))

    def report_chat_error(self, started: float) -> None:
        self.calls.append(("error",))


@pytest.fixture
def chat_service(tmp_path: Path) -> tuple[Any, RecordingReporter]:
    from tandem.core.model import LoadedModel
    from tandem.core.service import PredictionService
    from tandem.settings import build_settings
    from tests.support import fixture_dir

    code_dir = fixture_dir("chat_monitored", tmp_path)
    parsed = build_parser().parse_args(
        ["server", "--code-dir", str(code_dir), "--target-type", "textgeneration"]
    )
    settings = build_settings(merge_env(parsed, {}), {"TARGET_NAME": "answer"})
    reporter = RecordingReporter()
    service = PredictionService(settings, LoadedModel(settings), monitor=reporter)  # type: ignore[arg-type]
    return service, reporter


def ask_chat(service: Any, params: dict[str, Any]) -> Any:
    from tandem.core.http import Headers, QueryDict, Request
    from tandem.core.routes import ROUTES

    route = next(r for r in ROUTES if r.name == "chat")
    headers = Headers.from_pairs([("Content-Type", "application/json")])
    body = json.dumps(params).encode()
    return service.handle(
        route, Request("POST", "/v1/chat/completions", headers, QueryDict(), body)
    )


def test_the_chat_route_reports_answers_and_failures(
    chat_service: tuple[Any, RecordingReporter],
) -> None:
    service, reporter = chat_service
    answered = ask_chat(service, {"model": "x", "messages": [{"role": "user", "content": "Hi"}]})
    assert answered.status == 200
    generated = json.loads(answered.body)["datarobot_association_id"]
    assert reporter.calls == [("chat", "Hi", "Echo: Hi", generated)]
    reporter.calls.clear()
    failed = ask_chat(service, {"model": "fail", "messages": [{"role": "user", "content": "Hi"}]})
    assert failed.status == 500 and reporter.calls == [("error",)]
    reporter.calls.clear()
    not_a_chat = ask_chat(service, {"model": "not-a-chat", "messages": []})
    assert not_a_chat.status == 500 and reporter.calls == [("error",)]


def test_a_stream_is_reported_once_it_went_out_whole(
    chat_service: tuple[Any, RecordingReporter],
) -> None:
    service, reporter = chat_service
    params = {"model": "x", "stream": True, "messages": [{"role": "user", "content": "a b c"}]}
    resp = ask_chat(service, {**params, "datarobot_association_id": "s-1"})
    chunks = iter(resp.body)
    next(chunks)
    assert reporter.calls == []  # not before its end
    rest = b"".join(chunks)
    assert rest.endswith(b"data: [DONE]\n\n")
    assert reporter.calls == [("chat", "a b c", "Echo: a b c", "s-1")]

    reporter.calls.clear()
    left = ask_chat(service, {**params, "datarobot_association_id": "s-2"})
    body = iter(left.body)
    next(body)
    body.close()  # type: ignore[attr-defined]  # the client left: DRUM reports nothing either
    assert reporter.calls == []

    broken = ask_chat(service, {**params, "model": "fail-mid-stream"})
    assert broken.status == 200
    assert not b"".join(broken.body).endswith(b"[DONE]\n\n")
    assert reporter.calls == [("error",)]

    reporter.calls.clear()
    empty = ask_chat(service, {**params, "model": "empty", "datarobot_association_id": "s-3"})
    assert empty.status == 200 and reporter.calls == [("chat", "a b c", "", "s-3")]
    assert b"".join(empty.body) == b"data: [DONE]\n\n"
