"""``inngest.django.serve(client, functions)`` for code ported from inngest-py (see :mod:`pipeline.serving`):
returns a URL pattern to put in ``urlpatterns``, as there."""

from __future__ import annotations

from typing import Any

from .sdk.client import Inngest
from .sdk.function import Function
from .serving import SERVE_PATH, answers


def serve(client: Inngest, functions: list[Function], *, serve_path: str = SERVE_PATH, **_: Any) -> Any:
    """A ``django.urls.path`` for the description route."""
    from django.http import JsonResponse
    from django.urls import path
    from django.views.decorators.csrf import csrf_exempt

    replies = answers(client, functions)

    @csrf_exempt
    def view(request: Any) -> Any:
        if request.method not in replies:
            return JsonResponse({"error": f"{request.method} not allowed"}, status=405)
        status, body = replies[request.method]
        return JsonResponse(body, status=status)

    return path(serve_path.lstrip("/"), view)
