"""Control-plane SQL and the Provider API: shares, recipients, tokens, grants, errors and atomicity."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from helpers import provider as provider_mod
from helpers.exceptions import (
    AlreadyExistsError,
    InvalidArgumentError,
    InvalidNameError,
    NotADeltaTableError,
    NotFoundError,
    SharelabError,
    SqlParseError,
)
from helpers.provider import Provider
from tests.support import SEED_000_SQL

LINK = re.compile(r"^http://127\.0\.0\.1:8080/delta-sharing/activation/([A-Za-z0-9_-]{20,})$")


def make_table(path: Path, partition_by: list[str] | None = None) -> Path:
    """A tiny Delta table (3 rows) with a partition-friendly ``region`` column."""
    data = pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int32()),
            "region": ["EU", "US", "EU"],
            "amount": pa.array([1.5, 2.5, 3.5]),
        }
    )
    write_deltalake(str(path), data, partition_by=partition_by)
    return path


@pytest.fixture
def provider(lab_home: Path) -> Provider:
    return Provider(lab_home)


@pytest.fixture
def sales(provider: Provider, lab_home: Path) -> str:
    """``acme.retail.sales``, partitioned by region, registered."""
    location = make_table(lab_home / "tables" / "sales", ["region"])
    provider.sql(f"CREATE TABLE acme.retail.sales LOCATION '{location}'")
    return "acme.retail.sales"


def status(frame) -> str:
    return str(frame["status"].iloc[0])


# -- shares --------------------------------------------------------------------------------------


def test_share_lifecycle(provider: Provider) -> None:
    assert "created" in status(provider.sql("CREATE SHARE retail COMMENT 'Retail data'"))
    with pytest.raises(AlreadyExistsError, match="IF NOT EXISTS"):
        provider.sql("create share RETAIL")
    assert "nothing changed" in status(provider.sql("CREATE SHARE IF NOT EXISTS Retail"))
    shares = provider.sql("SHOW SHARES")
    assert list(shares.columns) == ["name", "created_at", "comment"]
    assert shares[["name", "comment"]].values.tolist() == [["retail", "Retail data"]]
    assert str(shares["created_at"].dt.tz) == "UTC"
    described = provider.sql("DESCRIBE SHARE RETAIL")
    assert described.loc[0, "name"] == "retail"
    assert described.loc[0, "tables"] == 0
    # IF NOT EXISTS never changes an existing share; COMMENT ON does
    provider.sql("CREATE SHARE IF NOT EXISTS retail COMMENT 'ignored'")
    assert provider.catalog.get_share("retail").comment == "Retail data"
    provider.sql("COMMENT ON SHARE retail IS 'Retail data, v2'")
    assert provider.catalog.get_share("retail").comment == "Retail data, v2"
    provider.sql("COMMENT ON SHARE retail IS NULL")
    assert provider.catalog.get_share("retail").comment is None
    with pytest.raises(NotFoundError):
        provider.sql("COMMENT ON SHARE nope IS 'x'")
    assert "dropped" in status(provider.sql("DROP SHARE retail"))
    assert provider.sql("SHOW SHARES").empty
    with pytest.raises(NotFoundError):
        provider.sql("DROP SHARE retail")
    assert "nothing changed" in status(provider.sql("DROP SHARE IF EXISTS retail"))
    with pytest.raises(NotFoundError):
        provider.sql("DESCRIBE SHARE retail")
    with pytest.raises(NotFoundError):
        provider.sql("SHOW ALL IN SHARE retail")


def test_add_table_with_every_clause(provider: Provider, sales: str) -> None:
    provider.sql("CREATE SHARE s")
    provider.sql(
        f"ALTER SHARE s ADD TABLE {sales} COMMENT 'EU only' "
        "PARTITION (region = 'EU') AS eu.sales WITH HISTORY"
    )
    provider.sql(
        f"ALTER SHARE s ADD {sales} PARTITION (region = CURRENT_RECIPIENT().region) AS mine.sales"
    )
    provider.sql(f"ALTER SHARE s ADD TABLE {sales}")  # default alias retail.sales
    shown = provider.sql("SHOW ALL IN SHARE s").set_index("name")
    assert list(shown.index) == ["eu.sales", "mine.sales", "retail.sales"]
    assert shown.loc["eu.sales", "partitions"] == "region = 'EU'"
    assert shown.loc["eu.sales", "comment"] == "EU only"
    assert bool(shown.loc["eu.sales", "history_shared"]) is True
    assert shown.loc["mine.sales", "partitions"] == "region = CURRENT_RECIPIENT().region"
    assert bool(shown.loc["retail.sales", "history_shared"]) is False
    assert set(shown["shared_object"]) == {sales}
    tables = provider.catalog.shared_tables("s")
    assert [(t.schema, t.name) for t in tables] == [
        ("eu", "sales"),
        ("mine", "sales"),
        ("retail", "sales"),
    ]
    assert provider.sql("DESCRIBE SHARE s").loc[0, "tables"] == 3

    assert "removed" in status(provider.sql("ALTER SHARE s REMOVE TABLE eu.sales"))
    assert len(provider.catalog.share_entries("s")) == 2
    with pytest.raises(NotFoundError):
        provider.sql("ALTER SHARE s REMOVE TABLE eu.sales")


def test_add_table_errors_leave_the_share_unchanged(
    provider: Provider, sales: str, lab_home: Path
) -> None:
    provider.sql("CREATE SHARE s")
    provider.sql(f"ALTER SHARE s ADD TABLE {sales} AS a.b")
    before = provider.catalog.share_entries("s")

    with pytest.raises(InvalidArgumentError, match="not a partition column"):
        provider.sql(f"ALTER SHARE s ADD TABLE {sales} PARTITION (amount = 5) AS c.d")
    with pytest.raises(AlreadyExistsError):
        provider.sql(f"ALTER SHARE s ADD TABLE {sales} AS a.b")
    with pytest.raises(NotFoundError):
        provider.sql("ALTER SHARE s ADD TABLE acme.retail.nope")
    with pytest.raises(NotFoundError):
        provider.sql(f"ALTER SHARE nope ADD TABLE {sales}")
    not_delta = lab_home / "plain"
    not_delta.mkdir()
    with pytest.raises(NotADeltaTableError, match="not a Delta table"):
        provider.sql(f"ALTER SHARE s ADD TABLE delta.`{not_delta}` AS x.y")
    with pytest.raises(InvalidArgumentError, match="start version"):
        provider.sql(
            f"ALTER SHARE s ADD TABLE {sales} WITH CHANGE DATA FEED START VERSION 99 AS e.f"
        )
    assert provider.catalog.share_entries("s") == before


def test_add_delta_path_and_python_api(provider: Provider, lab_home: Path) -> None:
    location = make_table(lab_home / "loose table", ["region"])
    provider.create_share("p")
    provider.sql(f"ALTER SHARE p ADD TABLE delta.`{location}` AS loose.t")
    provider.add_table("p", f"delta.`{location}`", alias="loose.eu", partition="region = 'EU'")
    provider.add_table("p", f"delta.`{location}`", alias="loose.us", partition={"region": "US"})
    shown = provider.show_all_in_share("p").set_index("name")
    assert shown.loc["loose.eu", "partitions"] == "region = 'EU'"
    assert shown.loc["loose.us", "partitions"] == "region = 'US'"
    assert shown.loc["loose.t", "shared_object"] == f"delta.`{location}`"
    provider.remove_table("p", "loose.t")
    assert len(provider.catalog.share_entries("p")) == 2


def test_add_schema_covers_tables_registered_later(provider: Provider, lab_home: Path) -> None:
    provider.sql("CREATE SHARE s; ALTER SHARE s ADD SCHEMA shop.sales WITH HISTORY")
    assert provider.catalog.shared_tables("s") == []
    location = make_table(lab_home / "orders")
    provider.register_table("shop.sales.orders", location)
    shown = provider.sql("SHOW ALL IN SHARE s")
    assert shown[["name", "type", "shared_object", "via_schema"]].values.tolist() == [
        ["sales", "SCHEMA", "shop.sales", None],
        ["sales.orders", "TABLE", "shop.sales.orders", "shop.sales"],
    ]
    with pytest.raises(AlreadyExistsError):
        provider.sql("ALTER SHARE s ADD SCHEMA shop.sales")
    provider.sql("ALTER SHARE s REMOVE SCHEMA sales")
    assert provider.catalog.share_entries("s") == []
    with pytest.raises(NotFoundError):
        provider.sql("ALTER SHARE s REMOVE SCHEMA sales")


def test_create_table_registers_delta_tables_only(provider: Provider, lab_home: Path) -> None:
    location = make_table(lab_home / "t1")
    provider.sql(f"CREATE TABLE a.b.t LOCATION '{location}'")
    with pytest.raises(AlreadyExistsError):
        provider.sql(f"CREATE TABLE a.b.t LOCATION '{location}'")
    assert "nothing changed" in status(
        provider.sql(f"CREATE TABLE IF NOT EXISTS a.b.t LOCATION '{location}'")
    )
    other = make_table(lab_home / "t2")
    provider.sql(f"CREATE OR REPLACE TABLE a.b.t LOCATION '{other}'")
    assert provider.catalog.get_table("a.b.t").location == str(other)
    with pytest.raises(NotADeltaTableError):
        provider.sql(f"CREATE TABLE a.b.u LOCATION '{lab_home}'")
    with pytest.raises(NotFoundError):
        provider.catalog.get_table("a.b.u")
    tables = provider.sql("SHOW TABLES IN a.b")
    assert tables[["catalog", "schema", "table"]].values.tolist() == [["a", "b", "t"]]
    assert provider.sql("SHOW TABLES IN zzz").empty


# -- recipients and tokens -----------------------------------------------------------------------


def test_create_recipient_shows_a_one_time_activation_link(
    provider: Provider, lab_home: Path
) -> None:
    created = provider.sql(
        "CREATE RECIPIENT partner_co COMMENT 'Partner' PROPERTIES ('region' = 'US', 'tier' = 2)"
    )
    link = created.loc[0, "activation_link"]
    code = LINK.match(link).group(1)
    # only hashes are stored: the clear code is nowhere in the catalog files
    for path in lab_home.glob("catalog.db*"):
        assert code.encode() not in path.read_bytes()
    info = dict(provider.sql("DESCRIBE RECIPIENT partner_co").values.tolist())
    assert info["recipient_name"] == "partner_co"
    assert info["comment"] == "Partner"
    assert info["property.region"] == "US" and info["property.tier"] == "2"
    assert info["activation_link"] == link
    assert not any(k.startswith("token.") for k in info)

    # another process (no remembered code) still learns that the link is pending
    provider_mod.forget_activation_codes()
    info = dict(Provider(lab_home).sql("DESCRIBE RECIPIENT partner_co").values.tolist())
    assert info["activation_link"].startswith("pending")

    recipient, issued = provider.catalog.redeem_activation(code)
    assert recipient.name == "partner_co"
    info = dict(provider.sql("DESCRIBE RECIPIENT partner_co").values.tolist())
    token_rows = {k: v for k, v in info.items() if k.startswith("token.")}
    assert list(token_rows) == [f"token.{issued.token[:8]}"]
    assert token_rows[f"token.{issued.token[:8]}"].endswith("active")
    assert info["activation_link"].startswith("used")
    recipients = provider.sql("SHOW RECIPIENTS")
    assert recipients.loc[0, "active_tokens"] == 1
    assert not recipients.loc[0, "activation_pending"]


def test_activation_link_uses_the_running_servers_public_url(
    provider: Provider, lab_home: Path, request: pytest.FixtureRequest
) -> None:
    import fcntl

    # what a running server leaves: server.json and an exclusive lock on server.lock (held here)
    state = {"pid": os.getpid(), "public_url": "http://lab.example:9999/", "port": 9999}
    (lab_home / "server").mkdir()
    (lab_home / "server" / "server.json").write_text(json.dumps(state))
    lock = open(lab_home / "server" / "server.lock", "w")  # noqa: SIM115 - closed below
    fcntl.flock(lock, fcntl.LOCK_EX)
    request.addfinalizer(lock.close)
    link = provider.sql("CREATE RECIPIENT r").loc[0, "activation_link"]
    assert link.startswith("http://lab.example:9999/delta-sharing/activation/")
    # what `sharelab serve` writes without --public-url: no public_url, the endpoint says where it is
    state = {
        "pid": os.getpid(),
        "public_url": None,
        "host": "0.0.0.0",
        "port": 8123,
        "endpoint": "http://127.0.0.1:8123/delta-sharing/",
    }
    (lab_home / "server" / "server.json").write_text(json.dumps(state))
    link = provider.sql("ALTER RECIPIENT r ROTATE TOKEN").loc[0, "activation_link"]
    assert link.startswith("http://127.0.0.1:8123/delta-sharing/activation/")
    del state["endpoint"]
    (lab_home / "server" / "server.json").write_text(json.dumps(state))
    assert provider.public_url() == "http://127.0.0.1:8123"


def test_recipient_errors_and_properties(provider: Provider) -> None:
    provider.sql("CREATE RECIPIENT r PROPERTIES ('region' = 'EU')")
    with pytest.raises(AlreadyExistsError):
        provider.sql("CREATE RECIPIENT R")
    again = provider.sql("CREATE RECIPIENT IF NOT EXISTS r")
    assert list(again.columns) == ["info_name", "info_value"]  # describes, issues nothing new
    provider.sql("ALTER RECIPIENT r SET PROPERTIES ('Region' = 'US', 'team' = 'ops')")
    assert provider.catalog.get_recipient("r").properties == {"Region": "US", "team": "ops"}
    provider.alter_recipient("r", {"team": "sales"})
    assert provider.catalog.get_recipient("r").properties["team"] == "sales"
    provider.sql("COMMENT ON RECIPIENT r IS 'it''s the ops team'")
    assert provider.catalog.get_recipient("r").comment == "it's the ops team"
    with pytest.raises(NotFoundError):
        provider.sql("ALTER RECIPIENT nobody SET PROPERTIES ('a' = 'b')")
    with pytest.raises(NotFoundError):
        provider.sql("DESCRIBE RECIPIENT nobody")
    with pytest.raises(SqlParseError, match="Databricks-to-Databricks"):
        provider.sql("CREATE RECIPIENT d2d USING ID 'aws:us-west-2:abc'")
    assert "dropped" in status(provider.sql("DROP RECIPIENT r"))
    with pytest.raises(NotFoundError):
        provider.sql("DROP RECIPIENT r")
    assert "nothing changed" in status(provider.sql("DROP RECIPIENT IF EXISTS r"))
    assert provider.sql("SHOW RECIPIENTS").empty


def test_rotate_token_overlaps_and_revoke_is_immediate(provider: Provider) -> None:
    first = LINK.match(provider.sql("CREATE RECIPIENT r").loc[0, "activation_link"]).group(1)
    _, old = provider.catalog.redeem_activation(first)
    assert provider.catalog.authenticate(old.token).name == "r"

    rotated = provider.sql("ALTER RECIPIENT r ROTATE TOKEN EXPIRE EXISTING IN 300 SECONDS")
    second = LINK.match(rotated.loc[0, "activation_link"]).group(1)
    (old_info,) = provider.catalog.list_tokens("r")
    assert old_info.status == "active"
    assert old_info.expires_at.timestamp() <= time.time() + 301
    _, new = provider.catalog.redeem_activation(second)
    assert provider.catalog.authenticate(old.token) is not None  # overlap: both work
    assert provider.catalog.authenticate(new.token) is not None
    with pytest.raises(SharelabError):  # the first link was used already
        provider.catalog.redeem_activation(first)

    provider.sql("ALTER RECIPIENT r ROTATE TOKEN")  # expire existing now
    assert provider.catalog.authenticate(old.token) is None
    assert provider.catalog.authenticate(new.token) is None
    assert (
        "pending"
        not in dict(provider.sql("DESCRIBE RECIPIENT r").values.tolist())["activation_link"]
    )  # this process knows the new link and shows it
    third = LINK.match(
        dict(provider.sql("DESCRIBE RECIPIENT r").values.tolist())["activation_link"]
    ).group(1)
    _, newest = provider.catalog.redeem_activation(third)
    assert "1 token of recipient r revoked" in status(
        provider.sql("ALTER RECIPIENT r REVOKE TOKENS")
    )
    assert provider.catalog.authenticate(newest.token) is None
    with pytest.raises(NotFoundError):
        provider.sql("ALTER RECIPIENT ghost ROTATE TOKEN")
    with pytest.raises(InvalidArgumentError):
        provider.rotate_token("r", expire_existing_in_seconds=-1)


# -- grants --------------------------------------------------------------------------------------


def test_grants(provider: Provider) -> None:
    provider.sql("CREATE SHARE a; CREATE SHARE b; CREATE RECIPIENT r; CREATE RECIPIENT q")
    provider.sql(
        "GRANT SELECT ON SHARE a TO RECIPIENT r; GRANT SELECT ON SHARE b TO RECIPIENT r;"
        "GRANT SELECT ON SHARE a TO RECIPIENT q; GRANT SELECT ON SHARE a TO RECIPIENT q"
    )
    on_a = provider.sql("SHOW GRANTS ON SHARE a")
    assert list(on_a.columns) == ["recipient", "privilege", "share", "granted_at"]
    assert on_a[["recipient", "privilege"]].values.tolist() == [["q", "SELECT"], ["r", "SELECT"]]
    to_r = provider.sql("SHOW GRANTS TO RECIPIENT r")
    assert to_r[["share", "privilege"]].values.tolist() == [["a", "SELECT"], ["b", "SELECT"]]
    with pytest.raises(NotFoundError, match="nope"):
        provider.sql("GRANT SELECT ON SHARE nope TO RECIPIENT r")
    with pytest.raises(NotFoundError, match="nope"):
        provider.sql("GRANT SELECT ON SHARE a TO RECIPIENT nope")
    provider.sql("REVOKE SELECT ON SHARE a FROM RECIPIENT r")
    assert provider.show_grants_to_recipient("r")["share"].tolist() == ["b"]
    assert "nothing changed" in status(provider.revoke("a", "r"))
    with pytest.raises(NotFoundError):
        provider.sql("SHOW GRANTS ON SHARE nope")
    with pytest.raises(NotFoundError):
        provider.sql("SHOW GRANTS TO RECIPIENT nope")
    provider.sql("DROP SHARE b")
    assert provider.show_grants_to_recipient("r").empty


# -- scripts, atomicity, hostile input -----------------------------------------------------------


def test_script_stops_at_first_failure_and_says_what_stayed(provider: Provider) -> None:
    with pytest.raises(AlreadyExistsError) as info:
        provider.sql("CREATE SHARE a; CREATE SHARE a; CREATE SHARE c; CREATE SHARE d")
    message = str(info.value)
    assert message.startswith("statement 2 of 4 failed (statement 1 stayed applied): ")
    assert "already exists" in message
    assert provider.sql("SHOW SHARES")["name"].tolist() == ["a"]

    with pytest.raises(NotFoundError, match=r"statement 1 of 2 failed \(no earlier statement"):
        provider.sql("DROP SHARE zz; CREATE SHARE zz")
    with pytest.raises(NotFoundError, match=r"statement 3 of 3 failed \(statements 1-2 stayed"):
        provider.sql("CREATE SHARE x; CREATE SHARE y; DROP RECIPIENT ghost")


def test_parse_error_runs_nothing(provider: Provider) -> None:
    with pytest.raises(SqlParseError, match="line 3"):
        provider.sql("CREATE SHARE a;\nCREATE SHARE b;\nCREATE SHAR c")
    assert provider.sql("SHOW SHARES").empty


def test_sql_all_returns_every_result(provider: Provider) -> None:
    results = provider.sql_all("CREATE SHARE a; SHOW SHARES; -- done\n")
    assert len(results) == 2
    assert results[1]["name"].tolist() == ["a"]
    assert "no statement" in status(provider.sql("-- only a comment"))


@pytest.mark.parametrize(
    "name",
    ["`has space`", "`sla/sh`", "`tab\there`", "`" + "x" * 256 + "`"],
)
def test_invalid_names_are_refused(provider: Provider, name: str) -> None:
    with pytest.raises(InvalidNameError):
        provider.sql(f"CREATE SHARE {name}")
    with pytest.raises(InvalidNameError):
        provider.sql(f"CREATE RECIPIENT {name}")
    assert provider.sql("SHOW SHARES").empty and provider.sql("SHOW RECIPIENTS").empty


def test_hostile_but_valid_names_and_comments_round_trip(provider: Provider) -> None:
    share = "s';DROP_TABLE_shares;--"
    comment = "O'Brien; DROP TABLE shares; -- \" ` ünï ☃ \n second line"
    escaped = comment.replace("'", "''")
    provider.sql(f"CREATE SHARE `{share}` COMMENT '{escaped}'; CREATE SHARE ok")
    shown = provider.sql("SHOW SHARES").set_index("name")
    assert shown.loc[share, "comment"] == comment
    assert "ok" in shown.index
    provider.sql("CREATE RECIPIENT `ünï-çødé` PROPERTIES ('k''ey' = 'v;al''ue')")
    assert provider.catalog.get_recipient("ünï-çødé").properties == {"k'ey": "v;al'ue"}
    provider.sql(f"GRANT SELECT ON SHARE `{share}` TO RECIPIENT `ünï-çødé`")
    assert provider.sql(f"SHOW GRANTS ON SHARE `{share}`")["recipient"].tolist() == ["ünï-çødé"]


def test_seed_000_topology(provider: Provider, lab_home: Path) -> None:
    for schema, table in [
        ("shared_airline", "flights"),
        ("sales_domain", "bookings"),
        ("operations_domain", "maintenance"),
    ]:
        location = make_table(lab_home / "airline" / schema / table)
        provider.sql(f"CREATE TABLE airline.{schema}.{table} LOCATION '{location}'")
    provider.sql(SEED_000_SQL)
    grants = set()
    for share in provider.sql("SHOW SHARES")["name"]:
        for recipient in provider.sql(f"SHOW GRANTS ON SHARE {share}")["recipient"]:
            grants.add((share, recipient))
    assert grants == {
        ("airline_core_share", "sales_team"),
        ("sales_data_share", "sales_team"),
        ("airline_core_share", "operations_team"),
        ("operations_data_share", "operations_team"),
    }
    assert provider.sql("SHOW GRANTS TO RECIPIENT sales_team")["share"].tolist() == [
        "airline_core_share",
        "sales_data_share",
    ]
    assert [t.name for t in provider.catalog.shared_tables("sales_data_share")] == ["bookings"]


def test_magic_runs_cells(lab_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))  # keep ~/.ipython untouched
    from IPython.testing.globalipapp import get_ipython

    ip = get_ipython()
    ip.run_line_magic("load_ext", "helpers.magic")
    out = ip.run_cell_magic(
        "sharelab", f"--home {lab_home} --out last", "CREATE SHARE m; SHOW SHARES"
    )
    assert out["name"].tolist() == ["m"]
    assert ip.user_ns["last"] is out
    line = ip.run_line_magic("sharelab", f"--home {lab_home} DESCRIBE SHARE m")
    assert line.loc[0, "name"] == "m"
    with pytest.raises(NotFoundError):
        ip.run_cell_magic("sharelab", f"--home {lab_home}", "DROP SHARE nope")
