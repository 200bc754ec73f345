"""A sustained mixed load against a running server, from its own process.

    python -m tests.faults.load_client --url http://127.0.0.1:8000 --seconds 60 \\
        --users 4 --clients 12 --out results.json

Registers `--users` users, then runs `--clients` threads (each acting for one of the
users, several threads per user) for `--seconds`: reads (list, get one), writes (create
with an Idempotency-Key, PATCH with If-Match, a reflection step PUT with If-Match), sync
and insights. Every thread works on the rejections it created itself, so no two threads
race for the same ETag and every answer is expected to be a success. Writes a JSON file:
per kind the count, the statuses and the p50/p99/max latency in milliseconds; the
transport errors and crashed clients; and per user the ids of the rejections acknowledged with 201.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import threading
import time
from collections import Counter, defaultdict
from typing import Any

import httpx

from api.reflections.steps import STEP_ORDER

PASSWORD = "correct horse battery staple"
# How often each kind of request is picked (the weights of a day's traffic, roughly).
MIX = {
    "list": 25,
    "get": 20,
    "create": 15,
    "patch": 10,
    "reflection_step": 10,
    "sync": 10,
    "insights": 10,
}
STEPS = [key.value for key in STEP_ORDER]


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.statuses: dict[str, Counter[int]] = defaultdict(Counter)
        self.errors: list[str] = []
        self.created: dict[str, list[str]] = defaultdict(list)

    def call(
        self, http: httpx.Client, kind: str, method: str, url: str, **options: Any
    ) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            response = http.request(method, url, **options)
        except httpx.TransportError as exc:
            with self.lock:
                self.errors.append(f"{kind}: {type(exc).__name__}: {exc}")
            return None
        elapsed = time.perf_counter() - started
        with self.lock:
            self.latencies[kind].append(elapsed)
            self.statuses[kind][response.status_code] += 1
        return response

    def summary(self) -> dict[str, Any]:
        kinds = {}
        for kind, values in sorted(self.latencies.items()):
            ordered = sorted(values)
            cuts = (
                statistics.quantiles(ordered, n=100, method="inclusive")
                if len(ordered) > 1
                else ordered * 99
            )
            kinds[kind] = {
                "count": len(values),
                "statuses": {str(s): n for s, n in sorted(self.statuses[kind].items())},
                "p50_ms": round(cuts[49] * 1000, 1),
                "p99_ms": round(cuts[98] * 1000, 1),
                "max_ms": round(ordered[-1] * 1000, 1),
            }
        return {"kinds": kinds, "errors": self.errors, "created": self.created}


def register(url: str, n: int) -> tuple[str, dict[str, str]]:
    email = f"load{n}-{random.randrange(10**9)}@example.com"
    with httpx.Client(base_url=url, timeout=30) as http:
        created = http.post("/v1/auth/register", json={"email": email, "password": PASSWORD})
        created.raise_for_status()
        token = http.post("/v1/auth/token", data={"username": email, "password": PASSWORD}).json()[
            "access_token"
        ]
    return created.json()["id"], {"Authorization": f"Bearer {token}"}


def client(
    url: str, n: int, user_id: str, headers: dict[str, str], deadline: float, recorder: Recorder
) -> None:
    """One client's loop; a crash in it is reported, not lost in a thread."""
    try:
        run_client(url, n, user_id, headers, deadline, recorder)
    except Exception as exc:
        with recorder.lock:
            recorder.errors.append(f"client {n} crashed: {type(exc).__name__}: {exc}")


def run_client(
    url: str,
    n: int,
    user_id: str,
    headers: dict[str, str],
    deadline: float,
    recorder: Recorder,
) -> None:
    rng = random.Random(n)
    mine: list[str] = []
    cursor: str | None = None
    kinds, weights = zip(*MIX.items(), strict=True)
    sent = 0
    with httpx.Client(base_url=url, timeout=30, headers=headers) as http:
        while time.monotonic() < deadline:
            kind = rng.choices(kinds, weights)[0]
            if kind in ("get", "patch", "reflection_step") and not mine:
                kind = "create"
            sent += 1
            if kind == "list":
                recorder.call(http, kind, "GET", "/v1/rejections", params={"limit": 20})
            elif kind == "get":
                target = rng.choice(mine)
                recorder.call(http, kind, "GET", f"/v1/rejections/{target}")
            elif kind == "create":
                key = f"load-{n}-{sent}"
                body = {
                    "company": f"Load {n}-{sent}",
                    "role_title": "Engineer",
                    "rejected_on": "2026-11-01",
                    "stage": rng.choice(["applied", "phone", "onsite", "final"]),
                }
                response = recorder.call(
                    http,
                    kind,
                    "POST",
                    "/v1/rejections",
                    json=body,
                    headers={"Idempotency-Key": key},
                )
                if response is not None and response.status_code == 201:
                    mine.append(response.json()["id"])
                    with recorder.lock:
                        recorder.created[user_id].append(response.json()["id"])
            elif kind == "patch":
                target = rng.choice(mine)
                current = recorder.call(http, "get", "GET", f"/v1/rejections/{target}")
                if current is None or current.status_code != 200:
                    continue
                etag = current.headers["etag"]
                recorder.call(
                    http,
                    kind,
                    "PATCH",
                    f"/v1/rejections/{target}",
                    json={"role_title": f"Engineer {sent}"},
                    headers={"If-Match": etag},
                )
            elif kind == "reflection_step":
                target = rng.choice(mine)
                reflection = recorder.call(
                    http, "get", "GET", f"/v1/rejections/{target}/reflection"
                )
                if reflection is None or reflection.status_code != 200:
                    continue
                etag = reflection.headers["etag"]
                step = rng.choice(STEPS)
                recorder.call(
                    http,
                    kind,
                    "PUT",
                    f"/v1/rejections/{target}/reflection/steps/{step}",
                    json={"status": "skipped"},
                    headers={"If-Match": etag},
                )
            elif kind == "sync":
                params: dict[str, Any] = {"limit": 100}
                if cursor:
                    params["since"] = cursor
                response = recorder.call(http, kind, "GET", "/v1/sync", params=params)
                if response is not None and response.status_code == 200:
                    cursor = response.json().get("next_cursor") or cursor
            elif kind == "insights":
                recorder.call(http, kind, "GET", "/v1/insights")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    users = [register(args.url, n) for n in range(args.users)]
    recorder = Recorder()
    started = time.monotonic()
    deadline = started + args.seconds
    threads = [
        threading.Thread(
            target=client, args=(args.url, n, *users[n % len(users)], deadline, recorder)
        )
        for n in range(args.clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result = recorder.summary()
    result["seconds"] = round(time.monotonic() - started, 1)
    result["users"] = dict(users)
    with open(args.out, "w") as out:
        json.dump(result, out, indent=2)


if __name__ == "__main__":
    main()
