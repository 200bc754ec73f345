"""A minute of mixed load from a second process: zero 5xx, zero transport errors.

The real server (`rebound serve`, a child process) on the test engine; a second process
(`tests/faults/load_client.py`) runs 12 concurrent clients acting for 4 users for 60
seconds: lists, single reads, creates with Idempotency-Keys, PATCHes and reflection step
PUTs with If-Match, sync pages and insights. Every answer must be a success (each client
works on its own rejections, so nothing conflicts), and afterwards every rejection
acknowledged with 201 is listed for its owner, exactly once. Counts and p50/p99 latencies
are printed (run with `-s`); speed is not asserted here (that is bench/'s job).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from tests.faults.server import ROOT, running_server

pytestmark = pytest.mark.slow

SECONDS = 60
USERS = 4
CLIENTS = 12
SUCCESS = {
    "list": {200},
    "get": {200},
    "create": {201},
    "patch": {200},
    "reflection_step": {200},
    "sync": {200},
    "insights": {200},
}


def _listed_ids(url: str, headers: dict[str, str]) -> list[str]:
    ids: list[str] = []
    cursor = None
    with httpx.Client(base_url=url, timeout=30, headers=headers) as http:
        while True:
            params: dict[str, str | int] = {"limit": 100}
            if cursor:
                params["cursor"] = cursor
            page = http.get("/v1/rejections", params=params)
            assert page.status_code == 200, page.text
            ids += [item["id"] for item in page.json()["items"]]
            cursor = page.json()["next_cursor"]
            if not cursor:
                return ids


def test_a_minute_of_mixed_load(database_url: str, engine: Engine, tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    with running_server(database_url) as server:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "tests.faults.load_client",
                "--url",
                server.url,
                "--seconds",
                str(SECONDS),
                "--users",
                str(USERS),
                "--clients",
                str(CLIENTS),
                "--out",
                str(out),
            ],
            cwd=ROOT,
            check=True,
            timeout=SECONDS * 4,
        )
        result = json.loads(out.read_text())
        listed = {
            user_id: _listed_ids(server.url, headers)
            for user_id, headers in result["users"].items()
        }

    kinds = result["kinds"]
    lines = [f"Sustained load on {engine.dialect.name}, {result['seconds']} s, {CLIENTS} clients:"]
    for kind, figures in kinds.items():
        lines.append(
            f"  {kind:16} {figures['count']:6} requests  statuses {figures['statuses']}  "
            f"p50 {figures['p50_ms']} ms  p99 {figures['p99_ms']} ms  max {figures['max_ms']} ms"
        )
    lines.append(f"  total {sum(f['count'] for f in kinds.values())} requests")
    print("\n" + "\n".join(lines))  # noqa: T201

    assert not result["errors"], result["transport_errors"][:10]
    server_errors = {
        kind: figures["statuses"]
        for kind, figures in kinds.items()
        if any(status.startswith("5") for status in figures["statuses"])
    }
    assert not server_errors, server_errors
    for kind, figures in kinds.items():
        assert {int(status) for status in figures["statuses"]} <= SUCCESS[kind], (kind, figures)
    assert set(kinds) == set(SUCCESS), "every kind of request ran"

    # Every acknowledged create is listed for its owner exactly once, and is in the database.
    for user_id, created in result["created"].items():
        assert len(listed[user_id]) == len(set(listed[user_id]))
        assert set(created) == set(listed[user_id]), user_id
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT count(*) FROM rejections")).scalar_one()
    assert stored == sum(len(created) for created in result["created"].values())
