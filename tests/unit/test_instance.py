"""Default instance ids: unique among live processes of a service on a host, and the same after a restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pipeline.config import Settings
from pipeline.instance import claim_slot, resolve_instance


def test_two_claims_for_one_service_get_distinct_ids(tmp_path: Path) -> None:
    first = claim_slot(["matcher"], home=tmp_path, host="h")
    second = claim_slot(["matcher"], home=tmp_path, host="h")
    other_service = claim_slot(["canceller"], home=tmp_path, host="h")
    assert (first, second, other_service) == ("h", "h-1", "h")


def test_a_process_running_several_services_takes_a_slot_free_for_all(tmp_path: Path) -> None:
    assert claim_slot(["matcher"], home=tmp_path, host="h") == "h"
    # a dev process runs the matcher too: it must not share the matcher's id (its transactional.id)
    assert claim_slot(["canceller", "run-owner", "matcher"], home=tmp_path, host="h") == "h-1"


def test_a_killed_process_leaves_its_slot_to_its_restart(tmp_path: Path) -> None:
    code = ("import sys, time; from pathlib import Path; from pipeline.instance import claim_slot; "
            "print(claim_slot(['run-owner'], home=Path(sys.argv[1]), host='h'), flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "h"
    assert claim_slot(["run-owner"], home=tmp_path, host="h") == "h-1"  # taken while it lives
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.1)
    assert claim_slot(["run-owner"], home=tmp_path, host="h") == "h"  # freed by the kernel at its death


def test_a_configured_instance_id_is_kept(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("PIPELINE_INSTANCE_ID", raising=False)
    assert resolve_instance(Settings(instance_id="mine"), ["matcher"]).instance_id == "mine"
