"""The dev UI at ``/``: plain HTML and JavaScript from ``pipeline/api/ui/``, no build step.

It is open (static files hold no data); everything it shows it fetches from ``/v1`` with the signing key,
which it asks for once and keeps in the browser's session storage.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

UI_DIR = Path(__file__).resolve().parent / "ui"

router = APIRouter()


@router.get("/", include_in_schema=False)
async def ui_index() -> FileResponse:
    return FileResponse(UI_DIR / "index.html")


def install_ui(app: FastAPI) -> None:
    """The index route and the static files; a mount is added to the app itself, since routers carry no mounts."""
    app.include_router(router)
    app.mount("/ui", StaticFiles(directory=UI_DIR), name="ui")
