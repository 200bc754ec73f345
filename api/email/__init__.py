"""E-mail: rendering templates, building RFC 5322 messages, and sending them (console, SMTP)."""

from __future__ import annotations

from api.email.backends import (
    ConsoleBackend,
    EmailBackend,
    EmailDeliveryError,
    SmtpBackend,
    email_backend,
)
from api.email.message import (
    HeaderInjectionError,
    build_message,
    check_header_value,
    new_message_id,
)
from api.email.render import RenderedEmail, render_email, text_to_html

__all__ = [
    "ConsoleBackend",
    "EmailBackend",
    "EmailDeliveryError",
    "HeaderInjectionError",
    "RenderedEmail",
    "SmtpBackend",
    "build_message",
    "check_header_value",
    "email_backend",
    "new_message_id",
    "render_email",
    "text_to_html",
]
