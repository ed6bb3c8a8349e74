"""``tandem score`` / ``drum score`` write the files DRUM 1.18.1 writes, byte for byte.

The expected files were recorded from real DRUM (tests/fixtures/drum_answers/score.json says how).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import FIXTURES, build_sklearn_artifact, fixture_dir

pytestmark = pytest.mark.e2e

RECORDED: dict[str, Any] = json.loads(
    (FIXTURES.parent / "drum_answers" / "score.json").read_text(encoding="utf-8")
)["runs"]
INPUTS = {"csv": b"a,b,c\n1,2,3\n4,5,6\n-1,0.5,2\n", "txt": "héllo wörld".encode()}


def score(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tandem", "score", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def build(source: str, root: Path) -> Path:
    if source.startswith("sklearn:"):
        return build_sklearn_artifact(root / "model", source.split(":", 1)[1])
    return fixture_dir(source, root)


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_output_file_matches_drums(name: str, tmp_path: Path) -> None:
    run = RECORDED[name]
    code_dir = build(run["source"], tmp_path)
    infile = tmp_path / f"in.{run['input']}"
    infile.write_bytes(INPUTS[run["input"]])
    out = tmp_path / "out"
    proc = score("--code-dir", code_dir, "--input", infile, "--output", out, *run["args"])
    assert proc.returncode == run["rc"], proc.stderr
    assert out.read_bytes().decode("latin-1") == run["output"]


@pytest.mark.parametrize("flag", ["--query", "--content-type"])
def test_unstructured_only_flags_are_refused_elsewhere(flag: str, tmp_path: Path) -> None:
    code_dir = build("sklearn:regression", tmp_path)
    infile = tmp_path / "in.csv"
    infile.write_bytes(INPUTS["csv"])
    proc = score(
        "--code-dir", code_dir, "--input", infile, "--target-type", "regression", flag, "x"
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().endswith(
        f"{flag} argument can be used only with --target-type unstructured"
    )


def test_show_perf_prints_drums_three_timings(tmp_path: Path) -> None:
    code_dir = build("sklearn:regression", tmp_path)
    infile = tmp_path / "in.csv"
    infile.write_bytes(INPUTS["csv"])
    proc = score(
        "--code-dir",
        code_dir,
        "--input",
        infile,
        "--output",
        tmp_path / "o.csv",
        "--target-type",
        "regression",
        "--show-perf",
    )
    assert proc.returncode == 0, proc.stderr
    names = [line[:-1] for line in proc.stdout.splitlines() if not line.startswith("\t")]
    assert names == ["Full time", "Init time (incl model loading)", "Run time (incl reading CSV)"]
    assert all(line.startswith("\tsec: min: ") for line in proc.stdout.splitlines()[1::2])
