"""HTTPS on real servers of every stack from DRUM_SSL_* (issue 13, section 2), with a
certificate each test run generates with openssl."""

from __future__ import annotations

import socket
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conformance_cases import MODELS
from tests.support import SERVER_TYPES, ServerProcess

pytestmark = pytest.mark.e2e

PASSWORD = "key-pass-123"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key, locked = folder / "cert.pem", folder / "key.pem", folder / "locked-key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            "openssl",
            "pkey",
            "-in",
            str(key),
            "-aes256",
            "-passout",
            f"pass:{PASSWORD}",
            "-out",
            str(locked),
        ],
        check=True,
        capture_output=True,
    )
    return {"cert": cert, "key": key, "locked": locked}


def _handshake(port: int, cafile: Path, version: ssl.TLSVersion) -> str:
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.minimum_version = ctx.maximum_version = version
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return str(tls.version())


@pytest.mark.parametrize("server_type", SERVER_TYPES)
def test_https_on_every_stack_with_a_password_protected_key(
    tmp_path: Path, server_type: str, certificate: dict[str, Path]
) -> None:
    spec = MODELS["regression"]
    env = {
        "DRUM_SSL_CERTFILE": str(certificate["cert"]),
        "DRUM_SSL_KEYFILE": str(certificate["locked"]),
        "DRUM_SSL_KEYFILE_PASSWORD": PASSWORD,
    }
    with ServerProcess(spec.build(tmp_path), server_type, args=list(spec.args), env=env) as srv:
        assert srv.url.startswith("https://")
        trust = ssl.create_default_context(cafile=str(certificate["cert"]))
        with httpx.Client(verify=trust, timeout=10) as client:
            assert client.get(srv.url + "/ping").json() == {"message": "OK"}
            r = client.post(
                srv.url + "/predict/", content=b"a,b\n1,2\n", headers={"Content-Type": "text/csv"}
            )
            assert r.status_code == 200 and r.json() == {"predictions": [3.0]}
        assert _handshake(srv.port, certificate["cert"], ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
        assert _handshake(srv.port, certificate["cert"], ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
        assert "SSL enabled (ciphers ECDHE+AESGCM:DHE+AESGCM:ECDHE+CHACHA20:DHE+CHACHA2)" in (
            srv.logs()
        )
        # Plain HTTP on the TLS port gets no answer a client could mistake for success.
        with pytest.raises(httpx.HTTPError):
            httpx.get(
                srv.url.replace("https://", "http://") + "/ping", timeout=5
            ).raise_for_status()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"DRUM_SSL_CERTFILE": "/nonexistent/cert.pem"},
            "DRUM_SSL_CERTFILE file /nonexistent/cert.pem not found",
        ),
        ({"DRUM_SSL_KEYFILE_PASSWORD": "wrong"}, "TLS settings (DRUM_SSL_*) are not usable"),
    ],
)
def test_bad_tls_settings_stop_start_up(
    tmp_path: Path, certificate: dict[str, Path], env: dict[str, str], message: str
) -> None:
    spec = MODELS["regression"]
    full = {
        "DRUM_SSL_CERTFILE": str(certificate["cert"]),
        "DRUM_SSL_KEYFILE": str(certificate["locked"]),
        **env,
    }
    server = ServerProcess(spec.build(tmp_path), "fastapi", args=list(spec.args), env=full)
    with pytest.raises(RuntimeError, match="exited with"):
        server.start()
    assert message in server.logs()


def test_rollout_router_terminates_tls_for_deployments_on_loopback(
    tmp_path: Path, certificate: dict[str, Path]
) -> None:
    from tests.rollout.harness import FAST_SPEC, Rollout

    env = {
        "DRUM_SSL_CERTFILE": str(certificate["cert"]),
        "DRUM_SSL_KEYFILE": str(certificate["key"]),
    }
    rollout = Rollout(tmp_path, spec={**FAST_SPEC, "shadow_duration": "10m"}, env=env).start()
    try:
        assert f"router on https://127.0.0.1:{rollout.port}" in rollout.logs()
        trust = ssl.create_default_context(cafile=str(certificate["cert"]))
        r = httpx.post(
            f"https://127.0.0.1:{rollout.port}/predict/",
            content=b"a,b\n1,2\n",
            headers={"Content-Type": "text/csv"},
            verify=trust,
            timeout=30,
        )
        assert r.status_code == 200 and r.json() == {"predictions": [3.0]}
        # Behind it, the baseline still answers plain HTTP on its loopback port.
        store = rollout.store()
        try:
            baseline_port = store.get_json("deployment")["baseline_port"]
        finally:
            store.close()
        assert httpx.get(f"http://127.0.0.1:{baseline_port}/ping", timeout=10).status_code == 200
    finally:
        rollout.stop()
