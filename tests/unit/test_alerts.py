"""Alert matchers (Prometheus syntax) and Alertmanager webhook payloads."""

from __future__ import annotations

import pytest

from tandem.errors import ConfigError
from tandem.rollout.alerts import firing_alerts, matches, parse_matchers


@pytest.mark.parametrize(
    ("matcher", "labels", "expected"),
    [
        ('category="security"', {"category": "security"}, True),
        ('category="security"', {"category": "capacity"}, False),
        ('category="security"', {}, False),
        (
            '{category="security", severity=~"high|critical"}',
            {"category": "security", "severity": "high"},
            True,
        ),
        (
            'category="security", severity=~"high|critical"',
            {"category": "security", "severity": "low"},
            False,
        ),
        ('severity!~"info|debug"', {"severity": "warning"}, True),
        ('team!="ml"', {}, True),
        ('name=~"sec"', {"name": "insecure"}, False),  # regexes are anchored
    ],
)
def test_matchers_follow_prometheus(matcher: str, labels: dict[str, str], expected: bool) -> None:
    assert matches(labels, parse_matchers(matcher)) is expected


@pytest.mark.parametrize("bad", ["", "category=security", 'category="a" severity="b"', 'x=~"("'])
def test_bad_matchers_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError):
        parse_matchers(bad)


def test_webhook_keeps_firing_alerts_with_a_stable_key() -> None:
    payload = {
        "version": "4",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "Breach", "category": "security"},
                "annotations": {"summary": "token leaked"},
                "startsAt": "2026-12-04T10:00:00Z",
                "fingerprint": "abc",
            },
            {"status": "resolved", "labels": {"alertname": "Old"}, "fingerprint": "def"},
        ],
    }
    (alert,) = firing_alerts(payload)
    assert alert.text == "Breach: token leaked"
    assert alert.key == "alert:abc:2026-12-04T10:00:00Z"
    assert firing_alerts(payload)[0].key == alert.key


@pytest.mark.parametrize("bad", [None, {}, {"alerts": "x"}, {"alerts": [{"status": "firing"}]}])
def test_what_is_not_a_webhook_is_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        firing_alerts(bad)
