"""The committed OpenAPI schema: exactly what the app serves."""

from __future__ import annotations

import json

from api.config import Settings
from api.main import create_app


def render_openapi() -> str:
    app = create_app(Settings(embedded_worker=False, docs_enabled=True, database_url="sqlite://"))
    return json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"
