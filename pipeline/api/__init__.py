"""The HTTP API: event ingest (``POST /e/{key}``), runs, and bulk cancellations, with Inngest's shapes.

``create_app`` builds the FastAPI app; ``serve`` / ``start_in_thread`` run it with uvicorn.
"""

from .app import create_app
from .server import bound_port, serve, start_in_thread, stop

__all__ = ["bound_port", "create_app", "serve", "start_in_thread", "stop"]
