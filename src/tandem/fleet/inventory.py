"""The fleet inventory (``fleet.yaml``): which deployments, where their parameters live, how they
restart.

::

    defaults:                      # optional; every deployment may override these
      restart_timeout: 2m          # how long its restart command (or rollout restart) may take
      ready_timeout: 2m            # how long it may take to answer /readyz, /ping and /info/
    deployments:
      - id: 65f1c0de5a1b2c3d4e5f6a7b          # its MLOPS_DEPLOYMENT_ID
        url: http://10.0.0.5:8080
        env_file: /etc/drum/churn.env          # where DRUM_FASTAPI_CANARY_PERCENT is written
        restart_cmd: systemctl restart drum-churn
        verify:                                # optional: what `tandem verify` is given
          payload: /srv/samples/churn.csv
          log_file: /var/log/drum/churn.log
      - id: 65f1c0de5a1b2c3d4e5f6a7c
        url: http://fraud.ml.svc:8080
        kubernetes:                            # a ConfigMap key, and a rollout restart
          namespace: ml
          configmap: fraud-drum
          key: DRUM_FASTAPI_CANARY_PERCENT     # the default
          deployment: fraud

Every problem is reported at once, each naming the entry (``deployments[3] (id 'x')``) and the
field, so a broken inventory is fixed in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from tandem.errors import ConfigError
from tandem.rollout.spec import parse_duration

#: The runtime parameter the fleet walks.
PERCENT_PARAM = "DRUM_FASTAPI_CANARY_PERCENT"
#: The ConfigMap key written when an entry names none: the bare name, as the rollback plan's
#: Level 1 patches ``DRUM_SERVER_TYPE`` (Tandem reads it, and the prefixed form, from the
#: environment a ConfigMap mounted with ``envFrom`` gives the pods).
DEFAULT_CONFIGMAP_KEY = PERCENT_PARAM

_TOP = {"defaults", "deployments"}
_DEFAULTS = {"restart_timeout", "ready_timeout", "verify"}
_ENTRY = {"id", "url", "env_file", "kubernetes", "restart_cmd", "verify"} | (_DEFAULTS - {"verify"})
_KUBERNETES = {"namespace", "configmap", "key", "deployment"}
_VERIFY = {"payload", "log_file", "code_dir", "headers", "timeout"}


@dataclass(frozen=True)
class KubernetesEntry:
    """A deployment whose pods read the percentage from a ConfigMap key."""

    namespace: str
    configmap: str
    deployment: str
    key: str = DEFAULT_CONFIGMAP_KEY


@dataclass(frozen=True)
class VerifySettings:
    """What the in-process ``tandem verify`` is told about one deployment (all optional)."""

    payload: Path | None = None
    log_file: Path | None = None
    code_dir: Path | None = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 10.0


@dataclass(frozen=True)
class Member:
    """One deployment of the fleet."""

    id: str
    """Its ``MLOPS_DEPLOYMENT_ID``: the hash of this picks its side at every percentage."""
    url: str
    env_file: Path | None = None
    restart_cmd: str | None = None
    kubernetes: KubernetesEntry | None = None
    restart_timeout: float = 300.0
    ready_timeout: float = 300.0
    verify: VerifySettings = field(default_factory=VerifySettings)

    @property
    def target(self) -> str:
        """``host:port`` for Prometheus' file-based service discovery."""
        parts = urlsplit(self.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host = parts.hostname or ""
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def where(self) -> str:
        """Where its parameter lives, in one phrase."""
        if self.kubernetes is not None:
            k = self.kubernetes
            return f"ConfigMap {k.namespace}/{k.configmap} key {k.key}"
        return f"env file {self.env_file}"

    def record(self) -> dict[str, Any]:
        """JSON-able form for the state file."""
        return {
            "id": self.id,
            "url": self.url,
            "env_file": str(self.env_file) if self.env_file else None,
            "restart_cmd": self.restart_cmd,
            "kubernetes": None if self.kubernetes is None else vars(self.kubernetes),
        }


@dataclass(frozen=True)
class Inventory:
    """The validated ``fleet.yaml``."""

    path: Path | None
    members: tuple[Member, ...]

    def by_id(self) -> dict[str, Member]:
        """Members by deployment id."""
        return {m.id: m for m in self.members}


class _Problems:
    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, where: str, text: str) -> None:
        self.items.append(f"{where}: {text}")

    def raise_any(self) -> None:
        if self.items:
            lines = "\n  - ".join(self.items)
            raise ConfigError(f"{self.source} is not a valid fleet inventory:\n  - {lines}")


def _string(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _duration(
    problems: _Problems, where: str, doc: dict[str, Any], key: str, default: float
) -> float:
    if key not in doc:
        return default
    try:
        return parse_duration(doc[key], key)
    except ConfigError as exc:
        problems.add(where, str(exc))
        return default


def _verify(
    problems: _Problems, where: str, raw: Any, base: Path, default: VerifySettings
) -> VerifySettings:
    if raw is None:
        return default
    if not isinstance(raw, dict):
        problems.add(where, "verify must be a mapping")
        return default
    unknown = sorted(set(raw) - _VERIFY)
    if unknown:
        problems.add(where, f"verify has unknown keys {unknown}; known: {sorted(_VERIFY)}")
    paths: dict[str, Path | None] = {}
    for key in ("payload", "log_file", "code_dir"):
        value = raw.get(key, getattr(default, key))
        paths[key] = None if value is None else (base / Path(str(value))).resolve()
    headers = raw.get("headers", default.headers)
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        problems.add(where, "verify.headers must map header names to strings")
        headers = {}
    timeout = _duration(problems, where, raw, "timeout", default.timeout)
    return VerifySettings(
        paths["payload"], paths["log_file"], paths["code_dir"], dict(headers), timeout
    )


def _member(
    problems: _Problems,
    index: int,
    raw: Any,
    base: Path,
    defaults: dict[str, Any],
    default_verify: VerifySettings,
) -> Member | None:
    where = f"deployments[{index}]"
    if not isinstance(raw, dict):
        problems.add(where, "each deployment must be a mapping with id, url, ...")
        return None
    ident = _string(raw.get("id"))
    if ident is None:
        problems.add(where, "id (the deployment's MLOPS_DEPLOYMENT_ID) is required")
        return None
    where = f"{where} (id {ident!r})"
    unknown = sorted(set(raw) - _ENTRY)
    if unknown:
        problems.add(where, f"unknown keys {unknown}; known: {sorted(_ENTRY)}")
    url = _string(raw.get("url"))
    if url is None:
        problems.add(where, "url is required (where the deployment answers /ping and /info/)")
    else:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError on a port out of range or not a number
        except ValueError as exc:
            problems.add(where, f"url {url!r} is not a valid URL: {exc}")
            url = None
        else:
            if parts.scheme not in ("http", "https") or not parts.hostname:
                problems.add(where, f"url {url!r} must be http(s)://host[:port][/prefix]")
            url = url.rstrip("/")
    env_file = raw.get("env_file")
    kube = raw.get("kubernetes")
    restart_cmd = _string(raw.get("restart_cmd"))
    place: KubernetesEntry | None = None
    path: Path | None = None
    if (env_file is None) == (kube is None):
        problems.add(
            where,
            "give exactly one of env_file (a file the deployment reads its environment from) "
            "and kubernetes (a ConfigMap key)",
        )
    elif env_file is not None:
        path = (base / Path(str(env_file))).resolve()
        if not path.is_file():
            problems.add(where, f"env_file {path} does not exist")
        if restart_cmd is None:
            problems.add(
                where, "restart_cmd is required with env_file (how the deployment restarts)"
            )
    else:
        if not isinstance(kube, dict):
            problems.add(
                where, "kubernetes must be a mapping: namespace, configmap, deployment, key"
            )
        else:
            missing = [
                k for k in ("namespace", "configmap", "deployment") if not _string(kube.get(k))
            ]
            extra = sorted(set(kube) - _KUBERNETES)
            if missing:
                problems.add(where, f"kubernetes needs {', '.join(missing)}")
            if extra:
                problems.add(where, f"kubernetes has unknown keys {extra}")
            if not missing:
                place = KubernetesEntry(
                    str(kube["namespace"]).strip(),
                    str(kube["configmap"]).strip(),
                    str(kube["deployment"]).strip(),
                    _string(kube.get("key")) or DEFAULT_CONFIGMAP_KEY,
                )
        if restart_cmd is not None:
            problems.add(
                where,
                "restart_cmd does not apply to a kubernetes entry: it restarts by a rollout "
                "restart of kubernetes.deployment",
            )
    restart_timeout = _duration(
        problems, where, raw, "restart_timeout", defaults.get("restart_timeout", 300.0)
    )
    ready_timeout = _duration(
        problems, where, raw, "ready_timeout", defaults.get("ready_timeout", 300.0)
    )
    verify = _verify(problems, where, raw.get("verify"), base, default_verify)
    if url is None:
        return None
    return Member(ident, url, path, restart_cmd, place, restart_timeout, ready_timeout, verify)


def parse_inventory(doc: Any, source: str = "fleet.yaml", base: Path | None = None) -> Inventory:
    """Validate an inventory document (relative paths are taken from ``base``)."""
    problems = _Problems(source)
    base = base or Path.cwd()
    if not isinstance(doc, dict):
        raise ConfigError(f"{source} must be a mapping with a 'deployments' list")
    unknown = sorted(set(doc) - _TOP)
    if unknown:
        problems.add("top level", f"unknown keys {unknown}; known: {sorted(_TOP)}")
    raw_defaults = doc.get("defaults") or {}
    defaults: dict[str, Any] = {}
    default_verify = VerifySettings()
    if not isinstance(raw_defaults, dict):
        problems.add("defaults", "must be a mapping")
    else:
        extra = sorted(set(raw_defaults) - _DEFAULTS)
        if extra:
            problems.add("defaults", f"unknown keys {extra}; known: {sorted(_DEFAULTS)}")
        for key in ("restart_timeout", "ready_timeout"):
            if key in raw_defaults:
                defaults[key] = _duration(problems, "defaults", raw_defaults, key, 300.0)
        default_verify = _verify(
            problems, "defaults", raw_defaults.get("verify"), base, default_verify
        )
    entries = doc.get("deployments")
    if not isinstance(entries, list) or not entries:
        problems.add("deployments", "must be a non-empty list")
        problems.raise_any()
        raise AssertionError("unreachable")
    members: list[Member] = []
    for index, raw in enumerate(entries):
        member = _member(problems, index, raw, base, defaults, default_verify)
        if member is not None:
            members.append(member)
    for kind in ("id", "url"):
        seen: dict[str, int] = {}
        for member in members:
            value = str(getattr(member, kind))
            seen[value] = seen.get(value, 0) + 1
        for value, count in seen.items():
            if count > 1:
                problems.add("deployments", f"{kind} {value!r} is listed {count} times")
    places: dict[str, list[str]] = {}
    for member in members:
        place = str(member.env_file) if member.env_file else repr(member.kubernetes)
        places.setdefault(place, []).append(member.id)
    for place, ids in places.items():
        if len(ids) > 1:
            problems.add(
                "deployments",
                f"{', '.join(ids)} share one parameter store ({place}); each deployment needs "
                "its own, or they cannot be on different sides",
            )
    problems.raise_any()
    return Inventory(None, tuple(members))


def load_inventory(path: Path) -> Inventory:
    """Read and validate ``fleet.yaml`` (relative paths are relative to its directory)."""
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read fleet inventory {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"fleet inventory {path} is not valid YAML: {exc}") from None
    inventory = parse_inventory(doc, str(path), path.resolve().parent)
    return Inventory(path.resolve(), inventory.members)
