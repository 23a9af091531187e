"""The status page in a real browser (headless Chromium) against the running stack.

Checks what a person sees: figures after known requests, a denied request in the list, a
token's quota used, three charts, no script or CSP error, and that new traffic shows up without
reloading the page. Leaves a screenshot in the test's tmp dir.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from sidecar.devtools.launcher import Stack
from tests.e2e.browser import chromium
from tests.e2e.status_support import limit_of, status_json
from tests.e2e.support import CHAT_PATH, DEMO_TOKEN, RESTRICTED_TOKEN, chat_body


def post_chat(base: str, token: str, body: dict[str, object]) -> tuple[int, str, dict[str, object]]:
    request = urllib.request.Request(base + CHAT_PATH, data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers["x-request-id"], json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers["x-request-id"], json.loads(error.read())


def test_the_page_in_chromium_shows_requests_denials_and_quota(status_gateway: Stack, tmp_path: Path) -> None:
    errors: list[str] = []
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(status_gateway.status_url + "/?refresh=1")
        page.wait_for_selector("#models-table tbody tr")
        page.evaluate("window.loadedOnce = true")
        before = int(page.inner_text("#total-denied"))

        # Known traffic, sent after the page loaded: it must appear without a reload.
        status, _, answer = post_chat(status_gateway.base_url, DEMO_TOKEN, chat_body("Hello there", max_tokens=16))
        assert status == 200
        status, denied_id, _ = post_chat(status_gateway.base_url, RESTRICTED_TOKEN, chat_body("Hi"))
        assert status == 403
        row = page.wait_for_selector(f'#denied-table tr[data-request-id="{denied_id}"]', timeout=15_000)
        assert row is not None
        cells = row.inner_text().split("\t")
        assert cells[1:] == [denied_id, "restricted", "gpt-4", "403", cells[5]] and cells[5] != "–"
        page.wait_for_function(f"Number(document.querySelector('#total-denied').textContent) >= {before + 1}")

        # The quota used, as the store has it (the JSON) and as the page prints it.
        used = limit_of(status_json(status_gateway.status_url), "demo", "daily.tokens_per_day")["used"]
        assert used >= answer["usage"]["total_tokens"]  # type: ignore[index]
        used_cell = '#tokens-table tr[data-token="demo"] li[data-limit="daily.tokens_per_day"] .used'
        page.wait_for_function(
            f"Number(document.querySelector({json.dumps(used_cell)}).textContent.replace(/,/g, '')) >= {int(used)}")
        assert page.inner_text('#tokens-table tr[data-token="demo"] td:nth-child(2)') == "demo-team"

        assert page.evaluate("window.loadedOnce") is True  # same document: refreshed, not reloaded
        assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
        assert int(page.get_attribute("body", "data-renders") or 0) >= 2
        assert page.locator("#charts svg").count() == 3
        assert page.locator("#charts svg rect.bar").count() >= 1
        assert "ms" in page.inner_text("#latency") or " s" in page.inner_text("#latency")
        assert page.inner_text('#models-table tbody tr:first-child td:nth-child(6)') == "closed"
        assert int(page.inner_text('#guardrails-table tbody tr:first-child td:nth-child(6)')) >= 0

        shot = tmp_path / "status-page.png"
        page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert errors == [], errors
