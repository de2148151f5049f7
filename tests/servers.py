"""Real servers for integration tests: started on 127.0.0.1, a free port, in a temp folder.

Each yields how to reach it and stops it afterwards. A missing binary skips the test with
the reason; a server that does not come up fails it with the server's own log.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
START_SECONDS = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    text = log.read_text(errors="replace") if log.exists() else ""
    proc.kill()
    pytest.fail(f"server on port {port} did not come up:\n{text}")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    password: str
    database: str

    def connect(self):
        import psycopg

        return psycopg.connect(host=self.host, port=self.port, user=self.user,
                               password=self.password, dbname=self.database, autocommit=True)


@contextmanager
def postgres() -> Iterator[Postgres]:
    initdb, server = POSTGRES_BIN / "initdb", POSTGRES_BIN / "postgres"
    if not initdb.is_file():
        pytest.skip(f"PostgreSQL is not installed ({initdb} is missing)")
    pytest.importorskip("psycopg", reason="psycopg (Feast's postgres extra) is not installed")
    # PostgreSQL refuses to run as root; CI runs tests as root, so the server runs as nobody
    as_user = {"user": "nobody", "group": "nogroup"} if os.geteuid() == 0 else {}
    # its own folder, not pytest's: that one is private to root, and the server may be nobody
    folder = Path(tempfile.mkdtemp(prefix="mlc-postgres-"))
    data, password = folder / "pgdata", "mlc-test-password"
    (folder / "pwfile").write_text(password + "\n")
    if as_user:
        shutil.chown(folder, *as_user.values())
        shutil.chown(folder / "pwfile", *as_user.values())
    subprocess.run([str(initdb), "-D", str(data), "-U", "mlc", "-A", "scram-sha-256",
                    f"--pwfile={folder / 'pwfile'}", "--no-sync"], check=True,
                   capture_output=True, cwd=folder, **as_user)
    port, log = free_port(), folder / "postgres.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(server), "-D", str(data), "-h", "127.0.0.1", "-p",
                                 str(port), "-k", str(folder), "-c", "fsync=off"],
                                stdout=out, stderr=subprocess.STDOUT, cwd=folder, **as_user)
    try:
        _wait_for_port(port, proc, log)
        server_ = Postgres("127.0.0.1", port, "mlc", password, "postgres")
        _wait_until_accepting(server_, log)
        yield server_
    finally:
        _stop(proc)
        shutil.rmtree(folder, ignore_errors=True)


def _wait_until_accepting(pg: Postgres, log: Path) -> None:
    """The port opens before recovery ends ("the database system is starting up")."""
    import psycopg

    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            with pg.connect():
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                pytest.fail(f"PostgreSQL did not accept connections:\n{log.read_text()}")
            time.sleep(0.2)


@dataclass(frozen=True)
class Redis:
    host: str
    port: int
    password: str


@contextmanager
def _serving(name: str, folder: Path, args) -> Iterator[int]:
    """Run the binary `name` with `args(port)` in `folder` until the block ends; yields the
    port once it accepts connections."""
    binary = shutil.which(name)
    if binary is None:
        pytest.skip(f"{name} is not installed")
    folder.mkdir(parents=True, exist_ok=True)
    port, log = free_port(), folder / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([binary, *args(port)], stdout=out, stderr=subprocess.STDOUT,
                                cwd=folder)
    try:
        _wait_for_port(port, proc, log)
        yield port
    finally:
        _stop(proc)


@contextmanager
def redis(folder: Path, password: str = "mlc-test-password") -> Iterator[Redis]:
    with _serving("redis-server", folder, lambda port: [
            "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder), "--save", "",
            "--appendonly", "no", "--requirepass", password]) as port:
        yield Redis("127.0.0.1", port, password)


@contextmanager
def pushgateway(folder: Path) -> Iterator[str]:
    """A Prometheus Pushgateway; yields its URL."""
    with _serving("prometheus-pushgateway", folder,
                  lambda port: [f"--web.listen-address=127.0.0.1:{port}"]) as port:
        yield f"http://127.0.0.1:{port}"
