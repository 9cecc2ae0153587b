"""``inngest.fast_api.serve(app, client, functions)`` for code ported from inngest-py (see :mod:`pipeline.serving`)."""

from __future__ import annotations

from typing import Any

from .sdk.client import Inngest
from .sdk.function import Function
from .serving import SERVE_PATH, answers, describe

__all__ = ["describe", "serve"]


def serve(app: Any, client: Inngest, functions: list[Function], *, serve_path: str = SERVE_PATH,
          **_: Any) -> None:
    """Mount the description route on a FastAPI app; its other routes keep working."""
    from fastapi.responses import JSONResponse

    for method, (status, body) in answers(client, functions).items():
        async def route(status: int = status, body: dict[str, Any] = body) -> JSONResponse:
            return JSONResponse(body, status_code=status)

        app.add_api_route(serve_path, route, methods=[method], include_in_schema=False)
