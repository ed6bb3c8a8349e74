"""Preparing a run: DRUM's virtualenv, the training data, payloads and models.

Everything the servers see is generated here from fixed seeds with the standard library (the
CSV text, the 1 MiB echo body), then fitted and pickled by ``bench/build_models.py`` with DRUM's
venv python, so both sides load the same bytes. Tandem's venv is then asked to unpickle and
predict with those files; when its scikit-learn version differs from DRUM's, a per-side copy is
built from the same data with Tandem's python and the report says so.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DRUM_VERSION = "1.18.1"
SEED = 20_240_601
N_FEATURES = 10
N_TRAIN = 2_000
FEATURES = [f"f{i}" for i in range(N_FEATURES)]
ECHO_BYTES = 1 << 20

ECHO_CUSTOM_PY = '''"""Benchmark echo model: answers the request body unchanged."""


def load_model(code_dir):
    return "echo"


def score_unstructured(model, data, **kwargs):
    return data
'''


_T0 = time.monotonic()


def log(message: str) -> None:
    """Progress line on stderr (stdout is kept for the final table), with elapsed seconds."""
    print(f"[bench {time.monotonic() - _T0:6.1f}s] {message}", file=sys.stderr, flush=True)


def ensure_drum_venv(venv: Path, base_python: str, reinstall: bool = False) -> dict[str, str]:
    """Create ``venv`` with ``datarobot-drum==DRUM_VERSION`` and scikit-learn unless present.

    Returns the versions installed there (datarobot-drum, scikit-learn, pandas, numpy, python).
    """
    py = venv / "bin" / "python"
    versions = None if reinstall else _venv_versions(py)
    if versions is None or versions.get("datarobot-drum") != DRUM_VERSION:
        if reinstall and venv.exists():
            shutil.rmtree(venv)
        if not py.exists():
            log(f"creating {venv} with {base_python}")
            subprocess.run([base_python, "-m", "venv", str(venv)], check=True)
        log(f"installing datarobot-drum=={DRUM_VERSION} and scikit-learn into {venv} (once)")
        pip = [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, "--upgrade", "pip"], check=True)
        subprocess.run([*pip, f"datarobot-drum=={DRUM_VERSION}", "scikit-learn"], check=True)
        versions = _venv_versions(py)
        if versions is None or versions.get("datarobot-drum") != DRUM_VERSION:
            raise RuntimeError(f"datarobot-drum {DRUM_VERSION} did not install into {venv}")
    return versions


def _venv_versions(py: Path) -> dict[str, str] | None:
    """Versions of the benchmark's packages in the venv of ``py``; None if unusable."""
    if not py.exists():
        return None
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {'python': sys.version.split()[0]}\n"
        "for name in ('datarobot-drum', 'scikit-learn', 'pandas', 'numpy'):\n"
        "    try:\n"
        "        out[name] = m.version(name)\n"
        "    except m.PackageNotFoundError:\n"
        "        pass\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run([str(py), "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout)


def _row(rng: random.Random) -> list[float]:
    return [rng.gauss(0.0, 1.0) for _ in range(N_FEATURES)]


def _csv(rows: list[list[float]], extra: list[list[str]] | None = None) -> str:
    header = list(FEATURES)
    if extra is not None:
        header += ["y_reg", "y_bin"]
    lines = [",".join(header)]
    for i, row in enumerate(rows):
        cells = [repr(x) for x in row]
        if extra is not None:
            cells += extra[i]
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


@dataclass
class Payloads:
    """Paths of the request bodies."""

    rows1: Path
    rows1000: Path
    echo: Path


def write_data(build: Path) -> Payloads:
    """Write ``train.csv`` and the payloads under ``build`` from fixed seeds (stdlib only)."""
    build.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)
    weights = [rng.uniform(-2.0, 2.0) for _ in range(N_FEATURES)]
    rows, targets = [], []
    for _ in range(N_TRAIN):
        x = _row(rng)
        score = sum(w * v for w, v in zip(weights, x, strict=True))
        y_reg = score + 3.0 + rng.gauss(0.0, 0.5)
        y_bin = "yes" if score + rng.gauss(0.0, 1.0) > 0 else "no"
        rows.append(x)
        targets.append([repr(y_reg), y_bin])
    (build / "train.csv").write_text(_csv(rows, targets))

    payload_rng = random.Random(SEED + 1)
    payloads = Payloads(
        rows1=build / "rows1.csv",
        rows1000=build / "rows1000.csv",
        echo=build / "echo-1MiB.bin",
    )
    payloads.rows1.write_text(_csv([_row(payload_rng)]))
    payloads.rows1000.write_text(_csv([_row(payload_rng) for _ in range(1000)]))
    payloads.echo.write_bytes(random.Random(SEED + 2).randbytes(ECHO_BYTES))
    return payloads


@dataclass
class Models:
    """Code dirs per side, and what was built."""

    drum: dict[str, Path]
    tandem: dict[str, Path]
    per_side_copies: bool
    build_info: dict[str, object] = field(default_factory=dict)


def build_models(build: Path, drum_py: Path, tandem_py: Path, payloads: Payloads) -> Models:
    """Fit and pickle the models with DRUM's python; check (or rebuild) them with Tandem's.

    Tandem's python fits its own copy from the same data (to ``models-tandem``) and unpickles
    DRUM's copy. With equal library versions the two copies are byte-identical (which also shows
    the build is deterministic) and both servers serve DRUM's copy; otherwise Tandem serves its
    own copy and the report says so.
    """
    script = Path(__file__).resolve().parents[1] / "build_models.py"
    drum_out = build / "models"
    tandem_out = build / "models-tandem"
    info_drum = _run_build(drum_py, script, build, drum_out)
    info_tandem = _run_build(tandem_py, script, build, tandem_out, check=(drum_out, payloads.rows1))
    check = info_tandem.pop("check")
    same_bytes = info_tandem["sha256"] == info_drum["sha256"]
    per_side = not (check.get("ok") and info_tandem["sklearn"] == info_drum["sklearn"])
    if per_side:
        log(
            "scikit-learn differs between the venvs (DRUM "
            f"{info_drum['sklearn']}, Tandem {info_tandem['sklearn']}) or Tandem could not load "
            f"DRUM's pickles ({check.get('error')}): Tandem serves its own copy, fitted from the "
            "same data and seed"
        )
    for out in (drum_out, tandem_out):
        (out / "echo").mkdir(parents=True, exist_ok=True)
        (out / "echo" / "custom.py").write_text(ECHO_CUSTOM_PY)
    names = ("regression", "binary", "echo")
    drum_dirs = {name: drum_out / name for name in names}
    tandem_dirs = {name: (tandem_out if per_side else drum_out) / name for name in names}
    info: dict[str, object] = {
        "drum_side": info_drum,
        "tandem_side": info_tandem,
        "tandem_loads_drum_pickles": check,
        "identical_independent_builds": same_bytes,
    }
    return Models(drum=drum_dirs, tandem=tandem_dirs, per_side_copies=per_side, build_info=info)


def _run_build(
    py: Path, script: Path, data: Path, out: Path, check: tuple[Path, Path] | None = None
) -> dict[str, Any]:
    cmd = [str(py), str(script), "--data", str(data), "--out", str(out)]
    if check is not None:
        cmd += ["--check-dir", str(check[0]), "--check-payload", str(check[1])]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"building models with {py} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
