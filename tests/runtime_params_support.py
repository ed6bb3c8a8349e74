"""A model that reports what ``RuntimeParameters`` gives it, and DRUM's recorded answer for it.

The same code dir and values file are served by Tandem in the tests and were served once by
DataRobot's DRUM 1.18.1 to record ``tests/fixtures/drum_answers/runtime_params_file.json``.
Re-record (needs ``bench/.drum-venv``, which ``bench/run.py`` creates) with::

    .venv/bin/python -m tests.runtime_params_support
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support import REPO, free_port, stop_process_group

RECORDING = Path(__file__).parent / "fixtures" / "drum_answers" / "runtime_params_file.json"
DRUM_VENV = REPO / "bench" / ".drum-venv"

METADATA = """\
name: runtime-params-file
type: inference
targetType: unstructured
runtimeParameterDefinitions:
  - fieldName: STR
    type: string
  - fieldName: NUM_INT
    type: numeric
    minValue: 0
    maxValue: 100
  - fieldName: NUM_FLOAT
    type: numeric
  - fieldName: NUM_TEXT
    type: numeric
  - fieldName: BOOL
    type: boolean
    defaultValue: true
  - fieldName: CRED
    type: credential
    credentialType: s3
  - fieldName: DEPLOYMENT
    type: deployment
  - fieldName: DEFAULT_STR
    type: string
    defaultValue: from the definitions
  - fieldName: DEFAULT_NUM
    type: numeric
    defaultValue: 3
  - fieldName: DEFAULT_BOOL
    type: boolean
    defaultValue: true
  - fieldName: DEFAULT_CRED
    type: credential
    credentialType: basic
    defaultValue:
      credentialType: basic
      user: default-user
      password: not-a-real-password
  - fieldName: NO_VALUE
    type: string
  - fieldName: NULLED
    type: string
    defaultValue: replaced by null
"""

VALUES = """\
STR: "hello, wörld"
NUM_INT: 42
NUM_FLOAT: 2.5
NUM_TEXT: "7"
BOOL: false
CRED:
  awsAccessKeyId: AKIAEXAMPLENOTREAL
  credentialType: s3
  awsSecretAccessKey: fake/secret+key
  awsSessionToken: null
DEPLOYMENT: 65f0c0ffee65f0c0ffee65f0
NULLED: null
NOT_DECLARED: ignored
"""

#: Invalid YAML for the start-up failure.
BAD_VALUES = "STR: [unclosed\n"

#: Every parameter the model reports on: the declared ones and one the file has but none declares.
NAMES = (
    "STR",
    "NUM_INT",
    "NUM_FLOAT",
    "NUM_TEXT",
    "BOOL",
    "CRED",
    "DEPLOYMENT",
    "DEFAULT_STR",
    "DEFAULT_NUM",
    "DEFAULT_BOOL",
    "DEFAULT_CRED",
    "NO_VALUE",
    "NULLED",
    "NOT_DECLARED",
)

CUSTOM_PY = f'''\
"""Answers with what RuntimeParameters.get/has return for each parameter, and the raw variables."""

import json
import os

from datarobot_drum import RuntimeParameters

NAMES = {NAMES!r}


def load_model(code_dir):
    return "runtime-params"


def report(name):
    if not RuntimeParameters.has(name):
        try:
            RuntimeParameters.get(name)
        except Exception as exc:
            return {{"has": False, "error": f"{{type(exc).__name__}}: {{exc}}"}}
        return {{"has": False, "error": None}}
    value = RuntimeParameters.get(name)
    return {{"has": True, "type": type(value).__name__, "value": value}}


def score_unstructured(model, data, **kwargs):
    return json.dumps(
        {{
            "get": {{name: report(name) for name in NAMES}},
            "env": {{
                name: os.environ.get("MLOPS_RUNTIME_PARAM_" + name)
                for name in NAMES
                if "MLOPS_RUNTIME_PARAM_" + name in os.environ
            }},
        }}
    )
'''


def build_model(dest: Path, values: str = VALUES) -> tuple[Path, Path]:
    """Write the code dir and a values file under ``dest``; return ``(code_dir, values_file)``."""
    code_dir = dest / "runtime_params_model"
    code_dir.mkdir(parents=True)
    (code_dir / "model-metadata.yaml").write_text(METADATA, encoding="utf-8")
    (code_dir / "custom.py").write_text(CUSTOM_PY, encoding="utf-8")
    values_file = dest / "runtime_params.yaml"
    values_file.write_text(values, encoding="utf-8")
    return code_dir, values_file


def load_recording() -> dict[str, Any]:
    """DRUM 1.18.1's recorded answers (see this module's docstring)."""
    return dict(json.loads(RECORDING.read_text(encoding="utf-8")))


def _drum_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_RUNTIME_PARAM_")}
    env.pop("RUNTIME_PARAMS_FILE", None)
    return env


def record() -> dict[str, Any]:
    """Serve the model with DRUM from ``bench/.drum-venv`` and write :data:`RECORDING`."""
    drum = DRUM_VENV / "bin" / "drum"
    version = subprocess.run(
        [str(DRUM_VENV / "bin" / "python"), "-m", "pip", "show", "datarobot-drum"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    drum_version = next(
        line.split(":", 1)[1].strip() for line in version.splitlines() if line.startswith("Version")
    )
    with tempfile.TemporaryDirectory() as tmp:
        code_dir, values_file = build_model(Path(tmp))
        port = free_port()
        common = ["--code-dir", str(code_dir), "--target-type", "unstructured"]
        proc = subprocess.Popen(
            [str(drum), "server", *common, "--address", f"127.0.0.1:{port}"]
            + ["--runtime-params-file", str(values_file)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=_drum_env(),
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/ping/", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("drum server did not start")
                time.sleep(0.2)
            answer = httpx.post(
                f"http://127.0.0.1:{port}/predictionsUnstructured/", content=b"x", timeout=30
            ).json()
        finally:
            stop_process_group(proc)
        bad_file = Path(tmp) / "bad.yaml"
        bad_file.write_text(BAD_VALUES, encoding="utf-8")
        failed = subprocess.run(
            [str(drum), "server", *common, "--address", f"127.0.0.1:{free_port()}"]
            + ["--runtime-params-file", str(bad_file)],
            capture_output=True,
            text=True,
            env=_drum_env(),
            timeout=120,
        )
        marker = "InvalidYamlContent: "
        message = failed.stderr[failed.stderr.rindex(marker) + len(marker) :].strip()
        message = message.replace(str(bad_file.resolve()), "{values_file}")
    recording = {
        "recorded_with": (
            f"datarobot-drum {drum_version} (bench/.drum-venv, default server type), "
            "`drum server --code-dir D --target-type unstructured --address 127.0.0.1:PORT "
            "--runtime-params-file F` on the model and values file of "
            "tests/runtime_params_support.py, then POST /predictionsUnstructured/; "
            "recorded by `.venv/bin/python -m tests.runtime_params_support`"
        ),
        "answer": answer,
        "bad_yaml": {
            "values": BAD_VALUES,
            "exit_code": failed.returncode,
            "exception": "datarobot_drum.runtime_parameters.exceptions.InvalidYamlContent",
            "message": message,
        },
    }
    RECORDING.write_text(
        json.dumps(recording, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return recording


if __name__ == "__main__":
    if not (DRUM_VENV / "bin" / "drum").exists():
        sys.exit(f"{DRUM_VENV} is missing: run bench/run.py once to create it")
    print(json.dumps(record(), indent=1, ensure_ascii=False))
