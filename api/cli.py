"""The `rebound` command."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Annotated, Any

import typer

from api.config import get_settings

app = typer.Typer(help="Rebound: learn from job rejections.", no_args_is_help=True)

OPENAPI_PATH = Path(__file__).resolve().parent.parent / "openapi" / "openapi.json"

# How `serve` runs uvicorn (the benchmark's ceiling, bench/baseline.py, runs the same).
SERVER_OPTIONS: dict[str, Any] = {
    "log_config": None,  # api.logging configures it
    "access_log": False,  # api.http.middleware.AccessLogMiddleware logs each request
    "proxy_headers": True,
    "timeout_graceful_shutdown": 20,
    # asyncio's loop, not uvloop: uvloop (libuv) accepts one connection per turn of the
    # loop, so on a busy server a burst of new connections waits one turn each: 200 at
    # once waited up to 7 s (bench/README.md). asyncio accepts every waiting connection
    # at once, for a few percent of throughput.
    "loop": "asyncio",
}


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Server processes.")] = 1,
) -> None:
    """Serve the API (and, unless REBOUND_EMBEDDED_WORKER=false, the worker loop)."""
    import uvicorn

    from api.logging import configure_logging
    from api.migrations import upgrade

    settings = get_settings()
    configure_logging(settings)
    if settings.should_migrate_on_start:
        upgrade(settings.database_url)
    uvicorn.run("api.asgi:app", host=host, port=port, workers=workers, **SERVER_OPTIONS)


@app.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "heads",
) -> None:
    """Apply pending database migrations."""
    from api.migrations import upgrade

    upgrade(get_settings().database_url, revision)
    typer.echo("database is up to date")


@app.command()
def worker(
    once: Annotated[bool, typer.Option("--once", help="Do what is due now, then exit.")] = False,
) -> None:
    """Run the background worker: e-mails, follow-ups, closings, webhooks, reminders."""
    from api.db import make_engine
    from api.logging import configure_logging
    from api.worker.registry import WorkerContext
    from api.worker.runner import new_worker_id, run_forever, run_until_idle

    settings = get_settings()
    configure_logging(settings)
    engine = make_engine(settings)
    context = WorkerContext(engine=engine, settings=settings, worker_id=new_worker_id())

    async def main() -> None:
        if once:
            count = await run_until_idle(context)
            typer.echo(f"ran {count} job(s)")
            return
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_forever(context, stop)

    try:
        asyncio.run(main())
    finally:
        engine.dispose()


@app.command()
def openapi(
    output: Annotated[Path, typer.Option(help="Where to write the schema.")] = OPENAPI_PATH,
) -> None:
    """Write the OpenAPI schema the app serves to openapi/openapi.json."""
    from api.openapi import render_openapi

    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_openapi())
    typer.echo(f"wrote {output}")


@app.command("create-user")
def create_user(
    email: Annotated[str, typer.Argument(help="The e-mail address to log in with.")],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
    display_name: Annotated[str, typer.Option(help="The name to show.")] = "",
    timezone: Annotated[str, typer.Option(help="IANA time zone.")] = "UTC",
) -> None:
    """Create a user account."""
    from pydantic import ValidationError

    from api.auth.schemas import RegisterRequest
    from api.auth.service import register_user
    from api.db import make_engine, open_session
    from api.errors import Problem

    settings = get_settings()
    try:
        data = RegisterRequest(
            email=email, password=password, display_name=display_name, timezone=timezone
        )
    except ValidationError as exc:
        typer.echo(f"error: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}", err=True)
        raise typer.Exit(2) from exc
    engine = make_engine(settings)
    session = open_session(engine)
    try:
        user = register_user(session=session, data=data)
        session.commit()
    except Problem as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(1) from exc
    finally:
        session.close()
        engine.dispose()
    typer.echo(json.dumps({"id": user.id, "email": user.email}))


@app.command()
def jobs(
    retry: Annotated[str | None, typer.Option(help="Id of a dead job to run again.")] = None,
) -> None:
    """List dead jobs, or put one back on the queue with --retry ID."""
    from sqlmodel import col, select

    from api.db import make_engine, open_session, utcnow
    from api.models import Job

    engine = make_engine(get_settings())
    session = open_session(engine)
    try:
        if retry:
            job = session.get(Job, retry)
            if job is None or job.status != "dead":
                typer.echo("error: no dead job with this id", err=True)
                raise typer.Exit(1)
            job.status, job.attempts, job.run_at, job.last_error = "pending", 0, utcnow(), None
            session.commit()
            typer.echo(f"job {retry} queued again")
            return
        for job in session.exec(
            select(Job).where(col(Job.status) == "dead").order_by(col(Job.run_at))
        ):
            typer.echo(f"{job.id}  {job.kind}  attempts={job.attempts}  {job.last_error or ''}")
    finally:
        session.close()
        engine.dispose()
