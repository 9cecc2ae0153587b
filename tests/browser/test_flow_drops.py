"""The dev UI shows a function's flow control and the events its rate limit dropped, in a real browser (Debian's
chromium through Playwright) on a real broker."""

from __future__ import annotations

import pytest

from pipeline.testing.stack import Stack
from tests.integration.flow_drop_app import api, app, sync_account

from .test_dev_ui import browser, shot  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration
KEY = "ui-flow-signing-key-0123456789"


def test_the_functions_page_shows_the_rate_limit_and_its_dropped_events(kafka_bootstrap: str,
                                                                       browser: object) -> None:  # noqa: F811
    with Stack(app, kafka_bootstrap, signing_key=KEY) as stack:
        for n in range(3):
            stack.send("flow/sync", {"account": "pied-piper", "n": n})
        with api(stack) as base:
            page = browser.new_page(viewport={"width": 1400, "height": 900})  # type: ignore[attr-defined]
            page.goto(base + "/")
            page.fill("#signing-key", KEY)
            page.click("#keys button")
            page.goto(base + "/#/functions")
            page.wait_for_selector("text=rate limit 1 / 90 s")
            shot(page, "functions-flow")
            page.click("text=dropped events")
            for _ in range(60):  # the owner may still be dropping them: the page reads what the API has so far
                if page.locator("#dropped >> text=rate_limit").count() == 2:
                    break
                page.wait_for_timeout(500)
                page.reload()
            assert page.locator("#dropped >> text=rate_limit").count() == 2
            assert page.locator("#dropped >> text=pied-piper").count() == 2
            assert sync_account.id in page.inner_text("main")
            shot(page, "dropped-events")
