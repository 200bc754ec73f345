"""OpenAPI documentation of the problem responses a route can give."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from api.errors import PROBLEM_JSON, ProblemDetails


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
