"""The browser fixtures work: real headless Chromium loads a page of the live server."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.plugins.browser import LiveServer


def test_live_server_answers_http(live_server: LiveServer) -> None:
    response = httpx.get(f"{live_server.url}/healthz", timeout=5)

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.browser
def test_chromium_opens_a_page_of_the_live_server(live_server: LiveServer, browser) -> None:
    browser.get(f"{live_server.url}/healthz")

    body = browser.find_element("tag name", "body").text
    assert json.loads(body) == {"status": "ok"}
    assert browser.execute_script("return navigator.webdriver") is True
