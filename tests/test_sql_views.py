"""Shared views and IP access lists on the provider side: the SQL, its errors, what DESCRIBE/SHOW print.

The server side (two recipients reading one view, IP lists from two loopback addresses) is
``tests/test_shared_views.py``.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from helpers.exceptions import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
    SqlParseError,
)
from helpers.provider import Provider
from helpers.sql import parse
from helpers.sql.views import (
    AlterRecipientSetIpAccessList,
    AlterRecipientUnsetIpAccessList,
    AlterShareAddView,
    AlterShareRemoveView,
    CreateView,
    DescribeView,
    DropView,
    ShowViews,
)

VIEW_SQL = (
    "CREATE VIEW retail.crm.partner_customers COMMENT 'row filter and mask' AS "
    "SELECT id, region, CASE WHEN current_recipient('tier') = 'gold' THEN email ELSE '***' END AS email "
    "FROM retail.crm.customers WHERE region = current_recipient('region')"
)


@pytest.fixture()
def provider(tmp_path: Path) -> Provider:
    data = pa.table(
        {
            "id": pa.array([1, 2, 3, 4, 5], pa.int64()),
            "region": ["EU", "US", "EU", "APAC", "US"],
            "email": ["a@x.test", "b@x.test", "c@x.test", "d@x.test", "e@x.test"],
        }
    )
    write_deltalake(str(tmp_path / "customers"), data)
    p = Provider(tmp_path / "home")
    p.sql(
        f"CREATE TABLE retail.crm.customers LOCATION '{tmp_path / 'customers'}';"
        "CREATE SHARE partners;"
        "CREATE RECIPIENT eu_gold PROPERTIES ('region' = 'EU', 'tier' = 'gold');"
        "CREATE RECIPIENT us_silver PROPERTIES ('region' = 'US', 'tier' = 'silver')"
    )
    return p


def test_parse_view_statements() -> None:
    script = parse(
        VIEW_SQL + ";"
        "CREATE OR REPLACE VIEW c.s.v AS WITH a AS (SELECT 1 AS x) SELECT * FROM a;"
        "DROP VIEW IF EXISTS c.s.v; SHOW VIEWS; SHOW VIEWS IN c.s; DESCRIBE VIEW c.s.v;"
        "ALTER SHARE sh ADD VIEW c.s.v COMMENT 'c' AS x.y; ALTER SHARE sh REMOVE VIEW x.y;"
        "ALTER RECIPIENT r SET IP ACCESS LIST ('192.0.2.0/24', '198.51.100.7');"
        "ALTER RECIPIENT r UNSET IP ACCESS LIST"
    )
    s = script.statements
    assert isinstance(s[0], CreateView) and s[0].name == "retail.crm.partner_customers"
    assert s[0].comment == "row filter and mask" and s[0].query.startswith("SELECT id")
    assert isinstance(s[1], CreateView) and s[1].replace and not s[1].if_not_exists
    assert s[2] == DropView("c.s.v", True)
    assert s[3] == ShowViews() and s[4] == ShowViews("c", "s")
    assert s[5] == DescribeView("c.s.v")
    assert s[6] == AlterShareAddView("sh", "c.s.v", "x.y", "c")
    assert s[7] == AlterShareRemoveView("sh", "x.y")
    assert s[8] == AlterRecipientSetIpAccessList("r", ("192.0.2.0/24", "198.51.100.7"))
    assert s[9] == AlterRecipientUnsetIpAccessList("r")
    # the other statements still parse as before
    assert (
        type(parse("ALTER SHARE sh ADD TABLE c.s.t").statements[0]).__name__ == "AlterShareAddTable"
    )
    assert type(parse("DESCRIBE c.s.t").statements[0]).__name__ == "DescribeTable"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("CREATE VIEW c.s.v AS", "the view's query"),
        ("CREATE VIEW c.s AS SELECT 1", "three-part view name"),
        ("CREATE VIEW c.s.v SELECT 1", "COMMENT or AS"),
        ("CREATE VIEW c.s.v AS SELECT FROM WHERE", "a valid SELECT query"),
        ("CREATE OR REPLACE VIEW IF NOT EXISTS c.s.v AS SELECT 1", "exclude each other"),
        ("ALTER RECIPIENT r SET IP ACCESS LIST (1)", "an IP address or CIDR range"),
        ("ALTER RECIPIENT r SET IP ACCESS LIST ('a' 'b')", "',' or ')'"),
        ("ALTER SHARE sh ADD VIEW c.s.v AS x.y AS z.w", "at most once"),
    ],
)
def test_parse_errors_name_the_fix(text: str, expected: str) -> None:
    with pytest.raises(SqlParseError, match="line 1, column") as info:
        parse(text)
    assert expected in str(info.value)


def test_create_describe_show_and_preview(provider: Provider) -> None:
    out = provider.sql(VIEW_SQL)
    assert "created over retail.crm.customers" in out.status[0]
    assert "region, tier" in out.status[0]
    shown = provider.sql("SHOW VIEWS IN retail")
    assert shown.name.tolist() == ["retail.crm.partner_customers"]
    assert shown.recipient_properties[0] == "region, tier"
    info = dict(provider.sql("DESCRIBE VIEW retail.crm.partner_customers").values.tolist())
    assert info["sources"] == "retail.crm.customers"
    assert info["column.email"] == "string" and info["shared_in"] is None
    eu = provider.view_as_recipient("retail.crm.partner_customers", "eu_gold")
    assert eu.to_dict("records") == [
        {"id": 1, "region": "EU", "email": "a@x.test"},
        {"id": 3, "region": "EU", "email": "c@x.test"},
    ]
    us = provider.view_as_recipient("retail.crm.partner_customers", "us_silver")
    assert us.id.tolist() == [2, 5] and set(us.email) == {"***"}


def test_short_names_are_qualified_with_use(provider: Provider) -> None:
    provider.sql("USE CATALOG retail; USE SCHEMA crm")
    provider.sql("CREATE VIEW retail.crm.ids AS SELECT id FROM customers")
    info = dict(provider.sql("DESCRIBE VIEW retail.crm.ids").values.tolist())
    assert "retail.crm.customers" in info["query"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("SELECT * FROM system.access.audit", "cannot read system.access.audit"),
        ("SELECT * FROM table_changes('retail.crm.customers', 0)", "provider tables only"),
        ("SELECT * FROM read_csv('/etc/passwd')", "provider tables only"),
        ("SELECT nosuch FROM retail.crm.customers", "the view's query failed"),
        ("SELECT * FROM retail.crm.nosuch", "not registered"),
        ("SELECT current_recipient(1) AS x FROM retail.crm.customers", "one property name string"),
        ("SELECT 1 AS x", "at least one provider table"),
    ],
)
def test_bad_views_are_refused(provider: Provider, query: str, message: str) -> None:
    with pytest.raises((InvalidArgumentError, NotFoundError), match=message):
        provider.sql(f"CREATE VIEW retail.crm.bad AS {query}")
    assert provider.sql("SHOW VIEWS").empty  # nothing stored


def test_view_lifecycle_in_shares(provider: Provider) -> None:
    provider.sql(VIEW_SQL)
    with pytest.raises(AlreadyExistsError, match="CREATE OR REPLACE VIEW"):
        provider.sql(VIEW_SQL)
    assert (
        "nothing changed"
        in provider.sql(VIEW_SQL.replace("VIEW", "VIEW IF NOT EXISTS", 1)).status[0]
    )
    with pytest.raises(InvalidArgumentError, match="views over views|is a view"):
        provider.sql("CREATE VIEW retail.crm.v2 AS SELECT * FROM retail.crm.partner_customers")
    with pytest.raises(AlreadyExistsError, match="registered table"):
        provider.sql("CREATE VIEW retail.crm.customers AS SELECT id FROM retail.crm.customers")
    provider.sql(
        "ALTER SHARE partners ADD VIEW retail.crm.partner_customers AS crm.customers COMMENT 'masked'"
    )
    with pytest.raises(AlreadyExistsError, match="already has a table or view"):
        provider.sql("ALTER SHARE partners ADD VIEW retail.crm.partner_customers AS crm.customers")
    provider.sql("ALTER SHARE partners ADD TABLE retail.crm.customers AS raw.customers")
    with pytest.raises(AlreadyExistsError, match="already has a table or view"):
        provider.sql("ALTER SHARE partners ADD VIEW retail.crm.partner_customers AS raw.customers")
    rows = provider.sql("SHOW ALL IN SHARE partners")
    assert rows[rows.type == "VIEW"].to_dict("records")[0]["shared_object"] == (
        "retail.crm.partner_customers"
    )
    with pytest.raises(InvalidArgumentError, match="REMOVE VIEW"):
        provider.sql("DROP VIEW retail.crm.partner_customers")
    with pytest.raises(NotFoundError, match="no view"):
        provider.sql("ALTER SHARE partners REMOVE VIEW crm.nosuch")
    provider.sql("ALTER SHARE partners REMOVE VIEW crm.customers")
    assert "dropped" in provider.sql("DROP VIEW retail.crm.partner_customers").status[0]
    assert (
        "nothing changed"
        in provider.sql("DROP VIEW IF EXISTS retail.crm.partner_customers").status[0]
    )
    with pytest.raises(NotFoundError):
        provider.sql("DROP VIEW retail.crm.partner_customers")


def test_dropping_a_share_drops_its_view_entries(provider: Provider) -> None:
    provider.sql(VIEW_SQL + "; ALTER SHARE partners ADD VIEW retail.crm.partner_customers")
    provider.sql("DROP SHARE partners")
    assert "dropped" in provider.sql("DROP VIEW retail.crm.partner_customers").status[0]


def test_ip_access_lists(provider: Provider) -> None:
    out = provider.sql("ALTER RECIPIENT us_silver SET IP ACCESS LIST ('127.0.0.2', '192.0.2.0/24')")
    assert "only from 127.0.0.2, 192.0.2.0/24" in out.status[0]
    info = dict(provider.sql("DESCRIBE RECIPIENT us_silver").values.tolist())
    assert info["ip_access_list"] == "127.0.0.2, 192.0.2.0/24"
    other = dict(provider.sql("DESCRIBE RECIPIENT eu_gold").values.tolist())
    assert other["ip_access_list"].startswith("none")
    for bad, message in [
        ("'10.0.0.1/8'", "host bits set; write the range as '10.0.0.0/8'"),
        ("'not-an-ip'", "not an IP address or CIDR range"),
    ]:
        with pytest.raises(InvalidArgumentError, match=message):
            provider.sql(f"ALTER RECIPIENT us_silver SET IP ACCESS LIST ({bad})")
    with pytest.raises(NotFoundError):
        provider.sql("ALTER RECIPIENT nobody SET IP ACCESS LIST ('127.0.0.1')")
    # a refused change leaves the list as it was
    assert dict(provider.sql("DESCRIBE RECIPIENT us_silver").values.tolist())["ip_access_list"] == (
        "127.0.0.2, 192.0.2.0/24"
    )
    assert (
        "any address again"
        in provider.sql("ALTER RECIPIENT us_silver UNSET IP ACCESS LIST").status[0]
    )
    assert (
        "nothing changed"
        in provider.sql("ALTER RECIPIENT us_silver UNSET IP ACCESS LIST").status[0]
    )
    provider.sql("ALTER RECIPIENT us_silver SET IP ACCESS LIST ('2001:db8::/32')")
    provider.sql("DROP RECIPIENT us_silver")  # its list goes with it
    provider.sql("CREATE RECIPIENT us_silver")
    assert dict(provider.sql("DESCRIBE RECIPIENT us_silver").values.tolist())[
        "ip_access_list"
    ].startswith("none")


def test_address_matching() -> None:
    from helpers.catalog.views import address_allowed, normalize_ip_entries

    entries = normalize_ip_entries(["127.0.0.2", "192.0.2.0/24", "2001:db8::/32", "127.0.0.2"])
    assert entries == ("127.0.0.2", "192.0.2.0/24", "2001:db8::/32")
    assert address_allowed("127.0.0.2", entries)
    assert address_allowed("::ffff:192.0.2.9", entries)
    assert address_allowed("2001:db8::1", entries)
    assert not address_allowed("127.0.0.1", entries)
    assert not address_allowed("", entries) and not address_allowed("garbage", entries)
    with pytest.raises(InvalidArgumentError, match="at least one"):
        normalize_ip_entries([])
    with pytest.raises(InvalidArgumentError, match="at most 100"):
        normalize_ip_entries([f"10.0.{i // 250}.{i % 250}" for i in range(101)])
