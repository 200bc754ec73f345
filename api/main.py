"""The application: routers, error handlers, middleware and lifespan."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.accounts.router import router as accounts_router
from api.action_plans.router import router as action_plans_router
from api.auth.router import router as auth_router
from api.config import Settings, get_settings
from api.db import async_connections, make_engine, sqlite_writer
from api.errors import install_error_handlers, problem_response
from api.feedback.router import router as feedback_router
from api.http.idempotency import IdempotentReplay
from api.http.metrics import CONTENT_TYPE_LATEST, render_metrics
from api.http.middleware import (
    AccessLogMiddleware,
    BodySizeLimitMiddleware,
    RequestIdMiddleware,
    SecurityHeadersMiddleware,
)
from api.http.rate_limit import RateLimiter, RateLimitMiddleware
from api.http.transaction import TransactionGate
from api.insights.router import router as insights_router
from api.migrations import current_revisions, head_revisions
from api.orgs.router import router as orgs_router
from api.reflections.router import router as reflections_router
from api.rejections.router import router as rejections_router
from api.security import constant_time_equals
from api.sync.router import router as sync_router
from api.webhooks.router import router as webhooks_router
from api.worker.registry import WorkerContext
from api.worker.runner import new_worker_id, run_forever

# A probe that is not ready says when to ask again, as every other 503 here does.
RETRY_SOON = {"Retry-After": "5"}

# Matched in this order, so the busiest come first.
ROUTERS = (
    rejections_router,
    auth_router,
    accounts_router,
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
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Awaited reads' connections belong to the loop that serves (api/db.py).
        reads = app.state.async_connections = async_connections(settings)
        # What startup built (routes, schemas, metadata) lives as long as the process:
        # frozen out of the collector's generations, a full collection scans only what
        # requests allocated. Without it, full collections of those objects stalled every
        # request in flight for ~100 ms under load (p99 106 ms instead of 13 ms).
        gc.collect()
        gc.freeze()
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
            app.state.async_connections = None
            if reads is not None:
                await reads.close()
            if app.state.sqlite_writer is not None:
                app.state.sqlite_writer.close()
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
    app.state.sqlite_writer = sqlite_writer(settings, engine)
    app.state.rate_limiter = RateLimiter(settings)
    app.state.transaction_gate = TransactionGate(sqlite=settings.is_sqlite)

    install_error_handlers(app)

    @app.exception_handler(IdempotentReplay)
    async def _replay(_request: Request, exc: IdempotentReplay) -> Response:
        return exc.response()

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    expected_revisions = head_revisions()

    @app.get("/readyz", tags=["health"], responses={503: {"description": "Not ready"}})
    def readyz() -> Response:
        """Readiness: the database answers and its schema is at the migrations' head."""
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
                current = current_revisions(connection)
        except Exception:
            return problem_response(503, "The database is not reachable.", headers=RETRY_SOON)
        if current != expected_revisions:
            return problem_response(
                503,
                f"The database schema is at {sorted(current) or 'no revision'}, "
                f"not {sorted(expected_revisions)}: run `rebound migrate`.",
                headers=RETRY_SOON,
            )
        return JSONResponse({"status": "ok"})

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        """Prometheus metrics; with REBOUND_METRICS_TOKEN set, only for that Bearer token."""
        if settings.metrics_token:
            given = request.headers.get("authorization", "")
            if not constant_time_equals(given, f"Bearer {settings.metrics_token}"):
                return problem_response(
                    401,
                    "Metrics need the Bearer token set in REBOUND_METRICS_TOKEN.",
                    headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
                )
        return Response(render_metrics(engine), media_type=CONTENT_TYPE_LATEST)

    # After the probes, which are asked for often and must not scan every route first.
    for router in ROUTERS:
        app.include_router(router)

    # Outermost last: a request passes the request id, the security headers, CORS, the
    # request log (which answers an unhandled error with a 500 problem), the rate limit
    # and the body size limit, in this order; so every answer, 413, 429 and 500 included,
    # carries the request id, the security and CORS headers, and is logged and counted.
    app.add_middleware(BodySizeLimitMiddleware)
    app.add_middleware(RateLimitMiddleware, limiter=app.state.rate_limiter, settings=settings)
    app.add_middleware(AccessLogMiddleware)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "If-Match",
                "Idempotency-Key",
                "X-Request-ID",
            ],
            expose_headers=[
                "ETag",
                "Location",
                "Retry-After",
                "Idempotency-Replayed",
                "X-Request-ID",
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
                "RateLimit-Policy",
            ],
            max_age=600,
        )
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(RequestIdMiddleware)
    return app
