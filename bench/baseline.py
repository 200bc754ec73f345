"""The ceiling: a bare FastAPI app answering a constant JSON object.

Served with exactly the uvicorn settings `rebound serve` uses (one process and
`api.cli.SERVER_OPTIONS`: asyncio's loop, no access log, no log config, proxy headers, the
same graceful-shutdown timeout), so the ratio of a Rebound endpoint to this app is what
the application costs on top of the framework.

    python -m bench.baseline --port 8100
"""

from __future__ import annotations

import argparse

from fastapi import FastAPI

app = FastAPI()

CONSTANT = {"id": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "status": "ok", "items": []}


@app.get("/")
async def constant() -> dict[str, object]:
    return CONSTANT


def main() -> None:
    import uvicorn

    from api.cli import SERVER_OPTIONS

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args()
    uvicorn.run("bench.baseline:app", host=args.host, port=args.port, workers=1, **SERVER_OPTIONS)


if __name__ == "__main__":
    main()
