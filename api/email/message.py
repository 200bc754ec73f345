"""Building the RFC 5322 message Rebound sends: fixed sender, the user's Reply-To,
threading headers, RFC 8058 one-click unsubscribe, text and HTML alternatives.

Every header value is checked before it is set: a CR or LF (or any other control
character) in a subject, name or address would let a caller add headers of their own,
so it is refused with `HeaderInjectionError` instead of being folded or stripped.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import formatdate, parseaddr
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
    name, addr = parseaddr(settings.email_from)
    if "@" not in addr:
        raise ValueError("REBOUND_EMAIL_FROM must hold an e-mail address")
    return name, addr


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
    from_name, from_addr = _sender(settings)
    message = EmailMessage(policy=POLICY)
    message["From"] = Address(display_name=from_name, addr_spec=from_addr)
    message["To"] = _address("to", to, to_name)
    if reply_to is not None:
        message["Reply-To"] = _address("reply_to", reply_to, reply_to_name)
    message["Subject"] = check_header_value("subject", subject)
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = _message_id("message_id", message_id or new_message_id(settings))
    if in_reply_to is not None:
        message["In-Reply-To"] = _message_id("in_reply_to", in_reply_to)
    if references:
        message["References"] = " ".join(_message_id("references", ref) for ref in references)
    if list_unsubscribe_url is not None:
        check_header_value("list_unsubscribe_url", list_unsubscribe_url)
        parts = urlsplit(list_unsubscribe_url)
        if (
            parts.scheme not in ("http", "https")
            or not parts.netloc
            or re.search(r"[\s<>\"]", list_unsubscribe_url)
        ):
            raise HeaderInjectionError("list_unsubscribe_url must be a plain http(s) URL")
        message["List-Unsubscribe"] = f"<{list_unsubscribe_url}>"
        if one_click_unsubscribe:
            # RFC 8058: the mailbox provider POSTs this body to the URL above.
            message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    elif one_click_unsubscribe:
        raise ValueError("one_click_unsubscribe needs list_unsubscribe_url")
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
        # Chosen here, the generator need not search the body for a free boundary (it
        # compiles a fresh regular expression per message to do so); a random 128-bit
        # value cannot occur in the QP/base64-encoded parts by chance.
        message.set_boundary(f"=_rebound_{uuid.uuid4().hex}")
    return message
