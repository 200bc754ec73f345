"""Building the RFC 5322 message Rebound sends: fixed sender, the user's Reply-To,
threading headers, RFC 8058 one-click unsubscribe, text and HTML alternatives.

Every header value is checked before it is set: a CR or LF (or any other control
character) in a subject, name or address would let a caller add headers of their own,
so it is refused with `HeaderInjectionError` instead of being folded or stripped.

The worker builds and flattens thousands of these a minute, and the `email` package's
header objects are slow (each one a full RFC 5322 parse, again on every read and fold).
So a value that is plain ASCII and fits one line is stored as it will be written (as a
parsed message stores its source), and a header is parsed once when read; anything else
(non-ASCII, long) goes through the package's own encoding and folding.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from email import quoprimime
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime, parseaddr
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from api.config import Settings

# Headers whose value is a URL or a list of ids: folding them the usual way would turn a
# long URL into an RFC 2047 encoded-word, which mail clients do not decode there.
_VERBATIM_HEADERS = frozenset({"list-unsubscribe", "list-unsubscribe-post"})

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")
_MESSAGE_ID = re.compile(r"<[^<>\s@]+@[^<>\s@]+>")


class _ReboundPolicy(EmailPolicy):
    """The default policy, except that URL-valued list headers are never folded."""

    def fold(self, name: str, value: Any) -> str:
        if name.lower() in _VERBATIM_HEADERS:
            return f"{name}: {value}{self.linesep}"
        return super().fold(name, value)  # type: ignore[no-any-return]

    def fold_binary(self, name: str, value: Any) -> bytes:
        if name.lower() in _VERBATIM_HEADERS:
            return f"{name}: {value}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)

    def header_fetch_parse(self, name: str, value: Any) -> Any:
        # A stored source value is parsed when read; the generator alone reads a part's
        # Content-Type several times, so the (immutable) parsed header is cached.
        if hasattr(value, "name"):
            return value
        return _parsed_header(self.header_factory, name, "".join(_LINE_BREAK.split(value)))


_LINE_BREAK = re.compile(r"\n|\r")


@lru_cache(maxsize=512)
def _parsed_header(factory: HeaderRegistry, name: str, value: str) -> BaseHeader:
    return factory(name, value)


# 7bit: bodies are quoted-printable or base64, so any relay can carry them.
POLICY = _ReboundPolicy(cte_type="7bit")


class HeaderInjectionError(ValueError):
    """A header value holds a line break or another control character, or an address
    field holds something other than exactly one address."""


def check_header_value(field: str, value: str) -> str:
    """`value` unchanged, or HeaderInjectionError naming `field` if it holds a line break
    or another control character (use it to validate input before storing it)."""
    if _CONTROL.search(value):
        raise HeaderInjectionError(f"{field} must not contain line breaks or control characters")
    return value


def _address(field: str, addr_spec: str, display_name: str | None = None) -> Address:
    check_header_value(field, addr_spec)
    if display_name is not None:
        check_header_value(field, display_name)
    try:
        address = Address(display_name=display_name or "", addr_spec=addr_spec.strip())
    except (ValueError, IndexError) as exc:
        raise HeaderInjectionError(f"{field} must be exactly one e-mail address") from exc
    if not address.username or not address.domain:
        raise HeaderInjectionError(f"{field} must be exactly one e-mail address")
    return address


def _message_id(field: str, value: str) -> str:
    check_header_value(field, value)
    if not _MESSAGE_ID.fullmatch(value):
        raise HeaderInjectionError(f"{field} must look like <local@domain>")
    return value


def _sender(settings: Settings) -> tuple[str, str]:
    _value, name, addr = _from_header(settings.email_from)
    return name, addr


def _set_header(message: EmailMessage, name: str, value: str) -> None:
    """Store a checked header value: as written when it is ASCII and fits one line (and
    holds nothing a parser would decode, like an encoded-word), else the package's way."""
    if value.isascii() and len(name) + 2 + len(value) <= 78 and "=?" not in value:
        message.set_raw(name, value)
    else:
        message[name] = value


def _text_part(message: EmailMessage, text: str, subtype: str) -> None:
    """The text as the message's (or part's) content, UTF-8: 7bit when it is ASCII with
    short lines (and does not hold the boundary), else quoted-printable (as `set_content`
    chooses for such text)."""
    lines = text.encode("utf-8").splitlines()
    raw = b"\n".join(lines) + b"\n"
    if raw.isascii() and all(len(line) <= 78 for line in lines) and _BOUNDARY not in raw:
        encoding, body = "7bit", raw.decode("ascii")
    else:
        encoding = "quoted-printable"
        body = quoprimime.body_encode(raw.decode("latin-1"), 78)
    message.set_raw("Content-Type", f'text/{subtype}; charset="utf-8"')
    message.set_raw("Content-Transfer-Encoding", encoding)
    message.set_payload(body)


# One boundary for every message: it cannot occur in a part, since quoted-printable
# writes "=" as "=3D" and a part holding it is never left unencoded (see _text_part).
# Being the same, the header that names it is parsed once, not once per message.
_BOUNDARY = b"=_rebound_alternative"


@lru_cache(maxsize=8)
def _from_header(email_from: str) -> tuple[str, str, str]:
    """REBOUND_EMAIL_FROM as a From value, and its name and address."""
    name, addr = parseaddr(email_from)
    if "@" not in addr:
        raise ValueError("REBOUND_EMAIL_FROM must hold an e-mail address")
    return str(Address(display_name=name, addr_spec=addr)), name, addr


def new_message_id(settings: Settings) -> str:
    """A globally unique Message-ID in the sending domain: `<uuid@domain>`."""
    domain = _sender(settings)[1].rpartition("@")[2]
    return f"<{uuid.uuid4()}@{domain}>"


def build_message(
    *,
    settings: Settings,
    to: str,
    subject: str,
    text: str,
    html: str | None = None,
    to_name: str | None = None,
    reply_to: str | None = None,
    reply_to_name: str | None = None,
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    list_unsubscribe_url: str | None = None,
    one_click_unsubscribe: bool = False,
) -> EmailMessage:
    """One message from Rebound's fixed sender to one recipient, ready for a backend.

    `reply_to` is the user's own address, so an answer goes to them and not to Rebound.
    Raises `HeaderInjectionError` if any header value could smuggle in a header."""
    from_value = _from_header(settings.email_from)[0]
    message = EmailMessage(policy=POLICY)
    _set_header(message, "From", from_value)
    _set_header(message, "To", str(_address("to", to, to_name)))
    if reply_to is not None:
        _set_header(message, "Reply-To", str(_address("reply_to", reply_to, reply_to_name)))
    _set_header(message, "Subject", check_header_value("subject", subject))
    message.set_raw("Date", format_datetime(datetime.now(UTC)))
    _set_header(
        message, "Message-ID", _message_id("message_id", message_id or new_message_id(settings))
    )
    if in_reply_to is not None:
        _set_header(message, "In-Reply-To", _message_id("in_reply_to", in_reply_to))
    if references:
        _set_header(
            message, "References", " ".join(_message_id("references", ref) for ref in references)
        )
    if list_unsubscribe_url is not None:
        check_header_value("list_unsubscribe_url", list_unsubscribe_url)
        parts = urlsplit(list_unsubscribe_url)
        if (
            parts.scheme not in ("http", "https")
            or not parts.netloc
            or re.search(r"[\s<>\"]", list_unsubscribe_url)
        ):
            raise HeaderInjectionError("list_unsubscribe_url must be a plain http(s) URL")
        # Written as is, however long (see _ReboundPolicy).
        message.set_raw("List-Unsubscribe", f"<{list_unsubscribe_url}>")
        if one_click_unsubscribe:
            # RFC 8058: the mailbox provider POSTs this body to the URL above.
            message.set_raw("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
    elif one_click_unsubscribe:
        raise ValueError("one_click_unsubscribe needs list_unsubscribe_url")
    message.set_raw("MIME-Version", "1.0")
    if html is None:
        _text_part(message, text, "plain")
        return message
    for content, subtype in ((text, "plain"), (html, "html")):
        part = EmailMessage(policy=POLICY)
        _text_part(part, content, subtype)
        message.attach(part)
    message.set_raw("Content-Type", f'multipart/alternative; boundary="{_BOUNDARY.decode()}"')
    return message
