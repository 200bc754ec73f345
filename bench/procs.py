"""Child processes of the benchmark: started in their own process group, always stopped.

Every process the benchmark starts (servers, the SMTP sink, workers) is registered here;
`stop_all()` runs at exit and on SIGINT/SIGTERM, so an interrupted run leaves nothing
behind. Processes are only ever signalled by the ids this module recorded.
"""

from __future__ import annotations

import atexit
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

_RUNNING: list[Child] = []


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Child:
    """One child process with its output in a log file."""

    def __init__(
        self, name: str, argv: Sequence[str], *, env: dict[str, str], log_path: Path
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.process = subprocess.Popen(
            self.argv,
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as one
        )
        _RUNNING.append(self)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait(self, timeout: float) -> int | None:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace: float = 25.0) -> int | None:
        """SIGTERM to the child's own process group, then SIGKILL after `grace` seconds."""
        if self.alive():
            self._signal(signal.SIGTERM)
            if self.wait(grace) is None:
                self._signal(signal.SIGKILL)
                self.wait(10)
        if self in _RUNNING:
            _RUNNING.remove(self)
        self._log.close()
        return self.process.returncode

    def _signal(self, sig: signal.Signals) -> None:
        try:
            os.killpg(self.process.pid, sig)  # the group this child leads, nothing else
        except ProcessLookupError:
            pass

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process (all its threads) so far."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> dict[str, float]:
        """Resident memory now (VmRSS) and at its peak (VmHWM), in MB."""
        values: dict[str, float] = {}
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    values[key] = int(rest.split()[0]) / 1024
        except OSError:
            pass
        return {"rss_mb": values.get("VmRSS", 0.0), "peak_rss_mb": values.get("VmHWM", 0.0)}


def http_get(port: int, path: str, *, headers: dict[str, str] | None = None, timeout: float = 5.0):
    """(status, body) of one GET on loopback; raises OSError when nothing answers."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def wait_until_serving(
    child: Child, port: int, path: str = "/healthz", timeout: float = 90
) -> None:
    """Poll `path` until it answers 200; fail with the log's tail if the child died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited early:\n{child.log_tail()}")
        try:
            status, _ = http_get(port, path, timeout=2)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    child.stop()
    raise RuntimeError(f"{child.name} did not answer {path} in {timeout:.0f}s:\n{child.log_tail()}")


def stop_all() -> None:
    for child in list(reversed(_RUNNING)):
        child.stop(grace=10)


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    stop_all()
    raise SystemExit(128 + signum)


def install_cleanup() -> None:
    atexit.register(stop_all)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
