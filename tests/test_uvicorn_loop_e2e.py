"""The Uvicorn event loop (``DRUM_UVICORN_LOOP``) and Nagle's algorithm on accepted sockets."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tandem.runtime_params import Params
from tandem.servers import connections
from tandem.servers.launch import uvicorn_loop
from tests.support import REPO, build_sklearn_artifact, free_port, running

BODY = b"a,b,c\n0.5,-1.25,2.0\n1.0,0.0,-3.5\n"


def _worker_pids(leader: int) -> list[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(leader)], capture_output=True, text=True, check=False
    )
    return [int(p) for p in out.stdout.split()]


def _maps_uvloop(pid: int) -> bool:
    return "uvloop" in Path(f"/proc/{pid}/maps").read_text()


@pytest.fixture(scope="module")
def regression(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("loop")
    model = build_sklearn_artifact(root / "model", "regression")
    return model


def test_default_loop_is_asyncio_and_uvloop_can_be_chosen(regression: Path) -> None:
    answers = {}
    for loop in (None, "uvloop", "auto"):
        env = {"MLOPS_RUNTIME_PARAM_DRUM_UVICORN_LOOP": loop} if loop else {}
        with running(
            regression, "fastapi", args=["--target-type", "regression"], env=env
        ) as server:
            r = httpx.post(
                server.url + "/predictions/", content=BODY, headers={"content-type": "text/csv"}
            )
            assert r.status_code == 200, r.text
            answers[loop] = r.content
            workers = _worker_pids(server.proc.pid)  # type: ignore[union-attr]
            assert len(workers) == 1
            # uvloop's extension module is mapped only in a worker that runs its loop.
            assert _maps_uvloop(workers[0]) is (loop in ("uvloop", "auto"))
    assert len(set(answers.values())) == 1


def test_bad_loop_value_stops_start_up_with_the_variable_named(regression: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_RUNTIME_PARAM_")}
    env["MLOPS_RUNTIME_PARAM_DRUM_SERVER_TYPE"] = "fastapi"
    env["MLOPS_RUNTIME_PARAM_DRUM_UVICORN_LOOP"] = "tokio"
    proc = subprocess.run(
        [sys.executable, "-m", "tandem", "server", "--code-dir", str(regression),
         "--target-type", "regression", "--address", f"127.0.0.1:{free_port()}"],
        capture_output=True, text=True, timeout=60, cwd=REPO, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert (
        "MLOPS_RUNTIME_PARAM_DRUM_UVICORN_LOOP has value 'tokio'; "
        "expected one of asyncio, uvloop, auto"
    ) in proc.stderr + proc.stdout


def test_loop_parameter_defaults_and_case() -> None:
    assert uvicorn_loop(Params({})) == "asyncio"
    assert uvicorn_loop(Params({"DRUM_UVICORN_LOOP": "UVLOOP"})) == "uvloop"


def test_accepted_connections_have_nagle_off() -> None:
    """A socket bound like Uvicorn binds it (``proto`` 0) gets TCP_NODELAY on each connection."""
    import uvicorn
    from uvicorn.server import ServerState

    async def app(scope: object, receive: object, send: object) -> None:  # pragma: no cover
        return None

    config = uvicorn.Config(app, loop="asyncio", http=connections.http_protocol(), log_config=None)
    config.load()
    state = ServerState()
    made: list[asyncio.BaseProtocol] = []

    def factory() -> asyncio.BaseProtocol:
        proto = config.http_protocol_class(config=config, server_state=state, app_state={})
        made.append(proto)
        return proto  # type: ignore[no-any-return]

    async def scenario() -> int:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        assert listener.proto == 0
        server = await asyncio.get_running_loop().create_server(factory, sock=listener)
        try:
            port = listener.getsockname()[1]
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            for _ in range(200):
                if made and getattr(made[0], "transport", None) is not None:
                    break
                await asyncio.sleep(0.01)
            sock = made[0].transport.get_extra_info("socket")  # type: ignore[attr-defined]
            value = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            writer.close()
            return int(value)
        finally:
            server.close()

    assert asyncio.run(scenario()) == 1


def test_head_and_body_written_in_one_pass_leave_in_one_send() -> None:
    """The coalescing transport hands the real one a single write per loop pass, then closes."""

    async def scenario() -> tuple[bytes, bytes]:
        loop = asyncio.get_running_loop()
        server_sock, client_sock = socket.socketpair()
        writes: list[bytes] = []

        class Counting(asyncio.Protocol):
            pass

        transport, _ = await loop.create_connection(Counting, sock=server_sock)
        real_write = transport.write

        def counted(data: bytes) -> None:
            writes.append(bytes(data))
            real_write(data)

        transport.write = counted  # type: ignore[method-assign]
        wrapped = connections.CoalescingTransport(transport, loop)
        wrapped.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        wrapped.write(memoryview(b"{}"))
        assert writes == []  # nothing leaves before the pass ends
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        first = list(writes)
        wrapped.write(b"tail")
        wrapped.close()  # a close sends what is pending first
        client_sock.setblocking(False)
        received = b""
        while chunk := await asyncio.wait_for(loop.sock_recv(client_sock, 65536), 10):
            received += chunk
        client_sock.close()
        return b"|".join(first), received

    first, received = asyncio.run(scenario())
    assert first == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"
    assert received == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}tail"


def _listener_with_queued(n: int) -> tuple[socket.socket, list[socket.socket]]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    clients = [socket.socket() for _ in range(n)]
    for client in clients:
        client.connect(listener.getsockname())
    listener.setblocking(False)
    return listener, clients


def _drain(listener: socket.socket) -> int:
    left = 0
    while True:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            return left
        conn.close()
        left += 1


def test_several_workers_take_one_queued_connection_per_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three connections wait on the listener; one readiness callback takes exactly one."""
    assert connections.loop_setting("asyncio", 1) == "asyncio"
    assert connections.loop_setting("uvloop", 2) == "uvloop"
    assert connections.loop_setting("asyncio", 2) is connections.BalancedAcceptLoop
    board = connections.ConnectionBoard(2)
    board.claim(0)
    board.claim(1)
    monkeypatch.setattr(connections, "SEAT", connections.Seat(board, 0))
    loop = connections.BalancedAcceptLoop()
    listener, clients = _listener_with_queued(3)
    try:
        loop._accept_connection(asyncio.Protocol, listener, None, None, 100)
        assert _drain(listener) == 2
        # Counted when accepted, before the protocol sees the connection.
        assert board.count(0) == 1
    finally:
        for client in clients:
            client.close()
        listener.close()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()


def test_a_busier_worker_leaves_a_connection_to_an_idle_one_for_a_while(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    board = connections.ConnectionBoard(3)
    board.claim(0)
    board.claim(1)
    board.add(0, 2)
    board.add(1, 1)  # slot 2 has no worker: VACANT, never the least loaded
    assert not board.idler_holds_fewer(0)  # slot 1 holds fewer but is busy
    board.set_idle(1, True)
    assert board.idler_holds_fewer(0)
    assert not board.idler_holds_fewer(1)
    monkeypatch.setattr(connections, "SEAT", connections.Seat(board, 0))
    loop = connections.BalancedAcceptLoop()
    listener, clients = _listener_with_queued(1)
    try:
        # Deferred: nothing accepted, the listener is not watched until the timer fires.
        loop._accept_connection(asyncio.Protocol, listener, None, None, 100)
        assert loop._deferred == 1
        assert listener.fileno() not in loop._selector.get_map()
        # The loop keeps retrying; after MAX_DEFERRALS it takes the connection anyway, so a
        # stuck worker cannot hold one back.
        loop.run_until_complete(asyncio.sleep(0.2))
        assert loop._deferred == 0
        assert _drain(listener) == 0
        # A busy worker is not waited for: the next connection is taken at once.
        board.set_idle(1, False)
        more = socket.create_connection(listener.getsockname())
        clients.append(more)
        loop._accept_connection(asyncio.Protocol, listener, None, None, 100)
        assert loop._deferred == 0
        assert _drain(listener) == 0
        board.vacate(1)
        assert board.count(1) == connections.VACANT
    finally:
        for client in clients:
            client.close()
        listener.close()
        loop.run_until_complete(asyncio.sleep(connections.DEFER_SECONDS * 4))
        loop.close()


def test_a_worker_is_idle_on_the_board_only_while_it_waits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    board = connections.ConnectionBoard(2)
    board.claim(0)
    monkeypatch.setattr(connections, "SEAT", connections.Seat(board, 0))
    loop = connections.BalancedAcceptLoop()
    seen: list[int] = []

    def watch() -> None:
        time.sleep(0.05)
        seen.append(int(board._idle[0]))

    try:
        watcher = threading.Thread(target=watch)
        watcher.start()
        loop.run_until_complete(asyncio.sleep(0.3))  # waits in select meanwhile
        watcher.join()
        assert seen == [1]
        assert board._idle[0] == 0  # running again, not idle
    finally:
        loop.close()


def test_large_bodies_answer_as_on_flask(regression: Path) -> None:
    """Bodies past Uvicorn's 64 KiB pause point and past Tandem's own one answer as on Flask."""
    rng = np.random.default_rng(4)
    bodies = []
    for rows in (5_000, 120_000):  # about 0.3 MB and 7 MB
        x = rng.normal(size=(rows, 3))
        bodies.append(
            ("a,b,c\n" + "\n".join(",".join(repr(float(v)) for v in r) for r in x) + "\n").encode()
        )
    assert len(bodies[1]) > connections.BODY_HIGH_WATER
    answers: dict[str, list[bytes]] = {}
    for stack in ("fastapi", "flask"):
        env = {"MLOPS_RUNTIME_PARAM_CUSTOM_MODEL_WORKERS": "2"} if stack == "fastapi" else {}
        with running(regression, stack, args=["--target-type", "regression"], env=env) as server:
            answers[stack] = []
            for body in bodies:
                r = httpx.post(
                    server.url + "/predictions/",
                    content=body,
                    headers={"content-type": "text/csv"},
                    timeout=60,
                )
                assert r.status_code == 200, r.text[:200]
                answers[stack].append(r.content)
    assert answers["fastapi"] == answers["flask"]
    assert answers["fastapi"][1].count(b",") == 120_000 - 1
