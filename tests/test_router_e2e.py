"""End-to-end tests of the rollout traffic router: real Tandem backends, a real router process."""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tandem.rollout.router import choose_side
from tandem.rollout.status import Phase, RolloutStatus
from tandem.rollout.store import RolloutStore
from tests.router_support import RouterProcess
from tests.support import ServerProcess, fixture_dir

pytestmark = pytest.mark.e2e

CSV = {"Content-Type": "text/csv"}
REGRESSION = ["--target-type", "regression"]


def start_all(*servers: ServerProcess) -> None:
    """Start backends in parallel (each takes a few seconds)."""
    with ThreadPoolExecutor(len(servers)) as pool:
        list(pool.map(ServerProcess.start, servers))


@pytest.fixture(scope="module")
def identical(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The same regression model as baseline (flask) and candidate (fastapi)."""
    root = tmp_path_factory.mktemp("identical")
    baseline = ServerProcess(fixture_dir("regression_hooks", root / "b"), "flask", REGRESSION)
    candidate = ServerProcess(fixture_dir("regression_hooks", root / "c"), "fastapi", REGRESSION)
    try:
        start_all(baseline, candidate)
        yield baseline.url, candidate.url
    finally:
        baseline.stop()
        candidate.stop()


@pytest.fixture(scope="module")
def differing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """Baseline sums the row; the candidate answers 4.000000001 where the sum is 4."""
    root = tmp_path_factory.mktemp("differing")
    baseline = ServerProcess(fixture_dir("regression_hooks", root / "b"), "flask", REGRESSION)
    candidate = ServerProcess(
        fixture_dir("regression_last_digit", root / "c"), "fastapi", REGRESSION
    )
    try:
        start_all(baseline, candidate)
        yield baseline.url, candidate.url
    finally:
        baseline.stop()
        candidate.stop()


@pytest.fixture
def router_factory(tmp_path: Path) -> Iterator[Any]:
    """Start routers that are stopped at the end of the test."""
    started: list[RouterProcess] = []

    def make(baseline: str, candidate: str, **config: Any) -> RouterProcess:
        router = RouterProcess(tmp_path, baseline, candidate, **config)
        started.append(router)
        return router.start()

    yield make
    for router in started:
        router.stop()


def csv_rows(*rows: tuple[int, int]) -> bytes:
    """A two-column CSV body."""
    return ("a,b\n" + "".join(f"{a},{b}\n" for a, b in rows)).encode()


def ids_for(side: str, weight_bp: int, count: int, prefix: str = "id") -> list[str]:
    """Request ids the router sends to ``side`` at ``weight_bp``."""
    out = []
    i = 0
    while len(out) < count:
        key = f"{prefix}-{i}"
        if choose_side(key, weight_bp) == side:
            out.append(key)
        i += 1
    return out


# -- split -------------------------------------------------------------------------------------


def test_split_follows_the_hash_and_the_weight(
    identical: tuple[str, str], router_factory: Any
) -> None:
    router = router_factory(*identical, initial_weight_bp=2500)
    n = 2000
    ids = [f"split-{i}" for i in range(n)]

    client = httpx.Client(base_url=router.url, timeout=30)  # thread-safe, one pool

    def call(rid: str) -> tuple[str, int, str]:
        r = client.get("/ping/", headers={"X-Request-ID": rid})
        return rid, r.status_code, r.headers["X-Tandem-Backend"]

    with client, ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, ids))
    assert all(status == 200 for _, status, _ in results)
    # Exactly the side the documented hash names, for every key.
    assert all(side == choose_side(rid, 2500) for rid, _, side in results)
    # And the hash splits like the weight: the candidate count of n distinct keys is
    # Binomial(n, 0.25) for a uniform hash, standard deviation sqrt(n * 0.25 * 0.75) ≈ 19.4
    # for n = 2000. Five standard deviations (±97 requests, ±4.9 points) fail a uniform hash
    # with probability < 1e-6, while a split off by 5 points or more fails the test.
    candidate = sum(1 for _, _, side in results if side == "candidate")
    sd = math.sqrt(n * 0.25 * 0.75)
    assert abs(candidate - n * 0.25) < 5 * sd, candidate
    stats = router.stats()
    assert stats["served"]["candidate"]["requests"] == candidate
    assert stats["served"]["baseline"]["requests"] == n - candidate
    assert stats["client"] == {
        "requests": n,
        "errors": 0,
        "too_large": 0,
        "retried_on_baseline": 0,
        "rerouted_candidate_down": 0,
    }
    assert stats["served"]["candidate"]["latency"]["count"] == candidate
    assert sum(stats["served"]["candidate"]["latency"]["counts"]) == candidate


def test_same_request_id_always_lands_on_the_same_side(
    identical: tuple[str, str], router_factory: Any
) -> None:
    router = router_factory(*identical, initial_weight_bp=5000)
    with httpx.Client(base_url=router.url, timeout=30) as client:
        for rid in ("retry-a", "retry-b", "retry-c", "retry-d", "retry-e", "retry-f"):
            sides = {
                client.post(
                    "/predict/", content=csv_rows((1, 2)), headers={**CSV, "X-Request-ID": rid}
                ).headers["X-Tandem-Backend"]
                for _ in range(10)
            }
            assert sides == {choose_side(rid, 5000)}, rid
        # Without X-Request-ID the key is "<client address> <path>": one client, one path,
        # one side; the query string is not part of the key.
        sides = {
            client.post(f"/predict/?n={i}", content=csv_rows((1, 2)), headers=CSV).headers[
                "X-Tandem-Backend"
            ]
            for i in range(10)
        }
        assert sides == {choose_side("127.0.0.1 /predict/", 5000)}


def test_backend_header_names_the_backend_that_answered(
    differing: tuple[str, str], router_factory: Any
) -> None:
    router = router_factory(*differing, initial_weight_bp=5000)
    with httpx.Client(base_url=router.url, timeout=30) as client:
        for i in range(30):
            rid = f"truth-{i}"
            r = client.post(
                "/predict/", content=csv_rows((1, 3)), headers={**CSV, "X-Request-ID": rid}
            )
            assert r.status_code == 200
            assert r.headers["X-Request-ID"] == rid  # the backend's own headers pass through
            expected = [4.000000001] if choose_side(rid, 5000) == "candidate" else [4.0]
            assert r.json() == {"predictions": expected}
            assert r.headers["X-Tandem-Backend"] == choose_side(rid, 5000)


def test_path_query_method_and_headers_are_forwarded(router_factory: Any, tmp_path: Path) -> None:
    baseline = ServerProcess(
        fixture_dir("unstructured_echo", tmp_path / "b"),
        "fastapi",
        ["--target-type", "unstructured"],
    )
    candidate = ServerProcess(
        fixture_dir("unstructured_echo", tmp_path / "c"), "flask", ["--target-type", "unstructured"]
    )
    try:
        start_all(baseline, candidate)
        router = router_factory(baseline.url, candidate.url)
        with httpx.Client(base_url=router.url, timeout=30) as client:
            for weight in (0, 10000):
                router.set_routing(weight_bp=weight)
                r = client.post(
                    "/predictUnstructured/?mode=describe",
                    content=b"hello",
                    headers={"Content-Type": "text/plain; charset=utf-8", "X-Custom": "yes"},
                )
                assert r.status_code == 200
                assert r.headers["X-Tandem-Backend"] == ("baseline" if weight == 0 else "candidate")
                assert r.json() == {
                    "charset": "utf-8",
                    "header": "yes",
                    "length": 5,
                    "mimetype": "text/plain",
                    "type": "str",
                }
                missing = client.get("/no/such/route?x=1")
                assert missing.status_code == 404
                assert missing.json() == {"message": "ERROR: Not Found"}
                wrong = client.delete("/predictUnstructured/")
                assert wrong.status_code == 405
                assert "POST" in wrong.headers["Allow"]
    finally:
        baseline.stop()
        candidate.stop()


# -- weights -----------------------------------------------------------------------------------


def test_weight_changes_apply_atomically_under_load(
    identical: tuple[str, str], router_factory: Any
) -> None:
    router = router_factory(*identical)
    stop = threading.Event()
    results: list[tuple[float, float, str, int, str, bytes]] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        with httpx.Client(base_url=router.url, timeout=30) as client:
            i = 0
            while not stop.is_set():
                i += 1
                rid = f"atomic-{n}-{i}"
                start = time.monotonic()
                try:
                    r = client.post(
                        "/predict/",
                        content=csv_rows((i, 1)),
                        headers={**CSV, "X-Request-ID": rid},
                    )
                    item = (
                        start,
                        time.monotonic(),
                        rid,
                        r.status_code,
                        r.headers.get("X-Tandem-Backend", ""),
                        r.content,
                    )
                except httpx.HTTPError as exc:
                    item = (start, time.monotonic(), rid, -1, repr(exc), b"")
                with lock:
                    results.append(item)

    # (weight, sent, done): each weight is in force from when its POST was sent until the next
    # POST returned.
    timeline: list[tuple[int, float, float]] = [(0, 0.0, 0.0)]
    weights = [2500, 5000, 10000, 100, 7500, 3333, 0, 10000, 0]
    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(worker, n) for n in range(6)]
        try:
            time.sleep(0.5)
            for version, weight in enumerate(weights, start=1):
                sent = time.monotonic()
                applied = router.set_routing(weight_bp=weight, mirror_rate=0.0)
                timeline.append((weight, sent, time.monotonic()))
                assert applied["weight_bp"] == weight
                assert applied["version"] == version
                time.sleep(0.4)
        finally:
            stop.set()
        for future in futures:
            future.result()

    assert len(results) > 100
    failures = [r for r in results if r[3] != 200]
    assert not failures, failures[:5]
    for start, end, rid, _, side, body in results:
        i = int(rid.rsplit("-", 1)[1])
        assert json.loads(body) == {"predictions": [float(i + 1)]}
        allowed = set()
        for k, (weight, _sent, _done) in enumerate(timeline):
            begins = timeline[k][1]
            ends = timeline[k + 1][2] if k + 1 < len(timeline) else math.inf
            if begins <= end and start <= ends:
                allowed.add(choose_side(rid, weight))
        assert side in allowed, (rid, side, start, end)
    # After the last POST (→ 0) returned, every request goes to the baseline; between the
    # previous one (→ 10000) returning and the last being sent, every request to the candidate.
    after = [r for r in results if r[0] > timeline[-1][2]]
    assert all(r[4] == "baseline" for r in after)
    during_full = [r for r in results if timeline[-2][2] < r[0] and r[1] < timeline[-1][1]]
    assert all(r[4] == "candidate" for r in during_full)
    assert after and during_full
    stats = router.stats()
    assert stats["client"]["errors"] == 0
    assert stats["client"]["requests"] == len(results)
    assert stats["served"]["baseline"]["requests"] + stats["served"]["candidate"][
        "requests"
    ] == len(results)
    assert stats["routing"]["weight_bp"] == 0 and stats["routing"]["version"] == len(weights)


# -- mirroring ---------------------------------------------------------------------------------


def test_mirroring_identical_backends_counts_matches(
    identical: tuple[str, str], router_factory: Any
) -> None:
    router = router_factory(*identical, initial_mirror_rate=1.0)
    with httpx.Client(base_url=router.url, timeout=30) as client:
        for i in range(40):
            r = client.post(
                "/predict/",
                content=csv_rows((i, 2), (3, 4)),
                headers={**CSV, "X-Request-ID": f"m-{i}"},
            )
            assert r.status_code == 200 and r.headers["X-Tandem-Backend"] == "baseline"
    stats = router.wait_for(lambda s: s["mirror"]["compared"] == 40)
    mirror = stats["mirror"]
    assert mirror["matched"] == 40 and mirror["differing"] == 0 and mirror["dropped"] == 0
    assert mirror["differences"] == [] and mirror["in_flight"] == 0
    assert stats["mirrored"]["candidate"]["requests"] == 40
    assert stats["mirrored"]["baseline"]["requests"] == 40
    assert stats["served"]["candidate"]["requests"] == 0  # mirrors are not served traffic
    assert stats["client"]["requests"] == 40

    # At a 25 % mirror rate, the mirrored requests are the keys the mirror hash picks.
    router.set_routing(mirror_rate=0.25)
    with httpx.Client(base_url=router.url, timeout=30) as client:
        for i in range(200):
            client.post(
                "/predict/", content=csv_rows((i, 0)), headers={**CSV, "X-Request-ID": f"rate-{i}"}
            )
    from tandem.rollout.router import should_mirror

    expected = sum(should_mirror(f"rate-{i}", 0.25) for i in range(200))
    stats = router.wait_for(lambda s: s["mirror"]["compared"] == 40 + expected)
    assert 20 < expected < 80
    assert stats["mirror"]["matched"] == 40 + expected


def test_mirroring_reports_a_prediction_that_differs(
    differing: tuple[str, str], router_factory: Any
) -> None:
    router = router_factory(*differing, initial_mirror_rate=1.0)
    with httpx.Client(base_url=router.url, timeout=30) as client:
        for i in range(30):
            rows = ((1, 3), (i, 100)) if i % 10 == 7 else ((i, 100),)
            r = client.post(
                "/predict/?explain=1",
                content=csv_rows(*rows),
                headers={**CSV, "X-Request-ID": f"diff-{i}"},
            )
            assert r.status_code == 200
            assert r.headers["X-Tandem-Backend"] == "baseline"
            assert 4.000000001 not in r.json()["predictions"]  # the client got the baseline
    stats = router.wait_for(lambda s: s["mirror"]["compared"] == 30)
    mirror = stats["mirror"]
    assert (mirror["matched"], mirror["differing"]) == (27, 3)
    assert [d["request_id"] for d in mirror["differences"]] == ["diff-7", "diff-17", "diff-27"]
    first = mirror["differences"][0]
    assert first["path"] == "/predict/" and first["query"] == "explain=1"
    assert first["method"] == "POST"
    assert first["differs"] == ["body"]
    assert first["baseline"]["status"] == first["candidate"]["status"] == 200
    assert first["baseline"]["content_type"] == "application/json"
    baseline_body = b'{"predictions":[4.0,107.0]}'
    assert first["offset"] == baseline_body.index(b"4.0") + 3  # "4.0," vs "4.000000001,"
    assert "4.0" in first["baseline_bytes"] and "4.000000001" in first["candidate_bytes"]


def test_slow_candidate_drops_mirrors_and_never_slows_the_client(
    router_factory: Any, tmp_path: Path
) -> None:
    baseline = ServerProcess(fixture_dir("regression_hooks", tmp_path / "b"), "fastapi", REGRESSION)
    candidate = ServerProcess(
        fixture_dir("regression_slow", tmp_path / "c"),
        "fastapi",
        REGRESSION,
        env={"ROUTER_TEST_DELAY": "1.5"},
    )
    try:
        start_all(baseline, candidate)
        router = router_factory(
            baseline.url, candidate.url, initial_mirror_rate=1.0, max_inflight_mirrors=2
        )
        latencies = []
        with httpx.Client(base_url=router.url, timeout=30) as client:
            for i in range(30):
                start = time.monotonic()
                r = client.post(
                    "/predict/",
                    content=csv_rows((i, 1)),
                    headers={**CSV, "X-Request-ID": f"slow-{i}"},
                )
                latencies.append(time.monotonic() - start)
                assert r.status_code == 200
                assert r.json() == {"predictions": [float(i + 1)]}
        # Every mirror takes 1.5 s on the candidate; a client waiting for one would show it.
        assert max(latencies) < 0.75, latencies
        stats = router.stats()
        mirror = stats["mirror"]
        assert mirror["sampled"] == 30
        assert mirror["dropped"] >= 10, mirror
        assert mirror["launched"] + mirror["dropped"] == 30
        assert mirror["in_flight"] <= 2
        stats = router.wait_for(lambda s: s["mirror"]["in_flight"] == 0, timeout=30)
        mirror = stats["mirror"]
        assert mirror["compared"] == mirror["matched"] == mirror["launched"]
        assert stats["client"]["errors"] == 0
        mean = stats["mirrored"]["candidate"]["latency"]["sum_ms"] / mirror["compared"]
        assert mean >= 1400  # the candidate really was slow
    finally:
        baseline.stop()
        candidate.stop()


# -- backend death ------------------------------------------------------------------------------


def test_killing_the_candidate_mid_load_costs_the_client_nothing(
    router_factory: Any, tmp_path: Path
) -> None:
    baseline = ServerProcess(fixture_dir("regression_hooks", tmp_path / "b"), "flask", REGRESSION)
    candidate = ServerProcess(
        fixture_dir("regression_hooks", tmp_path / "c"), "fastapi", REGRESSION
    )
    revived: ServerProcess | None = None
    try:
        start_all(baseline, candidate)
        router = router_factory(baseline.url, candidate.url, initial_weight_bp=5000)
        stop = threading.Event()
        results: list[tuple[float, int, str]] = []
        lock = threading.Lock()

        def worker(n: int) -> None:
            with httpx.Client(base_url=router.url, timeout=30) as client:
                i = 0
                while not stop.is_set():
                    i += 1
                    try:
                        r = client.post(
                            "/predict/",
                            content=csv_rows((i, 1)),
                            headers={**CSV, "X-Request-ID": f"kill-{n}-{i}"},
                        )
                        ok = r.status_code if r.json() == {"predictions": [i + 1.0]} else -2
                        item = (time.monotonic(), ok, r.headers.get("X-Tandem-Backend", ""))
                    except (httpx.HTTPError, ValueError) as exc:
                        item = (time.monotonic(), -1, repr(exc))
                    with lock:
                        results.append(item)

        with ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(worker, n) for n in range(6)]
            try:
                time.sleep(1.5)
                assert candidate.proc is not None
                os.killpg(candidate.proc.pid, signal.SIGKILL)
                killed_at = time.monotonic()
                candidate.proc.wait(timeout=10)
                time.sleep(2.0)
            finally:
                stop.set()
            for future in futures:
                future.result()

        failures = [r for r in results if r[1] != 200]
        assert not failures, failures[:5]
        before = [r for r in results if r[0] < killed_at]
        after = [r for r in results if r[0] > killed_at + 0.5]
        assert {r[2] for r in before} == {"baseline", "candidate"}
        assert len(after) > 20 and {r[2] for r in after} == {"baseline"}
        stats = router.stats()
        assert stats["candidate_down"] is True
        assert stats["effective_weight_bp"] == 0 and stats["routing"]["weight_bp"] == 5000
        assert stats["candidate_marked_down"] == 1
        assert stats["served"]["candidate"]["connection_failures"] >= 1
        assert stats["served"]["candidate"]["errors"] >= 1
        assert stats["client"]["retried_on_baseline"] >= 1
        assert stats["client"]["rerouted_candidate_down"] >= 1
        assert stats["client"]["errors"] == 0

        # The candidate comes back on its port: the health check notices within a few seconds.
        revived = ServerProcess(candidate.code_dir, "fastapi", REGRESSION)
        revived.port, revived.url = candidate.port, candidate.url
        revived.log_path = candidate.code_dir.parent / "revived.log"
        revived.start()
        stats = router.wait_for(lambda s: not s["candidate_down"], timeout=10)
        assert stats["effective_weight_bp"] == 5000
        rid = ids_for("candidate", 5000, 1, "back")[0]
        r = httpx.post(
            router.url + "/predict/",
            content=csv_rows((1, 1)),
            headers={**CSV, "X-Request-ID": rid},
            timeout=30,
        )
        assert r.status_code == 200 and r.headers["X-Tandem-Backend"] == "candidate"
    finally:
        baseline.stop()
        candidate.stop()
        if revived is not None:
            revived.stop()


def test_dead_baseline_answers_502_json(router_factory: Any, tmp_path: Path) -> None:
    from tests.support import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    router = router_factory(dead, dead)
    r = httpx.get(router.url + "/ping/", timeout=30)
    assert r.status_code == 502
    assert r.headers["X-Tandem-Backend"] == "router"
    assert r.json()["message"].startswith("ERROR: The baseline backend is unavailable")
    stats = router.stats()
    assert stats["client"]["errors"] == 1
    assert stats["served"]["baseline"]["connection_failures"] == 2  # one retry


# -- bodies and streams ------------------------------------------------------------------------


def test_large_body_passes_through_and_over_limit_gets_413(
    router_factory: Any, tmp_path: Path
) -> None:
    args = ["--target-type", "unstructured"]
    baseline = ServerProcess(fixture_dir("unstructured_echo", tmp_path / "b"), "fastapi", args)
    candidate = ServerProcess(fixture_dir("unstructured_echo", tmp_path / "c"), "gunicorn", args)
    limit = 24 * 1024 * 1024
    try:
        start_all(baseline, candidate)
        router = router_factory(
            baseline.url, candidate.url, max_body_bytes=limit, initial_mirror_rate=1.0
        )
        big = os.urandom(20_000_000)
        headers = {"Content-Type": "application/octet-stream", "X-Request-ID": "big-1"}
        with httpx.Client(base_url=router.url, timeout=120) as client:
            r = client.post("/predictUnstructured/?mode=bytes", content=big, headers=headers)
            assert r.status_code == 200
            assert int.from_bytes(r.content, "big") == len(big)
            echo = client.post("/predictUnstructured/", content=big, headers=headers)
            assert echo.status_code == 200
            assert len(echo.content) == len(big)
            assert hashlib.sha256(echo.content).digest() == hashlib.sha256(big).digest()
            assert echo.headers["Content-Length"] == str(len(big))

            expected = (
                b'{"message":"ERROR: Request body is larger than the limit of '
                + str(limit).encode()
                + b' bytes."}\n'
            )
            over = client.post("/predictUnstructured/", content=b"x" * (limit + 1), headers=headers)
            assert over.status_code == 413
            assert over.content == expected
            assert over.headers["Content-Type"] == "application/json"

            def chunked() -> Iterator[bytes]:  # no Content-Length: the limit still holds
                for _ in range(26):
                    yield b"y" * (1024 * 1024)

            over = client.post("/predictUnstructured/", content=chunked(), headers=headers)
            assert over.status_code == 413 and over.content == expected
            # The connection pool and the router still work after the 413s.
            assert client.get("/ping/").status_code == 200
        # Mirrored and compared: both 20 MB requests and the /ping (not the 413s).
        stats = router.wait_for(lambda s: s["mirror"]["compared"] == 3, timeout=60)
        assert stats["client"]["too_large"] == 2
        assert stats["mirror"]["matched"] == 3
        assert stats["mirrored"]["candidate"]["requests"] == 3
    finally:
        baseline.stop()
        candidate.stop()


def test_sse_chat_streams_through(router_factory: Any, tmp_path: Path) -> None:
    args = ["--target-type", "textgeneration"]
    env = {"TARGET_NAME": "answer"}
    baseline = ServerProcess(
        fixture_dir("chat_slow_stream", tmp_path / "b"), "flask", args, env=env
    )
    candidate = ServerProcess(
        fixture_dir("chat_slow_stream", tmp_path / "c"), "fastapi", args, env=env
    )
    try:
        start_all(baseline, candidate)
        router = router_factory(baseline.url, candidate.url, initial_weight_bp=5000)
        body = {
            "model": "slow-echo-llm",
            "messages": [{"role": "user", "content": "one two three four five"}],
            "stream": True,
        }
        for side in ("baseline", "candidate"):
            rid = ids_for(side, 5000, 1, "sse")[0]
            start = time.monotonic()
            arrivals: list[float] = []
            chunks: list[bytes] = []
            with httpx.stream(
                "POST",
                router.url + "/v1/chat/completions",
                json=body,
                headers={"X-Request-ID": rid},
                timeout=30,
            ) as r:
                assert r.status_code == 200
                assert r.headers["X-Tandem-Backend"] == side
                assert r.headers["Content-Type"].startswith("text/event-stream")
                assert "Content-Length" not in r.headers
                for chunk in r.iter_raw():
                    arrivals.append(time.monotonic() - start)
                    chunks.append(chunk)
            text = b"".join(chunks).decode()
            events = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
            assert events[-1] == "[DONE]"
            words = "".join(json.loads(e)["choices"][0]["delta"]["content"] for e in events[:-1])
            assert words.split() == ["Echo:", "one", "two", "three", "four", "five"]
            # Five 0.3 s pauses between words: a buffering proxy would deliver everything at
            # the end; a streaming one delivers the first words more than a second earlier.
            assert arrivals[-1] - arrivals[0] > 1.0, (side, arrivals)
        stats = router.stats()
        assert stats["served"]["baseline"]["requests"] == 1
        assert stats["served"]["candidate"]["requests"] == 1
    finally:
        baseline.stop()
        candidate.stop()


# -- admin API and restart ---------------------------------------------------------------------


def test_admin_api_token_and_validation(identical: tuple[str, str], router_factory: Any) -> None:
    router = router_factory(*identical, admin_token="s3cret")
    api = router.admin_url
    assert httpx.get(api + "/api/stats").status_code == 401
    assert (
        httpx.get(api + "/api/stats", headers={"Authorization": "Bearer nope"}).status_code == 401
    )
    assert httpx.get(api + "/api/health?token=s3cret").status_code == 200
    auth = router.admin_headers
    health = httpx.get(api + "/api/health", headers=auth).json()
    assert health["status"] == "ok" and health["ready"] is True
    assert httpx.get(api + "/api/routing", headers=auth).json()["weight_bp"] == 0
    for bad in (
        {"weight_bp": 10001},
        {"weight_bp": -1},
        {"weight_bp": 12.5},
        {"weight_bp": True},
        {"mirror_rate": 1.5},
        {"mirror_rate": "0.5"},
        {"weight": 100},
        {},
        [],
    ):
        r = httpx.post(api + "/api/routing", json=bad, headers=auth)
        assert r.status_code == 400, bad
        assert r.json()["message"].startswith("ERROR: ")
    r = httpx.post(api + "/api/routing", content=b"{not json", headers=auth)
    assert r.status_code == 400
    applied = router.set_routing(weight_bp=1234, mirror_rate=0.5)
    assert applied["weight_bp"] == 1234 and applied["mirror_rate"] == 0.5
    assert applied["version"] == 1
    applied = router.set_routing(mirror_rate=0.1)
    assert applied["weight_bp"] == 1234 and applied["version"] == 2
    assert httpx.delete(api + "/api/routing", headers=auth).status_code == 405
    assert httpx.get(api + "/api/nothing", headers=auth).status_code == 404
    # The public listener does not serve the admin API.
    r = httpx.get(router.url + "/api/stats", headers={"X-Request-ID": "x"})
    assert r.status_code == 404 and r.headers["X-Tandem-Backend"] in ("baseline", "candidate")


def test_restarted_router_resumes_the_recorded_weight(
    identical: tuple[str, str], router_factory: Any, tmp_path: Path
) -> None:
    path = tmp_path / "rollout.db"
    store = RolloutStore(path)
    now = time.time()
    store.add_observation(now - 5, 20.0, {"mirror_rate": 0.03, "baseline": {}, "candidate": {}})
    store.save(
        RolloutStatus(phase=Phase.CANARY, weight=25.0, step_index=3, started_at=now),
        action="step",
        rule="step_criteria_met",
        from_weight=10.0,
        reason="ok",
    )
    store.close()
    router = router_factory(*identical, store_path=str(path), initial_weight_bp=9999)
    routing = httpx.get(router.admin_url + "/api/routing").json()
    assert routing["weight_bp"] == 2500 and routing["mirror_rate"] == 0.03
    rid = ids_for("candidate", 2500, 1, "resume")[0]
    r = httpx.get(router.url + "/ping/", headers={"X-Request-ID": rid})
    assert r.headers["X-Tandem-Backend"] == "candidate"
