"""Turning a named template and its context into a subject, a text body and an HTML body.

Each message `name` has three files in `templates/`: `{name}.subject.txt`, `{name}.txt`
and `{name}.html`. Only the HTML is autoescaped; the text part is sent as plain text, so
escaping it would show the recipient `&amp;`. The HTML usually extends `_layout.html`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


@lru_cache(maxsize=1)
def _environment() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES),
        # A template name ends in .subject.txt, .txt or .html: escape only the last.
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        # Templates ship with the code: compiled once, never checked on disk again.
        auto_reload=False,
    )
    environment.filters["text_to_html"] = text_to_html
    return environment


def _one_line(subject: str) -> str:
    return " ".join(subject.split())


def _tidy_text(text: str) -> str:
    # Templates leave blank runs where optional blocks are skipped; keep at most one.
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip() + "\n"


def render_email(name: str, context: Mapping[str, Any]) -> RenderedEmail:
    """Render the subject (one line), the plain text and the HTML of the message `name`."""
    environment = _environment()
    values = dict(context)
    subject = _one_line(environment.get_template(f"{name}.subject.txt").render(values))
    text = _tidy_text(environment.get_template(f"{name}.txt").render(values))
    html = environment.get_template(f"{name}.html").render({**values, "subject": subject})
    return RenderedEmail(subject=subject, text=text, html=html)


def text_to_html(text: str) -> Markup:
    """Plain text a person wrote, as safe HTML: escaped, blank lines make paragraphs,
    single line breaks become <br>."""
    normalised = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    if not normalised:
        return Markup("")
    paragraphs = re.split(r"\n\s*\n", normalised)
    return Markup("\n").join(
        Markup("<p>{}</p>").format(Markup("<br>\n").join(escape(line) for line in p.split("\n")))
        for p in paragraphs
    )
