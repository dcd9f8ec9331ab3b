"""A private PostgreSQL server for the tests and benchmarks: Debian's ``postgresql`` package,
a cluster of its own (``initdb``) in a temporary folder, on a free loopback port, stopped and
removed afterwards.

    python tests/pg.py install    # what `make pg-env` runs: apt-get, once (needs root)

PostgreSQL refuses to run as root, so when the tests run as root the cluster belongs to an
unprivileged system user (Debian's ``postgres``, or ``labelbridge-pg`` created here) and its
programs run through ``runuser``. Connections use trust authentication on 127.0.0.1 only.
``durable=False`` (the tests) turns fsync off: a test database is thrown away anyway;
benchmarks keep it on.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

PACKAGE = "postgresql"
FALLBACK_USER = "labelbridge-pg"


class PgError(RuntimeError):
    pass


def bindir() -> Path | None:
    """The newest installed PostgreSQL's programs (Debian keeps them per major version)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def install() -> None:
    """``apt-get install postgresql`` when no PostgreSQL server is installed."""
    if bindir() is not None:
        print(f"[pg] PostgreSQL present in {bindir()}", flush=True)
        return
    if os.geteuid() != 0:
        raise PgError("PostgreSQL is missing: run `sudo apt-get install -y postgresql`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print("[pg] apt-get install postgresql (once) ...", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", PACKAGE],
                   check=True, env=env)
    if bindir() is None:
        raise PgError("apt-get installed postgresql, but no initdb was found")


def _server_user() -> str | None:
    """Who runs the server: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", FALLBACK_USER):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                    FALLBACK_USER], check=True)
    return FALLBACK_USER


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """``start()`` initialises and starts the cluster; ``stop()`` stops it and removes it."""

    def __init__(self, durable: bool = False, max_connections: int = 300) -> None:
        self.bin = bindir()
        if self.bin is None:
            raise PgError("PostgreSQL is not installed: run `make pg-env` (or "
                          "`python tests/pg.py install`)")
        self.durable = durable
        self.max_connections = max_connections
        self.user = _server_user()
        self.dir = Path(tempfile.mkdtemp(prefix="labelbridge-pg-"))
        self.data = self.dir / "data"
        self.port = 0
        self.started = False

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise PgError(f"{args[0]} failed ({done.returncode}): {done.stderr or done.stdout}"
                          f"{self.log_tail()}")
        return done

    def log_tail(self, lines: int = 30) -> str:
        log = self.dir / "server.log"
        if not log.exists():
            return ""
        return "\n--- server.log ---\n" + "\n".join(log.read_text(errors="replace")
                                                   .splitlines()[-lines:])

    def start(self) -> PgServer:
        if self.user is not None:
            shutil.chown(self.dir, self.user)
            self.dir.chmod(0o700)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--locale=C.UTF-8", "--no-sync", "--no-instructions")
        self.port = free_port()
        return self.restart()

    def restart(self) -> PgServer:
        """Start the cluster (again, after ``crash``) on the same port."""
        options = [f"-p {self.port}", "-c listen_addresses=127.0.0.1",
                   f"-c unix_socket_directories={self.dir}",
                   f"-c max_connections={self.max_connections}", "-c shared_buffers=128MB"]
        if not self.durable:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "server.log"), "-w",
                  "-t", "60", "-o", " ".join(options), "start")
        self.started = True
        return self

    def crash(self) -> None:
        """Stop the server at once, as a crash would (clients lose their connections)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        self.started = False

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def admin(self, *statements: str) -> None:
        """Statements outside a transaction (CREATE DATABASE), as the superuser."""
        import psycopg
        with psycopg.connect(self.url(), autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)

    def create_database(self, name: str, template: str | None = None) -> str:
        """A new database (a copy of ``template``, which must have no connection); its URL."""
        self.admin(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.started:
            try:
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
            except PgError as exc:
                print(f"[pg] {exc}", file=sys.stderr)
            self.started = False
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PgServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    if sys.argv[1:] == ["install"]:
        install()
    else:
        sys.exit("usage: python tests/pg.py install")
