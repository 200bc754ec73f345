"""Fixtures for real headless Chromium driving the app served by uvicorn.

    @pytest.mark.browser
    def test_form(live_server, browser):
        browser.get(f"{live_server.url}/healthz")

`live_server` serves the test app (the `app` fixture: the test settings and database)
on a free loopback port for the length of one test. `browser` is a selenium Chrome
driver on Debian's chromium/chromedriver, with a fresh profile; it never downloads a
driver. Without Chromium the test is skipped, or fails in CI.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from api.cli import SERVER_OPTIONS
from tests.plugins.services import missing_service

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
CHROMEDRIVER_CANDIDATES = ("/usr/bin/chromedriver", "chromedriver")

CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--window-size=1280,900",
)


@dataclass
class LiveServer:
    url: str
    app: FastAPI


class _ThreadedUvicorn(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the main thread keeps its own
        return None


def _find(env_name: str, candidates: tuple[str, ...]) -> str | None:
    chosen = os.environ.get(env_name)
    for candidate in (chosen, *candidates) if chosen else candidates:
        path = shutil.which(candidate) if candidate else None
        if path:
            return path
    return None


@pytest.fixture
def live_server(app: FastAPI) -> Iterator[LiveServer]:
    """The test app under uvicorn on 127.0.0.1:<free port>, in a background thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        access_log=False,
        loop=SERVER_OPTIONS["loop"],
    )
    server = _ThreadedUvicorn(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="live-server", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError("the live server did not start")
        time.sleep(0.02)
    try:
        yield LiveServer(url=f"http://127.0.0.1:{port}", app=app)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@pytest.fixture
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Chromium through selenium, with a fresh profile."""
    chromium = _find("REBOUND_TEST_CHROMIUM", CHROMIUM_CANDIDATES)
    chromedriver = _find("REBOUND_TEST_CHROMEDRIVER", CHROMEDRIVER_CANDIDATES)
    if chromium is None or chromedriver is None:
        missing_service(
            "Chromium and chromedriver are needed for browser tests "
            "(Debian: apt-get install chromium chromium-driver)"
        )
        return
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path_factory.getbasetemp())
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    # An explicit driver path: selenium's driver manager never runs, nothing is downloaded.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
