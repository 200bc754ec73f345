"""Rendering: the HTML part is escaped, the text part is not, the subject is one line."""

from __future__ import annotations

import pytest
from jinja2 import UndefinedError

from api.email.render import RenderedEmail, render_email, text_to_html


def test_html_is_escaped_and_text_is_left_as_written() -> None:
    rendered = render_email(
        "message",
        {"subject": "About the role at Smith & Sons", "body": "Thanks & <b>bye</b>\nAlex"},
    )

    assert isinstance(rendered, RenderedEmail)
    assert rendered.text.startswith("Thanks & <b>bye</b>\nAlex")
    assert "Thanks &amp; &lt;b&gt;bye&lt;/b&gt;<br>" in rendered.html
    assert "<b>bye</b>" not in rendered.html
    assert "<title>About the role at Smith &amp; Sons</title>" in rendered.html


def test_subject_is_rendered_to_one_line() -> None:
    rendered = render_email(
        "message", {"subject": "  Line one\r\nBcc: x@example.com ", "body": "."}
    )

    assert rendered.subject == "Line one Bcc: x@example.com"
    assert "\n" not in rendered.subject and "\r" not in rendered.subject


def test_layout_has_no_external_resources_and_shows_the_opt_out_link() -> None:
    url = "https://rebound.example/f/tok/opt-out?a=1&b=2"
    rendered = render_email("message", {"subject": "Hi", "body": "Hello", "unsubscribe_url": url})

    assert '<html lang="en">' in rendered.html
    assert 'href="https://rebound.example/f/tok/opt-out?a=1&amp;b=2"' in rendered.html
    assert url in rendered.text
    for external in ("<img", "<script", "<link", "src=", "@import"):
        assert external not in rendered.html


def test_footer_is_left_out_when_there_is_no_opt_out_link() -> None:
    rendered = render_email("message", {"subject": "Hi", "body": "Hello"})

    assert rendered.text == "Hello\n"
    assert "stop them here" not in rendered.html


def test_a_missing_variable_is_an_error_not_an_empty_string() -> None:
    with pytest.raises(UndefinedError):
        render_email("message", {"subject": "Hi"})


@pytest.mark.parametrize(
    ("text", "html"),
    [
        ("", ""),
        ("one line", "<p>one line</p>"),
        ("a\nb", "<p>a<br>\nb</p>"),
        ("a\r\n\r\nb", "<p>a</p>\n<p>b</p>"),
        ('x < y & "z"', "<p>x &lt; y &amp; &#34;z&#34;</p>"),
        ("\n\npara one\n\n\n\npara two\n", "<p>para one</p>\n<p>para two</p>"),
    ],
)
def test_text_to_html(text: str, html: str) -> None:
    assert text_to_html(text) == html
