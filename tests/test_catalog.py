"""The provider catalog: tables, shares and entries, recipients, grants, audit, names and atomicity."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from deltalake import DeltaTable, write_deltalake

from helpers.catalog import (
    AUDIT_COLUMNS,
    SCHEMA_VERSION,
    AuditEvent,
    Catalog,
    PartitionClause,
    open_catalog,
    parse_delta_path,
    validate_name,
)
from helpers.catalog import tokens as tokens_mod
from helpers.exceptions import (
    AlreadyExistsError,
    InvalidArgumentError,
    InvalidNameError,
    NotADeltaTableError,
    NotFoundError,
    SharelabError,
    TokenError,
)
from helpers.home import LabHome, resolve_home
from tests.pg import catalog_dump, count_rows, table_names


@pytest.fixture(scope="session")
def delta_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three tiny Delta tables (read-only in the tests): partitioned by region, plain, and a spare."""
    root = tmp_path_factory.mktemp("delta")
    flights = pd.DataFrame(
        {"id": [1, 2, 3], "region": ["eu", "us", "eu"], "seats": [180, 150, 200]}
    )
    write_deltalake(root / "flights", flights, partition_by=["region"])
    write_deltalake(root / "flights", flights.assign(id=[4, 5, 6]), mode="append")  # version 1
    write_deltalake(root / "sales", pd.DataFrame({"order_id": [1, 2], "amount": [9.5, 3.25]}))
    write_deltalake(root / "crew", pd.DataFrame({"name": ["ana"], "base": ["LIS"]}))
    (root / "not_delta").mkdir()
    (root / "not_delta" / "x.parquet").write_bytes(b"")
    return root


@pytest.fixture
def cat(lab_home: Path) -> Catalog:
    c = Catalog(lab_home / "catalog.db")
    yield c
    c.close()


@pytest.fixture
def airline(cat: Catalog, delta_dir: Path) -> Catalog:
    """The catalog with airline.sales_domain.{flights,sales} registered."""
    cat.register_table("airline.sales_domain.flights", delta_dir / "flights")
    cat.register_table("airline.sales_domain.sales", delta_dir / "sales")
    return cat


def dump(cat: Catalog) -> list[str]:
    """Every row of the catalog as text, to prove a failed call changed nothing (either backend)."""
    return catalog_dump(cat)


# ---------------------------------------------------------------- home


def test_procs_pid_port_and_spawn(tmp_path: Path) -> None:
    import socket
    import sys

    from helpers.exceptions import ServerError
    from helpers.procs import free_port, pid_alive, spawn_and_wait

    assert pid_alive(os.getpid()) and not pid_alive(0) and not pid_alive(2**22 + 12345)
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # really free
    marker = tmp_path / "ready"
    log = tmp_path / "logs" / "child.log"
    code = (
        f"import pathlib, time; print('up'); pathlib.Path({str(marker)!r}).touch(); time.sleep(60)"
    )
    proc = spawn_and_wait([sys.executable, "-c", code], ready=marker.exists, timeout=30, log=log)
    try:
        assert pid_alive(proc.pid)
    finally:
        proc.terminate()
        proc.wait()
    assert "up" in log.read_text()
    with pytest.raises(ServerError, match="exited with code 3"):
        spawn_and_wait(
            [sys.executable, "-c", "print('boom'); raise SystemExit(3)"],
            ready=lambda: False,
            timeout=30,
            log=log,
        )


def test_resolve_home_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARELAB_HOME", str(tmp_path / "from-env"))
    assert resolve_home(tmp_path / "explicit") == (tmp_path / "explicit").resolve()
    assert (tmp_path / "explicit").is_dir()
    assert resolve_home() == (tmp_path / "from-env").resolve()
    monkeypatch.delenv("SHARELAB_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert resolve_home() == (tmp_path / "user" / ".sharelab").resolve()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(InvalidArgumentError, match="not a directory"):
        resolve_home(tmp_path / "afile")


def test_lab_home_layout_and_server_state(lab_home: Path) -> None:
    import json
    import os

    home = LabHome.resolve()
    assert home.path == lab_home.resolve()
    assert home.catalog_path == home.path / "catalog.db"
    assert home.data_dir.name == "data" and home.profiles_dir.name == "profiles"
    assert home.server_dir.name == "server" and home.jupyter_dir.name == "jupyter"
    assert home.server_state() is None
    home.server_dir.mkdir()
    (home.server_dir / "server.json").write_text(json.dumps({"pid": os.getpid(), "port": 1}))
    assert home.server_state() is None  # live pid, but no server holds the lock: a stale file
    import fcntl

    with open(home.server_dir / "server.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what a running server does
        assert home.server_state() == {"pid": os.getpid(), "port": 1}
    assert home.server_state() is None  # the lock was released with the file
    (home.server_dir / "server.json").write_text(json.dumps({"pid": 2**22 + 12345, "port": 1}))
    assert home.server_state() is None  # dead pid
    (home.server_dir / "server.json").write_text("{not json")
    assert home.server_state() is None
    c = open_catalog()
    assert c.path == home.catalog_path and c.schema_version() == SCHEMA_VERSION
    c.close()


# ---------------------------------------------------------------- schema version


@pytest.mark.sqlite_only("the SQLite file's journal mode and user_version")
def test_schema_version_and_reopen(lab_home: Path) -> None:
    c = Catalog(lab_home)  # a directory means <dir>/catalog.db
    assert c.path == (lab_home / "catalog.db").resolve()
    assert c.schema_version() == SCHEMA_VERSION
    c.create_share("s")
    c.close()
    again = Catalog(lab_home / "catalog.db")
    assert [s.name for s in again.list_shares()] == ["s"]
    with sqlite3.connect(again.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    again.close()
    with pytest.raises(SharelabError, match="newer than this sharelab"):
        Catalog(lab_home / "catalog.db")


# ---------------------------------------------------------------- tables


def test_register_and_lookup_tables(airline: Catalog, delta_dir: Path) -> None:
    info = airline.get_table("AIRLINE.Sales_Domain.FLIGHTS")
    assert info.name == "airline.sales_domain.flights"
    assert (info.catalog, info.schema, info.table) == ("airline", "sales_domain", "flights")
    assert info.location == str((delta_dir / "flights").resolve())
    assert info.registered_at.tzinfo is not None
    assert [t.table for t in airline.list_tables()] == ["flights", "sales"]
    assert [t.table for t in airline.list_tables("AIRLINE", "sales_domain")] == ["flights", "sales"]
    assert airline.list_tables("other") == []
    with pytest.raises(NotFoundError, match="not registered"):
        airline.get_table("airline.sales_domain.nope")


def test_register_requires_delta_table(cat: Catalog, delta_dir: Path) -> None:
    bad = delta_dir / "not_delta"
    with pytest.raises(NotADeltaTableError, match=str(bad.resolve())):
        cat.register_table("a.b.c", bad)
    with pytest.raises(NotADeltaTableError, match="missing"):
        cat.register_table("a.b.c", delta_dir / "missing")
    with pytest.raises(InvalidNameError, match="3 dot-separated parts"):
        cat.register_table("a.b", delta_dir / "sales")
    assert cat.list_tables() == []


def test_register_duplicate_and_replace(airline: Catalog, delta_dir: Path) -> None:
    with pytest.raises(AlreadyExistsError, match="already registered"):
        airline.register_table("Airline.Sales_Domain.Sales", delta_dir / "crew")
    info = airline.register_table("airline.sales_domain.sales", delta_dir / "crew", replace=True)
    assert info.location == str((delta_dir / "crew").resolve())
    assert len(airline.list_tables()) == 2


def test_unregister_table_refuses_while_shared(airline: Catalog) -> None:
    airline.create_share("s")
    airline.add_table_to_share("s", "airline.sales_domain.sales")
    with pytest.raises(InvalidArgumentError, match="remove it from those shares"):
        airline.unregister_table("airline.sales_domain.sales")
    airline.remove_table_from_share("s", "sales_domain.sales")
    assert airline.unregister_table("airline.sales_domain.sales") is True
    assert airline.unregister_table("airline.sales_domain.sales", if_exists=True) is False
    with pytest.raises(NotFoundError):
        airline.unregister_table("airline.sales_domain.sales")


# ---------------------------------------------------------------- shares


def test_create_and_drop_share(cat: Catalog) -> None:
    s = cat.create_share("Airline_Core_Share", "core tables")
    assert (s.name, s.comment) == ("Airline_Core_Share", "core tables")
    assert len(s.id) == 36 and s.created_at.tzinfo is not None
    with pytest.raises(AlreadyExistsError, match="IF NOT EXISTS"):
        cat.create_share("airline_core_share")
    same = cat.create_share("AIRLINE_CORE_SHARE", "other", if_not_exists=True)
    assert same == s  # unchanged, same id
    assert cat.get_share("airline_core_share").id == s.id
    assert [x.name for x in cat.list_shares()] == ["Airline_Core_Share"]
    assert cat.drop_share("airline_core_share") is True
    assert cat.drop_share("airline_core_share", if_exists=True) is False
    with pytest.raises(NotFoundError, match="CREATE SHARE"):
        cat.drop_share("airline_core_share")
    with pytest.raises(NotFoundError):
        cat.get_share("airline_core_share")


def test_drop_share_removes_entries_and_grants(airline: Catalog) -> None:
    airline.create_share("s")
    airline.add_table_to_share("s", "airline.sales_domain.sales")
    airline.add_schema_to_share("s", "airline.sales_domain")
    airline.create_recipient("r")
    airline.grant("s", "r")
    old_id = airline.get_share("s").id
    airline.drop_share("s")
    assert airline.grants_to_recipient("r") == []
    new = airline.create_share("s")
    assert new.id != old_id
    assert airline.share_entries("s") == [] and airline.shared_tables("s") == []
    assert airline.grants_on_share("s") == []
    assert count_rows(airline, "share_entries") == 0
    assert count_rows(airline, "grants") == 0


def test_schema_entry_covers_tables_registered_later(airline: Catalog, delta_dir: Path) -> None:
    airline.create_share("sales_data_share")
    entry = airline.add_schema_to_share("sales_data_share", "airline.sales_domain", history=True)
    assert (entry.kind, entry.source, entry.alias, entry.history) == (
        "schema",
        "airline.sales_domain",
        "sales_domain",
        True,
    )
    names = [(t.schema, t.name) for t in airline.shared_tables("sales_data_share")]
    assert names == [("sales_domain", "flights"), ("sales_domain", "sales")]
    airline.register_table("airline.sales_domain.crew", delta_dir / "crew")
    airline.register_table("airline.other.crew", delta_dir / "crew")  # another schema: not covered
    tables = airline.shared_tables("sales_data_share")
    assert [t.name for t in tables] == ["crew", "flights", "sales"]
    crew = airline.get_shared_table("SALES_DATA_SHARE", "Sales_Domain", "CREW")
    assert crew.location == str((delta_dir / "crew").resolve()) and crew.history is True
    assert crew.source == "airline.sales_domain.crew"
    assert crew.share_id == airline.get_share("sales_data_share").id
    with pytest.raises(AlreadyExistsError):
        airline.add_schema_to_share("sales_data_share", "other_catalog.sales_domain")
    assert airline.shared_schemas("sales_data_share") == ["sales_domain"]
    airline.remove_schema_from_share("sales_data_share", "airline.sales_domain")
    assert airline.shared_tables("sales_data_share") == []
    with pytest.raises(NotFoundError):
        airline.remove_schema_from_share("sales_data_share", "sales_domain")


def test_empty_schema_entry_is_listed(cat: Catalog) -> None:
    cat.create_share("s")
    cat.add_schema_to_share("s", "airline.operations_domain")
    assert cat.shared_tables("s") == []
    assert cat.shared_schemas("s") == ["operations_domain"]


def test_set_comment_on_shares_and_recipients(cat: Catalog) -> None:
    cat.create_share("s", comment="old")
    cat.create_recipient("r")
    cat.set_comment("share", "S", "new text")
    cat.set_comment("recipient", "r", "a reader")
    assert cat.get_share("s").comment == "new text"
    assert cat.get_recipient("r").comment == "a reader"
    cat.set_comment("share", "s", None)  # NULL removes it
    assert cat.get_share("s").comment is None
    with pytest.raises(NotFoundError):
        cat.set_comment("share", "missing", "x")
    with pytest.raises(InvalidArgumentError, match="SHARE or RECIPIENT"):
        cat.set_comment("table", "s", "x")
    with pytest.raises(InvalidArgumentError):
        cat.set_comment("share", "s", 42)  # type: ignore[arg-type]


def test_table_entries_alias_comment_history(airline: Catalog) -> None:
    airline.create_share("s")
    e = airline.add_table_to_share(
        "s", "airline.sales_domain.sales", comment="orders", history=True
    )
    assert (e.alias, e.comment, e.history, e.kind) == (
        "sales_domain.sales",
        "orders",
        True,
        "table",
    )
    e2 = airline.add_table_to_share("s", "AIRLINE.SALES_DOMAIN.SALES", alias="public.orders")
    assert e2.alias == "public.orders" and e2.history is False
    with pytest.raises(AlreadyExistsError, match="AS schema.table"):
        airline.add_table_to_share("s", "airline.sales_domain.flights", alias="PUBLIC.ORDERS")
    with pytest.raises(NotFoundError, match="not registered"):
        airline.add_table_to_share("s", "airline.sales_domain.nope")
    with pytest.raises(NotFoundError, match="CREATE SHARE"):
        airline.add_table_to_share("nope", "airline.sales_domain.sales")
    with pytest.raises(InvalidNameError):
        airline.add_table_to_share("s", "airline.sales_domain.sales", alias="a.b.c")
    assert [x.alias for x in airline.share_entries("s")] == ["sales_domain.sales", "public.orders"]
    t = airline.get_shared_table("s", "Public", "Orders")
    assert (t.schema, t.name, t.comment, t.source) == (
        "public",
        "orders",
        None,
        "AIRLINE.SALES_DOMAIN.SALES",
    )
    with pytest.raises(NotFoundError, match="no table"):
        airline.get_shared_table("s", "public", "missing")
    airline.remove_table_from_share("s", "PUBLIC.orders")
    with pytest.raises(NotFoundError, match="SHOW ALL IN SHARE"):
        airline.remove_table_from_share("s", "public.orders")


def test_explicit_entry_wins_over_schema_entry(airline: Catalog) -> None:
    airline.create_share("s")
    airline.add_schema_to_share("s", "airline.sales_domain")
    airline.add_table_to_share(
        "s",
        "airline.sales_domain.flights",
        alias="sales_domain.flights",
        partition=[("region", "eu")],
    )
    flights = airline.get_shared_table("s", "sales_domain", "flights")
    assert flights.partition_filter == (PartitionClause("region", "eu", False),)
    assert len(airline.shared_tables("s")) == 2
    with pytest.raises(NotFoundError, match="REMOVE SCHEMA"):
        airline.remove_table_from_share("s", "sales_domain.sales")


def test_shared_table_ids_are_stable(airline: Catalog) -> None:
    airline.create_share("s")
    airline.add_schema_to_share("s", "airline.sales_domain")
    first = {(t.schema, t.name): t.id for t in airline.shared_tables("s")}
    second = {(t.schema, t.name): t.id for t in airline.shared_tables("s")}
    assert first == second and len(set(first.values())) == 2
    airline.create_share("t")
    airline.add_schema_to_share("t", "airline.sales_domain")
    assert set(first.values()).isdisjoint(t.id for t in airline.shared_tables("t"))


def test_delta_path_source(cat: Catalog, delta_dir: Path) -> None:
    cat.create_share("s")
    path = delta_dir / "crew"
    assert parse_delta_path(f"delta.`{path}`") == str(path)
    assert parse_delta_path("a.b.c") is None
    with pytest.raises(InvalidArgumentError, match="AS schema.table"):
        cat.add_table_to_share("s", f"delta.`{path}`")
    with pytest.raises(NotADeltaTableError, match="not_delta"):
        cat.add_table_to_share("s", f"DELTA.`{delta_dir / 'not_delta'}`", alias="x.y")
    e = cat.add_table_to_share("s", f"DELTA.`{path}`", alias="ops.crew")
    assert e.source == f"delta.`{path.resolve()}`"
    t = cat.get_shared_table("s", "ops", "crew")
    assert t.location == str(path.resolve())
    assert cat.list_tables() == []  # stored as a path, not registered


def test_partition_filters(airline: Catalog) -> None:
    airline.create_share("s")
    e = airline.add_table_to_share(
        "s",
        "airline.sales_domain.flights",
        alias="ops.eu",
        partition=[PartitionClause("REGION", "eu")],
    )
    assert e.partition_filter == (PartitionClause("REGION", "eu", False),)
    e2 = airline.add_table_to_share(
        "s",
        "airline.sales_domain.flights",
        alias="ops.mine",
        partition=[("region", "region", True)],
    )
    clause = e2.partition_filter[0]
    assert clause.is_property and str(clause) == "region = CURRENT_RECIPIENT().region"
    r = airline.create_recipient("r", properties={"Region": "us"})
    assert clause.resolve(r) == "us"
    assert clause.resolve(airline.create_recipient("r2")) is None
    assert str(e.partition_filter[0]) == "REGION = 'eu'"
    with pytest.raises(InvalidArgumentError, match="'seats' is not a partition column.*region"):
        airline.add_table_to_share(
            "s", "airline.sales_domain.flights", alias="x.y", partition=[("seats", 1)]
        )
    with pytest.raises(InvalidArgumentError, match="no partition columns"):
        airline.add_table_to_share(
            "s", "airline.sales_domain.sales", alias="x.y", partition=[("amount", 1)]
        )
    with pytest.raises(InvalidArgumentError, match="twice"):
        airline.add_table_to_share(
            "s",
            "airline.sales_domain.flights",
            alias="x.y",
            partition=[("region", "a"), ("REGION", "b")],
        )
    with pytest.raises(InvalidArgumentError, match="property name"):
        airline.add_table_to_share(
            "s", "airline.sales_domain.flights", alias="x.y", partition=[("region", "", True)]
        )
    assert len(airline.share_entries("s")) == 2


def test_start_version(airline: Catalog, delta_dir: Path) -> None:
    airline.create_share("s")
    latest = DeltaTable(str(delta_dir / "flights")).version()
    e = airline.add_table_to_share("s", "airline.sales_domain.flights", start_version=latest)
    assert e.start_version == latest
    assert airline.get_shared_table("s", "sales_domain", "flights").start_version == latest
    with pytest.raises(InvalidArgumentError, match="after the latest version"):
        airline.add_table_to_share(
            "s", "airline.sales_domain.flights", alias="a.b", start_version=latest + 1
        )
    with pytest.raises(InvalidArgumentError, match="non-negative"):
        airline.add_table_to_share(
            "s", "airline.sales_domain.flights", alias="a.b", start_version=-1
        )


# ---------------------------------------------------------------- recipients and grants


def test_recipients(cat: Catalog) -> None:
    r = cat.create_recipient("sales_team", "the sales analysts", {"region": "eu", "tier": 2})
    assert r.properties == {"region": "eu", "tier": "2"} and r.comment == "the sales analysts"
    assert len(r.id) == 36
    with pytest.raises(AlreadyExistsError):
        cat.create_recipient("SALES_TEAM")
    assert cat.create_recipient("Sales_Team", if_not_exists=True) == r
    r2 = cat.set_recipient_properties("SALES_TEAM", {"REGION": "us", "country": "PT"})
    assert r2.properties == {"tier": "2", "REGION": "us", "country": "PT"}
    r3 = cat.set_recipient_properties("sales_team", {"country": None})
    assert r3.properties == {"tier": "2", "REGION": "us"}
    with pytest.raises(InvalidArgumentError):
        cat.create_recipient("x", properties={"a": "1", "A": "2"})
    with pytest.raises(InvalidArgumentError):
        cat.create_recipient("x", properties={"": "1"})
    with pytest.raises(NotFoundError, match="CREATE RECIPIENT"):
        cat.set_recipient_properties("nobody", {"a": "b"})
    assert [x.name for x in cat.list_recipients()] == ["sales_team"]
    assert cat.get_recipient("Sales_Team").id == r.id


def test_drop_recipient_removes_tokens_and_grants_keeps_audit(cat: Catalog) -> None:
    cat.create_share("s")
    cat.create_recipient("r")
    cat.grant("s", "r")
    tok = cat.issue_token("r")
    cat.create_activation("r")
    cat.record_audit([AuditEvent("listShares", recipient="r", status_code=200)])
    assert cat.drop_recipient("R") is True
    assert cat.authenticate(tok.token) is None
    assert cat.grants_on_share("s") == []
    assert cat.drop_recipient("r", if_exists=True) is False
    with pytest.raises(NotFoundError):
        cat.drop_recipient("r")
    for table in ("tokens", "activations", "grants"):
        assert count_rows(cat, table) == 0
    assert cat.audit_frame()["recipient"].tolist() == ["r"]


def test_grants(cat: Catalog) -> None:
    for s in ("airline_core_share", "sales_data_share", "operations_data_share"):
        cat.create_share(s)
    cat.create_recipient("sales_team")
    cat.create_recipient("operations_team")
    g = cat.grant("Airline_Core_Share", "SALES_TEAM")
    assert (g.share, g.recipient) == ("airline_core_share", "sales_team")
    assert cat.grant("airline_core_share", "sales_team") == g  # idempotent, same time
    cat.grant("sales_data_share", "sales_team")
    cat.grant("airline_core_share", "operations_team")
    cat.grant("operations_data_share", "operations_team")
    assert [x.recipient for x in cat.grants_on_share("airline_core_share")] == [
        "operations_team",
        "sales_team",
    ]
    assert [s.name for s in cat.recipient_shares("sales_team")] == [
        "airline_core_share",
        "sales_data_share",
    ]
    assert cat.has_grant("SALES_DATA_SHARE", "sales_team") is True
    assert cat.has_grant("operations_data_share", "sales_team") is False
    assert cat.has_grant("nope", "nobody") is False
    with pytest.raises(NotFoundError, match="share 'nope'"):
        cat.grant("nope", "sales_team")
    with pytest.raises(NotFoundError, match="recipient 'nobody'"):
        cat.grant("sales_data_share", "nobody")
    assert cat.revoke("sales_data_share", "sales_team") is True
    assert cat.revoke("sales_data_share", "sales_team") is False
    assert [g.share for g in cat.grants_to_recipient("sales_team")] == ["airline_core_share"]
    with pytest.raises(NotFoundError):
        cat.revoke("nope", "sales_team")
    with pytest.raises(NotFoundError):
        cat.grants_to_recipient("nobody")


# ---------------------------------------------------------------- audit


def test_audit_frame(cat: Catalog) -> None:
    empty = cat.audit_frame()
    assert list(empty.columns) == list(AUDIT_COLUMNS) and len(empty) == 0
    assert str(empty["event_time"].dtype) == "datetime64[ns, UTC]"
    events = [
        AuditEvent(
            "queryTable",
            recipient="r",
            share="s",
            schema="sc",
            table="t",
            version=3,
            num_files=2,
            has_predicate_hints=True,
            status_code=200,
            user_agent="Delta-Sharing-Python/1.4.2",
            client_address="127.0.0.1",
            duration_ms=12.5,
            response_format="parquet",
        ),
        AuditEvent(
            "queryTableChanges",
            start_version=1,
            end_version=4,
            has_limit_hint=True,
            status_code=403,
        ),
    ]
    assert cat.record_audit(events) == 2
    assert cat.record_audit([]) == 0
    frame = cat.audit_frame()
    assert list(frame.columns) == list(AUDIT_COLUMNS)
    assert frame["event_time"].dt.tz is not None
    first = frame.iloc[0]
    assert (first["action"], first["version"], first["num_files"], first["table"]) == (
        "queryTable",
        3,
        2,
        "t",
    )
    assert bool(first["has_predicate_hints"]) and not bool(first["has_limit_hint"])
    second = frame.iloc[1]
    assert (second["start_version"], second["end_version"], second["status_code"]) == (1, 4, 403)
    assert pd.isna(second["version"])
    assert [e.action for e in cat.audit_events()] == ["queryTable", "queryTableChanges"]
    assert [e.action for e in cat.audit_events(limit=1)] == ["queryTableChanges"]
    with pytest.raises(InvalidArgumentError):
        cat.record_audit([{"action": "x"}])  # type: ignore[list-item]


def test_a_large_batch_of_audit_events_is_written_whole_and_in_order(cat: Catalog) -> None:
    """More rows than one INSERT statement carries (the writer's group commits after a burst)."""
    events = [AuditEvent("downloadFile", recipient="r", version=i) for i in range(1201)]
    assert cat.record_audit(events) == 1201
    assert [e.version for e in cat.audit_events()] == list(range(1201))
    with pytest.raises(
        InvalidArgumentError
    ):  # a bad event anywhere: nothing of the batch is written
        cat.record_audit([*events[:600], "not an event"])  # type: ignore[list-item]
    assert len(cat.audit_events()) == 1201


# ---------------------------------------------------------------- names


HOSTILE_OK = [
    "x';DROP_TABLE_shares;--",
    'quote"d',
    "robert'); DELETE".replace(" ", "_"),
    "données_ü_日本語_🙂",
    "a" * 255,
    "Robert');--",
]
HOSTILE_BAD = [
    ("x'; DROP TABLE shares; --", "space"),
    ("a/b", "'/'"),
    ("tab\there", "control character"),
    ("nul\x00x", "control character"),
    ("del\x7f", "control character"),
    ("a" * 256, "at most 255"),
    ("a" * 300, "at most 255"),
    ("", "empty"),
]


@pytest.mark.parametrize("name", HOSTILE_OK)
def test_hostile_names_stored_verbatim(cat: Catalog, name: str, catalog_backend: str) -> None:
    # PostgreSQL's text cannot hold NUL (refused with a clear error, see test_catalog_backends)
    nul = "\x00" if catalog_backend == "sqlite" else ""
    cat.create_share(name, comment=name + " -- '; DROP TABLE recipients;")
    cat.create_recipient(name, comment=nul + " nul and 'quotes'", properties={name: name})
    cat.grant(name, name)
    # NOCASE folds ASCII letters only (documented in helpers.catalog)
    upper = "".join(ch.upper() if ch.isascii() else ch for ch in name)
    assert cat.get_share(upper).name == name
    assert cat.get_share(name).comment == name + " -- '; DROP TABLE recipients;"
    assert cat.get_recipient(name).properties == {name: name}
    assert cat.get_recipient(name).comment == nul + " nul and 'quotes'"
    assert [s.name for s in cat.recipient_shares(name)] == [name]
    assert cat.drop_share(name) and cat.drop_recipient(name)
    names = table_names(cat)  # the schema is intact
    assert {"shares", "recipients", "grants", "tokens", "tables", "audit"} <= names


@pytest.mark.parametrize(("name", "message"), HOSTILE_BAD)
def test_hostile_names_rejected(cat: Catalog, name: str, message: str) -> None:
    before = dump(cat)
    with pytest.raises(InvalidNameError, match=message):
        cat.create_share(name)
    with pytest.raises(InvalidNameError, match=message):
        cat.create_recipient(name)
    assert dump(cat) == before
    assert "\n" not in str(InvalidNameError) and len(cat.list_shares()) == 0


def test_schema_and_table_names_have_no_dots(cat: Catalog, delta_dir: Path) -> None:
    assert validate_name("a.b", "share") == "a.b"  # share names may contain dots
    with pytest.raises(InvalidNameError, match="dots"):
        validate_name("a.b", "schema", allow_dot=False)
    with pytest.raises(InvalidNameError, match="3 dot-separated"):
        cat.register_table("a.b.c.d", delta_dir / "sales")
    with pytest.raises(InvalidNameError, match="space"):
        cat.register_table("a.b c.d", delta_dir / "sales")
    with pytest.raises(InvalidNameError, match="must be a string"):
        cat.create_share(42)  # type: ignore[arg-type]


# ---------------------------------------------------------------- atomicity


def test_failed_calls_leave_the_catalog_unchanged(airline: Catalog, delta_dir: Path) -> None:
    airline.create_share("s")
    airline.create_recipient("r")
    airline.add_table_to_share("s", "airline.sales_domain.sales")
    airline.grant("s", "r")
    before = dump(airline)
    failing = [
        lambda: airline.create_share("S"),
        lambda: airline.create_recipient("R"),
        lambda: airline.grant("s", "nobody"),
        lambda: airline.grant("nope", "r"),
        lambda: airline.register_table("a.b.c", delta_dir / "not_delta"),
        lambda: airline.register_table("airline.sales_domain.sales", delta_dir / "crew"),
        lambda: airline.add_table_to_share("s", "airline.sales_domain.sales"),
        lambda: airline.add_table_to_share(
            "s", "airline.sales_domain.flights", partition=[("id", 1)]
        ),
        lambda: airline.remove_table_from_share("s", "x.y"),
        lambda: airline.drop_share("nope"),
        lambda: airline.drop_recipient("nope"),
        lambda: airline.set_recipient_properties("r", {"a": ["list"]}),
        lambda: airline.issue_token("r", lifetime_seconds=0),
        lambda: airline.rotate_token("r", -1),
        lambda: airline.redeem_activation("not-a-code"),
        lambda: airline.unregister_table("airline.sales_domain.sales"),
    ]
    for call in failing:
        with pytest.raises(SharelabError) as info:
            call()
        assert "\n" not in str(info.value)
        assert dump(airline) == before


def test_failure_inside_a_transaction_rolls_back(
    cat: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redeem_activation marks the code used, then fails to issue: the code must stay redeemable."""
    cat.create_recipient("r")
    code = cat.create_activation("r")
    before = dump(cat)

    def boom(*_args: object, **_kwargs: object) -> str:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(tokens_mod.secrets, "token_urlsafe", boom)
    with pytest.raises(RuntimeError):
        cat.redeem_activation(code)
    monkeypatch.undo()
    assert dump(cat) == before
    assert cat.activation_pending("r")
    recipient, issued = cat.redeem_activation(code)
    assert recipient.name == "r" and cat.authenticate(issued.token) == recipient
    with pytest.raises(TokenError):
        cat.redeem_activation(code)


@pytest.mark.sqlite_only("a corrupt SQLite file")
def test_corrupt_catalog_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "catalog.db"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(SharelabError, match="cannot open the catalog .*catalog.db"):
        Catalog(bad)


def test_audit_event_times_are_exact(cat: Catalog) -> None:
    from datetime import UTC, datetime

    when = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    cat.record_audit([AuditEvent("listShares", event_time=when)])
    assert cat.audit_frame()["event_time"][0] == pd.Timestamp(when)
    assert cat.audit_events()[0].event_time == when
