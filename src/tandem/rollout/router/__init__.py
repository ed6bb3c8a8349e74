"""The rollout's traffic router: splits live traffic between the baseline and the candidate.

A separate process (an ASGI proxy on Uvicorn, one shared aiohttp connection pool to both
backends) with two listeners. The package's parts:

- :mod:`.routing`: the split (which side, whether mirrored) and the routing in force;
- :mod:`.proxy`: the public listener and the router's state;
- :mod:`.mirror`: mirror and compare (alone, at weight 0 and mirror rate 1, it is the comparison
  service nginx's ``mirror`` feeds);
- :mod:`.backend`: the HTTP client interface and its aiohttp implementation;
- :mod:`.stats` and :mod:`.metrics`: the counters, and their Prometheus exposition;
- :mod:`.admin`: the admin API (Starlette); :mod:`.server`: the process and its command line.

**Public listener** (``listen_host:listen_port``) proxies every method and path (with its query
string) to the baseline or the candidate:

- *Split.* The request key is ``X-Request-ID`` when present, else ``"<client address> <path>"``.
  The candidate serves the request when nginx's MurmurHash2 of the key is below
  ``weight_bp * 0xffffffff // 10000`` (weight in basis points, 0..10 000): exactly nginx's
  ``split_clients``, so the built-in router and the nginx engine split alike
  (:mod:`tandem.rollout.split`).
  The same key (a retry) always lands on the same side for a given weight, and raising the weight
  only moves keys from the baseline to the candidate. Clients that want a fine-grained split send
  a distinct ``X-Request-ID`` per request: without one, all requests of one client to one path
  share a key.
- *Atomic weights.* The weight and the mirror rate live in one immutable :class:`Routing` object
  that ``POST /api/routing`` replaces with a single reference assignment. Each request reads the
  reference once, so in-flight requests are never dropped or split inconsistently.
- *Forwarding.* The request body is buffered in full (up to ``max_body_bytes``; above it the
  router answers 413 with Tandem's own JSON body). End-to-end headers are forwarded, hop-by-hop
  ones (``Connection`` and the headers it names, ``Keep-Alive``, ``Transfer-Encoding``, ``TE``,
  ``Trailer``, ``Upgrade``, ``Proxy-*``, ``Expect``) are dropped, ``Content-Length`` is recomputed
  and ``X-Forwarded-For``/``-Host``/``-Proto`` are added. The backend's status, headers and body
  bytes come back unchanged plus ``X-Tandem-Backend: baseline|candidate`` (``router`` on answers
  the router made itself: 413 and 502). ``text/event-stream`` answers (streamed chat) stream
  through chunk by chunk; every other answer is buffered.
- *Backend death.* A connection error or timeout talking to the candidate marks it down at once
  (its weight counts as 0 until its ``/ping`` answers 200 again; a background check runs every
  ``health_interval`` seconds), counts a failure against the candidate and retries the same
  request on the baseline, so the client does not see it. A connection error on the baseline is
  retried once (a stale pooled connection), then answered 502. 5xx answers are passed through and
  counted as errors of the side that gave them.
- *Mirroring.* With probability ``mirror_rate``, decided deterministically from the request key
  by a second hash independent of the split (blake2b personalised ``tandem-mirror``), a request
  served by the baseline is replayed to the candidate in a background task after the client has
  its answer. At most ``max_inflight_mirrors`` mirrors run at once; beyond that, mirrors are
  dropped and counted. The candidate's status, content type and body bytes are compared with what
  the baseline answered; the last 20 differences are kept with the path, request id, both
  statuses and the first differing bytes. Mirroring never delays or fails the client's request.

**Admin listener** (``admin_host:admin_port``, loopback by default; when ``admin_token`` is set,
every request needs ``Authorization: Bearer <token>`` or ``?token=<token>``):

- ``GET /api/health`` → ``{"status": "ok", "ready": bool, "pid": int, "uptime_s": float,
  "candidate_down": bool}``
- ``GET /api/stats`` → the statistics document (:meth:`Router.stats`):

  .. code-block:: text

      {"now": float, "started_at": float, "uptime_s": float,
       "routing": {"weight_bp": int, "mirror_rate": float, "version": int, "applied_at": float},
       "effective_weight_bp": int,           # 0 while the candidate is down
       "candidate_down": bool, "candidate_down_since": float|null, "candidate_marked_down": int,
       "latency_bounds_ms": [float, ...],    # bucket upper bounds, 0.1 ms · 1.1^i up to 120 s
       "served":   {"baseline": SIDE, "candidate": SIDE},   # client-facing traffic
       "mirrored": {"baseline": SIDE, "candidate": SIDE},   # pairs of launched mirrors
       "client": {"requests": int, "errors": int, "too_large": int,
                  "retried_on_baseline": int, "rerouted_candidate_down": int},
       "mirror": {"sampled": int, "launched": int, "compared": int, "matched": int,
                  "differing": int, "candidate_failed": int, "dropped": int,
                  "skipped_candidate_down": int, "skipped_too_large": int, "failed": int,
                  "in_flight": int, "max_in_flight": int,
                  "differences": [DIFF, ...]}}   # last 20, oldest first
      SIDE = {"requests": int, "errors": int, "connection_failures": int, "status_5xx": int,
              "latency": {"counts": [int, ...],  # len(latency_bounds_ms) + 1; last = overflow
                          "count": int, "sum_ms": float}}
      DIFF = {"at": float, "method": str, "path": str, "query": str, "request_id": str|null,
              "differs": ["status", "content_type", "body"],  # the parts that differ
              "baseline":  {"status": int, "content_type": str, "length": int},
              "candidate": {"status": int, "content_type": str, "length": int},
              "offset": int|null,                # first differing byte of the bodies
              "baseline_bytes": str, "candidate_bytes": str}   # ~40 bytes around it

  Every counter is cumulative since the router started, so a controller takes two snapshots and
  differences them; :func:`counts_delta` and :func:`tandem.quantiles.histogram_quantile` give a
  window's P99.
  ``served`` counts every attempt: a candidate connection failure retried on the baseline counts
  one candidate request (an error and a connection failure) and one baseline request. Errors are
  answers with status >= 500 and connection failures; latency histograms hold answered requests
  only (time until the whole answer was read; until the headers for streams). ``mirrored.baseline``
  is the baseline half of each launched mirror pair (the same requests as ``mirrored.candidate``).
- ``GET /api/routing`` → the current routing; ``POST /api/routing`` with
  ``{"weight_bp": int 0..10000, "mirror_rate": float 0..1}`` (either may be omitted to keep its
  value) applies it atomically and returns the applied routing (400 JSON on invalid input).
- ``GET /`` the dashboard page and ``GET /api/dashboard`` its JSON (see
  :mod:`tandem.rollout.dashboard`).
- ``POST /api/alerts`` (Alertmanager's webhook) and ``POST /api/reports``
  (``{"extension": "what failed"}``) record events in the rollout store, as does every mirrored
  answer that differs from the baseline's (so a router that dies keeps that evidence).
- ``GET /metrics``: the router's own Prometheus metrics (:mod:`.metrics`): requests, errors,
  connection failures and latency per side for served and mirrored traffic; mirror comparisons,
  differences and skips; the weight in force.

On start the router takes its weight from the rollout store's saved status (``weight`` percent →
basis points) and its mirror rate from the status's or the latest observation's ``mirror_rate``
(0 when neither has one), so a restarted router resumes the recorded weight; without a saved
status it uses ``initial_weight_bp``/``initial_mirror_rate``.

Run it with :func:`run_router` (blocking; for a child process) or from the command line::

    python -m tandem.rollout.router --baseline http://127.0.0.1:9001 \\
        --candidate http://127.0.0.1:9002 --listen 0.0.0.0:8080 --admin 127.0.0.1:8081 \\
        --store rollout.db

``--config-json`` takes the whole :class:`RouterConfig` as JSON; explicit flags override it.
"""

from tandem.rollout.router.config import DEFAULT_MAX_BODY, RouterConfig, initial_routing
from tandem.rollout.router.mirror import Answer, compare_answers, first_difference
from tandem.rollout.router.proxy import HOP_BY_HOP, Router
from tandem.rollout.router.routing import (
    BASELINE,
    CANDIDATE,
    MAX_WEIGHT_BP,
    SIDES,
    Routing,
    choose_side,
    mirror_fraction,
    parse_routing_update,
    percent_to_bp,
    should_mirror,
)
from tandem.rollout.router.server import config_from_args, main, run_router, serve
from tandem.rollout.router.stats import (
    LATENCY_BOUNDS_MS,
    LatencyHistogram,
    MirrorStats,
    SideStats,
    counts_delta,
)
from tandem.rollout.split import request_key

__all__ = [
    "BASELINE",
    "CANDIDATE",
    "DEFAULT_MAX_BODY",
    "HOP_BY_HOP",
    "LATENCY_BOUNDS_MS",
    "MAX_WEIGHT_BP",
    "SIDES",
    "Answer",
    "LatencyHistogram",
    "MirrorStats",
    "Router",
    "RouterConfig",
    "Routing",
    "SideStats",
    "choose_side",
    "compare_answers",
    "config_from_args",
    "counts_delta",
    "first_difference",
    "initial_routing",
    "main",
    "mirror_fraction",
    "parse_routing_update",
    "percent_to_bp",
    "request_key",
    "run_router",
    "serve",
    "should_mirror",
]
