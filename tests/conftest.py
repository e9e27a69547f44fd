"""Shared fixtures: every test gets its own lab home and free loopback ports, and cleans up what it starts.

The helpers behind them (``start_server``, ``free_port``, ``sharelab()``, the seed-000 SQL) live in
:mod:`tests.support`; import them from there, not from this file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import REPO, RunningServer, free_port, start_server, stop_server

# Servers the tests start run one process unless a test asks for more (``--workers N``): tests look into
# the server's pid (threads, descriptors); the product's default is min(2, cores) (helpers.server.workers).
os.environ.setdefault("SHARELAB_WORKERS", "1")


@pytest.fixture
def lab_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh lab home, also exported as SHARELAB_HOME for code that reads the environment."""
    home = tmp_path / "lab-home"
    home.mkdir()
    monkeypatch.setenv("SHARELAB_HOME", str(home))
    return home


@pytest.fixture
def server_factory() -> Iterator[Callable[..., RunningServer]]:
    """Start servers on demand (``server_factory(home)``); all are stopped after the test."""
    started: list[RunningServer] = []

    def factory(home: Path, **kwargs: Any) -> RunningServer:
        server = start_server(home, **kwargs)
        started.append(server)
        return server

    yield factory
    for server in started:
        stop_server(server)


SANITIZE = REPO / "tests" / "notebooks" / "sanitize.cfg"


def _run_nbval(
    notebooks: list[Path], home: Path, *, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    """Re-execute ``notebooks`` with ``pytest --nbval-lax`` in lab home ``home`` (server on a free port).

    Cells marked ``# NBVAL_CHECK_OUTPUT`` or tagged ``nbval-check-output`` must reproduce their committed
    outputs once ``sanitize.cfg`` has masked times, tokens, ports and paths. Stops the server after.
    """
    from helpers import server

    env = dict(os.environ, SHARELAB_HOME=str(home), SHARELAB_PORT=str(free_port()))
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--nbval-lax",
        "--nbval-current-env",
        "--nbval-sanitize-with",
        str(SANITIZE),
        "--nbval-cell-timeout",
        "600",
        "-o",
        "addopts=",
        "--rootdir",
        str(REPO),
        *map(str, notebooks),
    ]
    try:
        return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    finally:
        server.stop(home)


@pytest.fixture
def run_nbval():
    """:func:`_run_nbval`: nbval over committed notebooks in a given lab home."""
    return _run_nbval


# ------------------------------------------------------------------ catalog backends (SQLite, PostgreSQL)
#: Test modules whose every test runs twice: on the SQLite catalog and on a PostgreSQL catalog (a real
#: server from Debian's packages, see :mod:`tests.pg`; skipped with the reason where it cannot run).
BOTH_BACKENDS = {
    "test_catalog.py",
    "test_catalog_backends.py",
    "test_sql_control.py",
    "test_sql_data.py",
    "test_tokens.py",
    "test_mesh.py",
    "test_mesh_governance.py",
    "test_sql_views.py",
    "test_shared_views.py",
    "test_sql_ddl.py",
    "test_workers.py",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow modules first: ``./run-demo.sh test`` hands whole files to the workers in this order
    (``--dist loadfile --no-loadscope-reorder``: a module's shared fixture, such as the hub's classroom,
    is made once), and the longest files started first finish together instead of one worker waiting
    for the last of them (a stable sort: the order inside a file is kept)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if (
        metafunc.definition.path.name in BOTH_BACKENDS
        and "catalog_backend" in metafunc.fixturenames
    ):
        metafunc.parametrize(
            "catalog_backend", ["sqlite", "postgresql"], indirect=True, scope="module"
        )


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Any]:
    """One throw-away PostgreSQL cluster for the session (skips with the reason when it cannot start)."""
    from tests.pg import postgres_cluster, skip_reason

    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    with postgres_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="module", autouse=True)
def catalog_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """``"sqlite"`` (the default), or ``"postgresql"``: then ``$SHARELAB_CATALOG_URL`` names the session's
    cluster with one schema per lab home (``schema={home}``), so every catalog the module's tests (and the
    servers they start) open lives there, each lab home apart. A module-scoped fixture that opens a catalog
    takes ``catalog_backend`` as an argument, so it is made again for each backend."""
    backend = str(getattr(request, "param", "sqlite"))
    before = os.environ.get("SHARELAB_CATALOG_URL")
    if backend == "postgresql":
        os.environ["SHARELAB_CATALOG_URL"] = request.getfixturevalue("pg_cluster").url("{home}")
    else:
        os.environ.pop("SHARELAB_CATALOG_URL", None)
    try:
        yield backend
    finally:
        if before is None:
            os.environ.pop("SHARELAB_CATALOG_URL", None)
        else:
            os.environ["SHARELAB_CATALOG_URL"] = before


@pytest.fixture(autouse=True)
def _sqlite_only(request: pytest.FixtureRequest, catalog_backend: str) -> None:
    """Skip a test marked ``sqlite_only(reason)`` in the PostgreSQL run of its module."""
    marker = request.node.get_closest_marker("sqlite_only")
    if catalog_backend == "postgresql" and marker is not None:
        pytest.skip(f"SQLite-only: {marker.args[0] if marker.args else 'tests the SQLite file'}")
