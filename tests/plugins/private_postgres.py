"""A private PostgreSQL server for tests that stop and start it.

The shared server (REBOUND_TEST_DATABASE_URL) is used by everyone's tests at once and must
never be restarted; `private_postgres` runs its own `postgres` from the distribution's
binaries in a temporary directory, on a free port, for one test:

    def test_outage(private_postgres):
        url = private_postgres.url  # postgresql+psycopg://postgres@127.0.0.1:<port>/rebound
        private_postgres.stop()     # the database goes away (fast shutdown)
        private_postgres.start()
        private_postgres.freeze()   # SIGSTOP: connections open, no answers
        private_postgres.thaw()

It skips when the binaries are missing (fails in CI, see services.py). Run as root, the
server runs as the `postgres` user, since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.server import free_port
from tests.plugins.services import missing_service


def _binaries() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version, reverse=True)
    for directory in candidates:
        if os.path.exists(os.path.join(directory, "pg_ctl")):
            return Path(directory)
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


def _version(directory: str) -> int:
    try:
        return int(Path(directory).parent.name)
    except ValueError:
        return 0


class PrivatePostgres:
    def __init__(self, binaries: Path, root: Path, port: int, user: str | None) -> None:
        self.binaries = binaries
        self.root = root
        self.data = root / "data"
        self.port = port
        self._user = user  # run the binaries as this user (we are root)
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"

    def _run(self, tool: str, *args: str, timeout: float = 60) -> None:
        command = [str(self.binaries / tool), *args]
        if self._user:
            command = ["runuser", "-u", self._user, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed: {result.stdout[-1000:]} {result.stderr[-1000:]}")

    def init(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        )

    def start(self) -> None:
        options = (
            f"-k {self.root} -p {self.port} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c max_connections=200"
        )
        self._run(
            "pg_ctl",
            "start",
            "-w",
            "-D",
            str(self.data),
            "-l",
            str(self.root / "server.log"),
            "-o",
            options,
        )

    def stop(self, mode: str = "fast") -> None:
        """`fast` disconnects every client and shuts down; `immediate` is like a crash."""
        self._run("pg_ctl", "stop", "-w", "-D", str(self.data), "-m", mode)

    def freeze(self) -> None:
        """SIGSTOP the server and its backends: connections stay open, nothing answers
        (a hung server, or a network path that silently drops packets)."""
        for pid in self._processes():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self._processes():
            os.kill(pid, signal.SIGCONT)

    def _processes(self) -> list[int]:
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # the process ended meanwhile
            if int(fields[1]) == postmaster:
                children.append(int(stat.parent.name))
        return [postmaster, *children]

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    binaries = _binaries()
    if binaries is None:
        missing_service("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
        raise AssertionError("unreachable")
    user = None
    root = Path(tempfile.mkdtemp(prefix="rebound-pg-"))
    if os.geteuid() == 0:
        user = "postgres"
        try:
            account = pwd.getpwnam(user)
        except KeyError:
            missing_service("running as root, and there is no `postgres` user to run PostgreSQL")
            raise AssertionError("unreachable") from None
        os.chown(root, account.pw_uid, account.pw_gid)
    server = PrivatePostgres(binaries, root, free_port(), user)
    try:
        server.init()
        server.start()
        yield server
    finally:
        if server.running():
            server.thaw()
            try:
                server.stop("immediate")
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(root, ignore_errors=True)
