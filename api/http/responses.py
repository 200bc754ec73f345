"""Responses: the OpenAPI documentation of problem answers, and JSON written at once."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import Response
from pydantic import BaseModel

from api.errors import PROBLEM_JSON, ProblemDetails

JSON = "application/json"


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status as `application/problem+json`."""
    documented: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        documented[status] = {
            "model": ProblemDetails,
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_JSON: {}},
        }
    return documented


def json_response(
    model: BaseModel, *, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """`model` as the JSON answer, written by pydantic in one call.

    A route that returns a model has FastAPI validate it against the `response_model` a
    second time and encode it twice over; a hot route returns this instead, and keeps
    `response_model=` in its decorator for OpenAPI.
    """
    return Response(
        model.model_dump_json(), status_code=status_code, headers=headers, media_type=JSON
    )
