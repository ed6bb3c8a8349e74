"""The HTTP cases every stack must answer identically, with the pinned (golden) answers.

Each :class:`Case` names a :class:`ModelSpec`; the in-process tier and the end-to-end tier both
run every case against every stack and demand the same status, content type and body bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tests.support import FIXTURES, build_sklearn_artifact, fixture_dir
from tests.task_models import ARGS as TASK_ARGS
from tests.task_models import TASK_REQUESTS, TaskRequest, build_task_model, task_kinds
from tests.task_models import drum_answers as drum_task_answers


@dataclass(frozen=True)
class ModelSpec:
    """A code dir plus the CLI flags and environment it is served with."""

    name: str
    source: str
    """Fixture folder name, ``sklearn:<kind>`` for an artifact built at test time, or
    ``task:<kind>`` for a custom task model of ``tests/task_models.py`` fitted at test time."""
    args: tuple[str, ...]
    """Command-line flags; ``{code_dir}`` stands for the built code dir's path."""
    env: tuple[tuple[str, str], ...] = ()
    files: tuple[tuple[str, str], ...] = ()
    """Extra files (name, text) written into the code dir."""

    def build(self, root: Path) -> Path:
        """Materialise the code dir under ``root``."""
        if self.source.startswith("sklearn:"):
            target = build_sklearn_artifact(root / self.name, self.source.split(":", 1)[1])
        elif self.source.startswith("task:"):
            target = build_task_model(root / self.name, self.source.split(":", 1)[1])
        else:
            target = fixture_dir(self.source, root / f".{self.name}").rename(root / self.name)
        for name, text in self.files:
            (target / name).write_text(text)
        return target

    def cli_args(self, code_dir: Path) -> list[str]:
        """The flags with ``{code_dir}`` filled in."""
        return [a.replace("{code_dir}", str(code_dir)) for a in self.args]


BINARY = (
    "--target-type",
    "binary",
    "--positive-class-label",
    "yes",
    "--negative-class-label",
    "no",
)


def _target(name: str, kind: str, mapping: list[list[Any]] | None, threshold: float) -> str:
    return json.dumps(
        {
            "target": {
                "class_mapping": mapping,
                "missing_maps_to": None,
                "name": name,
                "prediction_threshold": threshold,
                "type": kind,
            }
        }
    )


#: ``--deployment-config`` files: the class mappings are out of index order on purpose.
DEPLOYMENT_CONFIGS = {
    "regression": _target("Grade 2014", "Regression", None, 0.5),
    "binary": _target("Species", "Binary", [["yes", 1], ["no", 0]], 0.3),
    "multiclass": _target("class", "Multiclass", [["c", 2], ["a", 0], ["b", 1]], 0.5),
}
#: What DRUM 1.18.1 answered to the same requests (how it was recorded is in the file).
DRUM_PPS_ANSWERS: dict[str, dict[str, Any]] = json.loads(
    (FIXTURES.parent / "drum_answers" / "deployment_config.json").read_text()
)["answers"]


def _pps(name: str, source: str, args: tuple[str, ...], config: str) -> ModelSpec:
    return ModelSpec(
        f"pps_{name}",
        source,
        (*args, "--deployment-config", "{code_dir}/deployment.json"),
        files=(("deployment.json", DEPLOYMENT_CONFIGS[config]),),
    )


DRUM_LABEL_ANSWERS: dict[str, dict[str, Any]] = json.loads(
    (FIXTURES.parent / "drum_answers" / "label_mismatch.json").read_text()
)["answers"]
WRONG_LABEL_MODELS = [
    ModelSpec(
        "sk_binary_wrong_labels",
        "sklearn:binary",
        (
            "--target-type",
            "binary",
            "--positive-class-label",
            "yes",
            "--negative-class-label",
            "maybe",
        ),
    ),
    ModelSpec(
        "sk_multiclass_wrong_labels",
        "sklearn:multiclass",
        ("--target-type", "multiclass", "--class-labels", "a", "b", "d"),
    ),
]

PPS_MODELS = [
    _pps("regression", "regression_hooks", ("--target-type", "regression"), "regression"),
    _pps("anomaly", "regression_hooks", ("--target-type", "anomaly"), "regression"),
    _pps("binary", "proba_exact", BINARY, "binary"),
    _pps(
        "multiclass",
        "proba_exact",
        ("--target-type", "multiclass", "--class-labels", "a", "b", "c"),
        "multiclass",
    ),
    _pps("extra_output", "extra_output", ("--target-type", "regression"), "regression"),
]

#: Models on DRUM's custom task interfaces (``CustomTask`` classes).
TASK_MODELS = [ModelSpec(f"task_{kind}", f"task:{kind}", TASK_ARGS[kind]) for kind in task_kinds()]

MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in [
        ModelSpec("regression", "regression_hooks", ("--target-type", "regression")),
        ModelSpec("sk_regression", "sklearn:regression", ("--target-type", "regression")),
        ModelSpec("sk_binary", "sklearn:binary", BINARY),
        ModelSpec(
            "sk_multiclass",
            "sklearn:multiclass",
            ("--target-type", "multiclass", "--class-labels", "a", "b", "c"),
        ),
        ModelSpec("binary", "binary_hooks", BINARY),
        ModelSpec(
            "multiclass",
            "multiclass_hooks",
            ("--target-type", "multiclass", "--class-labels", "x", "y", "z"),
        ),
        ModelSpec("odd_floats", "odd_floats", ("--target-type", "regression")),
        ModelSpec("raising", "raising", ("--target-type", "regression")),
        ModelSpec("user_error", "user_error", ("--target-type", "regression")),
        ModelSpec("bad_probabilities", "bad_probabilities", BINARY),
        ModelSpec("read_input_json", "read_input_json", ("--target-type", "regression")),
        ModelSpec("extra_output", "extra_output", ("--target-type", "regression")),
        ModelSpec("unstructured", "unstructured_echo", ("--target-type", "unstructured")),
        ModelSpec("transform", "transform_hooks", ("--target-type", "transform")),
        ModelSpec(
            "chat", "chat_hooks", ("--target-type", "textgeneration"), (("TARGET_NAME", "answer"),)
        ),
        ModelSpec(
            "prefixed",
            "regression_hooks",
            ("--target-type", "regression"),
            (("URL_PREFIX", "/pfx/"),),
        ),
        ModelSpec(
            "small_limit",
            "regression_hooks",
            ("--target-type", "regression"),
            (("MLOPS_RUNTIME_PARAM_DRUM_MAX_BODY_SIZE", "64"),),
        ),
        ModelSpec(
            "error_server", "broken_import", ("--target-type", "regression", "--with-error-server")
        ),
        *PPS_MODELS,
        *WRONG_LABEL_MODELS,
        *TASK_MODELS,
    ]
}


@dataclass(frozen=True)
class Case:
    """One request and what every stack must answer."""

    id: str
    model: str
    method: str
    path: str
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    files: tuple[tuple[str, str, bytes], ...] = ()
    """Multipart file parts (field, filename, content)."""
    data: tuple[tuple[str, str], ...] = ()
    """Multipart plain fields."""
    status: int = 200
    body_exact: bytes | None = None
    body_contains: tuple[str, ...] = ()
    content_type: str | None = None
    compare_body: bool = True
    """False for bodies that legitimately differ per process (stats, info)."""
    extra: dict[str, str] = field(default_factory=dict)


CSV = b"a,b,c\n1,2,3\n4,5,6\n"
CSV_TYPE = (("Content-Type", "text/csv"),)
PPS_CSV = b"a,b,c\n1,2,3\n4,5,6\n-1,0.5,2\n"
SAMPLES = (
    b'{"message":"ERROR: Samples should be provided as:   - a csv or mtx under `X` form-data '
    b'param key.  - binary data"}\n'
)
OK = b'{"message":"OK"}\n'
#: What DRUM 1.18.1 answered to ``tests/task_models.py``'s requests (recorded as the file says).
DRUM_TASK_ANSWERS: dict[str, dict[str, Any]] = drum_task_answers()["answers"]


def _task_case(request: TaskRequest) -> Case:
    """A custom task request, answered as DRUM answered it: the same bytes, or for multipart
    ``/transform/`` answers (DRUM's boundary is random) the same parts."""
    answer = DRUM_TASK_ANSWERS[request.id]
    case = Case(
        f"task-{request.id}",
        f"task_{request.kind}",
        "POST",
        request.path,
        request.body,
        request.headers,
        request.files,
        status=answer["status"],
    )
    if "parts" in answer:
        parts = answer["parts"]
        return replace(
            case,
            body_contains=(
                *(f'name="{name}"' for name in parts),
                *(part["data"] for part in parts.values()),
            ),
        )
    return replace(case, body_exact=answer["body"].encode(), content_type=answer["content_type"])


def _j(obj: object) -> bytes:
    return (json.dumps(obj, sort_keys=True, separators=(",", ":")) + "\n").encode()


CASES: list[Case] = [
    # liveness / info
    Case("ping-root", "regression", "GET", "/", body_exact=OK),
    Case("ping", "regression", "GET", "/ping", body_exact=OK),
    Case("ping-slash", "regression", "GET", "/ping/", body_exact=OK),
    Case("health", "regression", "GET", "/health/", body_exact=OK),
    Case("health-noslash", "regression", "GET", "/health", body_exact=OK),
    Case(
        "capabilities",
        "regression",
        "GET",
        "/capabilities/",
        body_exact=b'{"supported_methods":{"chat":false},"supported_payload_formats":'
        b'{"csv":null,"mtx":null}}\n',
    ),
    Case("capabilities-chat", "chat", "GET", "/capabilities", body_contains=('"chat":true',)),
    Case(
        "info",
        "sk_binary",
        "GET",
        "/info/",
        compare_body=False,
        body_contains=(
            '"positiveClassLabel":"yes"',
            '"predictor":"scikit-learn"',
            '"targetType":"binary"',
        ),
    ),
    Case(
        "info-multiclass",
        "multiclass",
        "GET",
        "/info",
        compare_body=False,
        body_contains=('"classLabels":["x","y","z"]', '"predictor":null'),
    ),
    Case(
        "stats",
        "regression",
        "GET",
        "/stats/",
        compare_body=False,
        body_contains=('"mem_info"', '"drum_rss"', '"time_info"'),
    ),
    Case("livez", "regression", "GET", "/livez", body_exact=b'{"status":"alive"}\n'),
    Case("readyz", "regression", "GET", "/readyz/", body_exact=b'{"status":"ready"}\n'),
    Case(
        "startupz",
        "regression",
        "GET",
        "/startupz",
        body_exact=b'{"model_loaded":true,"status":"started"}\n',
    ),
    Case(
        "metrics",
        "regression",
        "GET",
        "/metrics",
        compare_body=False,
        content_type="text/plain; version=0.0.4; charset=utf-8",
        body_contains=(
            "drum_requests_total",
            "drum_request_duration_seconds_bucket",
            "drum_memory_bytes",
            "drum_worker_memory_bytes",
            "drum_model_info",
        ),
    ),
    Case(
        "error-server-readyz",
        "error_server",
        "GET",
        "/readyz",
        status=503,
        body_contains=('"status":"not ready"', "model failed to load"),
    ),
    Case("error-server-livez", "error_server", "GET", "/livez", body_exact=b'{"status":"alive"}\n'),
    # routing errors
    Case(
        "unknown-route",
        "regression",
        "GET",
        "/nope",
        status=404,
        body_exact=b'{"message":"ERROR: Not Found"}\n',
    ),
    Case(
        "wrong-method",
        "regression",
        "GET",
        "/predict/",
        status=405,
        body_exact=b'{"message":"ERROR: Method Not Allowed"}\n',
        extra={"allow": "POST"},
    ),
    Case(
        "wrong-method-ping",
        "regression",
        "DELETE",
        "/ping",
        status=405,
        extra={"allow": "GET, HEAD"},
    ),
    Case("chat-slash-404", "chat", "POST", "/chat/completions/x", status=404),
    # structured predictions
    Case(
        "predict-csv",
        "regression",
        "POST",
        "/predict/",
        CSV,
        CSV_TYPE,
        body_exact=b'{"predictions":[6.0,15.0]}',
        content_type="application/json",
    ),
    Case(
        "predict-noslash",
        "regression",
        "POST",
        "/predict",
        CSV,
        CSV_TYPE,
        body_exact=b'{"predictions":[6.0,15.0]}',
    ),
    Case(
        "predictions",
        "regression",
        "POST",
        "/predictions/",
        CSV,
        CSV_TYPE,
        body_exact=b'{"predictions":[6.0,15.0]}',
    ),
    Case(
        "invocations",
        "regression",
        "POST",
        "/invocations",
        CSV,
        CSV_TYPE,
        body_exact=b'{"predictions":[6.0,15.0]}',
    ),
    Case(
        "invocations-slash",
        "regression",
        "POST",
        "/invocations/",
        CSV,
        CSV_TYPE,
        body_exact=b'{"predictions":[6.0,15.0]}',
    ),
    Case(
        "predict-no-content-type",
        "regression",
        "POST",
        "/predict/",
        CSV,
        body_exact=b'{"predictions":[6.0,15.0]}',
    ),
    Case(
        "predict-text-plain",
        "regression",
        "POST",
        "/predict/",
        CSV,
        (("Content-Type", "text/plain; charset=utf-8"),),
        body_exact=b'{"predictions":[6.0,15.0]}',
    ),
    Case(
        "predict-multipart",
        "regression",
        "POST",
        "/predict/",
        files=(("X", "x.csv", CSV),),
        body_exact=b'{"predictions":[6.0,15.0]}',
    ),
    Case(
        "predict-mtx-raw",
        "regression",
        "POST",
        "/predict/",
        b"%%MatrixMarket matrix coordinate real general\n2 2 2\n1 1 1.5\n2 2 2.5\n",
        (("Content-Type", "text/mtx"),),
        body_exact=b'{"predictions":[1.5,2.5]}',
    ),
    Case(
        "predict-mtx-multipart",
        "regression",
        "POST",
        "/predict/",
        files=(
            (
                "X",
                "x.mtx",
                b"%%MatrixMarket matrix coordinate real general\n2 2 2\n1 1 1.5\n2 2 2.5\n",
            ),
            ("X.colnames", "cols.txt", b"f1\nf2\n"),
        ),
        body_exact=b'{"predictions":[1.5,2.5]}',
    ),
    Case(
        "predict-unicode-columns",
        "regression",
        "POST",
        "/predict/",
        "ä,名,c d\n1,2,3\n".encode(),
        CSV_TYPE,
        body_exact=b'{"predictions":[6.0]}',
    ),
    Case(
        "predict-empty",
        "regression",
        "POST",
        "/predict/",
        b"",
        CSV_TYPE,
        status=422,
        body_exact=SAMPLES,
    ),
    Case(
        "predict-form-urlencoded",
        "regression",
        "POST",
        "/predict/",
        CSV,
        (("Content-Type", "application/x-www-form-urlencoded"),),
        status=422,
        body_exact=SAMPLES,
    ),
    Case(
        "predict-multipart-field-not-file",
        "regression",
        "POST",
        "/predict/",
        data=(("X", "a,b\n1,2\n"),),
        status=422,
        body_exact=SAMPLES,
    ),
    Case(
        "predict-multipart-no-boundary",
        "regression",
        "POST",
        "/predict/",
        b"--x--",
        (("Content-Type", "multipart/form-data"),),
        status=422,
        body_exact=b'{"message":"ERROR: payload format `multipart/form-data` is not supported by '
        b"predictor/transformer. Make DRUM support the format or implement "
        b'`read_input_data` hook to read the data. "}\n',
    ),
    Case(
        "predict-multipart-malformed",
        "regression",
        "POST",
        "/predict/",
        b"not multipart at all",
        (("Content-Type", "multipart/form-data; boundary=BND"),),
        status=422,
        body_exact=SAMPLES,
    ),
    Case(
        "predict-content-type-case-kept",
        "regression",
        "POST",
        "/predict/",
        CSV,
        (("Content-Type", "Text/CSV"),),
        status=422,
        body_contains=("payload format `Text/CSV` is not supported",),
    ),
    Case(
        "predict-json-unsupported",
        "regression",
        "POST",
        "/predict/",
        b'{"a": 1}',
        (("Content-Type", "application/json"),),
        status=422,
        body_exact=b'{"message":"ERROR: payload format `application/json` is not supported by '
        b"predictor/transformer. Make DRUM support the format or implement "
        b'`read_input_data` hook to read the data. "}\n',
    ),
    Case(
        "predict-malformed-csv",
        "regression",
        "POST",
        "/predict/",
        b'a,b\n1,2\n3,4,5,6\n"x',
        CSV_TYPE,
        status=422,  # DRUM: 500 (README: deliberate differences)
        body_contains=("ERROR: Pandas failed to read input binary data",),
    ),
    Case(
        "predict-non-utf8",
        "regression",
        "POST",
        "/predict/",
        "é,b\n1,2\n".encode("latin-1"),
        CSV_TYPE,
        status=422,  # DRUM: 500
        body_exact=b'{"message":"ERROR: Supplied CSV input file encoding must be UTF-8."}\n',
    ),
    Case(
        "predict-odd-floats",
        "odd_floats",
        "POST",
        "/predict/",
        b"a\n1\n2\n3\n4\n5\n6\n7\n8\n",
        CSV_TYPE,
        body_exact=b'{"predictions":[null,null,null,1e+300,0.0,0.123456789,0.0,'
        b"123456789.123456791]}",
    ),
    Case(
        "predict-extra-output",
        "extra_output",
        "POST",
        "/predict/",
        CSV,
        CSV_TYPE,
        body_exact=b'{"predictions":[1.5,1.5],"extraModelOutput":{"columns":["e1","e2"],'
        b'"index":[0,1],"data":[[1,"x"],[1,"x"]]}}',
    ),
    Case(
        "predict-read-input-hook",
        "read_input_json",
        "POST",
        "/predict/",
        b'{"a": [1, 2], "b": [3, 4]}',
        (("Content-Type", "application/json"),),
        body_exact=b'{"predictions":[4.0,6.0]}',
    ),
    Case(
        "predict-sk-regression",
        "sk_regression",
        "POST",
        "/predict/",
        b"x0,x1,x2\n0.1,0.2,0.3\n1,2,3\n",
        CSV_TYPE,
        body_contains=('"predictions":[',),
    ),
    # Data a served artifact's own input validation refuses is the client's fault: 422 with
    # DRUM's text (DRUM answers 500; README lists the difference).
    Case(
        "predict-sk-header-only",
        "sk_regression",
        "POST",
        "/predict/",
        b"x0,x1,x2\n",
        CSV_TYPE,
        status=422,
        body_exact=b'{"message":"ERROR: Failure when making predictions. Exception: '
        b"ValueError('Found array with 0 sample(s) (shape=(0, 3)) while a minimum of 1 is "
        b"required by Ridge.')\"}\n",
    ),
    Case(
        "predict-sk-missing-column",
        "sk_regression",
        "POST",
        "/predict/",
        b"x0,x1\n1,2\n",
        CSV_TYPE,
        status=422,
        body_exact=b'{"message":"ERROR: Failure when making predictions. Exception: '
        b"ValueError('X has 2 features, but Ridge is expecting 3 features as input.')\"}\n",
    ),
    Case(
        "predict-sk-nan",
        "sk_regression",
        "POST",
        "/predict/",
        b"x0,x1,x2\nnan,1,2\n",
        CSV_TYPE,
        status=422,
        body_contains=("Input X contains NaN.",),
    ),
    Case(
        "predict-sk-inf",
        "sk_regression",
        "POST",
        "/predict/",
        b"x0,x1,x2\ninf,1,2\n",
        CSV_TYPE,
        status=422,
        body_contains=("Input X contains infinity",),
    ),
    Case(
        "predict-sk-text-in-numbers",
        "sk_regression",
        "POST",
        "/predict/",
        b"x0,x1,x2\na,1,2\n",
        CSV_TYPE,
        status=422,
        body_contains=("could not convert string to float",),
    ),
    Case(
        "predict-sk-binary",
        "sk_binary",
        "POST",
        "/predict/",
        b"x0,x1,x2\n0.5,0,0\n-2,0,0\n",
        CSV_TYPE,
        body_contains=('{"no":', '"yes":'),
    ),
    Case(
        "predict-sk-multiclass",
        "sk_multiclass",
        "POST",
        "/predict/",
        b"x0,x1,x2\n0.9,0,0\n-0.9,0,0\n",
        CSV_TYPE,
        body_contains=('"a":', '"b":', '"c":'),
    ),
    Case(
        "predict-binary-hooks",
        "binary",
        "POST",
        "/predict/",
        b"v\n0\n",
        CSV_TYPE,
        body_exact=b'{"predictions":[{"yes":0.5,"no":0.5}]}',
    ),
    Case(
        "predict-multiclass-hooks",
        "multiclass",
        "POST",
        "/predict/",
        b"a,b,c\n0,0,0\n",
        CSV_TYPE,
        body_exact=b'{"predictions":[{"x":0.3333333333,"y":0.3333333333,"z":0.3333333333}]}',
    ),
    Case(
        "predict-bad-probabilities",
        "bad_probabilities",
        "POST",
        "/predict/",
        CSV,
        CSV_TYPE,
        status=500,
        body_contains=("Your prediction probabilities do not add up to 1.",),
    ),
    Case(
        "predict-raising",
        "raising",
        "POST",
        "/predict/",
        CSV,
        CSV_TYPE,
        status=500,
        body_exact=b'{"message":"ERROR: Model \'score\' hook failed to make predictions. '
        b"Exception: ValueError('boom happened')\"}\n",
    ),
    Case(
        "predict-user-error",
        "user_error",
        "POST",
        "/predict/",
        CSV,
        CSV_TYPE,
        status=418,
        body_exact=b'{"message":"I am a teapot"}\n',
        extra={"x-drum-user-http-error": "true"},
    ),
    Case("health-after-raise", "raising", "GET", "/health/", body_exact=OK),
    # wrong route for target type
    Case(
        "unstructured-on-regression",
        "regression",
        "POST",
        "/predictUnstructured/",
        b"x",
        status=422,
        body_exact=b'{"message":"ERROR: This model has target type TargetType.REGRESSION, use '
        b'either /predict/ or /predictions/ endpoint."}\n',
    ),
    Case(
        "transform-on-regression",
        "regression",
        "POST",
        "/transform/",
        CSV,
        CSV_TYPE,
        status=422,
        body_exact=b'{"message":"ERROR: This model has target type TargetType.REGRESSION, use '
        b'the /predict/ endpoint."}\n',
    ),
    Case(
        "predict-on-unstructured",
        "unstructured",
        "POST",
        "/predict/",
        CSV,
        CSV_TYPE,
        status=422,
        body_exact=b'{"message":"ERROR: This model has target type \'unstructured\', use the '
        b'/predictUnstructured/ or /predictionsUnstructured/ endpoint."}\n',
    ),
    Case(
        "predict-on-transform",
        "transform",
        "POST",
        "/predict/",
        CSV,
        CSV_TYPE,
        status=422,
        body_exact=b'{"message":"ERROR: This model has target type \'transform\', use the '
        b'/transform/ endpoint."}\n',
    ),
    Case(
        "chat-on-regression",
        "regression",
        "POST",
        "/chat/completions",
        b"{}",
        (("Content-Type", "application/json"),),
        status=404,
        body_exact=b'{"message":"ERROR: This model\'s chat interface was called, but chat is '
        b'not supported."}\n',
    ),
    Case(
        "models-on-regression",
        "regression",
        "GET",
        "/models",
        status=404,
        body_exact=b'{"message":"ERROR: get_supported_llm_models is supported only for TextGen '
        b'models"}\n',
    ),
    Case(
        "direct-access",
        "regression",
        "GET",
        "/directAccess/v1/models",
        status=400,
        body_exact=b'{"message":"This endpoint is only supported by OpenAI based predictors"}\n',
    ),
    # unstructured
    Case(
        "unstructured-echo",
        "unstructured",
        "POST",
        "/predictUnstructured/",
        b"hello",
        (("Content-Type", "text/plain"),),
        body_exact=b"hello",
        content_type="text/plain; charset=utf-8",
    ),
    Case(
        "unstructured-echo-alias",
        "unstructured",
        "POST",
        "/predictionsUnstructured/",
        b"hello",
        body_exact=b"hello",
        content_type="text/plain; charset=utf-8",
    ),
    Case(
        "unstructured-describe",
        "unstructured",
        "POST",
        "/predictUnstructured/?mode=describe",
        b"\x00\x01",
        (("Content-Type", "application/octet-stream"), ("X-Custom", "v")),
        body_exact=b'{"charset": null, "header": "v", "length": 2, "mimetype": '
        b'"application/octet-stream", "type": "bytes"}',
        content_type="application/json; charset=utf-8",
    ),
    Case(
        "unstructured-describe-text",
        "unstructured",
        "POST",
        "/predictUnstructured/?mode=describe",
        "héllo".encode("utf-16"),
        (("Content-Type", "text/plain; charset=utf-16"),),
        body_exact=b'{"charset": "utf-16", "header": null, "length": 5, "mimetype": '
        b'"text/plain", "type": "str"}',
    ),
    Case(
        "unstructured-bytes",
        "unstructured",
        "POST",
        "/predictUnstructured/?mode=bytes",
        b"abcd",
        body_exact=b"\x00\x00\x00\x04",
        content_type="application/octet-stream",
    ),
    Case(
        "unstructured-utf16",
        "unstructured",
        "POST",
        "/predictUnstructured/?mode=utf16",
        b"x",
        body_exact="héllo".encode("utf-16"),
        content_type="text/plain; charset=utf-16",
    ),
    Case(
        "unstructured-none",
        "unstructured",
        "POST",
        "/predictUnstructured/?mode=none",
        b"x",
        body_exact=b"",
        content_type="text/plain; charset=utf-8",
    ),
    Case(
        "unstructured-bad-return",
        "unstructured",
        "POST",
        "/predictUnstructured/?mode=int",
        b"x",
        status=500,
        body_exact=b'{"message":"ERROR: In unstructured mode single return value can be of type '
        b"str/bytes, but received <class 'int'>\"}\n",
    ),
    Case(
        "unstructured-missing-query-key",
        "unstructured",
        "POST",
        "/predictUnstructured/?mode=missing",
        b"x",
        status=400,
        body_exact=b'{"error":"The browser (or proxy) sent a request that this server could '
        b'not understand."}\n',
    ),
    Case(
        "unstructured-form-body-intact",
        "unstructured",
        "POST",
        "/predictUnstructured/",
        b"a=1&b=2",
        (("Content-Type", "application/x-www-form-urlencoded"),),
        body_exact=b"a=1&b=2",
        content_type="application/octet-stream",
    ),
    # transform
    Case(
        "transform-raw",
        "transform",
        "POST",
        "/transform/",
        CSV,
        CSV_TYPE,
        body_contains=('name="X.format"', "csv", "a,b,c\r\n2,4,6\r\n8,10,12\r\n"),
    ),
    Case(
        "transform-multipart-y",
        "transform",
        "POST",
        "/transform/",
        files=(("X", "x.csv", CSV), ("y", "y.csv", b"t\n1\n0\n")),
        body_contains=('name="y.format"', "t\r\n1\r\n0\r\n"),
    ),
    # chat
    Case(
        "chat-completion",
        "chat",
        "POST",
        "/v1/chat/completions",
        b'{"model":"m","messages":[{"role":"user","content":"hi"}],'
        b'"datarobot_association_id":"assoc-1"}',
        (("Content-Type", "application/json"),),
        body_exact=_j(
            {
                "choices": [
                    {
                        "finish_reason": "stop",
                        "index": 0,
                        "message": {"content": "Echo: hi", "role": "assistant"},
                    }
                ],
                "created": 1700000000,
                "datarobot_association_id": "assoc-1",
                "id": "cmpl",
                "model": "echo-llm",
                "object": "chat.completion",
            }
        ),
    ),
    Case(
        "chat-stream",
        "chat",
        "POST",
        "/chat/completions",
        b'{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}],'
        b'"datarobot_association_id":"assoc-2"}',
        (("Content-Type", "application/json"),),
        content_type="text/event-stream; charset=utf-8",
        body_contains=(
            'data: {"id":"chunk"',
            '"datarobot_association_id":"assoc-2"',
            "data: [DONE]\n\n",
        ),
    ),
    Case(
        "chat-bad-json",
        "chat",
        "POST",
        "/chat/completions",
        b"{not json",
        (("Content-Type", "application/json"),),
        status=400,
        body_contains=('"error":',),
    ),
    Case(
        "chat-wrong-content-type",
        "chat",
        "POST",
        "/chat/completions",
        b"{}",
        (("Content-Type", "text/plain"),),
        status=500,
        body_contains=("415 Unsupported Media Type",),
    ),
    Case(
        "chat-dict-rejected",
        "chat",
        "POST",
        "/chat/completions",
        b'{"model":"dict","messages":[{"role":"user","content":"hi"}]}',
        (("Content-Type", "application/json"),),
        status=500,
        body_contains=(
            "ERROR: Expected response to be ChatCompletion or Iterable[ChatCompletionChunk]. "
            "response type: <class 'dict'>",
        ),
    ),
    Case(
        "chat-not-an-object",
        "chat",
        "POST",
        "/chat/completions",
        b"[1, 2]",
        (("Content-Type", "application/json"),),
        status=500,
        body_exact=b"{\"message\":\"ERROR: 'list' object has no attribute 'get'\"}\n",
    ),
    Case(
        "unstructured-undecodable",
        "unstructured",
        "POST",
        "/predictUnstructured/",
        b"\xff\xfe",
        (("Content-Type", "text/plain"),),
        status=500,
        body_exact=b"{\"message\":\"ERROR: 'utf-8' codec can't decode byte 0xff in position 0: "
        b'invalid start byte"}\n',
    ),
    Case("models-empty", "chat", "GET", "/v1/models", body_exact=b'{"data":[],"object":"list"}\n'),
    Case(
        "predict-textgen",
        "chat",
        "POST",
        "/predict/",
        b"promptText\nhello\n",
        CSV_TYPE,
        body_exact=b'{"predictions":["ok"]}',
    ),
    # URL_PREFIX
    Case("prefix-ping", "prefixed", "GET", "/pfx/", body_exact=OK),
    Case("prefix-ping-bare", "prefixed", "GET", "/pfx", body_exact=OK),
    Case(
        "prefix-predict",
        "prefixed",
        "POST",
        "/pfx/predict/",
        CSV,
        CSV_TYPE,
        body_exact=b'{"predictions":[6.0,15.0]}',
    ),
    Case("prefix-unprefixed-404", "prefixed", "POST", "/predict/", CSV, CSV_TYPE, status=404),
    # body limit
    Case(
        "too-large",
        "small_limit",
        "POST",
        "/predict/",
        b"a\n" + b"1\n" * 100,
        CSV_TYPE,
        status=413,
        body_contains=("larger than the limit of 64 bytes",),
    ),
    Case(
        "under-limit",
        "small_limit",
        "POST",
        "/predict/",
        b"a\n1\n",
        CSV_TYPE,
        body_exact=b'{"predictions":[1.0]}',
    ),
    # error server
    Case(
        "error-server-root",
        "error_server",
        "GET",
        "/",
        body_contains=("ERROR:", "module_that_does_not_exist"),
    ),
    Case("error-server-ping", "error_server", "GET", "/ping", body_contains=("ERROR:",)),
    Case(
        "error-server-predict",
        "error_server",
        "POST",
        "/predict/",
        CSV,
        CSV_TYPE,
        status=513,
        body_contains=("module_that_does_not_exist",),
    ),
    Case("error-server-health", "error_server", "GET", "/health/", status=513),
    Case("error-server-info", "error_server", "GET", "/info/", status=513),
    # --deployment-config: DataRobot's prediction-API shape, byte for byte as DRUM 1.18.1 wrote it
    *(
        Case(
            f"pps-{name}",
            f"pps_{name}",
            "POST",
            "/predict/",
            PPS_CSV,
            CSV_TYPE,
            status=answer["status"],
            body_exact=answer["body"].encode(),
            content_type=answer["content_type"],
        )
        for name, answer in DRUM_PPS_ANSWERS.items()
    ),
    # Labels the model does not have: DRUM's message, label order and numpy reprs
    *(
        Case(
            f"label-mismatch-{name}",
            f"{name}_wrong_labels",
            "POST",
            "/predict/",
            b"a,b,c\n1,2,3\n",
            CSV_TYPE,
            status=answer["status"],
            body_exact=answer["body"].encode(),
        )
        for name, answer in DRUM_LABEL_ANSWERS.items()
    ),
    # DRUM's custom task interfaces: /predict/ and /transform/ through CustomTask, as DRUM answers
    *(_task_case(request) for request in TASK_REQUESTS),
]
