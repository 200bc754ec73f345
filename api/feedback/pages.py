"""The recipient's pages at /f/{token}: a one-minute answer form and the opt-out.

Public (the token is the only key), server-rendered and autoescaped, with no scripts and
nothing from another site. GET never changes anything. Every page is `no-store`, sends
no referrer (the token is in the address) and asks not to be indexed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from limits import parse
from pydantic import BaseModel, Field

from api.db import SessionDep
from api.feedback import service
from api.feedback.schemas import FeedbackResponseCreate
from api.http.transaction import TransactionalRoute
from api.models.feedback import OPEN_STATUSES

TEMPLATES = Path(__file__).parent / "templates"
# Every HTML response also gets Referrer-Policy: no-referrer, X-Frame-Options, nosniff
# and a strict Content-Security-Policy from api.http.middleware.SecurityHeadersMiddleware.
PAGE_HEADERS = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex, nofollow"}
# A redirect is not HTML, so it carries its own.
REDIRECT_HEADERS = {**PAGE_HEADERS, "Referrer-Policy": "no-referrer"}
VIEW_LIMIT = parse("60/minute")
ANSWER_LIMIT = parse("20/minute")
MAX_TEXT = 5000
MAX_POINTS = 10
MAX_POINT = 500

_environment = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(enabled_extensions=("html",), default=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

_HTML: dict[str, Any] = {"text/html": {}}
router = APIRouter(tags=["recipient pages"], route_class=TransactionalRoute)


def _page(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = _environment.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status_code, headers=PAGE_HEADERS)


def _not_found() -> HTMLResponse:
    return _page(
        "notice.html",
        404,
        title="This link does not lead anywhere",
        lines=[
            "Please check that the whole address was copied from the e-mail; "
            "sometimes a line break cuts it short.",
        ],
    )


def _gone(link: service.Link) -> HTMLResponse:
    candidate = _candidate(link)
    if link.state == "answered":
        lines = [
            f"This request has already been answered, and {candidate} has your reply.",
            "Thank you for taking the time.",
        ]
        title = "Already answered"
    elif link.state == "expired":
        lines = [
            "Links to the answer page stay valid for 60 days, and this one has run out.",
            f"If you would still like to share feedback, you can reply to {candidate}'s "
            "e-mail directly.",
        ]
        title = "This link has expired"
    else:
        lines = [
            f"{candidate} is no longer waiting for an answer here.",
            "If you would still like to share something, you can reply to their e-mail.",
        ]
        title = "This request is closed"
    return _page("notice.html", 410, title=title, lines=lines)


def _too_many(request: Request, limit: Any) -> HTMLResponse | None:
    limiter = request.app.state.rate_limiter
    address = request.client.host if request.client else "unknown"
    if limiter.limiter.hit(limit, "feedback-page", address):
        return None
    retry_after = limiter.retry_after(limit, "feedback-page", address)
    response = _page(
        "notice.html",
        429,
        title="Too many attempts",
        lines=[f"Please wait {retry_after} seconds, then try again."],
    )
    response.headers["Retry-After"] = str(retry_after)
    return response


def _candidate(link: service.Link) -> str:
    return " ".join(link.user.display_name.split()) or "The candidate"


def _form_context(link: service.Link, token: str) -> dict[str, Any]:
    return {
        "token": token,
        "candidate": _candidate(link),
        "role": link.rejection.role_title,
        "company": link.rejection.company,
    }


class AnswerForm(BaseModel):
    """The answer form's fields; everything is checked by hand so that a mistake shows
    the form again rather than a JSON error."""

    outcome: str = Field(default="responded", description="`responded` or `declined`.")
    text: str = Field(default="", description="The feedback, free text.")
    strengths: str = Field(default="", description="Strengths seen, one per line.")
    improvements: str = Field(default="", description="Areas to improve, one per line.")


@dataclass
class _Field:
    id: str
    message: str


def _lines(value: str) -> list[str]:
    return [line.strip(" \t-•*") for line in value.splitlines() if line.strip(" \t-•*")]


_PAGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"description": "Unknown link (an HTML page)", "content": _HTML},
    410: {"description": "Expired, answered or closed (an HTML page)", "content": _HTML},
    429: {"description": "Too many attempts (an HTML page)", "content": _HTML},
}


@router.get("/f/{token}", response_class=HTMLResponse, responses=_PAGE_RESPONSES)
def answer_form(token: str, request: Request, session: SessionDep) -> Response:
    """The recipient's one-minute answer form (HTML, no account needed)."""
    if refused := _too_many(request, VIEW_LIMIT):
        return refused
    link = service.find_link(session, token)
    if link is None:
        return _not_found()
    if link.state != "open":
        return _gone(link)
    return _page(
        "form.html",
        title=f"Feedback for {_candidate(link)}",
        errors=[],
        values={"text": "", "strengths": "", "improvements": ""},
        **_form_context(link, token),
    )


@router.post(
    "/f/{token}",
    response_class=HTMLResponse,
    status_code=303,
    responses={
        303: {"description": "Answer recorded; on to the thank-you page"},
        422: {"description": "Something to fix (the form again, an HTML page)", "content": _HTML},
        **_PAGE_RESPONSES,
    },
)
def submit_answer(
    token: str, request: Request, session: SessionDep, form: Annotated[AnswerForm, Form()]
) -> Response:
    """Answer a feedback request (form-encoded); follow-ups stop."""
    outcome, text = form.outcome, form.text
    strengths, improvements = form.strengths, form.improvements
    if refused := _too_many(request, ANSWER_LIMIT):
        return refused
    link = service.find_link(session, token, lock=True)
    if link is None:
        return _not_found()
    if link.state != "open":
        return _gone(link)
    declined = outcome == "declined"
    strength_list, improvement_list = _lines(strengths), _lines(improvements)
    errors: list[_Field] = []
    if not declined:
        if not text.strip() and not strength_list and not improvement_list:
            errors.append(
                _Field("text", "Please write a few words, or use the button below to decline.")
            )
        if len(text) > MAX_TEXT:
            errors.append(_Field("text", f"Please keep the feedback under {MAX_TEXT} characters."))
        for field, points, label in (
            ("strengths", strength_list, "strengths"),
            ("improvements", improvement_list, "areas to improve"),
        ):
            if len(points) > MAX_POINTS or any(len(point) > MAX_POINT for point in points):
                errors.append(
                    _Field(
                        field,
                        f"Please list at most {MAX_POINTS} {label}, each under {MAX_POINT} "
                        "characters.",
                    )
                )
    if errors:
        return _page(
            "form.html",
            422,
            title=f"Feedback for {_candidate(link)}",
            errors=errors,
            values={"text": text, "strengths": strengths, "improvements": improvements},
            **_form_context(link, token),
        )
    answer = FeedbackResponseCreate(
        outcome="declined" if declined else "responded",
        text=None if declined else text,
        strengths=[] if declined else strength_list,
        improvements=[] if declined else improvement_list,
    )
    service.record_answer(session=session, request=link.request, answer=answer, via="link")
    return RedirectResponse(f"/f/{token}/thanks", status_code=303, headers=REDIRECT_HEADERS)


@router.get("/f/{token}/thanks", response_class=HTMLResponse, include_in_schema=False)
def thanks(token: str, request: Request, session: SessionDep) -> Response:
    """After an answer."""
    if refused := _too_many(request, VIEW_LIMIT):
        return refused
    link = service.find_link(session, token)
    if link is None:
        return _not_found()
    if link.state != "answered":
        return RedirectResponse(f"/f/{token}", status_code=303, headers=REDIRECT_HEADERS)
    return _page(
        "thanks.html",
        title="Thank you",
        declined=link.request.status == "declined",
        candidate=_candidate(link),
        token=token,
    )


@router.get("/f/{token}/opt-out", response_class=HTMLResponse, responses=_PAGE_RESPONSES)
def opt_out_form(token: str, request: Request, session: SessionDep) -> Response:
    """Confirm stopping all e-mail from Rebound to this address (changes nothing)."""
    if refused := _too_many(request, VIEW_LIMIT):
        return refused
    link = service.find_link(session, token)
    if link is None:
        return _not_found()
    address = link.message.recipient
    return _page(
        "opt_out.html",
        title="Stop e-mails from Rebound",
        address=address,
        already=service.is_suppressed(session, address),
        token=token,
    )


_ONE_CLICK_BODY = {
    "requestBody": {
        "required": False,
        "description": "RFC 8058: mailbox providers send `List-Unsubscribe=One-Click`.",
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {"List-Unsubscribe": {"type": "string", "enum": ["One-Click"]}},
                }
            }
        },
    }
}


@router.post(
    "/f/{token}/opt-out",
    response_class=HTMLResponse,
    responses=_PAGE_RESPONSES,
    openapi_extra=_ONE_CLICK_BODY,
)
def opt_out(token: str, request: Request, session: SessionDep) -> Response:
    """Opt this address out of all e-mail from Rebound, for every user (RFC 8058 one-click)."""
    if refused := _too_many(request, ANSWER_LIMIT):
        return refused
    link = service.find_link(session, token, lock=True)
    if link is None:
        return _not_found()
    address = link.message.recipient
    was_open = link.request.status in OPEN_STATUSES
    service.opt_out(session=session, address=address)
    if not was_open:
        # Its own request had already ended: the timeline still shows the opt-out.
        service.add_event(
            session,
            link.request,
            "recipient_opted_out",
            "The recipient opted out of all e-mail from Rebound.",
            dedupe=True,
        )
    return _page(
        "notice.html",
        title="You will not hear from Rebound again",
        lines=[
            f"No one using Rebound can e-mail {address} from now on, and the requests "
            "still waiting for an answer have been closed.",
            "If you change your mind, a reply to the person who wrote to you still reaches them.",
        ],
    )


@router.get("/f-assets/feedback.css", include_in_schema=False)
def stylesheet() -> Response:
    """The pages' one stylesheet (no third-party resources)."""
    return Response(
        (TEMPLATES / "feedback.css").read_bytes(),
        media_type="text/css",
        headers={"Cache-Control": "public, max-age=86400"},
    )
