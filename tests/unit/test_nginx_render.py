"""The nginx include file the rollout controller owns: split, upstreams, server block."""

from __future__ import annotations

from pathlib import Path

import pytest

from tandem.rollout.nginx import NginxTraffic, TrafficError, percent


def traffic(tmp_path: Path, **kw: object) -> NginxTraffic:
    values: dict[str, object] = dict(
        conf_path=tmp_path / "tandem.conf",
        listen="0.0.0.0:8080",
        baseline_url="http://127.0.0.1:9001",
        candidate_url="http://[::1]:9002",
    )
    values.update(kw)
    return NginxTraffic(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(("bp", "text"), [(1, "0.01%"), (1234, "12.34%"), (5000, "50.00%")])
def test_percent_has_split_clients_resolution(bp: int, text: str) -> None:
    assert percent(bp) == text


def test_render_splits_and_names_both_upstreams(tmp_path: Path) -> None:
    text = traffic(tmp_path).render(1234)
    assert (
        'split_clients "$tandem_split_key" $tandem_side { 12.34% candidate; * baseline; }' in text
    )
    assert "upstream tandem_baseline { server 127.0.0.1:9001; keepalive 32; }" in text
    assert "upstream tandem_candidate { server [::1]:9002; keepalive 32; }" in text
    assert "listen 0.0.0.0:8080;" in text
    assert "proxy_pass http://tandem_$tandem_side;" in text


@pytest.mark.parametrize(("bp", "split"), [(0, "{ * baseline; }"), (10_000, "{ * candidate; }")])
def test_the_ends_need_no_percentage(tmp_path: Path, bp: int, split: str) -> None:
    assert split in traffic(tmp_path).render(bp)


def test_a_failed_check_restores_the_previous_file(tmp_path: Path) -> None:
    engine = traffic(tmp_path, test_cmd="true", reload_cmd="true")
    engine.apply(100)
    before = engine.conf_path.read_text()
    engine.test_cmd = "sh -c 'echo \"nginx: [emerg] bad thing\" >&2; echo failed >&2; exit 1'"
    with pytest.raises(TrafficError, match=r"failed with 1: nginx: \[emerg\] bad thing"):
        engine.apply(9000)
    assert engine.conf_path.read_text() == before
    assert engine.applied_bp == 100


def test_a_failed_first_change_leaves_no_file(tmp_path: Path) -> None:
    engine = traffic(tmp_path, test_cmd="false", reload_cmd="true")
    with pytest.raises(TrafficError):
        engine.apply(100)
    assert not engine.conf_path.exists()
