"""The recipient's SQL with live shared catalogs (helpers.recipient.RecipientSession), driven as a user would.

A real server on a free loopback port, real Delta tables, a real profile file; the provider side is set up
with the catalog and changed with the provider's SQL (``INSERT``, ``REVOKE``); everything checked goes
through the recipient's statements: ``SHOW PROVIDERS``, ``DESCRIBE PROVIDER``, ``SHOW SHARES IN PROVIDER``,
``CREATE CATALOG ... USING SHARE``, ``DESCRIBE CATALOG``, ``SELECT``.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from helpers import recipient
from helpers.catalog import Catalog
from helpers.exceptions import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
    ReadOnlyShareError,
    ShareAccessError,
    SqlParseError,
)
from helpers.profiles import profile_dict
from helpers.profiles import write_profile as catalog_write_profile
from helpers.provider import Provider
from helpers.recipient.shared_sql import find_shared_refs, split_statements
from tests.support import share_crm_tables

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def shared(lab_home: Path, server_factory) -> dict:
    """Two shares granted to ``analyst`` (customers with history, orders without), one not granted."""
    data = lab_home / "data" / "crm"
    tables = {
        "customers": pa.table({"customer_id": [1, 2, 3, 4], "tier": ["A", "B", "A", "C"]}),
        "orders": pa.table({"order_id": [10, 11, 12], "customer_id": [1, 2, 2]}),
        "secret": pa.table({"x": [1]}),
    }
    for name, table in tables.items():
        write_deltalake(str(data / name), table)
    cat = Catalog(lab_home / "catalog.db")
    cat.register_table("crm.sales.customers", data / "customers")
    cat.register_table("crm.sales.orders", data / "orders")
    cat.register_table("crm.internal.secret", data / "secret")
    share_crm_tables(cat)
    server = server_factory(lab_home)
    profiles = lab_home / "profiles"
    catalog_write_profile(
        profiles / "analyst.share", profile_dict(server.endpoint, cat.issue_token("analyst"))
    )
    return {
        "server": server,
        "profiles": profiles,
        "provider": Provider(lab_home),
        "home": lab_home,
    }


def _session(shared: dict, **kwargs) -> recipient.RecipientSession:
    session = recipient.RecipientSession(shared["profiles"], **kwargs)
    session.sql(
        "CREATE CATALOG crm USING SHARE analyst.crm_share COMMENT 'our CRM partner';"
        "CREATE CATALOG orders USING SHARE analyst.orders_share"
    )
    return session


def _count(session: recipient.RecipientSession, table: str) -> int:
    return int(session.sql(f"SELECT count(*) AS n FROM {table}")["n"].item())


def test_providers_and_their_shares(shared: dict, tmp_path: Path) -> None:
    session = recipient.RecipientSession(shared["profiles"])
    providers = session.sql("SHOW PROVIDERS")
    assert providers[["name", "profile_file"]].values.tolist() == [["analyst", "analyst.share"]]
    assert providers["endpoint"].item() == shared["server"].endpoint.rstrip("/")
    raw = json.loads((shared["profiles"] / "analyst.share").read_text())
    token = raw["bearerToken"]
    described = session.sql("DESCRIBE PROVIDER analyst")
    info = dict(described.values.tolist())
    assert info["endpoint"] == shared["server"].endpoint.rstrip("/")
    assert info["token_expiration_time"] == raw["expirationTime"]  # the lab's tokens expire
    assert token not in described.to_string()  # never print the token
    shares = session.sql("SHOW SHARES IN PROVIDER analyst")
    assert shares["name"].tolist() == ["crm_share", "orders_share"]  # not secret_share
    # Explicit name -> profile; a profile without an expiry says so (and still hides the token).
    forever = tmp_path / "forever.share"
    forever.write_text(json.dumps({k: v for k, v in raw.items() if k != "expirationTime"}))
    other = recipient.RecipientSession({"Airline": forever})
    info = dict(other.sql("DESC PROVIDER airline").values.tolist())
    assert info["name"] == "Airline" and info["token_expiration_time"].startswith("none")
    assert token not in other.sql("DESCRIBE PROVIDER airline").to_string()


def test_live_catalog_sees_a_provider_commit_the_snapshot_does_not(
    shared: dict, tmp_path: Path
) -> None:
    con = duckdb.connect(str(tmp_path / "recipient.duckdb"))
    session = _session(shared, con=con)
    assert session.sql("SHOW SCHEMAS IN crm")["schema_name"].tolist() == ["sales"]
    assert session.sql("SHOW TABLES IN crm.sales")["table"].tolist() == ["customers"]
    info = dict(session.sql("DESCRIBE CATALOG crm").values.tolist())
    assert info["Share Name"] == "crm_share" and info["Provider Name"] == "analyst"
    assert info["Catalog Type"] == "DELTASHARING" and info["Comment"] == "our CRM partner"
    columns = session.sql("DESCRIBE TABLE crm.sales.customers")
    assert columns[["col_name", "data_type"]].values.tolist() == [
        ["customer_id", "long"],
        ["tier", "string"],
    ]

    assert _count(session, "crm.sales.customers") == 4
    assert session.reads[["table", "version", "read", "rows"]].values.tolist() == [
        ["customers", 0, "fetched", 4]
    ]
    assert _count(session, "crm.sales.customers") == 4
    assert session.reads["read"].tolist() == ["cached"]  # same version: no new read
    # A join across two catalogs (two shares).
    joined = session.sql(
        "SELECT c.tier, count(*) AS orders FROM crm.sales.customers AS c "
        "JOIN orders.sales.orders AS o USING (customer_id) GROUP BY c.tier ORDER BY c.tier"
    )
    assert joined.values.tolist() == [["A", 1], ["B", 2]]
    assert sorted(session.reads["table"]) == ["customers", "orders"]

    snapshot = recipient.mount(shared["profiles"] / "analyst.share")
    shared["provider"].sql("INSERT INTO crm.sales.customers VALUES (5, 'B'), (6, 'C')")

    assert _count(session, "crm.sales.customers") == 6  # the next query sees the commit
    assert session.reads[["version", "read"]].values.tolist() == [[1, "fetched"]]
    assert snapshot.sql("SELECT count(*) FROM crm_share.sales.customers").fetchall() == [(4,)]
    assert _count(session, "crm.sales.customers VERSION AS OF 0") == 4  # time travel (history)
    recipient.mount(shared["profiles"] / "analyst.share", snapshot)  # re-mounted: now it sees it
    assert snapshot.sql("SELECT count(*) FROM crm_share.sales.customers").fetchall() == [(6,)]

    # Nothing of the share was copied into the recipient's DuckDB file; a copy of one's own is explicit.
    assert con.sql("SELECT count(*) FROM duckdb_tables()").fetchall() == [(0,)]
    session.sql("CREATE TABLE my_customers AS SELECT * FROM crm.sales.customers")
    assert con.sql("SELECT count(*) FROM my_customers").fetchall() == [(6,)]
    catalogs = session.sql("SHOW CATALOGS")
    live = catalogs[catalogs["type"] == "live shared catalog"]
    assert live[["catalog", "share"]].values.tolist() == [
        ["crm", "crm_share"],
        ["orders", "orders_share"],
    ]
    assert session.sql("DROP CATALOG orders")["status"].item().startswith("catalog orders dropped")
    with pytest.raises(InvalidArgumentError, match="live shared catalogs: crm; SHOW CATALOGS"):
        session.sql("SELECT * FROM orders.sales.orders")


def test_official_loader_and_catalogs_file(shared: dict, tmp_path: Path) -> None:
    path = tmp_path / "catalogs.json"
    fast = _session(shared, catalogs_file=path)
    official = recipient.RecipientSession(shared["profiles"], catalogs_file=path, loader="official")
    assert sorted(official.catalogs) == ["crm", "orders"]  # kept in the file
    query = "SELECT * FROM orders.sales.orders ORDER BY order_id"
    assert fast.sql(query).equals(official.sql(query))
    assert (
        official.sql("CREATE CATALOG IF NOT EXISTS crm USING SHARE analyst.crm_share")["status"]
        .item()
        .endswith("nothing to do")
    )


def test_errors_are_one_line_and_say_what_to_do(shared: dict) -> None:
    session = _session(shared)
    cases = [
        ("DESCRIBE PROVIDER nobody", NotFoundError, "no provider named 'nobody'.*SHOW PROVIDERS"),
        ("SHOW SHARES IN PROVIDER", SqlParseError, "expected a provider name"),
        ("CREATE CATALOG x USING SHARE analyst.secret_share", NotFoundError, "SHOW SHARES IN"),
        ("CREATE CATALOG x USING SHARE nobody.crm_share", NotFoundError, "no provider"),
        ("CREATE CATALOG x USING SHARE crm_share", SqlParseError, "write e.g. CREATE CATALOG"),
        ("CREATE CATALOG x SHARE analyst.crm_share", SqlParseError, "expected USING SHARE"),
        ("CREATE CATALOG crm USING SHARE analyst.crm_share", AlreadyExistsError, "IF NOT EXISTS"),
        ("DESCRIBE CATALOG nope", NotFoundError, "CREATE CATALOG nope USING SHARE"),
        ("SHOW SCHEMAS IN nope", NotFoundError, "no shared catalog"),
        ("SHOW TABLES IN crm.nope", NotFoundError, "no schema 'nope'.*SHOW SCHEMAS IN crm"),
        ("SELECT * FROM crm.sales.nope", NotFoundError, "no table sales.nope.*SHOW TABLES IN"),
        (
            "SELECT * FROM crm.sales.customers TIMESTAMP AS OF '2025-01-01'",
            SqlParseError,
            "VERSION AS OF n",
        ),
        (
            "SELECT * FROM crm.sales.customers VERSION AS OF x",
            SqlParseError,
            "needs a version number",
        ),
        ("SELECT * FROM orders.sales.orders VERSION AS OF 0", ShareAccessError, "WITH HISTORY"),
        ("INSERT INTO crm.sales.customers VALUES (9, 'A')", ReadOnlyShareError, "CREATE TABLE my_"),
        ("DELETE FROM crm.sales.customers", ReadOnlyShareError, "read-only"),
        ("DROP TABLE IF EXISTS crm.sales.customers", ReadOnlyShareError, "read-only"),
        ("SELEC 1", InvalidArgumentError, "DuckDB: Parser Error"),
        ("DROP CATALOG nope", NotFoundError, "no shared catalog"),
    ]
    for statement, error, message in cases:
        with pytest.raises(error, match=message) as info:
            session.sql(statement)
        assert "\n" not in str(info.value), statement
    assert session.sql("DROP CATALOG IF EXISTS nope")["status"].item().endswith("nothing to do")
    assert sorted(session.catalogs) == ["crm", "orders"]  # state unchanged by the failures
    assert _count(session, "crm.sales.customers") == 4
    # An explicit name for an unknown folder, a DuckDB database already using the name.
    with pytest.raises(NotFoundError, match="folder of profile files"):
        recipient.RecipientSession(shared["home"] / "nowhere")
    session.con.execute("ATTACH ':memory:' AS taken")
    with pytest.raises(InvalidArgumentError, match="another name"):
        session.sql("CREATE CATALOG taken USING SHARE analyst.crm_share")


def test_revoked_grant_is_explained(shared: dict) -> None:
    session = _session(shared)
    assert _count(session, "orders.sales.orders") == 3
    shared["provider"].sql("REVOKE SELECT ON SHARE orders_share FROM RECIPIENT analyst")
    with pytest.raises(ShareAccessError, match="HTTP 404.*grant was revoked") as info:
        session.sql("SELECT count(*) FROM orders.sales.orders")
    assert info.value.status == 404
    with pytest.raises(ShareAccessError, match="grant was revoked"):
        session.sql("SHOW TABLES IN orders.sales")
    assert _count(session, "crm.sales.customers") == 4  # the other share still reads
    shared["provider"].sql("ALTER RECIPIENT analyst REVOKE TOKENS")
    with pytest.raises(ShareAccessError, match="HTTP 401.*new profile"):
        session.sql("SELECT count(*) FROM crm.sales.customers")


def test_references_outside_strings_and_comments() -> None:
    text = (
        "SELECT 'crm.sales.customers', x.y FROM crm.sales.customers VERSION AS OF 3 AS c -- crm.a.b\n"
        'JOIN "CRM"."sales"."orders" o ON true /* crm.c.d */ JOIN other.a.b ON true'
    )
    refs = find_shared_refs(text, ["crm"])
    assert [(r.catalog, r.schema, r.table, r.version) for r in refs] == [
        ("crm", "sales", "customers", 3),
        ("CRM", "sales", "orders", None),
    ]
    assert text[refs[0].start : refs[0].end] == "crm.sales.customers VERSION AS OF 3"
    assert split_statements("SELECT ';'; ; SHOW PROVIDERS;") == ["SELECT ';'", "SHOW PROVIDERS"]
    with pytest.raises(SqlParseError, match="unterminated quote"):
        split_statements("SELECT 'oops")


def test_recipient_sql_modules_use_the_open_protocol_only() -> None:
    for name in ("shared_catalog", "shared_sql", "providers", "mounting"):
        tree = ast.parse((REPO / "helpers" / "recipient" / f"{name}.py").read_text())
        imported = {
            n.module if isinstance(n, ast.ImportFrom) else a.name
            for n in ast.walk(tree)
            if isinstance(n, (ast.Import, ast.ImportFrom))
            for a in n.names
        }
        banned = {
            m
            for m in imported
            if m
            and m.split(".")[:2]
            in (["helpers", s] for s in ("catalog", "provider", "server", "sql"))
        }
        assert not banned, (name, banned)
