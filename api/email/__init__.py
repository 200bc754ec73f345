"""E-mail: rendering templates, building RFC 5322 messages, and sending them (console, SMTP)."""

from __future__ import annotations

from api.email.backends import (
    ConsoleBackend,
    EmailBackend,
    EmailDeliveryError,
    SmtpBackend,
    close_shared_email_backend,
    email_backend,
    shared_email_backend,
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
    "close_shared_email_backend",
    "email_backend",
    "new_message_id",
    "render_email",
    "shared_email_backend",
    "text_to_html",
]
