"""The benchmark: `make bench`, or `.venv/bin/python -m bench.run [options]`.

For each engine (SQLite, then PostgreSQL) it makes a fresh database, seeds it through
Rebound's own code, starts the real server (`rebound serve`, one process, embedded worker
off) and loads it with wrk from a second process on loopback; a bare FastAPI app under
the same uvicorn settings is measured in the same run as the ceiling every ratio refers
to. Then the worker sends due feedback e-mails to a local SMTP sink. It prints a table
and writes bench/results/<date>-<commit>.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import http.client
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import procs, wrk
from bench.wrk import RequestSpec, WrkResult

ROOT = procs.ROOT
RESULTS = ROOT / "bench" / "results"
POSTGRES_SERVER = os.environ.get(
    "REBOUND_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)

# Targets of issue 8, as ratios to the baseline's requests per second where a ratio.
LIST_RATIO = {"sqlite": 0.18, "postgres": 0.15}
LIST_P99_MS = 20.0
POST_RATIO = {"sqlite": 0.08, "postgres": 0.08}
INSIGHTS_P50_MS = 30.0
SCALE_P50_FACTOR = 1.3
WORKER_RATE = 300.0
RSS_LIMIT_MB = 200.0
OVERLOAD_CONNECTIONS = 200
REQUEST_TIMEOUT_S = 10.0

START = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - START:7.1f}s] {message}", flush=True)


@dataclass
class Row:
    scenario: str
    engine: str
    rps: float | None = None
    ratio: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu_ms: float | None = None  # server CPU time per request (all threads)
    cpu_ratio: float | None = None  # baseline CPU per request / this one's
    target: str = ""
    passed: bool | None = None  # None: informational, skipped or pending
    note: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, scenario: str, engine: str, result: WrkResult, **kwargs: Any) -> Row:
        row = cls(
            scenario=scenario,
            engine=engine,
            rps=round(result.rps, 1),
            p50_ms=round(result.p50_us / 1000, 2),
            p99_ms=round(result.p99_us / 1000, 2),
            cpu_ms=(
                round(result.cpu_ms_per_request, 3)
                if result.cpu_ms_per_request is not None
                else None
            ),
            **kwargs,
        )
        row.detail["wrk"] = result.as_dict()
        problems = []
        if result.requests == 0:
            problems.append("no request completed within the run")
        if result.non_2xx:
            problems.append(f"{result.non_2xx} non-2xx")
        if result.errors:
            problems.append(
                f"socket errors: connect {result.connect_errors}, read {result.read_errors}, "
                f"write {result.write_errors}, timeout {result.timeouts}"
            )
        if problems:
            row.note = "; ".join([*problems, row.note] if row.note else problems)
        return row

    @property
    def clean(self) -> bool:
        data = self.detail.get("wrk", {})
        return (
            bool(data.get("requests"))
            and not data.get("non_2xx")
            and not (
                data.get("connect_errors")
                or data.get("read_errors")
                or data.get("write_errors")
                or data.get("timeouts")
            )
        )


@dataclass
class Options:
    engines: list[str]
    duration: float
    warmup: float
    connections: int
    threads: int
    quick: bool
    skip_scale: bool
    skip_worker: bool
    skip_api: bool
    scale_users: int
    scale_rows: int
    worker_emails: int
    extras_every: int
    profile: str | None
    workdir: Path
    keep: bool


class Bench:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.rows: list[Row] = []
        self.baselines: list[dict[str, Any]] = []
        self.seeding: dict[str, Any] = {}
        self.profiles: list[str] = []
        self.baseline_port = 0
        self.baseline: procs.Child | None = None

    # -- load ----------------------------------------------------------------------------

    def load(
        self,
        port: int,
        specs: list[RequestSpec],
        *,
        connections: int | None = None,
        duration: float | None = None,
        warmup: bool = True,
        server: procs.Child | None = None,
    ) -> WrkResult:
        """wrk against `port` (after a warm-up); `server`'s CPU time is measured alongside."""
        connections = connections or self.options.connections
        if warmup and self.options.warmup > 0:
            wrk.run_wrk(
                port,
                specs,
                duration=self.options.warmup,
                connections=connections,
                threads=self.options.threads,
                timeout=REQUEST_TIMEOUT_S,
            )
        cpu_before = server.cpu_seconds() if server else 0.0
        result = wrk.run_wrk(
            port,
            specs,
            duration=duration or self.options.duration,
            connections=connections,
            threads=self.options.threads,
            timeout=REQUEST_TIMEOUT_S,
        )
        if server is not None:
            result.server_cpu_s = server.cpu_seconds() - cpu_before
        return result

    def start_baseline(self) -> None:
        self.baseline_port = procs.free_port()
        self.baseline = procs.Child(
            "baseline",
            [str(procs.BIN / "python"), "-m", "bench.baseline", "--port", str(self.baseline_port)],
            env=_clean_env(),
            log_path=self.options.workdir / "baseline.log",
        )
        procs.wait_until_serving(self.baseline, self.baseline_port, "/")

    def measure_baseline(self, label: str) -> WrkResult:
        result = self.load(self.baseline_port, [RequestSpec("GET", "/")], server=self.baseline)
        self.baselines.append({"label": label, **result.as_dict()})
        say(f"baseline ({label}): {result.rps:,.0f} req/s, p50 {result.p50_us / 1000:.2f} ms")
        return result

    # -- profiling -----------------------------------------------------------------------

    def profiled(self, name: str, server: procs.Child, port: int, specs: list[RequestSpec]) -> None:
        """A second, separate run of the scenario with py-spy attached (numbers not kept)."""
        if not self.options.profile:
            return
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / f"profile-{_stamp()}-{name}.txt"
        seconds = max(3, round(self.options.duration))
        spy = subprocess.Popen(
            [
                self.options.profile,
                "record",
                "--pid",
                str(server.pid),
                "--duration",
                str(seconds),
                "--rate",
                "250",
                "--format",
                "raw",
                "--nonblocking",
                "--gil",  # only the thread holding the GIL: where CPU time goes
                "--output",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wrk.run_wrk(
                port,
                specs,
                duration=seconds + 1,
                connections=self.options.connections,
                threads=self.options.threads,
            )
        finally:
            try:
                spy.wait(timeout=seconds + 30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait(5)
        if out.exists():
            self.profiles.append(str(out))
            say(f"profile written: {out.relative_to(ROOT)}")

    # -- one engine ----------------------------------------------------------------------

    def run_engine(self, engine: str) -> None:
        from bench import seed

        say(f"== {engine}: fresh database, migrations")
        with database(engine, self.options.workdir) as url:
            settings = seed.bench_settings(url)
            db_engine = seed.make_engine(settings)
            try:
                self._run_engine(engine, settings, db_engine)
            finally:
                db_engine.dispose()

    def _run_engine(self, engine: str, settings: Any, db_engine: Any) -> None:
        from bench import seed

        opts = self.options
        started = time.monotonic()
        [main_user] = seed.create_users(db_engine, ["main@bench.example.com"])
        writers = seed.create_users(
            db_engine, [f"writer{i}@bench.example.com" for i in range(opts.connections)]
        )
        say(f"{engine}: 1,000 rejections for the main user (service, with reflections)")
        ids = seed.create_rejections(db_engine, main_user, 1000, seed=1)
        say(f"{engine}: reflection steps, feedback requests, action plans (HTTP contract)")
        extras = seed.seed_extras(
            settings, main_user, ids[:: opts.extras_every], seed=2, progress=say
        )
        deep_cursor = seed.cursor_after(db_engine, main_user, 900)
        self.seeding[engine] = {
            "main_user_rejections": len(ids),
            "extras_for_every_nth_rejection": opts.extras_every,
            "extras": extras.counts,
            "pending": extras.pending,
            "seconds": round(time.monotonic() - started, 1),
        }
        say(f"{engine}: seeded in {time.monotonic() - started:.0f}s ({extras.note()})")

        auth = {"Authorization": f"Bearer {seed.access_token(settings, main_user)}"}
        list_spec = RequestSpec("GET", "/v1/rejections?limit=20", auth)
        deep_spec = RequestSpec("GET", f"/v1/rejections?limit=20&cursor={deep_cursor}", auth)
        insights_spec = RequestSpec("GET", "/v1/insights", auth)
        post_body = json.dumps(
            {
                "company": "Bench Corp %d",
                "role_title": "Platform Engineer",
                "stage": "onsite",
                "rejected_on": "2026-01-15",
                "applied_on": "2025-12-01",
                "reason_code": "other_candidate",
                "tags": ["bench", "remote"],
                "notes": "Made it to the final round; they chose someone with more on-call time.",
            }
        )
        post_specs = [
            RequestSpec(
                "POST",
                "/v1/rejections",
                {
                    "Authorization": f"Bearer {seed.access_token(settings, writer)}",
                    "Content-Type": "application/json",
                },
                post_body,
            )
            for writer in writers
        ]

        port = procs.free_port()
        server = procs.Child(
            f"rebound-{engine}",
            [str(procs.BIN / "rebound"), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env={**_clean_env(), **seed.server_env(settings)},
            log_path=opts.workdir / f"server-{engine}.log",
        )
        try:
            procs.wait_until_serving(server, port)
            say(f"{engine}: server pid {server.pid} on 127.0.0.1:{port}")
            base_before = self.measure_baseline(f"{engine} before")
            measured: list[Row] = []

            # GET /v1/rejections?limit=20
            if self.check(engine, "list first page", port, list_spec, 200, measured):
                result = self.load(port, [list_spec], server=server)
                measured.append(
                    Row.of(
                        "GET /v1/rejections?limit=20",
                        engine,
                        result,
                        target=f">={LIST_RATIO[engine]} x baseline, p99 <{LIST_P99_MS:.0f} ms",
                        detail={"kind": "list"},
                    )
                )
                self.profiled(f"{engine}-list", server, port, [list_spec])

            # GET /v1/insights
            status, _ = request(port, insights_spec)
            insights_ok = status == 200
            if status == 404:
                measured.append(
                    Row(
                        "GET /v1/insights (1,000 rejections)",
                        engine,
                        target=f"p50 <{INSIGHTS_P50_MS:.0f} ms",
                        note="skipped: the route answers 404 (insights not built yet)",
                    )
                )
            elif self.check(engine, "insights", port, insights_spec, 200, measured):
                result = self.load(port, [insights_spec], server=server)
                measured.append(
                    Row.of(
                        "GET /v1/insights (1,000 rejections)",
                        engine,
                        result,
                        target=f"p50 <{INSIGHTS_P50_MS:.0f} ms",
                        detail={"kind": "insights"},
                    )
                )
                single = self.load(
                    port, [insights_spec], connections=1, warmup=False, server=server
                )
                measured.append(
                    Row.of(
                        "GET /v1/insights, 1 connection",
                        engine,
                        single,
                        target="(information)",
                        detail={"kind": "info"},
                    )
                )
                self.profiled(f"{engine}-insights", server, port, [insights_spec])

            # First and deep page with only this user's 1,000 rows in the table.
            small: dict[str, WrkResult] = {}
            small_rows = seed.count_rejections(db_engine)
            for label, spec in (("first", list_spec), ("deep", deep_spec)):
                if self.check(engine, f"{label} page", port, spec, 200, measured):
                    small[label] = self.load(port, [spec], server=server)
                    measured.append(
                        Row.of(
                            f"{label} page, {small_rows:,} rows in table",
                            engine,
                            small[label],
                            target="(reference)",
                            detail={"kind": "info", "rows_in_table": small_rows},
                        )
                    )

            # POST /v1/rejections, spread over the writers.
            if self.check(engine, "create", port, post_specs[0], 201, measured):
                before = seed.count_rejections(db_engine)
                result = self.load(port, post_specs, server=server)
                written = seed.count_rejections(db_engine) - before
                row = Row.of(
                    "POST /v1/rejections",
                    engine,
                    result,
                    target=f">={POST_RATIO[engine]} x baseline",
                    detail={"kind": "post", "rows_written_incl_warmup": written},
                )
                measured.append(row)
                self.profiled(f"{engine}-create", server, port, post_specs)

            # The same pages with the scale table loaded.
            if not opts.skip_scale:
                say(
                    f"{engine}: bulk-loading {opts.scale_rows:,} rejections across "
                    f"{opts.scale_users:,} users"
                )
                info = seed.bulk_scale(
                    db_engine, users=opts.scale_users, rows=opts.scale_rows, progress=say
                )
                self.seeding[engine]["scale"] = info
                big_rows = seed.count_rejections(db_engine)
                say(f"{engine}: {big_rows:,} rows in the table (loaded in {info['seconds']}s)")
                for label, spec in (("first", list_spec), ("deep", deep_spec)):
                    if label not in small:
                        continue
                    result = self.load(port, [spec], server=server)
                    reference = small[label].p50_us
                    factor = result.p50_us / reference if reference else None
                    row = Row.of(
                        f"{label} page, {big_rows:,} rows in table",
                        engine,
                        result,
                        target=f"p50 <={SCALE_P50_FACTOR} x {small_rows:,}-row p50",
                        detail={"kind": "scale", "rows_in_table": big_rows, "factor": factor},
                    )
                    row.passed = row.clean and factor is not None and factor <= SCALE_P50_FACTOR
                    row.note = _join(
                        f"p50 x{factor:.2f} of the small table" if factor else "", row.note
                    )
                    measured.append(row)

            # 200 connections: answers (slowly is fine), recovers, nothing hangs.
            measured.append(
                self.overload(engine, server, port, [list_spec], what="reads, then recovery")
            )
            measured.append(
                self.overload(
                    engine,
                    server,
                    port,
                    [list_spec, post_specs[0], list_spec, post_specs[1]]
                    + ([insights_spec] if insights_ok else []),
                    what="reads and writes mixed",
                )
            )

            base_after = self.measure_baseline(f"{engine} after")
            baseline_rps = statistics.mean([base_before.rps, base_after.rps])
            cpu = [r.cpu_ms_per_request for r in (base_before, base_after) if r.cpu_ms_per_request]
            baseline_cpu = statistics.mean(cpu) if cpu else None
            self.finish_rows(engine, measured, baseline_rps, baseline_cpu)
            memory = server.rss_mb()
            self.rows.append(
                Row(
                    "server RSS after the run",
                    engine,
                    target=f"<{RSS_LIMIT_MB:.0f} MB",
                    passed=0 < memory["rss_mb"] < RSS_LIMIT_MB,
                    note=f"{memory['rss_mb']:.0f} MB (peak {memory['peak_rss_mb']:.0f} MB)",
                    detail=memory,
                )
            )
        finally:
            code = server.stop()
            say(f"{engine}: server stopped (exit {code})")
            stuck = _cancelled_at_shutdown(server.log_path)
            self.rows.append(
                Row(
                    "requests still running at shutdown",
                    engine,
                    target="none (nothing hangs)",
                    passed=stuck == 0,
                    note=(
                        f"{stuck} request(s) had not finished when the server was stopped, "
                        "well after the load ended; see the kept server log"
                        if stuck
                        else ""
                    ),
                    detail={"stuck_requests": stuck},
                )
            )
            log_errors = _errors_in_log(server.log_path)
            if log_errors:
                RESULTS.mkdir(parents=True, exist_ok=True)
                kept = RESULTS / f"{_stamp()}-server-{engine}.log"
                shutil.copyfile(server.log_path, kept)
                self.seeding[engine]["server_log_errors"] = log_errors
                self.seeding[engine]["server_log"] = str(kept.relative_to(ROOT))
                say(f"{engine}: server log has error lines, kept in {kept.relative_to(ROOT)}")

    def check(
        self,
        engine: str,
        name: str,
        port: int,
        spec: RequestSpec,
        expected: int,
        measured: list[Row],
    ) -> bool:
        """One request before loading: a scenario that does not answer right is not timed."""
        status, body = request(port, spec)
        if status == expected:
            return True
        measured.append(
            Row(
                name,
                engine,
                passed=False,
                note=f"not measured: answered {status} (wanted {expected}): {body[:200]!r}",
            )
        )
        say(f"{engine}: {name} answered {status}: {body[:300]!r}")
        return False

    def overload(
        self,
        engine: str,
        server: procs.Child,
        port: int,
        specs: list[RequestSpec],
        *,
        what: str,
    ) -> Row:
        """Many connections: every request answers (503 is an answer) and the server recovers.

        The connections open all at once on a server already busy with the usual load.
        The run lasts well past the request timeout, so a request stuck longer is counted
        by wrk; afterwards each kind of request (a read inline on the event loop, a write
        on the thread pool) must answer again on its own, and a 16-connection run of the
        same mix must be clean.
        """
        name = f"{OVERLOAD_CONNECTIONS} connections, {what}"
        say(f"{engine}: {name}")
        duration = max(self.options.duration, 2 * REQUEST_TIMEOUT_S + 5)
        # The burst of new connections meets a server already busy with the usual load
        # (from a second before it to a second after): each must still be accepted at
        # once, not one per turn of the event loop (uvloop's way, bench/README.md).
        cpu_before = server.cpu_seconds()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            busy = pool.submit(
                wrk.run_wrk,
                port,
                specs,
                duration=duration + 2,
                connections=self.options.connections,
                threads=self.options.threads,
                timeout=REQUEST_TIMEOUT_S,
            )
            time.sleep(1)
            result = self.load(
                port, specs, connections=OVERLOAD_CONNECTIONS, duration=duration, warmup=False
            )
            background = busy.result()
        # CPU per request over both loads' requests.
        result.server_cpu_s = (
            (server.cpu_seconds() - cpu_before)
            * result.requests
            / max(1, result.requests + background.requests)
        )
        probes = list({(spec.method, spec.path.split("?")[0]): spec for spec in specs}.values())
        recovered: dict[str, float | None] = {}
        for probe in probes:  # each kind gets 30 s of its own to answer again
            label = f"{probe.method} {probe.path.split('?')[0]}"
            recovered[label] = None
            began = time.monotonic()
            while time.monotonic() < began + 30:
                try:
                    status, _ = request(port, probe, timeout=REQUEST_TIMEOUT_S)
                except OSError:  # includes the timeout: nothing came back in time
                    status = 0
                if 200 <= status < 300:
                    recovered[label] = round(time.monotonic() - began, 1)
                    break
                time.sleep(0.5)
        after = self.load(port, specs, duration=3, warmup=False, server=server)
        row = Row.of(
            name,
            engine,
            result,
            target=f"no request over {REQUEST_TIMEOUT_S:.0f} s, recovers",
            detail={
                "kind": "overload",
                "busy": background.as_dict(),
                "after": after.as_dict(),
                "recovered_after_s": recovered,
            },
        )
        hung = sum(
            run.timeouts + run.read_errors + run.connect_errors for run in (result, background)
        )
        stuck = [label for label, seconds in recovered.items() if seconds is None]
        row.passed = hung == 0 and not stuck and after.errors == 0 and after.non_2xx == 0
        # 503 (the pool's timeout) is an allowed answer under overload, so non-2xx alone
        # does not fail this row; requests over the timeout and no recovery do.
        row.note = _join(
            f"max {result.max_us / 1000:,.0f} ms; afterwards "
            + ", ".join(
                f"{label} {'answered after ' + str(seconds) + 's' if seconds is not None else 'NO ANSWER in 30 s'}"
                for label, seconds in recovered.items()
            )
            + f"; then {after.rps:,.0f} req/s with {after.non_2xx} non-2xx, {after.errors} errors"
            + f"; the busy load beside it: {background.rps:,.0f} req/s, max "
            + f"{background.max_us / 1000:,.0f} ms, {background.errors} errors",
            row.note,
        )
        return row

    def finish_rows(
        self, engine: str, measured: list[Row], baseline_rps: float, baseline_cpu: float | None
    ) -> None:
        self.rows.append(
            Row(
                "baseline: bare FastAPI constant JSON",
                engine,
                rps=round(baseline_rps, 1),
                ratio=1.0,
                cpu_ms=round(baseline_cpu, 3) if baseline_cpu else None,
                cpu_ratio=1.0 if baseline_cpu else None,
                target="(ceiling)",
                note="mean of the runs before and after this engine's scenarios",
            )
        )
        for row in measured:
            if row.rps is not None and baseline_rps:
                row.ratio = round(row.rps / baseline_rps, 3)
            if row.cpu_ms and baseline_cpu:
                row.cpu_ratio = round(baseline_cpu / row.cpu_ms, 3)
            kind = row.detail.get("kind")
            if kind == "list":
                row.passed = (
                    row.clean
                    and (row.ratio or 0) >= LIST_RATIO[engine]
                    and (row.p99_ms or 1e9) < LIST_P99_MS
                )
            elif kind == "post":
                row.passed = row.clean and (row.ratio or 0) >= POST_RATIO[engine]
            elif kind == "insights":
                row.passed = row.clean and (row.p50_ms or 1e9) < INSIGHTS_P50_MS
            self.rows.append(row)

    # -- the worker ----------------------------------------------------------------------

    def run_worker(self, engine: str, workers: int) -> None:
        from bench import seed

        name = f"worker: {self.options.worker_emails:,} due e-mails, " + (
            "1 worker" if workers == 1 else f"{workers} workers"
        )
        target = f">={WORKER_RATE:.0f}/s" if workers == 1 else "all sent once, work shared"
        say(f"== {engine}: {name}")
        with database(engine, self.options.workdir) as url:
            settings = seed.bench_settings(url)
            db_engine = seed.make_engine(settings)
            try:
                seeded = seed_due_emails(settings, db_engine, self.options.worker_emails)
                if isinstance(seeded, str):
                    self.rows.append(Row(name, engine, target=target, note=seeded))
                    say(f"{engine}: {seeded}")
                    return
                self.rows.append(
                    self._send(engine, name, target, settings, db_engine, workers, seeded)
                )
            finally:
                db_engine.dispose()

    def _send(
        self,
        engine: str,
        name: str,
        target: str,
        settings: Any,
        db_engine: Any,
        workers: int,
        seeded: dict[str, Any],
    ) -> Row:
        from bench import seed

        expected = seeded["requests"]
        ports = [procs.free_port() for _ in range(workers)]
        sink_log = self.options.workdir / f"sink-{engine}-{workers}.txt"
        sink_log.unlink(missing_ok=True)
        sink = procs.Child(
            "smtp-sink",
            [
                str(procs.BIN / "python"),
                "-m",
                "bench.smtp_sink",
                "--ports",
                ",".join(map(str, ports)),
                "--out",
                str(sink_log),
            ],
            env=_clean_env(),
            log_path=self.options.workdir / "smtp-sink.log",
        )
        children: list[procs.Child] = []
        try:
            _wait_for_ports(sink, ports)
            # CPU time of the workers alone: they are the only children reaped meanwhile.
            import resource

            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            began = time.monotonic()
            for index, port in enumerate(ports):
                env = {
                    **_clean_env(),
                    **seed.server_env(settings),
                    "REBOUND_EMAIL_BACKEND": "smtp",
                    "REBOUND_SMTP_URL": f"smtp://127.0.0.1:{port}",
                }
                children.append(
                    procs.Child(
                        f"worker-{index}",
                        [str(procs.BIN / "rebound"), "worker", "--once"],
                        env=env,
                        log_path=self.options.workdir / f"worker-{engine}-{workers}-{index}.log",
                    )
                )
            limit = 120 + expected / 20  # bounded: far above the slowest plausible rate
            codes = [child.wait(max(1.0, limit - (time.monotonic() - began))) for child in children]
            wall = time.monotonic() - began
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            time.sleep(1.0)  # let the sink write what it accepted last
        finally:
            for child in children:
                child.stop(grace=10)
            sink.stop(grace=10)
        lines = [line.split() for line in sink_log.read_text().splitlines() if line.strip()]
        recipients = [line[2] for line in lines]
        per_port = {port: sum(1 for line in lines if int(line[1]) == port) for port in ports}
        duplicates = len(recipients) - len(set(recipients))
        first = min((float(line[0]) for line in lines), default=0.0)
        last = max((float(line[0]) for line in lines), default=0.0)
        span = last - first
        rate = len(lines) / span if span > 0 else 0.0
        states = _feedback_states(db_engine)
        detail = {
            "kind": "worker",
            "expected": expected,
            "delivered": len(lines),
            "unique_recipients": len(set(recipients)),
            "duplicates": duplicates,
            "per_worker": list(per_port.values()),
            "first_to_last_s": round(span, 2),
            "wall_s": round(wall, 2),
            "wall_rate": round(len(lines) / wall, 1) if wall else 0,
            "worker_cpu_s": round(cpu, 2),
            "exit_codes": codes,
            "feedback_request_states": states,
            "seeding": seeded,
        }
        problems = []
        if None in codes:
            problems.append("a worker did not finish in time")
        elif any(codes):
            problems.append(f"worker exit codes {codes}")
        if len(lines) != expected:
            problems.append(f"{len(lines)} of {expected} delivered")
        if duplicates:
            problems.append(f"{duplicates} duplicates")
        shared = workers == 1 or all(count > 0 for count in per_port.values())
        if not shared:
            problems.append("one worker sent nothing")
        ok = not problems and shared
        if workers == 1:
            ok = ok and rate >= WORKER_RATE
        note = _join(
            f"{rate:,.0f}/s first-to-last, {len(lines) / wall:,.0f}/s wall incl. start-up, "
            f"worker CPU {cpu:.1f} s"
            + ("" if workers == 1 else f"; split {'/'.join(map(str, per_port.values()))}"),
            "; ".join(problems),
        )
        say(f"{engine}: {name}: {note}")
        return Row(
            name, engine, rps=round(rate, 1), target=target, passed=ok, note=note, detail=detail
        )

    # -- output --------------------------------------------------------------------------

    def table(self) -> str:
        header = (
            "scenario",
            "engine",
            "req/s",
            "ratio",
            "p50 ms",
            "p99 ms",
            "target",
            "result",
            "CPU ms/req",
            "CPU ratio",
        )
        lines = [header]
        for row in self.rows:
            lines.append(
                (
                    row.scenario,
                    row.engine,
                    f"{row.rps:,.0f}" if row.rps is not None else "-",
                    f"{row.ratio:.3f}" if row.ratio is not None else "-",
                    f"{row.p50_ms:.1f}" if row.p50_ms is not None else "-",
                    f"{row.p99_ms:.1f}" if row.p99_ms is not None else "-",
                    row.target,
                    {True: "PASS", False: "FAIL", None: "-"}[row.passed],
                    f"{row.cpu_ms:.2f}" if row.cpu_ms is not None else "-",
                    f"{row.cpu_ratio:.3f}" if row.cpu_ratio is not None else "-",
                )
            )
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        out = []
        for index, line in enumerate(lines):
            out.append(
                "| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)) + " |"
            )
            if index == 0:
                out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        notes = [f"- {row.scenario} ({row.engine}): {row.note}" for row in self.rows if row.note]
        return "\n".join(out) + ("\n\nNotes:\n" + "\n".join(notes) if notes else "")

    def write_json(self, machine: dict[str, Any], commit: dict[str, Any]) -> Path:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{_stamp()}-{commit['short']}.json"
        document = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "commit": commit,
            "machine": machine,
            "options": {
                key: (str(value) if isinstance(value, Path) else value)
                for key, value in asdict(self.options).items()
            },
            "baselines": self.baselines,
            "seeding": self.seeding,
            "rows": [asdict(row) for row in self.rows],
            "profiles": self.profiles,
        }
        path.write_text(json.dumps(document, indent=2, default=str))
        return path


# --- helpers ----------------------------------------------------------------------------


def _join(*parts: str) -> str:
    return "; ".join(part for part in parts if part)


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d-%H%M")


def _clean_env() -> dict[str, str]:
    """This environment without REBOUND_* (the benchmark sets its own) and without .env."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("REBOUND_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def request(port: int, spec: RequestSpec, *, timeout: float = 30.0) -> tuple[int, bytes]:
    body = spec.body.replace("%d", "0") if spec.body is not None else None
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(spec.method, spec.path, body=body, headers=spec.headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _errors_in_log(path: Path) -> list[str]:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [line for line in lines if '"level": "error"' in line or "Traceback" in line][:20]


def _cancelled_at_shutdown(path: Path) -> int:
    """Requests uvicorn had to cancel at shutdown: each one hung past the end of the load."""
    import re

    try:
        text = path.read_text(errors="replace")
    except OSError:
        return 0
    found = re.findall(r"Cancel (\d+) running task", text)
    return sum(int(n) for n in found)


def _wait_for_ports(child: procs.Child, ports: list[int], timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    pending = set(ports)
    while pending and time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited early:\n{child.log_tail()}")
        for port in list(pending):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                pending.discard(port)
        time.sleep(0.2)
    if pending:
        raise RuntimeError(f"{child.name} is not listening on {sorted(pending)}")


@contextlib.contextmanager
def database(engine: str, workdir: Path) -> Iterator[str]:
    """A fresh database, migrated with `rebound migrate`; removed afterwards."""
    from bench import seed

    if engine == "sqlite":
        folder = Path(tempfile.mkdtemp(prefix="sqlite-", dir=workdir))
        url = f"sqlite:///{folder / 'rebound.db'}"
    else:
        url = seed.create_postgres_database(POSTGRES_SERVER)
    try:
        env = {**_clean_env(), "REBOUND_DATABASE_URL": url}
        subprocess.run(
            [str(procs.BIN / "rebound"), "migrate"],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
            timeout=300,
        )
        yield url
    finally:
        if engine == "sqlite":
            shutil.rmtree(folder, ignore_errors=True)
        else:
            seed.drop_postgres_database(url)


def seed_due_emails(settings: Any, db_engine: Any, count: int) -> dict[str, Any] | str:
    """`count` scheduled e-mail feedback requests, all due now; or why it cannot be done."""
    try:
        from api.feedback import service as feedback
        from api.feedback.schemas import FeedbackRequestCreate
    except ImportError as exc:
        return f"pending: api.feedback.service is not there yet ({exc})"
    if not hasattr(feedback, "create_feedback_request"):
        return "pending: api.feedback.service has no create_feedback_request yet"
    import random
    from datetime import timedelta

    from api.db import open_session, utcnow
    from api.rejections.schemas import RejectionCreate
    from api.rejections.service import create_rejection
    from bench import seed

    started = time.monotonic()
    per_user = 100
    users = seed.create_users(
        db_engine, [f"sender{i}@bench.example.com" for i in range(max(1, count // per_user))]
    )
    rng = random.Random(3)
    today = datetime.now(UTC).date()
    made = 0
    while made < count:
        session = open_session(db_engine)
        try:
            for index in range(made, min(count, made + 200)):
                owner = users[index % len(users)]
                rejection = create_rejection(
                    session=session,
                    owner=owner,
                    data=RejectionCreate.model_validate(seed.rejection_fields(rng, index, today)),
                )
                feedback.create_feedback_request(
                    session=session,
                    settings=settings,
                    owner=owner,
                    rejection=rejection,
                    data=FeedbackRequestCreate(
                        recipient_name=f"Hiring Manager {index}",
                        recipient_email=f"hiring{index}@example.com",
                        channel="email",
                        send_at=utcnow() - timedelta(minutes=5),
                    ),
                )
            session.commit()
        except Exception as exc:  # the feature is being built: report, do not crash
            session.rollback()
            return f"pending: seeding through api.feedback.service failed: {exc!r}"[:400]
        finally:
            session.close()
        made = min(count, made + 200)
        if made % 2000 == 0:
            say(f"due e-mails seeded: {made}/{count}")
    return {
        "requests": count,
        "users": len(users),
        "seconds": round(time.monotonic() - started, 1),
        "due_jobs": _count_due_jobs(db_engine),
    }


def _count_due_jobs(db_engine: Any) -> dict[str, int]:
    from sqlalchemy import text

    with db_engine.connect() as connection:
        rows = connection.execute(
            text("SELECT kind, count(*) FROM jobs WHERE status = 'pending' GROUP BY kind")
        ).all()
    return {str(kind): int(n) for kind, n in rows}


def _feedback_states(db_engine: Any) -> dict[str, int]:
    from sqlalchemy import text

    try:
        with db_engine.connect() as connection:
            rows = connection.execute(
                text("SELECT status, count(*) FROM feedback_requests GROUP BY status")
            ).all()
    except Exception:
        return {}
    return {str(status): int(n) for status, n in rows}


def machine_info() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_gb = 0.0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    return {
        "nproc": os.cpu_count(),
        "memory_gb": memory_gb,
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": os.getloadavg(),
    }


def commit_info() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
            ).stdout.strip()
        except OSError:
            return ""

    changed = [line for line in git("status", "--porcelain").splitlines() if line.strip()]
    return {
        "sha": git("rev-parse", "HEAD") or "unknown",
        "short": git("rev-parse", "--short", "HEAD") or "unknown",
        "uncommitted_changes": len(changed),
    }


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--only", choices=["sqlite", "postgres"], help="one engine only")
    parser.add_argument(
        "--quick", action="store_true", help="short runs, smaller scale and worker loads"
    )
    parser.add_argument(
        "--duration", type=float, help="seconds per measurement (default 10, quick 4)"
    )
    parser.add_argument(
        "--warmup", type=float, help="seconds of warm-up before each (default 2, quick 1)"
    )
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument(
        "--skip-scale", action="store_true", help="leave out the 1,000,000-row table"
    )
    parser.add_argument("--skip-worker", action="store_true", help="leave out the e-mail worker")
    parser.add_argument(
        "--skip-api", action="store_true", help="leave out the HTTP scenarios (worker only)"
    )
    parser.add_argument(
        "--scale-rows", type=int, help="rows of the scale table (default 1,000,000)"
    )
    parser.add_argument("--worker-emails", type=int, help="due e-mails (default 10,000)")
    parser.add_argument(
        "--profile",
        nargs="?",
        const="py-spy",
        help="also record py-spy profiles (path to py-spy; default: py-spy on PATH)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (server logs)")
    args = parser.parse_args(argv)
    quick = args.quick
    scale_rows = args.scale_rows or (100_000 if quick else 1_000_000)
    profile = None
    if args.profile:
        profile = shutil.which(args.profile) or (
            args.profile if Path(args.profile).exists() else None
        )
        if profile is None:
            parser.error(
                f"py-spy not found ({args.profile}); install it outside the project, e.g. "
                "`python3 -m venv /tmp/pyspy && /tmp/pyspy/bin/pip install py-spy`, "
                "then --profile /tmp/pyspy/bin/py-spy"
            )
    return Options(
        engines=[args.only] if args.only else ["sqlite", "postgres"],
        duration=args.duration or (4.0 if quick else 10.0),
        warmup=args.warmup if args.warmup is not None else (1.0 if quick else 2.0),
        connections=args.connections,
        threads=args.threads,
        quick=quick,
        skip_scale=args.skip_scale,
        skip_worker=args.skip_worker,
        skip_api=args.skip_api,
        scale_users=max(1, scale_rows // 100),
        scale_rows=scale_rows,
        worker_emails=args.worker_emails or (1_000 if quick else 10_000),
        extras_every=5 if quick else 1,
        profile=profile,
        workdir=Path(tempfile.mkdtemp(prefix="rebound-bench-")),
        keep=args.keep,
    )


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    wrk.require_wrk()
    procs.install_cleanup()
    machine, commit = machine_info(), commit_info()
    say(
        f"rebound bench: {', '.join(options.engines)}; {options.duration:.0f}s per measurement, "
        f"{options.connections} connections; commit {commit['short']}; "
        f"{machine['nproc']} CPUs, load {machine['load_average_at_start'][0]:.1f}"
    )
    bench = Bench(options)
    failed = False
    try:
        bench.start_baseline()
        for engine in [] if options.skip_api else options.engines:
            try:
                bench.run_engine(engine)
            except Exception as exc:
                failed = True
                say(f"{engine}: the run broke: {exc!r}")
                bench.rows.append(Row("(run)", engine, passed=False, note=f"broke: {exc!r}"[:500]))
        if not options.skip_worker:
            for engine in options.engines:
                for workers in [1, 2] if engine == "postgres" else [1]:
                    try:
                        bench.run_worker(engine, workers)
                    except Exception as exc:
                        failed = True
                        say(f"{engine} worker: the run broke: {exc!r}")
                        bench.rows.append(
                            Row(
                                f"worker x{workers}",
                                engine,
                                passed=False,
                                note=f"broke: {exc!r}"[:500],
                            )
                        )
    finally:
        procs.stop_all()
        machine["load_average_at_end"] = os.getloadavg()
        if not options.keep:
            shutil.rmtree(options.workdir, ignore_errors=True)
        else:
            say(f"work folder kept: {options.workdir}")
    print()
    print(bench.table())
    path = bench.write_json(machine, commit)
    print(f"\nwritten: {path.relative_to(ROOT)}")
    if options.quick:
        print("(--quick: short runs and smaller loads; the targets are judged on a full run)")
    failures = [row for row in bench.rows if row.passed is False]
    return 1 if failed or failures else 0


if __name__ == "__main__":
    sys.exit(main())
