"""A real recipient: headless Chromium opens the link from the e-mail that arrived at the
SMTP server, fills in the form and sends it."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from api.config import Settings
from tests.factories import UserHandle
from tests.feedback.conftest import create_request, get_request, run_worker, text_of
from tests.plugins.browser import LiveServer
from tests.plugins.smtp import SmtpTestServer


@pytest.mark.browser
def test_the_recipient_answers_in_a_real_browser(
    client: TestClient,
    engine: Engine,
    settings: Settings,
    smtp_server: SmtpTestServer,
    live_server: LiveServer,
    browser: Any,
    user: UserHandle,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    request = create_request(user)
    # The worker writes links to wherever this deployment is served.
    run_worker(engine, settings.model_copy(update={"base_url": live_server.url}))
    message = smtp_server.wait_for(1)[0]
    link = next(
        line.strip()
        for line in text_of(message).splitlines()
        if "/f/" in line and "opt-out" not in line
    )
    assert link.startswith(f"{live_server.url}/f/")

    browser.set_window_size(390, 844)  # a phone
    browser.get(link)
    assert "Feedback for Ada Lovelace" in browser.title
    heading = browser.find_element(By.TAG_NAME, "h1").text
    assert heading == "Feedback for Ada Lovelace"
    assert "Backend Engineer" in browser.page_source
    # The page fits the phone's width: nothing scrolls sideways.
    assert browser.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth"
    )
    browser.find_element(By.ID, "text").send_keys(
        "A strong candidate; another had more hands-on Kubernetes experience."
    )
    browser.find_element(By.ID, "strengths").send_keys("Clear explanations\nSQL")
    browser.find_element(By.ID, "improvements").send_keys("Kubernetes")
    browser.find_element(By.CSS_SELECTOR, 'button[value="responded"]').click()
    WebDriverWait(browser, 15).until(expected_conditions.title_contains("Thank you"))
    assert browser.current_url.endswith("/thanks")

    answered = get_request(user, request["id"])
    assert answered["status"] == "responded"
    assert answered["response"] == {
        "outcome": "responded",
        "text": "A strong candidate; another had more hands-on Kubernetes experience.",
        "strengths": ["Clear explanations", "SQL"],
        "improvements": ["Kubernetes"],
    }

    # The link is spent: the same page now says so.
    browser.get(link)
    assert "Already answered" in browser.find_element(By.TAG_NAME, "h1").text
