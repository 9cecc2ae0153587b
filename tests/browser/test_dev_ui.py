"""The dev UI in a real browser (Debian's chromium driven by Playwright), on a real broker: the seed scenario
clicked through end to end. Send the import request from the events page, watch the run sleep, open it,
click cancel, and see it Cancelled with its cancellation and the cleanup run it caused.

Screenshots of every page go to ``test-output/screenshots/`` (kept by CI as test output); with
``PIPELINE_UPDATE_DOCS_SCREENSHOTS=1`` the run timeline and the cancelled run are also written to
``docs/screenshots/``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from examples.newsletter import app
from pipeline.api import bound_port, start_in_thread, stop
from pipeline.sdk.app import Registry
from pipeline.testing.stack import Stack

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-output" / "screenshots"
SIGNING_KEY = "ui-signing-key-0123456789"
EVENT_KEY = "ui-event-key"


def chromium() -> str:
    for name in (os.environ.get("PIPELINE_CHROMIUM", ""), "chromium", "chromium-browser"):
        path = shutil.which(name) if name else None
        if path:
            return path
    pytest.skip("no chromium on this machine (`make test` installs Debian's chromium when it runs as root)")


@pytest.fixture
def browser() -> Iterator[object]:
    path = chromium()
    playwright = pytest.importorskip("playwright.sync_api",
                                     reason="playwright is not installed (pip install -e '.[test]')")
    with playwright.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=path, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


def shot(page: object, name: str, docs: bool = False) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]
    if docs and os.environ.get("PIPELINE_UPDATE_DOCS_SCREENSHOTS"):
        (ROOT / "docs" / "screenshots").mkdir(exist_ok=True)
        shutil.copy(SHOTS / f"{name}.png", ROOT / "docs" / "screenshots" / f"{name}.png")


def test_the_seed_scenario_clicked_through(kafka_bootstrap: str, browser: object,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("examples.newsletter.BATCH_PAUSE", __import__("datetime").timedelta(seconds=60))
    with Stack(app, kafka_bootstrap, signing_key=SIGNING_KEY, event_key=EVENT_KEY) as stack:
        server, thread = start_in_thread(stack.settings, "127.0.0.1", 0, wait_ready=True, registry=Registry([app]))
        base = f"http://127.0.0.1:{bound_port(server)}"
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})  # type: ignore[attr-defined]
            page.goto(base + "/")
            page.fill("#signing-key", SIGNING_KEY)
            page.fill("#event-key", EVENT_KEY)
            page.click("#keys button")

            page.goto(base + "/#/functions")
            page.wait_for_selector("text=newsletter-app-import-all-contacts")
            assert page.locator("text=contacts/import.cancelled").count() >= 1  # its cancel rule is shown
            shot(page, "functions")

            page.goto(base + "/#/events")
            page.fill("#send input[name=name]", "contacts/import.requested")
            page.fill("#send input[name=data]", '{"importId": "ui-1"}')
            page.click("#send button")
            page.wait_for_selector("#events tr[data-event] >> text=contacts/import.requested", timeout=30_000)
            page.wait_for_selector("#events >> text=newsletter-app-import-all-contacts", timeout=30_000)
            shot(page, "events")

            page.goto(base + "/#/runs?function=newsletter-app-import-all-contacts")
            page.wait_for_selector("#runs .status.Sleeping", timeout=30_000)  # the import sleeps between batches
            shot(page, "runs")
            page.click("#runs tr[data-run] a")
            page.wait_for_selector("text=Timeline")
            page.wait_for_selector(".step >> text=load-contacts")
            shot(page, "run-timeline", docs=True)

            page.click("#cancel")
            page.wait_for_selector("h1 .status.Cancelled", timeout=30_000)
            page.wait_for_selector("#cancellation >> text=rest")
            page.wait_for_selector("#caused >> text=newsletter-app-cleanup-cancelled-import", timeout=30_000)
            page.wait_for_selector("#caused .status.Completed", timeout=30_000)
            shot(page, "run-cancelled", docs=True)
            assert "inngest/function.cancelled" in page.inner_text("#cancellation")

            page.click("#replay")  # a new run of the same event, linked to this one
            page.wait_for_selector("text=replay of", timeout=30_000)
            page.wait_for_selector("h1 .status.Sleeping", timeout=30_000)
            shot(page, "run-replayed")

            page.goto(base + "/#/cancellations")  # cancel the replay in bulk, then stop the rule
            page.select_option("#bulk select[name=function]", "newsletter-app-import-all-contacts")
            page.click("#bulk button")
            page.wait_for_selector("#bulk-rows td.count >> text=1", timeout=30_000)  # it cancelled the replay
            shot(page, "cancellations")
            page.click("[data-stop]")
            page.wait_for_selector("text=stopped", timeout=30_000)
        finally:
            stop(server, thread)
    runs = [r for r in stack.latest_runs().values()]
    imports = sorted((r for r in runs if r["function_id"] == "newsletter-app-import-all-contacts"),
                     key=lambda r: r["queued_at"])
    assert [(r["status"], r["cancel_reason"]) for r in imports] == [("Cancelled", "rest"), ("Cancelled", "bulk")]
    assert imports[1]["replay_of"] == imports[0]["run_id"]
    assert any(r["function_id"] == "newsletter-app-cleanup-cancelled-import" and r["status"] == "Completed"
               for r in runs)


def test_the_apps_page_shows_a_sync_the_app_started_and_its_refusal(kafka_bootstrap: str, browser: object) -> None:
    """A sync posted by the app itself (not from the page's button) that is refused: the Apps page shows it as the
    app's last sync, with the option it names."""
    import httpx

    from tests.http.test_register import body

    with Stack([], kafka_bootstrap, services=()) as stack:
        server, thread = start_in_thread(stack.settings, "127.0.0.1", 0, wait_ready=True, registry=Registry([]))
        base = f"http://127.0.0.1:{bound_port(server)}"
        try:
            refused = httpx.post(f"{base}/fn/register", json=body("a", concurrency=[{"limit": 1, "scope": "account"}]),
                                 timeout=30)
            assert refused.status_code == 400
            page = browser.new_page(viewport={"width": 1400, "height": 900})  # type: ignore[attr-defined]
            for _ in range(100):  # the API's table reads the result off the app-syncs topic
                if httpx.get(f"{base}/v1/apps").json()["data"]:
                    break
                __import__("time").sleep(0.1)
            page.goto(base + "/#/apps")
            page.wait_for_selector("td.last-sync >> text=concurrency scope 'account'", timeout=30_000)
            assert "refused" in page.inner_text("td.last-sync") and "reg-app" in page.inner_text("table")
            shot(page, "apps-refused-sync")
        finally:
            stop(server, thread)


def test_pending_debounces_shown_and_cancelled_from_the_ui(kafka_bootstrap: str, browser: object) -> None:
    from examples.flow_debounce import app as debounce_app

    fn = "flow-debounce-sync-company"
    with Stack(debounce_app, kafka_bootstrap, signing_key=SIGNING_KEY) as stack:
        server, thread = start_in_thread(stack.settings, "127.0.0.1", 0, wait_ready=True,
                                         registry=Registry([debounce_app]))
        base = f"http://127.0.0.1:{bound_port(server)}"
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})  # type: ignore[attr-defined]
            page.goto(base + "/")
            page.fill("#signing-key", SIGNING_KEY)
            page.click("#keys button")
            page.goto(base + "/#/functions")
            page.wait_for_selector(f"text={fn}")
            assert "period_ms=10000" in page.inner_text("main")  # its flow settings
            stack.send("crm/company.updated", {"account": "acme", "n": 1}, id="acme-1")
            stack.send("crm/company.updated", {"account": "acme", "n": 2}, id="acme-2")
            page.goto(base + f"/#/pending?function={fn}")
            page.wait_for_selector("#pending-rows tr[data-pending]", timeout=30_000)
            assert '"acme"' in page.inner_text("#pending-rows") and "debounce" in page.inner_text("#pending-rows")
            shot(page, "pending")
            page.click("[data-cancel]")
            page.wait_for_selector("#pending-rows tr[data-pending]", state="detached", timeout=30_000)
        finally:
            stop(server, thread)
    assert not [r for r in stack.latest_runs().values() if r["function_id"] == fn]
