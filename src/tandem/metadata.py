"""``model-metadata.yaml``: read as DRUM reads it (strictyaml: no implicit typing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tandem.errors import ConfigError

METADATA_FILE = "model-metadata.yaml"

_BOOL_KEYS = {"majorVersion"}


#: strictyaml's ``Bool`` spellings (case-insensitive).
_TRUE = ("yes", "true", "on", "1", "y")
_FALSE = ("no", "false", "off", "0", "n")


def _to_bool(text: Any, key: str) -> bool:
    """Type a scalar as strictyaml's ``Bool`` does; anything else is a :class:`ConfigError`."""
    low = text.strip().lower() if isinstance(text, str) else None
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ConfigError(f"{METADATA_FILE}: {key} must be a boolean, got {text!r}")


def read_metadata(code_dir: Path) -> dict[str, Any] | None:
    """Parse the code dir's ``model-metadata.yaml``, or return ``None`` when there is none.

    Scalars stay strings (as strictyaml leaves them), except ``majorVersion`` (bool) and
    ``inferenceModel.predictionThreshold`` (int), which DRUM's schema types.
    """
    path = code_dir / METADATA_FILE
    if not path.is_file():
        return None
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.BaseLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc}") from exc
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    for key in _BOOL_KEYS & doc.keys():
        doc[key] = _to_bool(doc[key], key)
    inference = doc.get("inferenceModel")
    if isinstance(inference, dict) and "predictionThreshold" in inference:
        raw = inference["predictionThreshold"]
        try:
            inference["predictionThreshold"] = int(raw)
        except (TypeError, ValueError):
            raise ConfigError(
                f"{path}: inferenceModel.predictionThreshold must be an integer, got {raw!r}"
            ) from None
    return doc
