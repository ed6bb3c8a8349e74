"""A resumed rollout keeps the seams it was started with (targets, traffic, metric source)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tandem.errors import ConfigError
from tandem.rollout.cli import _stated, add_parser
from tandem.rollout.seams import MetricSeam, Stated, redact, resume
from tandem.rollout.store import StateLock

#: What ``rollout start`` records for the production shape (attach + nginx + Prometheus).
DEPLOYMENT: dict[str, Any] = {
    "code_dir": None,
    "baseline_url": "http://10.0.0.5:8080",
    "candidate_url": "http://10.0.0.6:8080",
    "traffic": "nginx",
    "nginx_conf": "/etc/nginx/tandem/model.conf",
    "nginx_test_cmd": "nginx -t",
    "nginx_reload_cmd": "nginx -s reload",
    "nginx_access_log": None,
    "compare_port": 40001,
    "admin_token_sha256": None,
}
METRICS = MetricSeam("http://prom:9090", 'namespace="ml"').record()


def parse(*argv: str) -> Any:
    import argparse

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["rollout", "start", *argv])


def test_a_bare_resume_keeps_nginx_and_prometheus() -> None:
    resumed = resume(DEPLOYMENT, METRICS, _stated(parse("--state", "s.db")))
    assert resumed.deployment == DEPLOYMENT
    assert resumed.metrics == MetricSeam("http://prom:9090", 'namespace="ml"')
    assert resumed.changes == {}


def test_the_same_flags_again_change_nothing(tmp_path: Path) -> None:
    conf = tmp_path / "model.conf"
    dep = {**DEPLOYMENT, "nginx_conf": str(conf.resolve())}
    argv = [
        "--baseline-url", "http://10.0.0.5:8080/",
        "--candidate-url", "http://10.0.0.6:8080",
        "--traffic", "nginx",
        "--nginx-conf", str(conf),
        "--nginx-test-cmd", "nginx -t",
        "--prometheus-url", "http://prom:9090",
        "--prometheus-selector", 'namespace="ml"',
    ]  # fmt: skip
    resumed = resume(dep, METRICS, _stated(parse(*argv)))
    assert resumed.changes == {} and resumed.deployment == dep


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--traffic", "builtin"], "--traffic nginx"),
        (["--nginx-conf", "/etc/nginx/other.conf"], "--nginx-conf"),
        (["--baseline-url", "http://10.0.0.9:8080"], "--baseline-url"),
        (["--candidate-url", "http://10.0.0.9:8080"], "--candidate-url"),
    ],
)
def test_another_engine_is_refused(argv: list[str], flag: str) -> None:
    with pytest.raises(ConfigError, match=flag) as caught:
        resume(DEPLOYMENT, METRICS, _stated(parse(*argv)))
    assert "mid-rollout" in str(caught.value)


def test_prometheus_cannot_be_switched_on_mid_rollout() -> None:
    builtin = {**DEPLOYMENT, "traffic": "builtin", "baseline_url": None, "candidate_url": None}
    with pytest.raises(ConfigError, match="router's counters"):
        resume(builtin, MetricSeam().record(), Stated(prometheus_url="http://prom:9090"))
    assert not resume(builtin, MetricSeam().record(), Stated()).metrics.prometheus


def test_changed_settings_are_taken_and_listed() -> None:
    stated = Stated(
        nginx_reload_cmd="systemctl reload nginx",
        prometheus_url="http://prom2:9090",
        candidate_selector='server_type="fastapi", track="canary"',
    )
    resumed = resume(DEPLOYMENT, METRICS, stated)
    assert resumed.deployment["nginx_reload_cmd"] == "systemctl reload nginx"
    assert resumed.metrics.prometheus_url == "http://prom2:9090"
    assert resumed.metrics.prometheus_selector == 'namespace="ml"'  # kept
    assert resumed.changes == {
        "nginx_reload_cmd": {"before": "nginx -s reload", "after": "systemctl reload nginx"},
        "prometheus_url": {"before": "http://prom:9090", "after": "http://prom2:9090"},
        "candidate_selector": {"before": None, "after": 'server_type="fastapi", track="canary"'},
    }


def test_credentials_in_the_prometheus_url_are_never_stored() -> None:
    url = "https://rollout:s3cret@prom.example:9090/prom"
    record = MetricSeam(url).record()
    assert "s3cret" not in json.dumps(record)
    assert record["prometheus_url"] == "https://rollout:***@prom.example:9090/prom"
    assert record["prometheus_url_sha256"]
    assert redact("http://prom:9090") == "http://prom:9090"
    with pytest.raises(ConfigError, match="pass the same --prometheus-url"):
        resume(DEPLOYMENT, record, Stated())
    same = resume(DEPLOYMENT, record, Stated(prometheus_url=url))
    assert same.metrics.prometheus_url == url and same.changes == {}
    other = resume(DEPLOYMENT, record, Stated(prometheus_url=url.replace("s3cret", "n3w")))
    assert other.changes["prometheus_url"]["after"] == "https://rollout:***@prom.example:9090/prom"
    assert "n3w" not in json.dumps(other.changes)


def test_a_state_file_from_before_the_metric_seam_was_recorded() -> None:
    stated = Stated(prometheus_url="http://prom:9090")
    assert resume(DEPLOYMENT, None, stated).metrics.prometheus_url == "http://prom:9090"
    with pytest.raises(ConfigError, match="pass --prometheus-url"):
        resume(DEPLOYMENT, None, Stated())


def test_the_state_lock_probe(tmp_path: Path) -> None:
    lock = StateLock(tmp_path / "state.db")
    assert not lock.held()
    with lock:
        assert StateLock(tmp_path / "state.db").held()
    assert not lock.held()


def test_a_command_for_a_rollout_nobody_runs_says_how_to_resume_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tandem.rollout.cli import run
    from tandem.rollout.status import Phase, RolloutStatus
    from tandem.rollout.store import RolloutStore

    state = tmp_path / "state.db"
    store = RolloutStore(state)
    store.save(RolloutStatus(phase=Phase.CANARY, weight=10.0), action="start")

    def resume_command() -> str:
        import argparse

        assert run(argparse.Namespace(rollout_command="resume", state=str(state))) == 0
        return capsys.readouterr().err

    assert "tandem rollout start --state" in resume_command()
    with StateLock(state):  # a live controller: nothing to say
        assert resume_command() == ""
    store.save(RolloutStatus(phase=Phase.PROMOTED, weight=100.0))
    assert resume_command() == ""
    store.close()


def test_a_malformed_steps_flag_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused with a message naming the flag, before any state file or child exists."""
    from tandem.cli import main

    state = tmp_path / "rollout.db"
    code = main(["rollout", "start", "--code-dir", str(tmp_path), "--state", str(state),
                 "--steps", "5,abc"])  # fmt: skip
    assert code != 0
    assert "--steps '5,abc' must be comma-separated percentages" in capsys.readouterr().err
    assert not state.exists()


def test_a_resumed_rollout_keeps_paging_and_asks_for_its_webhook_again(tmp_path: Path) -> None:
    """Started with --notify-url and --pagerduty-url: resumed, it keeps paging (the URL is
    recorded, the routing key never is) and is refused without the webhook URL, a secret the
    state keeps only a hash of."""
    from tandem.rollout.cli import _alerting
    from tandem.rollout.store import RolloutStore

    state = tmp_path / "rollout.db"
    store = RolloutStore(state)
    hook = "https://hooks.example/services/T000/B000/SECRET-webhook"
    first = parse("--notify-url", hook, "--pagerduty-url", "http://pd/enqueue")
    assert _alerting(first, store) == (hook, "http://pd/enqueue")
    with pytest.raises(ConfigError, match="pass the same --notify-url to resume it"):
        _alerting(parse(), store)
    assert _alerting(parse("--notify-url", hook), store) == (hook, "http://pd/enqueue")
    store.close()
    written = b"".join(f.read_bytes() for f in tmp_path.iterdir())  # the file and any WAL
    assert b"SECRET-webhook" not in written and b"pd/enqueue" in written


def test_a_resumed_rollout_refuses_to_move_its_addresses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tandem.cli import main
    from tandem.rollout.cli import _check_addresses_kept
    from tandem.rollout.store import RolloutStore

    recorded = {
        **DEPLOYMENT,
        "public_host": "127.0.0.1",
        "public_port": 8080,
        "admin_host": "127.0.0.1",
        "admin_port": 8081,
    }
    _check_addresses_kept(parse(), recorded)
    _check_addresses_kept(parse("--address", "127.0.0.1:8080"), recorded)
    with pytest.raises(ConfigError, match="--admin-address 127.0.0.1:9001: this rollout was"):
        _check_addresses_kept(parse("--admin-address", "127.0.0.1:9001"), recorded)
    state = tmp_path / "rollout.db"
    store = RolloutStore(state)
    store.set_json("deployment", recorded)
    store.close()
    assert main(["rollout", "start", "--state", str(state), "--address", "0.0.0.0:9000"]) == 1
    err = capsys.readouterr().err
    assert "--address 0.0.0.0:9000: this rollout was started on 127.0.0.1:8080" in err
