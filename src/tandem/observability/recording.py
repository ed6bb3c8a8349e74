"""Request recording for replay testing (placeholder: recording is off until implemented)."""

from __future__ import annotations

from tandem.core.http import Request, Response
from tandem.core.routes import Route
from tandem.settings import ServeSettings

#: Routes whose requests may be recorded.
RECORDED_ROUTES = frozenset({"predict", "transform", "predict_unstructured", "chat"})


class Recorder:
    """Samples prediction requests and writes them off the request path."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings

    @classmethod
    def from_env(cls, settings: ServeSettings) -> Recorder | None:
        """A recorder when ``DRUM_RECORD_REQUESTS`` is true, else None."""
        return None

    def record(self, route: Route, request: Request, response: Response, seconds: float) -> None:
        """Offer one answered request for recording; never blocks, never raises."""
