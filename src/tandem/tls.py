"""TLS for every stack from the migration plan's ``DRUM_SSL_*`` runtime parameters.

One :class:`TlsSettings`, read and checked at start-up, gives Werkzeug and Gunicorn the same
``ssl.SSLContext`` (:meth:`TlsSettings.context`) and Uvicorn the same values as its settings.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tandem.errors import ConfigError

#: Every runtime parameter TLS reads (each also as ``MLOPS_RUNTIME_PARAM_<name>``).
TLS_PARAMETERS = (
    "DRUM_SSL_CERTFILE",
    "DRUM_SSL_KEYFILE",
    "DRUM_SSL_KEYFILE_PASSWORD",
    "DRUM_SSL_VERSION",
    "DRUM_SSL_CERT_REQS",
    "DRUM_SSL_CA_CERTS",
    "DRUM_SSL_CIPHERS",
)

#: The plan's default: forward-secret AEAD suites only.
DEFAULT_CIPHERS = "ECDHE+AESGCM:DHE+AESGCM:ECDHE+CHACHA20:DHE+CHACHA20:!aNULL:!MD5:!DSS:!RC4:!3DES"


def _existing(params: Any, name: str) -> str | None:
    value = params.str(name, None)
    if value is None or not value.strip():
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigError(f"{name} file {value} not found")
    return str(path)


@dataclass(frozen=True)
class TlsSettings:
    """Where the certificate and key are, and how clients are checked."""

    certfile: str
    keyfile: str
    password: str | None = None
    version: int = int(ssl.PROTOCOL_TLS_SERVER)
    cert_reqs: int = int(ssl.CERT_NONE)
    ca_certs: str | None = None
    ciphers: str = DEFAULT_CIPHERS

    @classmethod
    def from_params(cls, params: Any) -> TlsSettings | None:
        """The TLS settings, or None when ``DRUM_SSL_CERTFILE``/``KEYFILE`` are unset.

        Missing files and bad values stop start-up with a message naming the parameter.
        """
        certfile = _existing(params, "DRUM_SSL_CERTFILE")
        keyfile = _existing(params, "DRUM_SSL_KEYFILE")
        if certfile is None and keyfile is None:
            return None
        if certfile is None or keyfile is None:
            missing = "DRUM_SSL_CERTFILE" if certfile is None else "DRUM_SSL_KEYFILE"
            raise ConfigError(
                f"TLS needs both DRUM_SSL_CERTFILE and DRUM_SSL_KEYFILE; {missing} is not set"
            )
        cert_reqs = params.int("DRUM_SSL_CERT_REQS", int(ssl.CERT_NONE), minimum=0, maximum=2)
        tls = cls(
            certfile=certfile,
            keyfile=keyfile,
            password=params.str("DRUM_SSL_KEYFILE_PASSWORD", None) or None,
            version=params.int("DRUM_SSL_VERSION", int(ssl.PROTOCOL_TLS_SERVER), minimum=0)
            or int(ssl.PROTOCOL_TLS_SERVER),
            cert_reqs=int(cert_reqs or 0),
            ca_certs=_existing(params, "DRUM_SSL_CA_CERTS"),
            ciphers=params.str("DRUM_SSL_CIPHERS", DEFAULT_CIPHERS) or DEFAULT_CIPHERS,
        )
        tls.context()  # a bad key, password or cipher string fails here, at start-up
        return tls

    def context(self) -> ssl.SSLContext:
        """A server-side context with these settings (TLS 1.2 at least)."""
        try:
            ctx = ssl.SSLContext(self.version)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(self.certfile, self.keyfile, self.password)
            ctx.verify_mode = ssl.VerifyMode(self.cert_reqs)
            if self.ca_certs:
                ctx.load_verify_locations(self.ca_certs)
            ctx.set_ciphers(self.ciphers)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ConfigError(f"TLS settings (DRUM_SSL_*) are not usable: {exc}") from None
        return ctx

    def uvicorn_options(self) -> dict[str, Any]:
        """The same settings as ``uvicorn.Config`` arguments."""
        return {
            "ssl_certfile": self.certfile,
            "ssl_keyfile": self.keyfile,
            "ssl_keyfile_password": self.password,
            "ssl_version": self.version,
            "ssl_cert_reqs": self.cert_reqs,
            "ssl_ca_certs": self.ca_certs,
            "ssl_ciphers": self.ciphers,
        }

    def log_line(self) -> str:
        """What start-up logs: TLS is on, and (the start of) its cipher string."""
        return f"SSL enabled (ciphers {self.ciphers[:50]})"
