"""``inngest.flask.serve(app, client, functions)`` for code ported from inngest-py (see :mod:`pipeline.serving`)."""

from __future__ import annotations

from typing import Any

from .sdk.client import Inngest
from .sdk.function import Function
from .serving import SERVE_PATH, answers


def serve(app: Any, client: Inngest, functions: list[Function], *, serve_path: str = SERVE_PATH,
          **_: Any) -> None:
    """Add the description route to a Flask app; its other routes keep working."""
    from flask import jsonify, request

    replies = answers(client, functions)

    def route() -> Any:
        status, body = replies[request.method]
        return jsonify(body), status

    app.add_url_rule(serve_path, endpoint="inngest", view_func=route, methods=list(replies))
