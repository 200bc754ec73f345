from __future__ import annotations

from fastapi import APIRouter

from api.http.transaction import TransactionalRoute

router = APIRouter(route_class=TransactionalRoute)
