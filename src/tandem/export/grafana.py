"""``tandem export grafana``: the migration plan's canary dashboard, built with Grafana's SDK.

Built with ``grafana-foundation-sdk`` (Grafana Labs' generated builders; the ``export`` extra
installs it), never as hand-written JSON. Rows:

- **Traffic by server_type**, the migration plan's four panels: request rate, P99, 5xx ratio and
  RSS (per worker process), each by ``server_type``;
- **Rollout**: the canary weight (the rollout router's ``tandem_router_weight_basis_points`` and
  the weight in force; Flagger's ``flagger_canary_weight``), Argo Rollouts' phase
  (``rollout_info``) and Flagger's last analysis result (``flagger_canary_status``). Tandem's own
  controller exports no phase metric: its phase is in ``tandem rollout status`` and on the
  router's ``/dashboard``, which a text panel says;
- **Rollback triggers**: each exported check's value with its threshold from the rollout spec.

Every query comes from :mod:`tandem.rollout.promql`; ``$__rate_interval`` is Grafana's.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tandem.export.checks import Check, Selectors, checks
from tandem.export.model import Model
from tandem.rollout import promql
from tandem.rollout.spec import RolloutSpec

RATE_WINDOW = "$__rate_interval"
DATASOURCE_VARIABLE = "datasource"
#: Flagger's ``flagger_canary_status`` values.
FLAGGER_STATUS = {"0": "Progressing", "1": "Succeeded", "2": "Failed"}

PHASE_NOTE = """\
**Tandem rollout phase.** Tandem's own controller keeps its phase (shadow, canary, reducing,
holding, paused, rolled back, aborted, promoted) in its state database: see
`tandem rollout status` or the rollout router's `/dashboard`. It exports no Prometheus metric
for it yet, so no panel can chart it; the router exports the weight (left). With Argo Rollouts
or Flagger, their phase panels (right) apply."""


def _sdk() -> Any:
    """The SDK's modules; ConfigError naming the extra when it is not installed."""
    try:
        from grafana_foundation_sdk.builders import common as common_b
        from grafana_foundation_sdk.builders import dashboard as dash_b
        from grafana_foundation_sdk.builders import prometheus as prom_b
        from grafana_foundation_sdk.builders import statetimeline, text, timeseries
        from grafana_foundation_sdk.models import common as common_m
        from grafana_foundation_sdk.models import dashboard as dash_m
        from grafana_foundation_sdk.models import text as text_m
    except ModuleNotFoundError as exc:
        from tandem.errors import ConfigError

        raise ConfigError(
            f"tandem export grafana needs Grafana's dashboard SDK ({exc.name} is missing): "
            "pip install 'tandem[export]'"
        ) from None

    class Sdk:
        """Namespace of the imported modules."""

    sdk = Sdk()
    for name, module in (
        ("common_b", common_b),
        ("dash_b", dash_b),
        ("prom_b", prom_b),
        ("statetimeline", statetimeline),
        ("text", text),
        ("timeseries", timeseries),
        ("common_m", common_m),
        ("dash_m", dash_m),
        ("text_m", text_m),
    ):
        setattr(sdk, name, module)
    return sdk


def dashboard_uid(model: Model) -> str:
    """A stable uid (Grafana allows 40 characters)."""
    uid = f"tandem-{model.namespace}-{model.name}"
    if len(uid) <= 40:
        return uid
    return "tandem-" + hashlib.sha256(uid.encode()).hexdigest()[:33]


def _datasource(sdk: Any) -> Any:
    return sdk.dash_m.DataSourceRef(type_val="prometheus", uid=f"${{{DATASOURCE_VARIABLE}}}")


def _query(sdk: Any, expr: str, legend: str, ref: str) -> Any:
    return (
        sdk.prom_b.Dataquery()
        .expr(expr)
        .legend_format(legend)
        .ref_id(ref)
        .datasource(_datasource(sdk))
    )


def _timeseries(
    sdk: Any, title: str, unit: str, targets: list[tuple[str, str]], description: str = ""
) -> Any:
    panel = (
        sdk.timeseries.Panel()
        .title(title)
        .unit(unit)
        .datasource(_datasource(sdk))
        .height(8)
        .span(12)
    )
    if description:
        panel = panel.description(description)
    for index, (expr, legend) in enumerate(targets):
        panel = panel.with_target(_query(sdk, expr, legend, chr(ord("A") + index)))
    return panel


def _thresholds(sdk: Any, check: Check) -> Any:
    dm = sdk.dash_m
    calm, alarm = "green", "red"
    below, above = (calm, alarm) if check.op == ">" else (alarm, calm)
    return (
        sdk.dash_b.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps(
            [
                dm.Threshold(value=None, color=below),
                dm.Threshold(value=check.threshold, color=above),
            ]
        )
    )


def _trigger_panel(sdk: Any, check: Check) -> Any:
    panel = _timeseries(
        sdk,
        f"{check.alert} ({check.rule})",
        check.unit,
        [(check.value, check.key)],
        f"{check.summary}. Fires when the value is {check.op} {promql.number(check.threshold)}.",
    )
    # The SDK built for Grafana 10.1 spells this enum "Tresholds"; the 11.6 build does not.
    common = sdk.common_m
    modes = getattr(common, "GraphThresholdsStyleMode", None) or common.GraphTresholdsStyleMode
    style = sdk.common_b.GraphThresholdsStyleConfig().mode(modes.LINE)
    return panel.thresholds(_thresholds(sdk, check)).thresholds_style(style)


def dashboard(model: Model, spec: RolloutSpec, sel: Selectors) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (a dict, ready for ``json.dumps``)."""
    sdk = _sdk()
    extra = sel.deployment
    dm = sdk.dash_m
    ns, name = model.namespace, model.name
    by_type = "{{server_type}}"
    rows: list[tuple[str, list[Any]]] = [
        (
            "Traffic by server_type",
            [
                _timeseries(
                    sdk,
                    "Request rate by server_type",
                    "reqps",
                    [(promql.request_rate_by_server_type(extra, RATE_WINDOW), by_type)],
                ),
                _timeseries(
                    sdk,
                    "P99 by server_type",
                    "s",
                    [(promql.p99_by_server_type(extra, RATE_WINDOW), by_type)],
                ),
                _timeseries(
                    sdk,
                    "5xx ratio by server_type",
                    "percentunit",
                    [(promql.error_ratio_by_server_type(extra, RATE_WINDOW), by_type)],
                ),
                _timeseries(
                    sdk,
                    "RSS per worker by server_type",
                    "bytes",
                    [(promql.rss_per_worker_by_server_type(extra), by_type)],
                ),
            ],
        ),
        (
            "Rollout",
            [
                _timeseries(
                    sdk,
                    "Canary weight",
                    "percent",
                    [
                        (promql.router_weight_percent(sel.router), "Tandem router: asked"),
                        (
                            promql.router_effective_weight_percent(sel.router),
                            "Tandem router: in force",
                        ),
                        (promql.flagger_canary_weight(ns, name), "Flagger"),
                    ],
                )
                .min(0)
                .max(100),
                sdk.text.Panel()
                .title("Rollout phase: Tandem controller")
                .mode(sdk.text_m.TextMode.MARKDOWN)
                .content(PHASE_NOTE)
                .height(8)
                .span(12),
                sdk.statetimeline.Panel()
                .title("Rollout phase: Argo Rollouts")
                .datasource(_datasource(sdk))
                .with_target(_query(sdk, promql.argo_rollout_phase(ns, name), "{{phase}}", "A"))
                .height(6)
                .span(12),
                sdk.statetimeline.Panel()
                .title("Rollout phase: Flagger")
                .datasource(_datasource(sdk))
                .with_target(_query(sdk, promql.flagger_canary_status(ns, name), "status", "A"))
                .mappings(
                    [
                        dm.ValueMap(
                            options={
                                value: dm.ValueMappingResult(text=label)
                                for value, label in FLAGGER_STATUS.items()
                            }
                        )
                    ]
                )
                .height(6)
                .span(12),
            ],
        ),
        (
            "Rollback triggers (thresholds from the rollout spec)",
            [_trigger_panel(sdk, check) for check in checks(spec, sel)],
        ),
    ]
    builder = (
        sdk.dash_b.Dashboard(f"Tandem rollout: {ns}/{name}")
        .uid(dashboard_uid(model))
        .tags(["tandem", "rollout", "drum"])
        .description(
            "Flask vs FastAPI by server_type (the migration plan's canary panels), the rollout's "
            "weight and phase, and every rollback trigger with its threshold. Generated by "
            "`tandem export grafana`."
        )
        .refresh("30s")
        .time("now-6h", "now")
        .with_variable(
            sdk.dash_b.DatasourceVariable(DATASOURCE_VARIABLE)
            .label("Prometheus")
            .type("prometheus")
        )
    )
    panel_id = 0
    for title, panels in rows:
        panel_id += 1
        builder = builder.with_row(sdk.dash_b.Row(title).id(panel_id))
        for panel in panels:
            panel_id += 1
            builder = builder.with_panel(panel.id(panel_id))
    # The SDK's encoder turns its model objects into JSON; read back, a plain dict.
    from grafana_foundation_sdk.cog.encoder import JSONEncoder

    doc: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    return doc


def dashboard_json(model: Model, spec: RolloutSpec, sel: Selectors) -> str:
    """The dashboard JSON text (Grafana's *Import dashboard* takes it as is)."""
    return json.dumps(dashboard(model, spec, sel), indent=2, sort_keys=True) + "\n"


def dashboard_configmap(model: Model, spec: RolloutSpec, sel: Selectors) -> dict[str, Any]:
    """The dashboard in a ConfigMap labelled ``grafana_dashboard: "1"`` (the Grafana sidecar of
    kube-prometheus-stack and Grafana's Helm chart load those)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"{model.name}-dashboard",
            "namespace": model.namespace,
            "labels": {"grafana_dashboard": "1", "tandem-model": model.name},
        },
        "data": {f"{model.name}.json": dashboard_json(model, spec, sel)},
    }
