"""Driving a server with wrk: a Lua script per scenario, results read from its `done()`.

wrk runs as a separate process on loopback (only 127.0.0.1 is ever a target). Its Lua
`done()` hook prints one JSON line with the counts and latency percentiles; nothing is
parsed out of wrk's human-readable report.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

INSTALL_HINT = (
    "wrk is not installed. On Debian/Ubuntu: `sudo apt-get update && sudo apt-get install -y wrk` "
    "(the Debian package `wrk`); on macOS: `brew install wrk`."
)

MARKER = "BENCH_JSON "

# Round-robins over the request specs; each spec is {method, path, headers, body}.
# A body may contain "%d": it is replaced by a per-thread counter so bodies differ.
_LUA = r"""
local specs = %(specs)s
local counter = 0
thread_id = 0  -- set per thread by setup()
local threads = {}

function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

function request()
  counter = counter + 1
  local spec = specs[(counter %% #specs) + 1]
  local body = spec.body
  if body ~= nil then
    body = string.gsub(body, "%%%%d", tostring(thread_id * 100000000 + counter))
  end
  return wrk.format(spec.method, spec.path, spec.headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%(marker)s{"requests": %%d, "duration_us": %%d, "bytes": %%d, ' ..
    '"connect_errors": %%d, "read_errors": %%d, "write_errors": %%d, ' ..
    '"non_2xx": %%d, "timeouts": %%d, "p50_us": %%d, "p90_us": %%d, "p99_us": %%d, ' ..
    '"max_us": %%d, "mean_us": %%f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""


@dataclass
class RequestSpec:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None


@dataclass
class WrkResult:
    requests: int
    duration_us: int
    bytes: int
    connect_errors: int
    read_errors: int
    write_errors: int
    non_2xx: int
    timeouts: int
    p50_us: int
    p90_us: int
    p99_us: int
    max_us: int
    mean_us: float
    connections: int = 0
    threads: int = 0
    # CPU seconds the loaded server process spent during the run (all its threads).
    server_cpu_s: float = 0.0

    @property
    def rps(self) -> float:
        return self.requests / (self.duration_us / 1e6) if self.duration_us else 0.0

    @property
    def cpu_ms_per_request(self) -> float | None:
        return (
            1000 * self.server_cpu_s / self.requests
            if self.requests and self.server_cpu_s
            else None
        )

    @property
    def errors(self) -> int:
        return self.connect_errors + self.read_errors + self.write_errors + self.timeouts

    def as_dict(self) -> dict[str, float | int]:
        data: dict[str, float | int] = asdict(self)
        data["rps"] = round(self.rps, 1)
        cpu = self.cpu_ms_per_request
        data["cpu_ms_per_request"] = round(cpu, 3) if cpu is not None else None
        return data


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit(INSTALL_HINT)
    return path


def _lua_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _lua_specs(specs: list[RequestSpec]) -> str:
    items = []
    for spec in specs:
        headers = ", ".join(
            f"[{_lua_string(k)}] = {_lua_string(v)}" for k, v in spec.headers.items()
        )
        body = _lua_string(spec.body) if spec.body is not None else "nil"
        items.append(
            f"{{method = {_lua_string(spec.method)}, path = {_lua_string(spec.path)}, "
            f"headers = {{{headers}}}, body = {body}}}"
        )
    return "{" + ",\n  ".join(items) + "}"


def lua_script(specs: list[RequestSpec]) -> str:
    return _LUA % {"specs": _lua_specs(specs), "marker": MARKER}


def run_wrk(
    port: int,
    specs: list[RequestSpec],
    *,
    duration: float,
    connections: int = 16,
    threads: int = 1,
    timeout: float = 10.0,
) -> WrkResult:
    """Load 127.0.0.1:`port` with `specs` for `duration` seconds; bounded by a hard timeout."""
    wrk = require_wrk()
    threads = max(1, min(threads, connections))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua_script(specs))
    try:
        argv = [
            wrk,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            f"--timeout={max(1, round(timeout))}s",
            "-s",
            script.name,
            f"http://127.0.0.1:{port}{specs[0].path}",
        ]
        completed = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=duration + timeout + 60,
            check=False,
        )
    finally:
        Path(script.name).unlink(missing_ok=True)
    for line in completed.stdout.splitlines():
        if line.startswith(MARKER):
            data = json.loads(line[len(MARKER) :])
            return WrkResult(**data, connections=connections, threads=threads)
    raise RuntimeError(
        f"wrk gave no result (exit {completed.returncode}):\n{completed.stdout}\n{completed.stderr}"
    )
