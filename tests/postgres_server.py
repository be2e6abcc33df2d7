"""A real, throwaway PostgreSQL server for tests (initdb + pg_ctl in a temp dir).

    with TemporaryPostgres() as pg:
        url = pg.create_database("t1")   # postgresql+psycopg2://postgres@127.0.0.1:PORT/t1

Binaries come from the newest /usr/lib/postgresql/*/bin, or $IMGPIPE_PG_BIN;
scripts/ensure-postgres.sh installs them.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

PG_USER = "postgres"  # OS user (when root) and database superuser
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    # Tests run up to 8 processes, each with a connection pool.
    "max_connections": "200",
    # Durability is pointless for a throwaway server; these make it fast.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


def find_pg_bin() -> Path:
    override = os.environ.get("IMGPIPE_PG_BIN")
    candidates = [override] if override else sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: [int(x) for x in Path(p).parent.name.split(".") if x.isdigit()])
    for directory in reversed(candidates):
        if (Path(directory) / "initdb").exists() and (Path(directory) / "pg_ctl").exists():
            return Path(directory)
    where = f"IMGPIPE_PG_BIN={override}" if override else "/usr/lib/postgresql/*/bin"
    raise RuntimeError(f"PostgreSQL server binaries (initdb, pg_ctl) not found in {where}; "
                       "run `bash scripts/ensure-postgres.sh` to install them")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


class TemporaryPostgres:
    def __init__(self):
        self.bin = find_pg_bin()
        self.as_root = os.geteuid() == 0
        self.dir: Path | None = None
        self.port: int | None = None
        self._started = False

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def log(self) -> Path:
        return self.dir / "server.log"

    def url_for(self, database: str) -> str:
        return f"postgresql+psycopg2://{PG_USER}@127.0.0.1:{self.port}/{database}"

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        # initdb and postgres refuse to run as root.
        prefix = ["runuser", "-u", PG_USER, "--"] if self.as_root else []
        # cwd: the postgres user may not be able to enter the caller's directory.
        return subprocess.run(prefix + [str(self.bin / args[0]), *args[1:]], cwd=self.dir,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True)

    def __enter__(self) -> "TemporaryPostgres":
        try:
            self._start()
        except BaseException:
            self._cleanup()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._cleanup()

    def _start(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="imgpipe-pg-"))
        if self.as_root:
            try:
                user = pwd.getpwnam(PG_USER)
            except KeyError:
                raise RuntimeError(f"running as root but there is no OS user {PG_USER!r} to run "
                                   "PostgreSQL as; run `bash scripts/ensure-postgres.sh`") from None
            os.chown(self.dir, user.pw_uid, user.pw_gid)
        result = self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", PG_USER,
                           "--no-sync", "-E", "UTF8", "--locale=C")
        if result.returncode:
            raise RuntimeError(f"initdb failed (exit {result.returncode}):\n"
                               f"{_tail(result.stdout + result.stderr)}")
        # Another process may grab the free port before the server binds it; retry then.
        for attempt in range(3):
            self.port = _free_port()
            settings = {**SETTINGS, "port": str(self.port),
                        "unix_socket_directories": f"'{self.dir}'"}
            with open(self.data / "postgresql.auto.conf", "w") as conf:
                conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
            result = self._run("pg_ctl", "start", "-w", "-D", str(self.data), "-l", str(self.log))
            if result.returncode == 0:
                self._started = True
                return
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            if "already in use" not in log or attempt == 2:
                raise RuntimeError(f"PostgreSQL server failed to start (exit {result.returncode}):\n"
                                   f"{_tail(result.stdout + result.stderr)}\n"
                                   f"--- tail of {self.log}:\n{_tail(log)}")

    def _cleanup(self) -> None:
        if self.dir is None:
            return
        if self._started or (self.data / "postmaster.pid").exists():
            if self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data)).returncode:
                self._run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(self.data))
            self._started = False
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def create_database(self, name: str) -> str:
        """Creates an empty database `name`; returns its SQLAlchemy URL."""
        import psycopg2
        from psycopg2 import sql

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=PG_USER, dbname="postgres")
        try:
            conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
            with conn.cursor() as cur:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        finally:
            conn.close()
        return self.url_for(name)
