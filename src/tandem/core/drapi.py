"""``--allow-dr-api-access``: DataRobot's Python client, configured inside the model as DRUM does.

DRUM calls ``datarobot.Client(token=--api-token, endpoint=--webserver + "/api/v2")`` before the
model loads, so ``custom.py`` can use the client without configuring it. Tandem does the same when
the ``datarobot`` package is installed, and also exports ``DATAROBOT_ENDPOINT`` and
``DATAROBOT_API_TOKEN`` (the variables that client, and DataRobot's other tools, read), so a
model that starts its own client or a subprocess finds them too.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import MutableMapping
from dataclasses import dataclass, field

from tandem.errors import ConfigError

logger = logging.getLogger(__name__)

API_SUFFIX = "api/v2"


@dataclass(frozen=True)
class ApiAccess:
    """Where the model's DataRobot client points, and with which token (never printed)."""

    endpoint: str
    token: str = field(repr=False)

    @classmethod
    def from_options(
        cls, allow: bool, webserver: str | None, token: str | None
    ) -> ApiAccess | None:
        """None unless ``--allow-dr-api-access``; then both other flags are required."""
        if not allow:
            return None
        missing = [
            flag
            for flag, value in (("--webserver", webserver), ("--api-token", token))
            if not value
        ]
        if missing:
            raise ConfigError(
                "--allow-dr-api-access needs " + " and ".join(missing) + " (or their environment "
                "variables EXTERNAL_WEB_SERVER_URL and API_TOKEN)"
            )
        assert webserver is not None and token is not None
        return cls(api_url(webserver), token)

    def apply(self, environ: MutableMapping[str, str] | None = None) -> None:
        """Export the client's variables and configure ``datarobot.Client`` if it is installed."""
        env = os.environ if environ is None else environ
        env["DATAROBOT_ENDPOINT"] = self.endpoint
        env["DATAROBOT_API_TOKEN"] = self.token
        if importlib.util.find_spec("datarobot") is None:
            logger.info("DataRobot API access: datarobot package not installed; variables set")
            return
        import datarobot

        logger.info("Initializing DataRobot Python client for %s", self.endpoint)
        datarobot.Client(token=self.token, endpoint=self.endpoint)


def api_url(webserver: str) -> str:
    """DRUM's rule: the API lives under ``/api/v2`` of the web server."""
    return webserver if webserver.endswith(API_SUFFIX) else f"{webserver}/{API_SUFFIX}"
