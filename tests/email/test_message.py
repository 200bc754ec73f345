"""Message headers: fixed sender, Reply-To, threading, RFC 8058 opt-out, no injection."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest

from api.config import Settings
from api.email.message import HeaderInjectionError, build_message, new_message_id

SETTINGS = Settings(email_from="Rebound <no-reply@rebound.example>")


def _reparsed(message: EmailMessage) -> EmailMessage:
    """The message as a recipient's client sees it: flattened and parsed again."""
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _build(**overrides: object) -> EmailMessage:
    fields: dict[str, object] = {
        "settings": SETTINGS,
        "to": "hr@acme.example",
        "subject": "Feedback on my interview",
        "text": "Hello,\nthanks.",
    }
    fields.update(overrides)
    return build_message(**fields)  # type: ignore[arg-type]


def test_sender_is_fixed_and_replies_go_to_the_user() -> None:
    message = _reparsed(
        _build(to_name="Jo Hiring", reply_to="alex@candidate.example", reply_to_name="Alex Doe")
    )

    assert message["From"] == "Rebound <no-reply@rebound.example>"
    assert message["To"] == "Jo Hiring <hr@acme.example>"
    assert message["Reply-To"] == "Alex Doe <alex@candidate.example>"
    assert message["Subject"] == "Feedback on my interview"
    assert message["Date"].datetime is not None


def test_text_and_html_are_alternatives() -> None:
    message = _reparsed(_build(text="Hé, plain", html="<p>Hé, <b>rich</b></p>"))

    assert message.get_content_type() == "multipart/alternative"
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert plain is not None and plain.get_content().strip() == "Hé, plain"
    assert html is not None and html.get_content().strip() == "<p>Hé, <b>rich</b></p>"
    # 7-bit transfer encodings: any relay can carry it.
    assert message.as_bytes().isascii()


def test_text_that_looks_like_the_boundary_stays_inside_its_part() -> None:
    tricky = "Before\n--=_rebound_alternative\nContent-Type: text/html\n\n<b>not a part</b>"
    message = _reparsed(_build(text=tricky, html="<p>the real html</p>"))

    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert plain is not None and plain.get_content().strip() == tricky
    assert html is not None and html.get_content().strip() == "<p>the real html</p>"
    assert len(list(message.iter_parts())) == 2


def test_long_and_non_ascii_headers_are_folded_and_encoded() -> None:
    subject = "Feedback " + "on my interview for the senior platform engineering role " * 3
    message = _build(subject=subject.strip(), to_name="Zoë Müller, Hiring")
    raw = message.as_bytes()

    assert raw.isascii()
    assert all(len(line) <= 78 for line in raw.split(b"\n")[:12])
    parsed = _reparsed(message)
    assert parsed["Subject"] == subject.strip()
    assert parsed["To"].addresses[0].display_name == "Zoë Müller, Hiring"
    assert parsed["To"].addresses[0].addr_spec == "hr@acme.example"


def test_text_only_message_is_a_single_part() -> None:
    message = _reparsed(_build())

    assert message.get_content_type() == "text/plain"
    assert message.get_content().strip() == "Hello,\nthanks."


def test_message_ids_are_unique_and_in_the_sending_domain() -> None:
    ids = {new_message_id(SETTINGS) for _ in range(200)}

    assert len(ids) == 200
    assert all(i.startswith("<") and i.endswith("@rebound.example>") for i in ids)
    first, second = _build(), _build()
    assert first["Message-ID"] != second["Message-ID"]


def test_follow_up_is_threaded() -> None:
    original = new_message_id(SETTINGS)
    first_follow_up = new_message_id(SETTINGS)
    message = _reparsed(
        _build(
            message_id="<given@rebound.example>",
            in_reply_to=first_follow_up,
            references=[original, first_follow_up],
        )
    )

    assert message["Message-ID"] == "<given@rebound.example>"
    assert message["In-Reply-To"] == first_follow_up
    assert message["References"].split() == [original, first_follow_up]


def test_one_click_unsubscribe_headers_survive_a_long_url() -> None:
    url = "https://rebound.example/f/" + "t" * 120 + "/opt-out"
    message = _build(list_unsubscribe_url=url, one_click_unsubscribe=True)
    raw = message.as_bytes()

    # Not folded into an RFC 2047 encoded-word, which mail clients would not decode.
    assert f"List-Unsubscribe: <{url}>".encode() in raw
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in raw
    parsed = _reparsed(message)
    assert parsed["List-Unsubscribe"] == f"<{url}>"


def test_unsubscribe_without_one_click_has_no_post_header() -> None:
    message = _reparsed(_build(list_unsubscribe_url="https://rebound.example/f/t/opt-out"))

    assert message["List-Unsubscribe"] == "<https://rebound.example/f/t/opt-out>"
    assert message["List-Unsubscribe-Post"] is None


def test_non_ascii_names_and_subject_are_encoded() -> None:
    message = _build(to_name="Zoë Müller", subject="Rückmeldung zur Bewerbung — danke")
    raw = message.as_bytes()

    assert raw.isascii()
    parsed = _reparsed(message)
    assert parsed["To"] == "Zoë Müller <hr@acme.example>"
    assert parsed["Subject"] == "Rückmeldung zur Bewerbung — danke"


@pytest.mark.parametrize(
    "overrides",
    [
        {"subject": "Hello\r\nBcc: victim@example.com"},
        {"subject": "Hello\nX-Evil: 1"},
        {"subject": "Hello\rX-Evil: 1"},
        {"subject": "tab\tand\x00nul"},
        {"subject": "line\u2028separator"},
        {"to_name": "Jo\r\nBcc: victim@example.com"},
        {"to": "hr@acme.example\r\nBcc: victim@example.com"},
        {"to": "hr@acme.example, victim@example.com"},
        {"to": "not an address"},
        {"reply_to": "alex@candidate.example\nBcc: victim@example.com"},
        {"reply_to_name": "Alex\nX-Evil: 1", "reply_to": "alex@candidate.example"},
        {"message_id": "<a@b>\r\nX-Evil: 1"},
        {"in_reply_to": "no-angle-brackets@b"},
        {"references": ["<a@b>", "<c@d>\nX-Evil: 1"]},
        {"list_unsubscribe_url": "https://x.example/o\r\nX-Evil: 1"},
        {"list_unsubscribe_url": "https://x.example/o> , <mailto:evil@example.com"},
        {"list_unsubscribe_url": "javascript:alert(1)"},
    ],
)
def test_header_injection_is_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(HeaderInjectionError):
        _build(**overrides)


def test_header_injection_error_is_a_value_error() -> None:
    assert issubclass(HeaderInjectionError, ValueError)
