"""The application: routers, error handlers, middleware and lifespan."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.accounts.router import router as accounts_router
from api.action_plans.router import router as action_plans_router
from api.auth.router import router as auth_router
from api.config import Settings, get_settings
from api.db import make_engine
from api.errors import install_error_handlers, problem_response
from api.feedback.router import router as feedback_router
from api.http.idempotency import IdempotentReplay
from api.http.middleware import BodySizeLimitMiddleware, RequestIdMiddleware
from api.http.rate_limit import RateLimiter
from api.insights.router import router as insights_router
from api.orgs.router import router as orgs_router
from api.reflections.router import router as reflections_router
from api.rejections.router import router as rejections_router
from api.sync.router import router as sync_router
from api.webhooks.router import router as webhooks_router
from api.worker.registry import WorkerContext
from api.worker.runner import new_worker_id, run_forever

ROUTERS = (
    auth_router,
    accounts_router,
    rejections_router,
    reflections_router,
    feedback_router,
    action_plans_router,
    insights_router,
    orgs_router,
    webhooks_router,
    sync_router,
)


class EmbeddedWorker:
    """The worker loop on a thread of its own, so its database calls never block requests."""

    def __init__(self, context: WorkerContext) -> None:
        self.context = context
        self.loop = asyncio.new_event_loop()
        self.stop_event: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, name="rebound-worker", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.stop_event = asyncio.Event()
        self.loop.run_until_complete(run_forever(self.context, self.stop_event))

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        if self.stop_event is not None:
            self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(timeout=30)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    engine = make_engine(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        worker = None
        if settings.embedded_worker:
            worker = EmbeddedWorker(
                WorkerContext(engine=engine, settings=settings, worker_id=new_worker_id())
            )
            worker.start()
        try:
            yield
        finally:
            if worker is not None:
                worker.stop()
            engine.dispose()

    app = FastAPI(
        title="Rebound",
        version="1.0.0",
        summary="Learn from job rejections: log them, reflect, ask for feedback, act.",
        lifespan=lifespan,
        docs_url="/docs" if settings.docs_enabled else None,
        redoc_url="/redoc" if settings.docs_enabled else None,
        openapi_url="/openapi.json" if settings.docs_enabled else None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.rate_limiter = RateLimiter(settings)

    install_error_handlers(app)

    @app.exception_handler(IdempotentReplay)
    async def _replay(_request: Request, exc: IdempotentReplay) -> Response:
        return exc.response()

    for router in ROUTERS:
        app.include_router(router)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "Not ready"}})
    def readyz() -> Response:
        """Readiness: the database answers."""
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception:
            return problem_response(503, "The database is not reachable.")
        return JSONResponse({"status": "ok"})

    app.add_middleware(BodySizeLimitMiddleware)
    app.add_middleware(RequestIdMiddleware)
    return app
