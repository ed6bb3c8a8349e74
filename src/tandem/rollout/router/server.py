"""The router process: both listeners on Uvicorn, signals, and the command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tandem.errors import ConfigError
from tandem.rollout.router.admin import admin_app
from tandem.rollout.router.config import RouterConfig, initial_routing
from tandem.rollout.router.proxy import Router
from tandem.runtime_params import Params
from tandem.tls import TlsSettings

logger = logging.getLogger("tandem.rollout.router")


class _Server:
    """Uvicorn server without its own signal handling (the router handles signals for both)."""

    def __init__(self, config: Any) -> None:
        import uvicorn

        class _Quiet(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

            def install_signal_handlers(self) -> None:
                return None

        self.server = _Quiet(config)

    @property
    def started(self) -> bool:
        return bool(self.server.started)

    def stop(self) -> None:
        self.server.should_exit = True

    async def serve(self) -> None:
        await self.server.serve()


# -- process entry points ----------------------------------------------------------------------


async def serve(config: RouterConfig) -> None:
    """Run the router until SIGTERM/SIGINT (or cancellation)."""
    import uvicorn

    router = Router(config, initial_routing(config))
    await router.start()

    def uv_config(app: Any, host: str, port: int, **extra: Any) -> Any:
        return uvicorn.Config(
            app,
            host=host,
            port=port,
            lifespan="off",
            interface="asgi3",
            proxy_headers=False,
            access_log=False,
            log_level=config.log_level,
            server_header=False,
            date_header=False,
            timeout_keep_alive=5,
            **extra,
        )

    # DRUM_SSL_* put the public listener on HTTPS, as they do every Tandem server; the admin
    # listener stays on loopback, plain.
    tls = TlsSettings.from_params(Params())
    public = _Server(
        uv_config(
            router.public_app,
            config.listen_host,
            config.listen_port,
            **(tls.uvicorn_options() if tls else {}),
        )
    )
    if tls is not None:
        logger.info("public listener: %s", tls.log_line())
    admin = _Server(uv_config(admin_app(router), config.admin_host, config.admin_port))
    router.ready = lambda: public.started and admin.started
    loop = asyncio.get_running_loop()

    def stop() -> None:
        public.stop()
        admin.stop()

    def on_signal(sig: signal.Signals) -> None:
        logger.info("received %s: finishing in-flight requests, then exiting", sig.name)
        stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, on_signal, sig)
    logger.info(
        "Tandem router on %s:%d (admin %s:%d): baseline %s, candidate %s, weight %d bp, "
        "mirror rate %s",
        config.listen_host,
        config.listen_port,
        config.admin_host,
        config.admin_port,
        config.baseline_url,
        config.candidate_url,
        router.routing.weight_bp,
        router.routing.mirror_rate,
    )
    try:
        await asyncio.gather(public.serve(), admin.serve())
    finally:
        stop()
        await router.aclose()


def run_router(config: RouterConfig) -> None:
    """Run the router in this process until SIGTERM/SIGINT (blocking; for a child process)."""
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        import uvloop

        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(serve(config))


def _address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``python -m tandem.rollout.router``."""
    parser = argparse.ArgumentParser(
        prog="python -m tandem.rollout.router",
        description="Tandem's rollout traffic router: splits, mirrors and compares traffic "
        "between a baseline and a candidate deployment.",
    )
    parser.add_argument(
        "--config-json",
        help="the whole RouterConfig as a JSON object; the flags below override its fields",
    )
    parser.add_argument("--baseline", metavar="URL", help="baseline base URL")
    parser.add_argument("--candidate", metavar="URL", help="candidate base URL")
    parser.add_argument(
        "--listen", metavar="HOST:PORT", type=_address, help="public address (127.0.0.1:8080)"
    )
    parser.add_argument(
        "--admin", metavar="HOST:PORT", type=_address, help="admin address (127.0.0.1:8081)"
    )
    parser.add_argument(
        "--admin-token",
        help="bearer token the admin API requires (default: $TANDEM_ROUTER_ADMIN_TOKEN, or none)",
    )
    parser.add_argument(
        "--store",
        metavar="PATH",
        help="the rollout SQLite file (the routing to start with; events the router records)",
    )
    parser.add_argument("--max-body-bytes", type=int, help="request body limit (100 MiB)")
    parser.add_argument("--backend-timeout", type=float, help="seconds per backend call (60)")
    parser.add_argument("--max-inflight-mirrors", type=int, help="concurrent mirrors (64)")
    parser.add_argument(
        "--health-interval", type=float, help="seconds between /ping checks of a down candidate"
    )
    parser.add_argument(
        "--weight-bp", type=int, help="candidate weight (basis points) when the store has none"
    )
    parser.add_argument(
        "--mirror-rate", type=float, help="mirror rate (0..1) when the store has none"
    )
    parser.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), help="log level (info)"
    )
    return parser


def config_from_args(argv: Sequence[str] | None = None) -> RouterConfig:
    """Parse the command line into a :class:`RouterConfig` (ValueError when incomplete)."""
    args = build_parser().parse_args(argv)
    doc: dict[str, Any] = json.loads(args.config_json) if args.config_json else {}
    if not isinstance(doc, dict):
        raise ValueError("--config-json must be a JSON object")
    flags = {
        "baseline_url": args.baseline,
        "candidate_url": args.candidate,
        "admin_token": args.admin_token,
        "store_path": args.store,
        "max_body_bytes": args.max_body_bytes,
        "backend_timeout": args.backend_timeout,
        "max_inflight_mirrors": args.max_inflight_mirrors,
        "health_interval": args.health_interval,
        "initial_weight_bp": args.weight_bp,
        "initial_mirror_rate": args.mirror_rate,
        "log_level": args.log_level,
    }
    doc.update({k: v for k, v in flags.items() if v is not None})
    if args.listen:
        doc["listen_host"], doc["listen_port"] = args.listen
    if args.admin:
        doc["admin_host"], doc["admin_port"] = args.admin
    if not doc.get("admin_token") and os.environ.get("TANDEM_ROUTER_ADMIN_TOKEN"):
        doc["admin_token"] = os.environ["TANDEM_ROUTER_ADMIN_TOKEN"]
    for required in ("baseline_url", "candidate_url"):
        if not doc.get(required):
            raise ValueError(f"{required} is required (--{required.split('_')[0]} URL)")
    return RouterConfig.from_dict(doc)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tandem.rollout.router``: run until SIGTERM/SIGINT; 2 on a bad config."""
    try:
        config = config_from_args(argv)
        TlsSettings.from_params(Params())  # bad DRUM_SSL_* stop the router before it listens
    except (ValueError, TypeError, ConfigError) as exc:
        print(f"tandem router: {exc}", file=sys.stderr)
        return 2
    run_router(config)
    return 0
