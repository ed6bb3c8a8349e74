"""The router in process: the proxy, the mirror and the admin API over an injected fake backend.

The real-process guarantees (a real Uvicorn, real backends, load, kills) are in
tests/test_router_e2e.py; these pin the proxy's decisions one request at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tandem.rollout.router import Router, RouterConfig, Routing
from tandem.rollout.router.admin import admin_app
from tandem.rollout.router.backend import BackendError, Headers

BASE = "http://baseline.test"
CAND = "http://candidate.test"


@dataclass
class FakeResponse:
    """What the fake backend answers."""

    status: int = 200
    body: bytes = b'{"predictions":[1.0]}'
    content_type: str = "application/json"
    extra: tuple[tuple[bytes, bytes], ...] = ()
    chunks: tuple[bytes, ...] | None = None
    released: bool = False

    @property
    def raw_headers(self) -> tuple[tuple[bytes, bytes], ...]:
        return (
            (b"Content-Type", self.content_type.encode()),
            (b"Content-Length", str(len(self.body)).encode()),
            (b"Connection", b"keep-alive, x-secret-hop"),
            (b"X-Secret-Hop", b"1"),
            *self.extra,
        )

    async def read(self) -> bytes:
        return self.body

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks or (self.body,):
            yield chunk

    def release(self) -> None:
        self.released = True


@dataclass
class FakeBackend:
    """Answers per base URL; a side set to an exception fails like a dead backend."""

    answers: dict[str, Callable[[], FakeResponse | BaseException]]
    sent: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    pings: int = 0
    closed: bool = False

    async def send(self, method: str, url: str, headers: Headers, body: bytes) -> FakeResponse:
        self.sent.append((method, url, dict(headers), body))
        base = BASE if url.startswith(BASE) else CAND
        answer = self.answers[base]()
        if isinstance(answer, BaseException):
            raise BackendError(answer)
        return answer

    async def ping(self, url: str, timeout: float) -> bool:
        self.pings += 1
        return not isinstance(self.answers[CAND](), BaseException)

    async def aclose(self) -> None:
        self.closed = True


def ok(body: bytes = b'{"predictions":[1.0]}', status: int = 200) -> Callable[[], FakeResponse]:
    return lambda: FakeResponse(status=status, body=body)


def dead() -> BaseException:
    return ConnectionRefusedError("connection refused")


def run(
    backend: FakeBackend,
    scenario: Callable[[Router, httpx.AsyncClient, httpx.AsyncClient], Awaitable[Any]],
    *,
    weight_bp: int = 0,
    mirror_rate: float = 0.0,
    **config: Any,
) -> Any:
    """Start a router over ``backend`` and run ``scenario(router, public, admin)``."""

    async def main() -> Any:
        cfg = RouterConfig(BASE, CAND, health_interval=0.05, **config)
        router = Router(cfg, Routing(weight_bp=weight_bp, mirror_rate=mirror_rate), backend)
        await router.start()
        public = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=router.public_app), base_url="http://router.test"
        )
        admin = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=admin_app(router)), base_url="http://admin.test"
        )
        try:
            return await scenario(router, public, admin)
        finally:
            await public.aclose()
            await admin.aclose()
            await router.aclose()

    return asyncio.run(main())


async def settle(router: Router) -> None:
    """Let background mirrors finish."""
    for _ in range(100):
        if router.mirror.stats.in_flight == 0:
            return
        await asyncio.sleep(0.01)


def test_weight_picks_the_side_and_the_answer_comes_back_unchanged() -> None:
    backend = FakeBackend({BASE: ok(b"base"), CAND: ok(b"cand")})

    async def scenario(router: Router, public: httpx.AsyncClient, _: Any) -> None:
        r = await public.post("/predict/?x=1", content=b"a,b\n1,2\n")
        assert (r.status_code, r.content, r.headers["x-tandem-backend"]) == (
            200,
            b"base",
            "baseline",
        )
        router.set_routing(Routing(weight_bp=10_000, version=1))
        r = await public.post("/predict/?x=1", content=b"a,b\n1,2\n")
        assert (r.content, r.headers["x-tandem-backend"]) == (b"cand", "candidate")
        # Hop-by-hop headers (and those Connection names) never cross; length is recomputed.
        assert "x-secret-hop" not in r.headers and r.headers["content-length"] == "4"

    run(backend, scenario)
    assert [url for _, url, _, _ in backend.sent] == [
        BASE + "/predict/?x=1",
        CAND + "/predict/?x=1",
    ]


def test_request_headers_are_forwarded_end_to_end_only() -> None:
    backend = FakeBackend({BASE: ok(), CAND: ok()})

    async def scenario(router: Router, public: httpx.AsyncClient, _: Any) -> None:
        await public.post(
            "/predict/",
            content=b"x",
            headers={
                "Content-Type": "text/csv",
                "X-Request-ID": "r1",
                "Connection": "keep-alive, X-Drop-Me",
                "X-Drop-Me": "1",
                "Proxy-Authorization": "secret",
                "X-Forwarded-For": "10.0.0.9",
            },
        )

    run(backend, scenario)
    method, _, headers, body = backend.sent[0]
    assert (method, body) == ("POST", b"x")
    assert headers["content-type"] == "text/csv" and headers["x-request-id"] == "r1"
    assert "x-drop-me" not in headers and "proxy-authorization" not in headers
    assert "connection" not in headers and "content-length" not in headers and "host" not in headers
    assert headers["x-forwarded-for"] == "10.0.0.9, 127.0.0.1"
    assert headers["x-forwarded-host"] == "router.test"
    assert headers["x-forwarded-proto"] == "http"


def test_a_dead_candidate_is_retried_on_the_baseline_and_marked_down() -> None:
    state = {"candidate": dead}
    backend = FakeBackend({BASE: ok(b"base"), CAND: lambda: state["candidate"]()})

    async def scenario(router: Router, public: httpx.AsyncClient, _: Any) -> None:
        r = await public.get("/predict/")
        assert (r.status_code, r.content, r.headers["x-tandem-backend"]) == (
            200,
            b"base",
            "baseline",
        )
        assert router.candidate_down and router.effective_weight_bp() == 0
        r = await public.get("/predict/")  # rerouted without trying the candidate
        assert r.headers["x-tandem-backend"] == "baseline"
        state["candidate"] = ok(b"cand")  # it comes back: the health check notices
        for _ in range(100):
            if not router.candidate_down:
                break
            await asyncio.sleep(0.02)
        assert not router.candidate_down
        r = await public.get("/predict/")
        assert r.headers["x-tandem-backend"] == "candidate"
        stats = router.stats()
        assert stats["served"]["candidate"]["connection_failures"] == 1
        assert stats["client"]["retried_on_baseline"] == 1
        assert stats["client"]["rerouted_candidate_down"] == 1
        assert stats["client"]["errors"] == 0

    run(backend, scenario, weight_bp=10_000)
    assert backend.pings >= 1


def test_a_dead_baseline_answers_502_json_after_one_retry() -> None:
    backend = FakeBackend({BASE: dead, CAND: ok()})

    async def scenario(router: Router, public: httpx.AsyncClient, _: Any) -> None:
        r = await public.get("/predict/")
        assert r.status_code == 502 and r.headers["x-tandem-backend"] == "router"
        assert r.json()["message"].startswith("ERROR: The baseline backend is unavailable:")
        assert router.stats()["served"]["baseline"]["connection_failures"] == 2

    run(backend, scenario)
    assert len(backend.sent) == 2


def test_a_timeout_on_the_baseline_is_not_retried() -> None:
    backend = FakeBackend({BASE: lambda: TimeoutError("read timed out"), CAND: ok()})

    async def scenario(router: Router, public: httpx.AsyncClient, _: Any) -> None:
        assert (await public.get("/predict/")).status_code == 502

    run(backend, scenario)
    assert len(backend.sent) == 1


def test_an_oversize_body_gets_413_and_never_reaches_a_backend() -> None:
    backend = FakeBackend({BASE: ok(), CAND: ok()})

    async def scenario(router: Router, public: httpx.AsyncClient, _: Any) -> None:
        r = await public.post("/predict/", content=b"x" * 101)
        assert r.status_code == 413 and r.headers["x-tandem-backend"] == "router"
        assert r.json() == {"message": "ERROR: Request body is larger than the limit of 100 bytes."}
        assert (await public.post("/predict/", content=b"x" * 100)).status_code == 200

    run(backend, scenario, max_body_bytes=100)
    assert len(backend.sent) == 1


def test_mirrors_are_compared_and_differences_kept() -> None:
    answers = iter([ok(b'{"p":[1.0]}'), ok(b'{"p":[1.5]}'), ok(b"boom", 500)])
    backend = FakeBackend({BASE: ok(b'{"p":[1.0]}'), CAND: lambda: next(answers)()})

    async def scenario(router: Router, public: httpx.AsyncClient, _: Any) -> dict[str, Any]:
        for i in range(3):
            r = await public.post("/predict/", content=b"x", headers={"X-Request-ID": f"r{i}"})
            assert r.content == b'{"p":[1.0]}'  # the client only ever waits for the baseline
            await settle(router)
        return router.stats()["mirror"]

    mirror = run(backend, scenario, mirror_rate=1.0)
    assert (mirror["compared"], mirror["matched"], mirror["differing"]) == (3, 1, 1)
    assert mirror["candidate_failed"] == 1
    (diff,) = mirror["differences"]
    assert diff["request_id"] == "r1" and diff["differs"] == ["body"] and diff["offset"] == 8
    assert [h.get("x-tandem-mirror") for _, url, h, _ in backend.sent if url.startswith(CAND)] == [
        "1"
    ] * 3


def test_a_difference_is_also_recorded_in_the_rollout_store(tmp_path: Path) -> None:
    """The router's counters die with it; the store keeps each difference for the controller."""
    from tandem.rollout.store import RolloutStore

    state = tmp_path / "rollout.db"
    RolloutStore(state).close()
    answers = iter([ok(b'{"p":[1.0]}'), ok(b'{"p":[1.5]}')])
    backend = FakeBackend({BASE: ok(b'{"p":[1.0]}'), CAND: lambda: next(answers)()})

    async def scenario(router: Router, public: httpx.AsyncClient, _: Any) -> None:
        for i in range(2):
            await public.post("/predict/", content=b"x", headers={"X-Request-ID": f"r{i}"})
            await settle(router)

    run(backend, scenario, mirror_rate=1.0, store_path=str(state))
    store = RolloutStore(state)
    try:
        (event,) = store.events("difference")
    finally:
        store.close()
    assert (event.source, event.labels) == ("router", {"request_id": "r1", "path": "/predict/"})
    assert event.text.startswith("POST /predict/ (request r1): body differ at byte 8")


def test_mirrors_beyond_the_in_flight_limit_are_dropped() -> None:
    backend = FakeBackend({BASE: ok(), CAND: ok()})

    async def scenario(router: Router, public: httpx.AsyncClient, _: Any) -> dict[str, Any]:
        await public.post("/predict/", content=b"x")
        await settle(router)
        return router.stats()["mirror"]

    mirror = run(backend, scenario, mirror_rate=1.0, max_inflight_mirrors=0)
    assert (mirror["sampled"], mirror["launched"], mirror["dropped"]) == (1, 0, 1)


def test_event_streams_pass_through_chunk_by_chunk() -> None:
    chunks = (b"data: a\n\n", b"data: b\n\n")
    stream = FakeResponse(body=b"".join(chunks), content_type="text/event-stream", chunks=chunks)
    backend = FakeBackend({BASE: lambda: stream, CAND: ok()})

    async def scenario(router: Router, public: httpx.AsyncClient, _: Any) -> list[bytes]:
        async with public.stream("POST", "/v1/chat/completions", content=b"{}") as r:
            return [chunk async for chunk in r.aiter_raw() if chunk]

    assert b"".join(run(backend, scenario)) == b"".join(chunks)
    assert stream.released


def test_metrics_match_the_statistics() -> None:
    backend = FakeBackend({BASE: ok(), CAND: ok(b"other")})

    async def scenario(router: Router, public: httpx.AsyncClient, admin: httpx.AsyncClient) -> Any:
        for i in range(5):
            await public.post("/predict/", content=b"x", headers={"X-Request-ID": f"m{i}"})
        await settle(router)
        r = await admin.get("/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        return router.stats(), r.text

    stats, text = run(backend, scenario, mirror_rate=1.0)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values()
        for s in f.samples
    }
    served = (("side", "baseline"), ("traffic", "served"))
    assert samples[("tandem_router_requests_total", served)] == 5
    assert samples[("tandem_router_mirror_compared_total", ())] == 5
    assert samples[("tandem_router_mirror_differences_total", ())] == 5
    assert samples[("tandem_router_client_requests_total", ())] == stats["client"]["requests"]
    buckets = [
        (float(s.labels["le"]), s.value)
        for s in families["tandem_router_request_duration_seconds"].samples
        if s.name.endswith("_bucket")
        and s.labels["side"] == "baseline"
        and s.labels["traffic"] == "served"
    ]
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
    assert buckets[-1] == (float("inf"), 5)
    assert samples[("tandem_router_weight_basis_points", ())] == 0


def test_admin_api_errors_are_json_and_the_token_is_required() -> None:
    backend = FakeBackend({BASE: ok(), CAND: ok()})

    async def scenario(router: Router, _: Any, admin: httpx.AsyncClient) -> None:
        r = await admin.get("/api/stats")
        assert r.status_code == 401 and r.json() == {"message": "ERROR: Unauthorized"}
        assert r.headers["www-authenticate"].startswith("Bearer")
        auth = {"Authorization": "Bearer s3cret"}
        assert (await admin.get("/metrics", headers=auth)).status_code == 200
        assert (await admin.get("/api/stats/?token=s3cret")).status_code == 200  # slash folded
        r = await admin.get("/api/nothing", headers=auth)
        assert r.status_code == 404 and r.json() == {"message": "ERROR: Not Found"}
        r = await admin.delete("/api/routing", headers=auth)
        assert r.status_code == 405 and r.json() == {"message": "ERROR: Method Not Allowed"}
        assert set(r.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
        r = await admin.post("/api/routing", json={"weight_bp": 10_001}, headers=auth)
        assert r.status_code == 400 and "weight_bp must be within" in r.json()["message"]
        r = await admin.post("/api/routing", json={"weight_bp": 2500}, headers=auth)
        assert r.json()["weight_bp"] == 2500 and router.routing.weight_bp == 2500
        r = await admin.post("/api/reports", json={"extension": "x"}, headers=auth)
        assert r.status_code == 503  # no store configured

    run(backend, scenario, admin_token="s3cret")
