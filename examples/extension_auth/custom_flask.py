"""Flask extension (Flask and Gunicorn stacks): token authentication in a ``before_request`` hook.

The rules live in ``token_auth.py``, shared with ``custom_fastapi.py``.
"""

from flask import Flask, Response, request
from token_auth import CONTENT_TYPE, HEADER, TokenAuth


def init_app(app: Flask) -> None:
    """Require ``X-Auth`` on every route except liveness and readiness."""
    auth = TokenAuth.from_environment()

    @app.before_request
    def require_token() -> Response | None:
        rejected = auth.check(request.path, request.headers.get(HEADER))
        if rejected is None:
            return None
        status, body = rejected
        return Response(body, status=status, content_type=CONTENT_TYPE)
