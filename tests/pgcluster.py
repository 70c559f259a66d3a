"""A throwaway PostgreSQL cluster started from the installed server binaries (tests, benchmarks).

PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user in a
folder that user owns.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def binaries_missing() -> str | None:
    """Why a cluster cannot start here, or None."""
    for name in ("initdb", "pg_ctl", "postgres"):
        if shutil.which(name) is None:
            return f"PostgreSQL server binary {name!r} not on PATH"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run the server"
    return None


class Cluster:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="chairside-pg-", dir="/tmp"))
        self.port = _free_port()
        self.running = False
        self._as_root = os.geteuid() == 0
        if self._as_root:
            os.chmod(self.dir, 0o755)
            shutil.chown(self.dir, user="postgres")

    def _run(self, *args: str) -> None:
        cmd = list(args)
        if self._as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> Cluster:
        data = self.dir / "data"
        self._run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        self.resume()
        return self

    def resume(self) -> None:
        """Start the server on its existing data (after `start`, and again after `pause`)."""
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200 "
            "-c shared_buffers=128MB"
        )
        data = str(self.dir / "data")
        self._run("pg_ctl", "-D", data, "-w", "-l", str(self.dir / "log"), "-o", options, "start")
        self.running = True

    def pause(self) -> None:
        """Stop the server, keeping its data (an outage; `resume` ends it)."""
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")
        self.running = False

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str, template: str | None = None) -> str:
        import psycopg

        with psycopg.connect(self.url().replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            extra = f' TEMPLATE "{template}"' if template else ""
            conn.execute(f'CREATE DATABASE "{name}"{extra}')
        return self.url(name)

    def stop(self) -> None:
        if self.running:
            self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "immediate", "stop")
            self.running = False
        shutil.rmtree(self.dir, ignore_errors=True)
