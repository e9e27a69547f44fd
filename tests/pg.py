"""A real PostgreSQL for the tests: Debian's server binaries, a throw-away cluster on a loopback port.

:func:`postgres_cluster` runs ``initdb`` + ``pg_ctl`` in a temporary directory once per test session (as a
non-root OS user when the tests run as root: PostgreSQL refuses to run as root; the user
``sharelab-pg`` is created when missing). :func:`skip_reason` says why it cannot run here (no binaries),
so the PostgreSQL half of the suite skips with that reason instead of failing. The README's test command
(``./run-demo.sh test``) installs the ``postgresql`` package first on root machines with apt-get.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support import free_port

__all__ = ["PgCluster", "pg_bin", "postgres_cluster", "skip_reason"]

PG_USER = "sharelab-pg"


def pg_bin(name: str) -> str | None:
    """The path of PostgreSQL's ``name`` (initdb, pg_ctl...): on PATH or in Debian's versioned dirs."""
    found = shutil.which(name)
    if found:
        return found
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.access(os.path.join(d, name), os.X_OK):
            return os.path.join(d, name)
    return None


def skip_reason() -> str | None:
    """Why a PostgreSQL cluster cannot be started here, or None when it can."""
    if pg_bin("initdb") is None or pg_bin("pg_ctl") is None:
        return (
            "PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's postgresql "
            "package (`apt-get install -y postgresql`; ./run-demo.sh test does it as root)"
        )
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed: pip install -c constraints.txt -e '.[test]'"
    if os.geteuid() == 0 and shutil.which("useradd") is None:
        with contextlib.suppress(KeyError):
            pwd.getpwnam(PG_USER)
            return None
        return (
            f"running as root without useradd: cannot create the OS user {PG_USER} for PostgreSQL"
        )
    return None


@dataclass
class PgCluster:
    """A running throw-away cluster: ``url()`` gives a libpq URL (``schema=`` keeps tests apart)."""

    root: Path
    port: int
    user: str = "postgres"

    def url(self, schema: str | None = None, database: str = "postgres") -> str:
        base = f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"
        return f"{base}?schema={schema}" if schema else base

    def fresh_url(self) -> str:
        """A URL on a new, empty schema."""
        return self.url(f"t_{uuid.uuid4().hex[:12]}")


def _as_pg_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
            check=True,
            capture_output=True,
        )
    return ["setpriv", f"--reuid={PG_USER}", f"--regid={PG_USER}", "--init-groups", *cmd]


@contextlib.contextmanager
def postgres_cluster() -> Iterator[PgCluster]:
    """Start a cluster (trust auth, fsync off, loopback port, socket in its own directory); stop it after."""
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    assert initdb and pg_ctl, skip_reason()
    root = Path(tempfile.mkdtemp(prefix="sharelab-pg-"))
    os.chmod(root, 0o755)
    data = root / "data"
    if os.geteuid() == 0:
        _as_pg_user(["true"])  # creates the user
        shutil.chown(root, PG_USER, PG_USER)
    port = free_port()
    env = dict(os.environ, LC_ALL="C.UTF-8", LANG="C.UTF-8")
    subprocess.run(
        _as_pg_user(
            [initdb, "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"]
        ),
        check=True,
        capture_output=True,
        env=env,
        cwd=root,
    )
    opts = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
    )
    subprocess.run(
        _as_pg_user([pg_ctl, "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "start"]),
        check=True,
        capture_output=True,
        env=env,
        cwd=root,
    )
    try:
        yield PgCluster(root, port)
    finally:
        subprocess.run(
            _as_pg_user([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]),
            capture_output=True,
            env=env,
            cwd=root,
        )
        shutil.rmtree(root, ignore_errors=True)


# ------------------------------------------------------------------ backend-neutral looks into a catalog
def catalog_dump(cat: object) -> list[str]:
    """Every row of the catalog ``cat`` as text (SQLite: ``iterdump``; PostgreSQL: every table of its
    schema, sorted), to prove a failed call changed nothing."""
    import sqlite3

    db = cat.db  # type: ignore[attr-defined]
    if db.backend == "sqlite":
        with sqlite3.connect(cat.path) as conn:  # type: ignore[attr-defined]
            return list(conn.iterdump())

    def rows(conn: sqlite3.Connection) -> list[str]:
        out: list[str] = []
        for table in table_names_in(conn, "postgresql"):
            for r in conn.execute(f"SELECT * FROM {table}").fetchall():
                out.append(f"{table}: {tuple(r)!r}")
        return sorted(out)

    return list(db.read(rows))


def table_names_in(conn: object, backend: str) -> list[str]:
    sql = (
        "SELECT name FROM sqlite_master WHERE type = 'table'"
        if backend == "sqlite"
        else "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = current_schema() ORDER BY table_name"
    )
    return [str(r[0]) for r in conn.execute(sql).fetchall()]  # type: ignore[attr-defined]


def table_names(cat: object) -> set[str]:
    """The tables of the catalog ``cat``'s database (either backend)."""
    db = cat.db  # type: ignore[attr-defined]
    return set(db.read(lambda conn: table_names_in(conn, db.backend)))


def count_rows(cat: object, table: str) -> int:
    """``SELECT count(*) FROM table`` through the catalog's own database layer."""
    db = cat.db  # type: ignore[attr-defined]
    return int(db.read(lambda conn: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]))


def outside_count(cat: object, table: str) -> int:
    """``count(*)`` of ``table`` seen from another connection (not the caller's transaction)."""
    from helpers.catalog.db import Database

    db = cat.db  # type: ignore[attr-defined]
    url = cat.url if getattr(cat, "url", None) else cat.path  # type: ignore[attr-defined]
    other = Database(url)
    try:
        return (
            int(
                other.read(lambda conn: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            )
            if db
            else 0
        )
    finally:
        other.close()
