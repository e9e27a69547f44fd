"""The data mesh on real Delta tables and a real catalog: products, publishing under policies,
subscriptions that create (or refuse) grants, measured quality, discovery, the report and the CLI."""

from __future__ import annotations

import base64
import re
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable, write_deltalake

from helpers.catalog import open_catalog
from helpers.cli import main as cli_main
from helpers.exceptions import (
    AlreadyExistsError,
    GrantRefusedError,
    InvalidArgumentError,
    NotFoundError,
    PolicyViolationError,
)
from helpers.mesh import SLA, Mesh, MeshPolicyWarning, parse_rule
from tests.pg import outside_count, table_names

N = 60


def flights_frame(n: int = N) -> pd.DataFrame:
    """Small deterministic flights: a duplicated key, null distances, a negative delay, a pii column."""
    rng = np.random.default_rng(7)
    ids = np.arange(n)
    ids[5] = 4  # one duplicate key
    distance = rng.integers(100, 3000, n).astype("float64")
    distance[::12] = np.nan  # 5 nulls in 60 rows
    delay = rng.integers(-10, 120, n)
    delay[3] = -500  # an invalid delay
    return pd.DataFrame(
        {
            "flight_id": ids.astype("int64"),
            "carrier": np.where(ids % 3 == 0, "AA", "UA"),
            "origin": ["JFK", "SFO", "ORD"] * (n // 3),
            "distance": distance,
            "dep_delay": delay.astype("int64"),
            "passenger_email": [f"p{i}@example.org" for i in range(n)],
        }
    )


def build(home: Path) -> Mesh:
    """Two Delta tables registered, two shares, two domains; returns the home's mesh."""
    cat = open_catalog(home)
    flights = home / "data" / "airline" / "ops" / "flights"
    write_deltalake(str(flights), flights_frame())
    carriers = home / "data" / "airline" / "ref" / "carriers"
    write_deltalake(
        str(carriers), pd.DataFrame({"code": ["AA", "UA"], "name": ["American", "United"]})
    )
    cat.register_table("airline.ops.flights", str(flights))
    cat.register_table("airline.ref.carriers", str(carriers))
    cat.create_share("flight_ops")
    cat.add_table_to_share("flight_ops", "airline.ops.flights")
    cat.create_share("carrier_ref")
    cat.add_table_to_share("carrier_ref", "airline.ref.carriers")
    mesh = Mesh(home)
    mesh.register_domain(
        "operations", "ops-team", team=["alice", "bob"], description="Flight operations"
    )
    mesh.register_domain(
        "marketing", "mkt-team", team=["carol"], description="Campaigns and loyalty"
    )
    return mesh


@pytest.fixture
def mesh(lab_home: Path) -> Mesh:
    return build(lab_home)


def flights_product(mesh: Mesh, **kw) -> None:
    args = dict(
        domain="operations",
        share="flight_ops",
        owner="alice",
        description="Every scheduled flight with its delay",
        tags=["flights", "Operations"],
        tier=1,
        sla={"freshness_hours": 24, "completeness_pct": 95, "availability_pct": 99},
        keys={"ops.flights": ["flight_id"]},
    )
    args.update(kw)
    mesh.create_product("flights", **args)


# ---------------------------------------------------------------------------- domains and products


def test_domains_and_products_are_stored_in_the_catalog_file(mesh: Mesh, lab_home: Path) -> None:
    flights_product(mesh)
    with pytest.raises(AlreadyExistsError):
        mesh.register_domain("Operations", "x")
    assert mesh.register_domain("operations", "x", if_not_exists=True).owner == "ops-team"
    with pytest.raises(NotFoundError, match="unknown domain 'finance'"):
        mesh.create_product("p2", domain="finance", share="carrier_ref")
    with pytest.raises(NotFoundError):
        mesh.create_product("p2", domain="operations", share="no_such_share")
    with pytest.raises(AlreadyExistsError, match="already backs product 'flights'"):
        mesh.create_product("other", domain="operations", share="flight_ops")
    with pytest.raises(NotFoundError, match="has no table 'ops.nope'"):
        mesh.create_product(
            "p3", domain="operations", share="carrier_ref", output_tables=["ops.nope"]
        )
    with pytest.raises(InvalidArgumentError, match="unknown column"):
        mesh.create_product(
            "p4", domain="operations", share="carrier_ref", keys={"ref.carriers": ["id"]}
        )
    # nothing half-created by the failures
    assert [p.name for p in mesh.list_products()] == ["flights"]
    # state survives a new Mesh on the same home, in the same SQLite file as the catalog
    again = Mesh(lab_home)
    p = again.get_product("FLIGHTS")
    assert (p.domain, p.owner, p.tier, p.tags) == (
        "operations",
        "alice",
        1,
        ("flights", "operations"),
    )
    assert p.sla == SLA(24, 95, 99)
    names = table_names(open_catalog(lab_home))
    assert {"mesh_domains", "mesh_products", "mesh_versions", "mesh_quality"} <= names
    assert "shares" in names  # the catalog's own tables live in the same file
    # created once by the catalog's database layer, as the versioned component "mesh"
    assert again.catalog.db.schema_version("mesh") == 1


# ---------------------------------------------------------------------------- quality


def test_quality_metrics_equal_an_independent_pandas_recomputation(
    mesh: Mesh, lab_home: Path
) -> None:
    flights_product(mesh)
    mesh.add_validity_rule(
        "flights", "ops.flights", "delay_plausible", "dep_delay BETWEEN -60 AND 1440"
    )
    mesh.add_validity_rule("flights", "ops.flights", "long_haul", "distance >= 500")
    now = datetime(2030, 1, 1, tzinfo=UTC)
    report = mesh.measure("flights", now=now)
    (t,) = report.tables

    location = lab_home / "data" / "airline" / "ops" / "flights"
    dt = DeltaTable(str(location))
    df = dt.to_pandas()
    assert t.row_count == len(df) == N
    for col in df.columns:
        assert t.column_completeness[col] == pytest.approx(df[col].notna().mean() * 100)
    assert t.column_completeness["distance"] == pytest.approx(100 * (N - 5) / N)
    assert t.completeness_pct == pytest.approx(df.notna().mean().mean() * 100)
    assert t.uniqueness_pct == pytest.approx(len(df.drop_duplicates(["flight_id"])) / len(df) * 100)
    assert t.uniqueness_pct < 100
    # CHECK semantics: FALSE violates, NULL does not
    delay_ok = df["dep_delay"].between(-60, 1440)
    assert t.validity["delay_plausible"] == pytest.approx(delay_ok.mean() * 100)
    long_ok = (df["distance"] >= 500) | df["distance"].isna()
    assert t.validity["long_haul"] == pytest.approx(long_ok.mean() * 100)
    commit_ms = dt.history(1)[0]["timestamp"]
    expected_hours = (now - datetime.fromtimestamp(commit_ms / 1000, tz=UTC)).total_seconds() / 3600
    assert t.freshness_hours == pytest.approx(expected_hours, abs=1e-6)
    assert t.delta_version == dt.version()

    # history: two runs stored, the second sees the appended rows
    write_deltalake(
        str(location),
        flights_frame(12).assign(flight_id=lambda d: d.flight_id + 1000),
        mode="append",
    )
    mesh.measure("flights", now=now + timedelta(hours=1))
    hist = mesh.quality_history("flights", metric="row_count")
    assert list(hist["value"]) == [N, N + 12]
    assert hist["measured_at"].is_monotonic_increasing


def test_validity_rules_are_checked_when_added(mesh: Mesh) -> None:
    flights_product(mesh)
    with pytest.raises(InvalidArgumentError, match="fails on the table"):
        mesh.add_validity_rule("flights", "ops.flights", "typo", "distanse > 0")
    with pytest.raises(InvalidArgumentError, match="subquery|one expression|not a SQL"):
        mesh.add_validity_rule("flights", "ops.flights", "inject", "1=1); DROP TABLE x; SELECT (1")
    with pytest.raises(InvalidArgumentError, match="subquery"):
        mesh.add_validity_rule("flights", "ops.flights", "sub", "flight_id IN (SELECT 1)")
    assert mesh.validity_rules("flights") == []


# ---------------------------------------------------------------------------- policies


def test_policy_rules_parse_and_reject_nonsense() -> None:
    assert parse_rule("completeness >= 95%") == ("completeness", ">=", 95.0)
    assert parse_rule("timeliness <= 24h") == ("freshness_hours", "<=", 24.0)
    assert parse_rule("documented = true") == ("documented", "==", 1.0)
    with pytest.raises(InvalidArgumentError, match="unknown metric 'accuracy'"):
        parse_rule("accuracy >= 90%")
    with pytest.raises(InvalidArgumentError, match="invalid policy rule"):
        parse_rule("completeness is great")


def test_compliance_gives_pass_and_fail_with_measured_evidence(mesh: Mesh) -> None:
    flights_product(mesh)
    mesh.install_default_policies()
    mesh.create_policy("keys-unique", "uniqueness >= 100%", enforcement="advisory")
    report = mesh.check("flights", now=datetime(2030, 1, 1, tzinfo=UTC))
    by = {r.policy: r for r in report.results}
    assert by["completeness"].status == "PASS"
    assert by["completeness"].measured == pytest.approx(report_completeness(mesh))
    assert by["keys-unique"].status == "FAIL"
    assert "uniqueness = 98.33% violates >= 100%" in by["keys-unique"].evidence
    # the data is years old at that `now`: the tier-1 freshness policy fails with the hours as evidence
    assert by["tier1-freshness"].status == "FAIL"
    assert re.search(
        r"freshness_hours = \d+\.\d+ h violates <= 24 h", by["tier1-freshness"].evidence
    )
    assert report.passed  # both failures are advisory
    assert {r.policy for r in report.warnings} == {"keys-unique", "tier1-freshness"}


def report_completeness(mesh: Mesh) -> float:
    return mesh.measure("flights", record=False).completeness_pct  # type: ignore[return-value]


def test_a_product_violating_a_mandatory_policy_cannot_be_published(mesh: Mesh) -> None:
    flights_product(mesh)
    mesh.install_default_policies()
    mesh.create_policy("strict-completeness", "min_column_completeness >= 99%")
    with pytest.raises(PolicyViolationError) as err:
        mesh.publish("flights")
    msg = str(err.value)
    assert "mandatory policy 'strict-completeness' failed" in msg
    assert "min_column_completeness = 91.67% violates >= 99%" in msg
    assert "ops.flights.distance" in msg
    assert err.value.policy == "strict-completeness"
    assert mesh.versions("flights") == []
    assert mesh.quality_history("flights").empty  # a refused publication records nothing
    assert "publish_refused" in set(mesh.events("flights")["kind"])

    # the product declares distance as null by design -> completeness over required columns passes
    mesh.drop_policy("strict-completeness")
    mesh.update_product("flights", optional_columns={"ops.flights": ["distance"]})
    v = mesh.publish("flights")
    assert v.version == "1.0.0"


def test_undocumented_product_is_blocked_and_advisory_only_warns(mesh: Mesh) -> None:
    flights_product(mesh, description="")
    mesh.install_default_policies()
    with pytest.raises(PolicyViolationError, match="'documented' failed: documented = false"):
        mesh.publish("flights")
    mesh.update_product("flights", description="Every scheduled flight")
    stale = datetime.now(UTC) + timedelta(days=3)
    with pytest.warns(MeshPolicyWarning, match="tier1-freshness"):
        v = mesh.publish("flights", now=stale)
    assert any("tier1-freshness" in w for w in v.warnings)
    # the same freshness rule made mandatory blocks
    mesh.create_policy(
        "tier1-freshness", "freshness_hours <= 24h", applies_to={"tier": [1]}, replace=True
    )
    with pytest.raises(PolicyViolationError, match="tier1-freshness"):
        mesh.publish("flights", now=stale)
    assert [x.version for x in mesh.versions("flights")] == ["1.0.0"]


# ---------------------------------------------------------------------------- subscriptions


def test_refused_subscription_leaves_no_grant_and_no_recipient(mesh: Mesh) -> None:
    flights_product(mesh)
    mesh.publish("flights", access_policy={"allowed_domains": ["operations"]})
    cat = mesh.catalog
    with pytest.raises(
        PolicyViolationError,
        match="allows consumer domains \\['operations'\\] only, not 'marketing'",
    ):
        mesh.subscribe("flights", "mkt_bi", consumer_domain="marketing")
    with pytest.raises(NotFoundError):
        cat.get_recipient("mkt_bi")
    assert cat.grants_on_share("flight_ops") == []
    assert mesh.subscriptions("flights") == []

    # an existing recipient refused: no grant, properties untouched
    cat.create_recipient("partner", properties={"region": "us"})
    with pytest.raises(PolicyViolationError):
        mesh.subscribe("flights", "partner", consumer_domain="marketing")
    assert cat.get_recipient("partner").properties == {"region": "us"}
    assert cat.grants_on_share("flight_ops") == []

    # allowed: recipient created with its domain, grant present; unsubscribe revokes
    sub = mesh.subscribe("flights", "ops_bi", consumer_domain="operations")
    assert (sub.status, sub.version, sub.consumer_domain) == ("active", "1.0.0", "operations")
    assert cat.get_recipient("ops_bi").properties == {"domain": "operations"}
    assert [g.recipient for g in cat.grants_on_share("flight_ops")] == ["ops_bi"]
    assert mesh.unsubscribe("flights", "ops_bi").status == "cancelled"
    assert cat.grants_on_share("flight_ops") == []
    events = mesh.events("flights")
    assert list(events[events.kind.str.startswith("subscri")]["kind"]) == [
        "subscription_refused",
        "subscription_refused",
        "subscribed",
    ]


def test_subscribe_is_one_transaction_with_the_catalog_grant(
    mesh: Mesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recipient, its properties, the grant and the mesh rows commit together or not at all."""
    flights_product(mesh)
    mesh.publish("flights")
    cat = mesh.catalog
    cat.create_recipient("partner", properties={"region": "us"})
    real_event = Mesh._event

    def fail_on_subscribed(self: Mesh, con, kind: str, *args, **kw) -> None:  # type: ignore[no-untyped-def]
        real_event(self, con, kind, *args, **kw)
        if kind == "subscribed":  # after the grant and the subscription row, inside the transaction
            raise RuntimeError("disk gone")

    monkeypatch.setattr(Mesh, "_event", fail_on_subscribed)
    for recipient, props in (("new_bi", None), ("partner", {"region": "eu"})):
        with pytest.raises(RuntimeError, match="disk gone"):
            mesh.subscribe("flights", recipient, consumer_domain="operations", properties=props)
    assert cat.grants_on_share("flight_ops") == []
    with pytest.raises(NotFoundError):
        cat.get_recipient("new_bi")
    assert cat.get_recipient("partner").properties == {"region": "us"}
    assert mesh.subscriptions("flights", active_only=False) == []
    assert "subscribed" not in set(mesh.events("flights")["kind"])

    # a failure right after the catalog's grant (before the mesh rows) is undone the same way
    monkeypatch.setattr(Mesh, "_event", real_event)
    real_grant = cat.grant

    def grant_then_fail(share: str, recipient: str):  # type: ignore[no-untyped-def]
        real_grant(share, recipient)
        assert [g.recipient for g in cat.grants_on_share(share)] == [recipient]  # seen inside
        assert outside_count(cat, "grants") == 0  # another connection sees nothing uncommitted
        raise RuntimeError("crash after grant")

    monkeypatch.setattr(cat, "grant", grant_then_fail)
    with pytest.raises(RuntimeError, match="crash after grant"):
        mesh.subscribe("flights", "new_bi", consumer_domain="operations")
    assert cat.grants_on_share("flight_ops") == []
    with pytest.raises(NotFoundError):
        cat.get_recipient("new_bi")
    assert mesh.subscriptions("flights", active_only=False) == []

    # and when nothing fails, all of it is there
    monkeypatch.setattr(cat, "grant", real_grant)
    assert mesh.subscribe("flights", "new_bi", consumer_domain="operations").status == "active"
    assert [g.recipient for g in cat.grants_on_share("flight_ops")] == ["new_bi"]


def test_unsubscribe_is_one_transaction_with_the_revoke(
    mesh: Mesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    flights_product(mesh)
    mesh.publish("flights")
    mesh.subscribe("flights", "ops_bi", consumer_domain="operations")
    real_event = Mesh._event

    def fail_on_unsubscribed(self: Mesh, con, kind: str, *args, **kw) -> None:  # type: ignore[no-untyped-def]
        real_event(self, con, kind, *args, **kw)
        if kind == "unsubscribed":
            raise RuntimeError("disk gone")

    monkeypatch.setattr(Mesh, "_event", fail_on_unsubscribed)
    with pytest.raises(RuntimeError, match="disk gone"):
        mesh.unsubscribe("flights", "ops_bi")
    assert [g.recipient for g in mesh.catalog.grants_on_share("flight_ops")] == ["ops_bi"]
    assert mesh.get_subscription("flights", "ops_bi").status == "active"


def test_required_properties_and_unpublished_product(mesh: Mesh) -> None:
    flights_product(mesh)
    with pytest.raises(InvalidArgumentError, match="no published version"):
        mesh.subscribe("flights", "x")
    mesh.publish("flights", access_policy={"required_properties": {"region": "eu"}})
    with pytest.raises(
        PolicyViolationError,
        match="requires recipient property region=eu, the recipient has region=us",
    ):
        mesh.subscribe("flights", "us_partner", properties={"region": "us"})
    assert mesh.catalog.grants_on_share("flight_ops") == []
    mesh.subscribe("flights", "eu_partner", properties={"region": "EU"})
    assert [g.recipient for g in mesh.catalog.grants_on_share("flight_ops")] == ["eu_partner"]


def test_pii_never_reaches_an_external_recipient(mesh: Mesh) -> None:
    flights_product(mesh)
    mesh.install_default_policies()
    mesh.publish("flights")
    mesh.tag_column("airline.ops.flights", "passenger_email", "pii")
    with pytest.raises(InvalidArgumentError, match="no column 'nope'"):
        mesh.tag_column("airline.ops.flights", "nope", "pii")
    with pytest.raises(
        PolicyViolationError, match="no-pii-to-external.*ops.flights.passenger_email"
    ):
        mesh.subscribe("flights", "partner", properties={"external": "true"})
    assert mesh.catalog.grants_on_share("flight_ops") == []
    mesh.subscribe("flights", "internal_bi", consumer_domain="marketing")  # internal: allowed
    # a plain catalog grant obeys the policy too (the catalog's grant conditions)
    mesh.catalog.create_recipient("leak", properties={"external": "true"})
    with pytest.raises(GrantRefusedError, match="policy 'no-pii-to-external'.*external=true"):
        mesh.catalog.grant("flight_ops", "leak")
    assert [g.recipient for g in mesh.catalog.grants_on_share("flight_ops")] == ["internal_bi"]
    # a grant from before the column was tagged: a violation, and the next publication is blocked
    mesh.untag_column("airline.ops.flights", "passenger_email", "pii")
    mesh.catalog.grant("flight_ops", "leak")
    mesh.tag_column("airline.ops.flights", "passenger_email", "pii")
    assert [(v.recipient, v.policy) for v in mesh.access_violations("flights")] == [
        ("leak", "no-pii-to-external")
    ]
    with pytest.raises(
        PolicyViolationError, match="pii_columns_external = 1 violates == 0.*'leak'"
    ):
        mesh.publish("flights")


# ---------------------------------------------------------------------------- discovery


def test_discovery_by_domain_owner_tag_and_text(mesh: Mesh) -> None:
    flights_product(mesh)
    mesh.create_product(
        "carriers",
        domain="marketing",
        share="carrier_ref",
        description="Airline reference names",
        tags=["reference"],
    )
    assert [h.product.name for h in mesh.search(domain="operations")] == ["flights"]
    assert [h.product.name for h in mesh.search(owner="mkt-team")] == ["carriers"]
    assert [h.product.name for h in mesh.search(tag="REFERENCE")] == ["carriers"]
    (hit,) = mesh.search("passenger_email")  # a column name
    assert hit.product.name == "flights" and "column: ops.flights.passenger_email" in hit.matches
    assert [h.product.name for h in mesh.search("airline")] == ["carriers"]  # description
    assert [h.product.name for h in mesh.search("loyalty")] == ["carriers"]  # domain description
    # every word must match somewhere: "flight" (name) and "carrier" (a column) -> flights only
    assert [h.product.name for h in mesh.search("flight carrier")] == ["flights"]
    assert mesh.search("zebra") == []
    frame = mesh.discover(tag="flights")
    assert list(frame["product"]) == ["flights"] and frame.loc[0, "latest_version"] is None


# ---------------------------------------------------------------------------- report and CLI


def test_report_html_has_sections_and_embedded_plots(mesh: Mesh, lab_home: Path, capsys) -> None:
    flights_product(mesh)
    mesh.install_default_policies()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MeshPolicyWarning)
        mesh.publish("flights")
    mesh.subscribe("flights", "ops_bi", consumer_domain="operations")
    mesh.measure("flights")
    out = lab_home / "report" / "mesh.html"
    assert cli_main(["--home", str(lab_home), "mesh", "report", "--out", str(out)]) == 0
    text = out.read_text()
    for heading in (
        "Domains",
        "Data products",
        "SLA status",
        "Compliance",
        "Quality trends",
        "Usage",
        "Access enforcement",
        "Served versions",
        "Retention vs promised time travel",
        "Lineage of derived tables",
    ):
        assert f"<h2>{heading}" in text
    images = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", text)
    assert len(images) == 3  # quality trends, usage, lineage
    assert base64.b64decode(images[0])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "ops_bi" in text and "operations" in text
    capsys.readouterr()
    assert cli_main(["--home", str(lab_home), "mesh", "products"]) == 0
    assert "flights" in capsys.readouterr().out
    assert cli_main(["--home", str(lab_home), "mesh", "check", "flights"]) == 0
    assert "completeness" in capsys.readouterr().out
    assert cli_main(["--home", str(lab_home), "mesh", "check", "nope"]) == 1
    assert "unknown data product 'nope'" in capsys.readouterr().err
    assert cli_main(["--home", str(lab_home), "mesh", "lineage", "airline.ops.flights"]) == 0
    assert "flight_ops" in capsys.readouterr().out
