"""Validators for exported manifests, with real tools: Kubernetes' own schemas
(``kubernetes-validate``), the engines' published CRD schemas (``jsonschema`` over the files in
``tests/fixtures/crds``) and Prometheus' ``promtool``."""

from __future__ import annotations

import copy
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

CRDS = Path(__file__).resolve().parent.parent / "fixtures" / "crds"

#: Kubernetes versions core objects are validated against: an old one still supported by the
#: major clouds, and the newest kubernetes-validate ships.
K8S_VERSIONS = ("1.29.0", "latest")

#: apiVersion/kind -> the vendored CRD file that defines it.
CRD_FILES = {
    ("argoproj.io/v1alpha1", "Rollout"): "argo-rollouts-v1.9.1-rollout-crd.yaml",
    ("argoproj.io/v1alpha1", "AnalysisTemplate"): "argo-rollouts-v1.9.1-analysis-template-crd.yaml",
    ("flagger.app/v1beta1", "Canary"): "flagger-v1.44.0-crd.yaml",
    ("flagger.app/v1beta1", "MetricTemplate"): "flagger-v1.44.0-crd.yaml",
    ("monitoring.coreos.com/v1", "PodMonitor"): "prometheus-operator-v0.93.0-podmonitors.yaml",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): (
        "prometheus-operator-v0.93.0-servicemonitors.yaml"
    ),
    ("monitoring.coreos.com/v1", "PrometheusRule"): (
        "prometheus-operator-v0.93.0-prometheusrules.yaml"
    ),
}


def _strict(schema: Any) -> Any:
    """An OpenAPI v3 (structural) schema as a JSON Schema that refuses unknown fields, as the
    API server's strict field validation does, and knows ``nullable``."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if schema.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


@cache
def _crd_validator(api_version: str, kind: str) -> jsonschema.Draft7Validator:
    name = CRD_FILES[(api_version, kind)]
    group, _, version = api_version.rpartition("/")
    for doc in yaml.safe_load_all((CRDS / name).read_text()):
        if not doc or doc.get("kind") != "CustomResourceDefinition":
            continue
        spec = doc["spec"]
        if spec["group"] != group or spec["names"]["kind"] != kind:
            continue
        for served in spec["versions"]:
            if served["name"] == version and served.get("served", True):
                schema = _strict(copy.deepcopy(served["schema"]["openAPIV3Schema"]))
                return jsonschema.Draft7Validator(schema)
    raise AssertionError(f"{name} defines no served {api_version} {kind}")


def validate(obj: dict[str, Any]) -> None:
    """Validate one object: a CRD kind against its vendored schema, a core kind against
    Kubernetes' (strict: unknown fields fail). AssertionError listing every problem."""
    key = (obj["apiVersion"], obj["kind"])
    if key in CRD_FILES:
        errors = sorted(_crd_validator(*key).iter_errors(obj), key=lambda e: list(e.path))
        problems = [f"{'/'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in errors]
        assert not problems, f"{obj['kind']} {obj['metadata']['name']}:\n" + "\n".join(problems)
        return
    import kubernetes_validate

    for version in K8S_VERSIONS:
        target = kubernetes_validate.latest_version() if version == "latest" else version
        try:
            kubernetes_validate.validate(obj, target, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(
                f"{obj['kind']} {obj['metadata']['name']} (Kubernetes {target}): {exc.message}"
            ) from None


def promtool() -> str:
    """The promtool executable; the test fails (not skips) when it is missing."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not installed: it ships with Debian's prometheus package "
            "(apt-get install prometheus; .ci/run installs it)"
        )
    return path


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run promtool; AssertionError with its output when it fails."""
    done = subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"promtool {' '.join(args)} failed:\n{done.stdout}{done.stderr}"
    return done


def check_expressions(exprs: dict[str, str], workdir: Path) -> None:
    """PromQL syntax check of arbitrary expressions: ``promtool check rules`` on a rules file
    that records each of them."""
    rules = [{"record": f"tandem:check:{i}", "expr": e} for i, e in enumerate(exprs.values())]
    path = workdir / "expressions.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "check", "rules": rules}]}, width=1 << 16))
    run_promtool("check", "rules", path.name, cwd=workdir)
