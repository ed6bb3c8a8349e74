"""``tandem export grafana``: the migration plan's panels, the rollout's weight and phase, and
each trigger with the spec's threshold, all with the controller's PromQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tandem.export import grafana
from tandem.export.checks import checks, selectors
from tandem.export.model import Model
from tandem.rollout import promql
from tandem.rollout.spec import RolloutSpec
from tests.export.support import check_expressions, validate
from tests.export.test_rules_promtool import SPECS

MODEL = Model(name="churn", namespace="ml", image="registry.example/churn:1")
SEL = selectors(MODEL.metric_selector())
EXTRA = MODEL.metric_selector()


def panels(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["title"]: p for p in doc["panels"] if p["type"] != "row"}


def exprs(panel: dict[str, Any]) -> list[str]:
    return [t["expr"] for t in panel.get("targets") or []]


def test_migration_plan_panels_by_server_type() -> None:
    found = panels(grafana.dashboard(MODEL, RolloutSpec(), SEL))
    window = grafana.RATE_WINDOW
    assert exprs(found["Request rate by server_type"]) == [
        promql.request_rate_by_server_type(EXTRA, window)
    ]
    assert exprs(found["P99 by server_type"]) == [promql.p99_by_server_type(EXTRA, window)]
    assert exprs(found["5xx ratio by server_type"]) == [
        promql.error_ratio_by_server_type(EXTRA, window)
    ]
    assert exprs(found["RSS per worker by server_type"]) == [
        promql.rss_per_worker_by_server_type(EXTRA)
    ]
    for title in ("Request rate", "P99", "5xx ratio", "RSS per worker"):
        panel = found[f"{title} by server_type"]
        assert panel["type"] == "timeseries"
        assert panel["targets"][0]["legendFormat"] == "{{server_type}}"
    units = {t: found[f"{t} by server_type"]["fieldConfig"]["defaults"]["unit"] for t in ("P99",)}
    assert units == {"P99": "s"}


def test_rollout_weight_and_phase() -> None:
    found = panels(grafana.dashboard(MODEL, RolloutSpec(), SEL))
    assert exprs(found["Canary weight"]) == [
        promql.router_weight_percent(SEL.router),
        promql.router_effective_weight_percent(SEL.router),
        promql.flagger_canary_weight("ml", "churn"),
    ]
    assert exprs(found["Rollout phase: Argo Rollouts"]) == [
        promql.argo_rollout_phase("ml", "churn")
    ]
    flagger = found["Rollout phase: Flagger"]
    assert exprs(flagger) == [promql.flagger_canary_status("ml", "churn")]
    (mapping,) = flagger["fieldConfig"]["defaults"]["mappings"]
    assert {k: v["text"] for k, v in mapping["options"].items()} == grafana.FLAGGER_STATUS
    # What is missing is said, not hidden: no metric carries the Tandem controller's phase.
    note = found["Rollout phase: Tandem controller"]
    assert note["type"] == "text" and "no Prometheus metric" in note["options"]["content"]


@pytest.mark.parametrize("spec_name", sorted(SPECS))
def test_trigger_panels_carry_the_specs_thresholds(spec_name: str) -> None:
    spec = SPECS[spec_name]
    found = panels(grafana.dashboard(MODEL, spec, SEL))
    for check in checks(spec, SEL):
        panel = found[f"{check.alert} ({check.rule})"]
        assert exprs(panel) == [check.value]
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert steps[-1]["value"] == check.threshold
        assert panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "line"


def test_dashboard_round_trips_through_the_sdk_model() -> None:
    """Grafana's own generated model reads the JSON back: the shape is the SDK's."""
    from grafana_foundation_sdk.models.dashboard import Dashboard

    doc = grafana.dashboard(MODEL, RolloutSpec(), SEL)
    again = json.loads(
        json.dumps(Dashboard.from_json(doc).to_json(), default=lambda o: o.to_json())
    )
    assert again["uid"] == doc["uid"] == "tandem-ml-churn"
    assert [p["title"] for p in again["panels"]] == [p["title"] for p in doc["panels"]]
    ids = [p["id"] for p in doc["panels"]]
    assert ids == sorted(set(ids))


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    doc = grafana.dashboard(MODEL, RolloutSpec(), SEL)
    queries = {
        f"{p['title']}/{t['refId']}": t["expr"].replace(grafana.RATE_WINDOW, "1m")
        for p in doc["panels"]
        for t in p.get("targets") or []
    }
    assert len(queries) == 4 + 3 + 1 + 1 + 9
    check_expressions(queries, tmp_path)


def test_dashboard_configmap_for_the_grafana_sidecar() -> None:
    configmap = grafana.dashboard_configmap(MODEL, RolloutSpec(), SEL)
    validate(configmap)
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    (text,) = configmap["data"].values()
    assert json.loads(text) == grafana.dashboard(MODEL, RolloutSpec(), SEL)


def test_long_names_get_a_short_stable_uid() -> None:
    model = Model(name="a" * 40, namespace="b" * 40, image="x")
    uid = grafana.dashboard_uid(model)
    assert len(uid) <= 40 and uid == grafana.dashboard_uid(model)


def test_traffic_panels_follow_the_prometheus_selector() -> None:
    """``--prometheus-selector`` (a Prometheus without the exported monitors' labels) reaches
    the by-server_type panels as it reaches the trigger panels: one deployment, one selector."""
    sel = selectors('job="churn"')
    found = panels(grafana.dashboard(MODEL, RolloutSpec(), sel))
    window = grafana.RATE_WINDOW
    assert exprs(found["Request rate by server_type"]) == [
        promql.request_rate_by_server_type('job="churn"', window)
    ]
    assert exprs(found["RSS per worker by server_type"]) == [
        promql.rss_per_worker_by_server_type('job="churn"')
    ]
    for title in ("Request rate", "P99", "5xx ratio", "RSS per worker"):
        (expr,) = exprs(found[f"{title} by server_type"])
        assert "tandem_model" not in expr, title
