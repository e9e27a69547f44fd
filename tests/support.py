"""Helpers shared by the test suite: a plain module, imported as ``from tests.support import ...``.

- :func:`free_port`: a free loopback TCP port (the project's own :func:`helpers.procs.free_port`);
- :func:`start_server` / :func:`stop_server` / :class:`RunningServer`: ``sharelab serve`` as a subprocess
  on a free port, waited for on ``/health`` (the fixtures ``server_factory`` and the server suite's
  session lab use them);
- :func:`sharelab`: run the ``sharelab`` command line (``python -m helpers``) as a user would;
- :data:`SEED_000_SQL`: seed 000's share topology (three domain shares, two consumers) as SQL;
- :func:`share_tables` / :func:`write_profile`: tables shared to one recipient, and its profile file;
- :func:`blob_table`: a Delta table of one file of incompressible bytes (bigger than inline answers).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import requests

from helpers.catalog import Catalog
from helpers.procs import free_port

__all__ = [
    "REPO",
    "blob_table",
    "share_tables",
    "write_profile",
    "count_generation_reads",
    "SEED_000_SQL",
    "RunningServer",
    "free_port",
    "free_port_run",
    "sharelab",
    "start_server",
    "stop_server",
]

#: The repository root (the working directory of every subprocess the tests start).
REPO = Path(__file__).resolve().parent.parent

#: Seed 000's topology: three domain shares over the airline schemas, two consumers and their grants.
SEED_000_SQL = """
-- seed 000: three domain shares, two consumers
CREATE SHARE IF NOT EXISTS airline_core_share COMMENT 'Shared airline reference data';
CREATE SHARE IF NOT EXISTS sales_data_share COMMENT 'Sales domain';
CREATE SHARE IF NOT EXISTS operations_data_share COMMENT 'Operations domain';
ALTER SHARE airline_core_share ADD SCHEMA airline.shared_airline;
ALTER SHARE sales_data_share ADD SCHEMA airline.sales_domain;
ALTER SHARE operations_data_share ADD SCHEMA airline.operations_domain;
CREATE RECIPIENT IF NOT EXISTS sales_team COMMENT 'Sales analytics';
CREATE RECIPIENT IF NOT EXISTS operations_team COMMENT 'Operations analytics';
GRANT SELECT ON SHARE airline_core_share TO RECIPIENT sales_team;
GRANT SELECT ON SHARE sales_data_share TO RECIPIENT sales_team;
GRANT SELECT ON SHARE airline_core_share TO RECIPIENT operations_team;
GRANT SELECT ON SHARE operations_data_share TO RECIPIENT operations_team;
"""


def sharelab(
    home: Path | None, *args: str, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``sharelab [--home HOME] ARGS...`` in a subprocess from the repository; capture its output.

    With a ``home``, ``SHARELAB_HOME`` is set to it as well (as ``run-demo.sh`` does).
    """
    prefix = ["--home", str(home)] if home is not None else []
    env = dict(os.environ, SHARELAB_HOME=str(home)) if home is not None else None
    return subprocess.run(
        [sys.executable, "-m", "helpers", *prefix, *args],
        capture_output=True,
        text=True,
        input=stdin,
        env=env,
        cwd=REPO,
        timeout=timeout,
    )


@dataclass
class RunningServer:
    """A ``sharelab serve`` subprocess started by :func:`start_server`."""

    home: Path
    host: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def endpoint(self) -> str:
        return f"{self.url}/delta-sharing/"

    def log(self) -> str:
        path = self.home / "server" / "server-test.log"
        return path.read_text() if path.exists() else ""


def start_server(
    home: Path,
    port: int | None = None,
    extra: list[str] | None = None,
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
) -> RunningServer:
    """Start ``sharelab serve`` as a subprocess on a free loopback port and wait for /health.

    :param env: extra environment variables of the server process (e.g. its limits).
    """
    port = port or free_port()
    (home / "server").mkdir(parents=True, exist_ok=True)
    log = open(home / "server" / "server-test.log", "ab")  # noqa: SIM115 - closed with the process
    env = dict(os.environ, SHARELAB_HOME=str(home), PYTHONUNBUFFERED="1", **(env or {}))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "helpers",
            "--home",
            str(home),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *(extra or []),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=REPO,
    )
    server = RunningServer(home=home, host="127.0.0.1", port=port, process=proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{server.log()}")
        try:
            if requests.get(f"{server.url}/health", timeout=1).status_code == 200:
                return server
        except requests.RequestException:
            pass
        time.sleep(0.1)
    stop_server(server)
    raise RuntimeError(f"server did not answer /health within {timeout}s:\n{server.log()}")


def stop_server(server: RunningServer) -> None:
    """Terminate the server (kill it after 10 s) and reap it."""
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@contextlib.contextmanager
def only_worker(worker: psutil.Process, workers: list[psutil.Process]) -> Iterator[None]:
    """Only ``worker`` of a ``--workers N`` server accepts connections inside the block (the others are
    stopped with SIGSTOP and continued after)."""
    stopped = [p for p in workers if p.pid != worker.pid]
    # Let the audit writers commit the rows of the requests just answered: a worker stopped inside a
    # commit would hold the catalog's write lock (PostgreSQL advisory lock) and stall the other one.
    time.sleep(0.5)
    for p in stopped:
        os.kill(p.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for p in stopped:
            os.kill(p.pid, signal.SIGCONT)


def share_crm_tables(cat: Catalog) -> None:
    """The recipient tests' topology over registered ``crm.sales.customers``, ``crm.sales.orders`` and
    ``crm.internal.secret``: ``crm_share`` (customers, with history) and ``orders_share`` granted to
    ``analyst``; ``secret_share`` granted to no one."""
    cat.create_share("crm_share")
    cat.add_table_to_share(
        "crm_share", "crm.sales.customers", alias="sales.customers", history=True
    )
    cat.create_share("orders_share")
    cat.add_table_to_share("orders_share", "crm.sales.orders", alias="sales.orders")
    cat.create_share("secret_share")
    cat.add_table_to_share("secret_share", "crm.internal.secret", alias="internal.secret")
    cat.create_recipient("analyst")
    cat.grant("crm_share", "analyst")
    cat.grant("orders_share", "analyst")


def free_port_run(count: int, low: int = 20000, high: int = 32000) -> int:
    """The first of ``count`` consecutive loopback ports nothing listens on, below the kernel's ephemeral
    range (32768+): a server that takes ``port + 1``... later (the hub's API and proxy) cannot find one
    taken meanwhile by an outgoing connection's source port (a poll of it may even connect to itself)."""
    import random
    import socket

    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(200):
        base = rng.randrange(low, high - count)
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {count} free consecutive ports in {low}-{high}")


def count_generation_reads(monkeypatch: Any) -> list[int]:
    """Count the access generation's reads from the database (statements, not the answers of
    :func:`~helpers.catalog.generation.current_generation` without one): a list that grows by one per
    read."""
    import helpers.catalog.access as access
    import helpers.catalog.generation as generation

    reads: list[int] = []
    original = generation.read_generation

    def counted(conn: Any) -> Any:
        reads.append(1)
        return original(conn)

    # inside a transaction access reads it; outside one generation.current_generation does
    monkeypatch.setattr(access, "read_generation", counted)
    monkeypatch.setattr(generation, "read_generation", counted)
    return reads


def share_tables(
    home: Path, tables: dict[str, Path], share: str = "s", recipient: str = "r"
) -> str:
    """Register ``tables`` (``catalog.schema.table`` -> location) in the lab home ``home``, share them
    all in ``share`` to ``recipient``; returns a bearer token of the recipient."""
    from helpers.catalog import open_catalog
    from helpers.provider import Provider

    sql = [f"CREATE SHARE {share}"]
    for name, location in tables.items():
        sql += [
            f"CREATE TABLE {name} LOCATION '{location}'",
            f"ALTER SHARE {share} ADD TABLE {name}",
        ]
    sql += [
        f"CREATE RECIPIENT {recipient}",
        f"GRANT SELECT ON SHARE {share} TO RECIPIENT {recipient}",
    ]
    Provider(home).sql(";".join(sql))
    return open_catalog(home).issue_token(recipient).token


def write_profile(path: Path, endpoint: str, token: str) -> Path:
    """A profile file for ``endpoint`` and ``token`` at ``path``."""
    path.write_text(
        json.dumps({"shareCredentialsVersion": 1, "endpoint": endpoint, "bearerToken": token})
    )
    return path


def blob_table(path: Path, rows: int, blob: int = 256 * 1024) -> bytes:
    """A Delta table at ``path`` of one parquet file: ``rows`` rows of ``blob`` random bytes (it does not
    compress); returns the file's bytes."""
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    blobs = [os.urandom(blob) for _ in range(rows)]
    write_deltalake(
        str(path),
        pa.table({"id": pa.array(range(rows), pa.int64()), "blob": pa.array(blobs, pa.binary())}),
    )
    return (path / DeltaTable(str(path)).file_uris()[0].rpartition("/")[2]).read_bytes()
