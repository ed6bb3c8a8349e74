"""FastAPI extension (FastAPI stack): token authentication in an HTTP middleware.

The rules live in ``token_auth.py``, shared with ``custom_flask.py``.
"""

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from starlette.responses import Response
from token_auth import CONTENT_TYPE, HEADER, TokenAuth


def init_app(app: FastAPI) -> None:
    """Require ``X-Auth`` on every route except liveness and readiness."""
    auth = TokenAuth.from_environment()

    @app.middleware("http")
    async def require_token(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        rejected = auth.check(request.url.path, request.headers.get(HEADER))
        if rejected is not None:
            status, body = rejected
            return Response(body, status_code=status, media_type=CONTENT_TYPE)
        return await call_next(request)
