"""Private APIs of other packages behind loud checks: the balancing accept loop (asyncio's
selector loop) and the FastAPI worker's protocol (Uvicorn's httptools protocol). A Python or a
Uvicorn that changed them is refused with a clear error, never served wrongly."""

from __future__ import annotations

from asyncio import selector_events
from typing import Any

import pytest

from tandem.errors import TandemError
from tandem.servers import connections


def test_this_pythons_asyncio_has_what_the_loop_overrides() -> None:
    connections.check_asyncio_internals()
    assert connections.loop_setting("asyncio", 2) is connections.BalancedAcceptLoop


def test_a_changed_accept_signature_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def changed(self: Any, protocol_factory: Any, listener: Any, *rest: Any) -> None: ...

    monkeypatch.setattr(selector_events.BaseSelectorEventLoop, "_accept_connection", changed)
    with pytest.raises(TandemError, match=r"asyncio's selector event loop changed") as info:
        connections.loop_setting("asyncio", 2)
    assert "DRUM_UVICORN_LOOP=uvloop" in str(info.value)
    assert "_accept_connection('self', 'protocol_factory', 'listener', 'rest')" in str(info.value)
    # One worker, or another loop, does not use the internals.
    assert connections.loop_setting("asyncio", 1) == "asyncio"
    assert connections.loop_setting("uvloop", 2) == "uvloop"


def test_a_missing_internal_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(selector_events.BaseSelectorEventLoop, "_remove_reader")
    with pytest.raises(TandemError, match=r"no _remove_reader\(\)"):
        connections.check_asyncio_internals()


def test_this_uvicorns_protocol_has_what_the_worker_builds_on() -> None:
    connections.check_uvicorn_internals()
    assert issubclass(connections.http_protocol(5.0), object)


def test_a_changed_uvicorn_protocol_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from uvicorn.protocols.http import httptools_impl

    monkeypatch.delattr(httptools_impl.HttpToolsProtocol, "send_400_response")
    with pytest.raises(TandemError, match=r"its httptools protocol changed \(no send_400_response"):
        connections.http_protocol(5.0)


def test_a_renamed_cycle_attribute_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import inspect

    real = inspect.getsource

    def renamed(obj: Any) -> str:
        text = real(obj)
        return (
            text.replace("self.more_body", "self.has_more")
            if obj.__name__ == "RequestResponseCycle"
            else text
        )

    monkeypatch.setattr(inspect, "getsource", renamed)
    with pytest.raises(TandemError, match=r"no RequestResponseCycle\.more_body"):
        connections.check_uvicorn_internals()


def test_uvicorn_installed_without_sources_is_checked_as_far_as_it_can_be(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Bytecode-only installs have no source to read: the methods are still checked, and
    start-up goes on with a warning."""
    import inspect

    def no_source(obj: Any) -> str:
        raise OSError("could not get source code")

    monkeypatch.setattr(inspect, "getsource", no_source)
    connections.check_uvicorn_internals()
    assert "installed without sources" in caplog.text
