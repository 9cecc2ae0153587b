"""Services of a Stack as separate processes, so that tests can SIGKILL them (one helper for every kill test)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pipeline.testing.stack import Stack

ROOT = Path(__file__).resolve().parents[2]


def service_process(stack: Stack, name: str, instance: str, app: str = "tests.e2e.apps:app",
                    **env: str) -> subprocess.Popen:
    """``pipeline run NAME`` on the stack's topics, as instance ``instance`` (its transactional id)."""
    environ = stack.env(PYTHONPATH=str(ROOT), PIPELINE_INSTANCE_ID=instance, **env)
    args = [sys.executable, "-m", "pipeline.cli", "run", name]
    if name != "canceller":
        args += ["--app", app]
    return subprocess.Popen(args, cwd=ROOT, env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
