"""``tandem export argo-rollouts`` and ``flagger``: objects their published CRD schemas accept,
with the thresholds, steps and pauses of the spec ``decide()`` judges by."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tandem.errors import ConfigError
from tandem.export import argo, flagger
from tandem.export.checks import checks, selectors, step_gates
from tandem.export.model import SERVER_TYPE_KEY, SERVER_TYPE_LABEL, Model, env_name
from tandem.ops import kube
from tandem.rollout import promql
from tandem.rollout.spec import RolloutSpec
from tests.export.support import check_expressions, validate
from tests.export.test_rules_promtool import SPECS

MODEL = Model(name="churn", namespace="ml", image="registry.example/churn:1")
PROM = "http://prometheus-operated.monitoring.svc:9090"
SEL = selectors(MODEL.metric_selector())


def spec_thresholds(spec: RolloutSpec) -> dict[str, float]:
    """Each trigger's threshold, read here from the spec's own fields (what decide() reads)."""
    trig = spec.triggers
    return {
        "prediction-difference": 0.0,
        "oom-kills": 0.0,
        "deadlock": 1.0,
        "error-rate": trig.immediate_error_rate,
        "memory-leak": trig.rss_growth_per_hour,
        "error-rate-gradual": trig.gradual_error_rate,
        "p99-ratio": 1.0 + trig.p99_increase,
        "memory-ratio": 1.0 + trig.memory_increase,
        "trace-gaps": 0.0,
    }


def spec_failures(spec: RolloutSpec) -> dict[str, int]:
    """Failed measurements tolerated: none for an immediate trigger, ``consecutive - 1`` for
    a gradual one, ``ping_timeout`` worth of evaluations for the deadlock."""
    gradual = spec.triggers.consecutive - 1
    return {
        "prediction-difference": 0,
        "oom-kills": 0,
        "deadlock": round(spec.triggers.ping_timeout / spec.interval),
        "error-rate": 0,
        "memory-leak": 0,
        "error-rate-gradual": gradual,
        "p99-ratio": gradual,
        "memory-ratio": gradual,
        "trace-gaps": gradual,
    }


def objects_of(kind: str, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


@pytest.mark.parametrize("ingress", [None, "churn"])
@pytest.mark.parametrize("spec_name", sorted(SPECS))
def test_argo_objects_pass_the_published_crd_schemas(spec_name: str, ingress: str | None) -> None:
    objects = argo.manifests(MODEL, SPECS[spec_name], SEL, PROM, ingress)
    kinds = [o["kind"] for o in objects]
    services = ["Service", "Service"] if ingress else []
    assert kinds == ["AnalysisTemplate", "AnalysisTemplate", *services, "Rollout"]
    for obj in objects:
        validate(obj)


@pytest.mark.parametrize("ingress", [None, "churn"])
@pytest.mark.parametrize("spec_name", sorted(SPECS))
def test_flagger_objects_pass_the_published_crd_schemas(
    spec_name: str, ingress: str | None
) -> None:
    objects = flagger.manifests(MODEL, SPECS[spec_name], SEL, PROM, ingress)
    assert [o["kind"] for o in objects] == ["MetricTemplate"] * 9 + ["Canary"]
    for obj in objects:
        validate(obj)


@pytest.mark.parametrize("spec_name", sorted(SPECS))
def test_argo_and_flagger_thresholds_are_decides(spec_name: str) -> None:
    """The drift test: every threshold the engines get equals the one decide() reads from the
    same spec object, and every query is the check's own text."""
    spec = SPECS[spec_name]
    expected = spec_thresholds(spec)
    found = {c.key: c for c in checks(spec, SEL)}
    assert {k: c.threshold for k, c in found.items()} == expected

    template = argo.triggers_template(MODEL, spec, SEL, PROM)
    args = {a["name"]: float(a["value"]) for a in template["spec"]["args"]}
    metrics = {m["name"]: m for m in template["spec"]["metrics"]}
    assert set(metrics) == set(expected)
    for key, threshold in expected.items():
        metric = metrics[key]
        assert args[f"{key}-threshold"] == threshold
        assert metric["failureLimit"] == spec_failures(spec)[key]
        assert metric["interval"] == promql.duration(spec.interval)
        assert metric["provider"]["prometheus"]["query"] == found[key].value
        op = "<" if key == "deadlock" else ">"
        assert metric["failureCondition"] == (
            f"len(result) > 0 && result[0] {op} {{{{args.{key}-threshold}}}}"
        )

    canary = flagger.canary(MODEL, spec, SEL)
    ranges = {m["name"]: m["thresholdRange"] for m in canary["spec"]["analysis"]["metrics"]}
    assert ranges == {
        key: ({"min": value} if key == "deadlock" else {"max": value})
        for key, value in expected.items()
    }
    assert canary["spec"]["analysis"]["threshold"] == spec.triggers.consecutive
    templates = {t["metadata"]["name"]: t for t in flagger.manifests(MODEL, spec, SEL, PROM)}
    for metric in canary["spec"]["analysis"]["metrics"]:
        query = templates[metric["templateRef"]["name"]]["spec"]["query"]
        value = found[metric["name"]].value
        fallback = "" if metric["name"] == "deadlock" else " or vector(0.0)"
        assert query == (f"({value}){fallback}" if fallback else value)


@pytest.mark.parametrize("spec_name", sorted(SPECS))
def test_argo_steps_and_pauses_are_the_specs(spec_name: str) -> None:
    spec = SPECS[spec_name]
    rollout = argo.rollout(MODEL, spec, SEL)
    steps = rollout["spec"]["strategy"]["canary"]["steps"]
    assert len(steps) == 3 * len(spec.steps)
    gate_args = {g.arg: g for g in step_gates(spec, SEL)}
    for index, weight in enumerate(spec.steps):
        set_weight, pause, analysis = steps[3 * index : 3 * index + 3]
        assert set_weight == {"setWeight": round(weight)}
        assert pause == {"pause": {"duration": promql.duration(spec.step_hold)}}
        crit = spec.criteria_for(weight)
        args = {a["name"]: float(a["value"]) for a in analysis["analysis"]["args"]}
        assert args == {
            "max-error-rate": crit.max_error_rate,
            "max-p99-increase": crit.max_p99_increase,
            "max-memory-increase": crit.max_memory_increase,
        }
        assert set(args) == set(gate_args)
    background = rollout["spec"]["strategy"]["canary"]["analysis"]
    assert background["templates"] == [{"templateName": "churn-triggers"}]


def test_default_step_criteria_are_one_ladder_with_the_triggers() -> None:
    """P99 +20 % at every step (the rollback plan's gradual trigger); memory 1 %: +50 %, 5 %:
    +40 %, 10 % on: +30 %; errors < 0.1 %."""
    rollout = argo.rollout(MODEL, RolloutSpec(), SEL)
    steps = rollout["spec"]["strategy"]["canary"]["steps"]
    by_weight = {}
    for i in range(0, len(steps), 3):
        args = {a["name"]: a["value"] for a in steps[i + 2]["analysis"]["args"]}
        assert args["max-error-rate"] == "0.001"
        by_weight[steps[i]["setWeight"]] = (args["max-p99-increase"], args["max-memory-increase"])
    assert by_weight[1] == ("0.2", "0.5")
    assert by_weight[5] == ("0.2", "0.4")
    assert all(by_weight[w] == ("0.2", "0.3") for w in (10, 25, 50, 75, 90, 100))


def test_step_gate_holds_rather_than_fails() -> None:
    """decide() holds a step whose criteria are not met: the gate never Fails, and a step
    without enough requests is Inconclusive too (Argo pauses the Rollout for an operator)."""
    template = argo.step_gate_template(MODEL, RolloutSpec(), SEL, PROM)
    for metric in template["spec"]["metrics"]:
        assert metric["failureCondition"] == "false"
        assert metric["successCondition"].startswith("len(result) > 0 && ")
        assert metric["count"] == 1
        query = metric["provider"]["prometheus"]["query"]
        assert f"{promql.requests(SEL.baseline, '900s')} >= 200" in query
        assert f"{promql.requests(SEL.candidate, '900s')} >= 200" in query


def test_each_revision_keeps_its_stack() -> None:
    """The Rollout's template carries the stack in its own env (it wins over the ConfigMap's
    envFrom) and in the server-type label, so a canary revision differs from the stable one."""
    flask = Model(**{**MODEL.__dict__, "server_type": "flask"})
    for model in (MODEL, flask):
        template = argo.rollout(model, RolloutSpec(), SEL)["spec"]["template"]
        env = {e["name"]: e["value"] for e in template["spec"]["containers"][0]["env"]}
        assert env[env_name(SERVER_TYPE_KEY)] == kube.server_type_value(model.server_type)
        assert env[env_name(SERVER_TYPE_KEY)] == model.config_data()[SERVER_TYPE_KEY]
        assert template["metadata"]["labels"][SERVER_TYPE_LABEL] == model.server_type


def test_flagger_interval_never_promotes_faster_than_the_spec() -> None:
    spec = SPECS["custom"]
    analysis = flagger.canary(MODEL, spec, SEL)["spec"]["analysis"]
    assert analysis["interval"] == promql.duration(spec.step_hold)
    assert analysis["stepWeights"] == [round(s) for s in spec.steps]


def test_fractional_steps_are_refused() -> None:
    spec = RolloutSpec.from_dict({"steps": [0.5, 5, 100]})
    with pytest.raises(ConfigError, match="whole-percent"):
        argo.rollout(MODEL, spec, SEL)
    with pytest.raises(ConfigError, match="whole-percent"):
        flagger.canary(MODEL, spec, SEL)


def test_every_engine_query_is_valid_promql_and_safe_from_templating(tmp_path: Path) -> None:
    """promtool parses every query; none holds "{{", which Argo Rollouts' argument substitution
    and Flagger's Go templates would both take for a variable."""
    exprs: dict[str, str] = {}
    for name, spec in SPECS.items():
        for obj in argo.manifests(MODEL, spec, SEL, PROM) + flagger.manifests(
            MODEL, spec, SEL, PROM
        ):
            for metric in obj["spec"].get("metrics") or []:
                if "provider" in metric:
                    query = metric["provider"]["prometheus"]["query"]
                    exprs[f"{name}/{obj['metadata']['name']}/{metric['name']}"] = query
            if obj["kind"] == "MetricTemplate":
                exprs[f"{name}/{obj['metadata']['name']}"] = obj["spec"]["query"]
    assert len(exprs) == 2 * (9 + 3 + 9)
    for key, expr in exprs.items():
        assert "{{" not in expr and "}}" not in expr, key
        assert not re.search(r"\$\w", expr), key
    check_expressions(exprs, tmp_path)


def test_argo_deadlock_waits_the_alerts_for_when_not_a_whole_number_of_intervals() -> None:
    """Argo fails on measurement ``failureLimit + 1``, one ``interval`` apart; the alert fires
    at the first evaluation ``for:`` (ping_timeout) after the first down one. With 25 s and
    10 s evaluations both must wait 3 intervals (30 s); 2 would abort on 20 s of silence, which
    decide() (silent > ping_timeout) does not judge a deadlock."""
    spec = RolloutSpec.from_dict({"interval": "10s", "triggers": {"ping_timeout": "25s"}})
    metrics = {
        m["name"]: m for m in argo.triggers_template(MODEL, spec, SEL, PROM)["spec"]["metrics"]
    }
    limit = metrics["deadlock"]["failureLimit"]
    assert limit * spec.interval >= spec.triggers.ping_timeout
    assert (limit - 1) * spec.interval < spec.triggers.ping_timeout
    assert limit == 3


@pytest.mark.parametrize("spec_name", sorted(SPECS))
def test_trace_gaps_judge_by_the_controllers_own_queries(spec_name: str) -> None:
    """The trace-gap check counts with the very queries the controller's Prometheus source runs
    (spans ended until the lag ago, spans exported and failed exports over the window)."""
    spec = SPECS[spec_name]
    check = {c.key: c for c in checks(spec, SEL)}["trace-gaps"]
    assert check.rule == "gradual.tracing" and check.action == "reduce"
    q = promql.trace_queries(SEL.candidate, spec.window, spec.triggers.trace_export_lag)
    assert q is not None
    for query in (q.spans_ended, q.spans_exported, q.export_failures):
        assert f"round({query})" in check.value


def test_trace_gaps_are_not_exported_when_decide_cannot_judge_them() -> None:
    """A window no longer than the trace export lag leaves nothing to judge: decide() never
    sees trace counts, and no engine gets the check."""
    spec = RolloutSpec.from_dict({"window": "15s", "triggers": {"trace_export_lag": "15s"}})
    assert promql.trace_queries(SEL.candidate, spec.window, spec.triggers.trace_export_lag) is None
    assert "trace-gaps" not in {c.key for c in checks(spec, SEL)}
    metrics = argo.triggers_template(MODEL, spec, SEL, PROM)["spec"]["metrics"]
    assert "trace-gaps" not in {m["name"] for m in metrics}
    analysis = flagger.canary(MODEL, spec, SEL)["spec"]["analysis"]
    assert "trace-gaps" not in {m["name"] for m in analysis["metrics"]}
