"""Issue 17: governance that governs. Policies hold on every path (SQL GRANT, the Python API, the CLI, the
mesh); published versions are pinned and served as such through the protocol (official client, parquet and
delta formats); lineage of derived tables (generators, CTAS, the API) with impact over the closure; quality
trend verdicts, the retention policy on the Delta history, and availability from the audit window."""

from __future__ import annotations

import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from deltalake import write_deltalake
from requests.exceptions import HTTPError

from helpers.catalog import AuditEvent, open_catalog
from helpers.cli import main as cli_main
from helpers.exceptions import GrantRefusedError, InvalidArgumentError, PolicyViolationError
from helpers.mesh import Mesh, MeshPolicyWarning
from helpers.mesh.trends import trend_verdicts
from helpers.profiles import profile_dict, write_profile
from helpers.provider import Provider
from tests.support import stop_server

N = 40


def _flights(n: int = N, start: int = 0, null_every: int = 0) -> pd.DataFrame:
    delays = [float(i % 30) for i in range(start, start + n)]
    if null_every:
        delays = [None if i % null_every == 0 else d for i, d in enumerate(delays)]
    return pd.DataFrame(
        {
            "flight_id": range(start, start + n),
            "origin": ["JFK", "SFO", "ORD", "BOS"] * (n // 4),
            "dep_delay": pd.array(delays, dtype="Float64"),
        }
    )


def _lab(home: Path) -> tuple[Mesh, Path]:
    cat = open_catalog(home)
    loc = home / "data" / "airline" / "ops" / "flights"
    write_deltalake(str(loc), _flights(), configuration={"delta.enableChangeDataFeed": "true"})
    cat.register_table("airline.ops.flights", str(loc))
    cat.create_share("flight_ops")
    cat.add_table_to_share("flight_ops", "airline.ops.flights", history=True)
    mesh = Mesh(catalog=cat)
    mesh.install_default_policies()
    mesh.register_domain("operations", "ops-team", description="Flight operations")
    mesh.register_domain("marketing", "mkt-team", description="Campaigns")
    mesh.create_product(
        "flights", domain="operations", share="flight_ops", description="Operated flights"
    )
    return mesh, loc


# ------------------------------------------------------------------------ 1. policies on every path


def test_a_grant_obeys_the_access_policy_on_every_path(lab_home: Path, capsys) -> None:
    mesh, _ = _lab(lab_home)
    mesh.publish("flights", access_policy={"allowed_domains": ["marketing"]})
    provider = Provider(lab_home)
    provider.sql(
        "CREATE RECIPIENT partner COMMENT 'external partner'; "
        "CREATE RECIPIENT campaigns PROPERTIES ('domain' = 'marketing')"
    )
    # SQL
    with pytest.raises(GrantRefusedError, match="refused by policy 'access-policy'") as info:
        provider.sql("GRANT SELECT ON SHARE flight_ops TO RECIPIENT partner")
    assert info.value.policy == "access-policy"
    assert "allows consumer domains ['marketing'] only" in str(info.value)
    assert "no domain property" in str(info.value)
    # the Python API (provider and catalog)
    with pytest.raises(GrantRefusedError, match="access-policy"):
        provider.grant("flight_ops", "partner")
    with pytest.raises(GrantRefusedError, match="access-policy"):
        mesh.catalog.grant("flight_ops", "partner")
    # the CLI: a one-line error naming the policy, exit 1
    code = cli_main(
        ["--home", str(lab_home), "sql", "GRANT SELECT ON SHARE flight_ops TO RECIPIENT partner"]
    )
    err = capsys.readouterr().err
    assert code == 1 and "policy 'access-policy'" in err and "Traceback" not in err
    assert mesh.catalog.grants_on_share("flight_ops") == []  # nothing granted by any path
    # an allowed recipient is granted through plain SQL
    provider.sql("GRANT SELECT ON SHARE flight_ops TO RECIPIENT campaigns")
    assert [g.recipient for g in mesh.catalog.grants_on_share("flight_ops")] == ["campaigns"]
    # and the mesh's own path refuses the same way
    with pytest.raises(PolicyViolationError, match="access policy allows consumer domains"):
        mesh.subscribe("flights", "crew", consumer_domain="operations")
    conditions = mesh.grant_conditions("flights")
    assert conditions[["policy", "property", "allowed"]].values.tolist() == [
        ["access-policy", "domain", "marketing"]
    ]
    # a pii column adds the privacy policy's condition; a refusal names every policy that refuses
    mesh.tag_column("airline.ops.flights", "origin", "pii")
    provider.sql("CREATE RECIPIENT agency PROPERTIES ('external' = 'true')")
    with pytest.raises(GrantRefusedError) as info:
        provider.sql("GRANT SELECT ON SHARE flight_ops TO RECIPIENT agency")
    assert info.value.policy == "access-policy"
    assert "also policy 'no-pii-to-external'" in str(info.value)
    assert "external=true" in info.value.evidence
    mesh.untag_column("airline.ops.flights", "origin", "pii")
    assert list(mesh.grant_conditions("flights").policy) == ["access-policy"]


def test_a_changed_policy_shows_existing_grants_as_violations(lab_home: Path, capsys) -> None:
    mesh, _ = _lab(lab_home)
    mesh.publish("flights", access_policy={"allowed_domains": ["marketing"]})
    mesh.subscribe("flights", "campaigns", consumer_domain="marketing")
    mesh.subscribe("flights", "analysts", consumer_domain="marketing")
    access = [r for r in mesh.check("flights").results if r.policy == "access-policy"]
    assert [(r.status, r.measured) for r in access] == [("PASS", 0.0)]
    # the owner narrows the policy: the existing grants stay, as violations, with a warning
    with pytest.warns(MeshPolicyWarning) as caught:
        mesh.publish("flights", access_policy={"required_properties": {"region": "eu"}})
    assert sorted(str(w.message).split("existing grant to ")[1].split()[0] for w in caught) == [
        "'analysts'",
        "'campaigns'",
    ]
    mesh.catalog.set_recipient_properties("campaigns", {"region": "eu"})
    report = mesh.check("flights")
    (access,) = [r for r in report.results if r.policy == "access-policy"]
    assert access.status == "FAIL" and access.measured == 1.0 and not report.passed
    assert "analysts (access-policy" in access.evidence and "region=eu" in access.evidence
    assert [v.recipient for v in mesh.access_violations()] == ["analysts"]
    assert cli_main(["--home", str(lab_home), "mesh", "violations"]) == 3
    assert "analysts" in capsys.readouterr().out
    html = mesh.report_html()
    assert "Grants that violate a policy" in html and "analysts" in html
    # a recipient whose properties change after the grant is a violation too
    mesh.catalog.set_recipient_properties("campaigns", {"region": "us"})
    assert [v.recipient for v in mesh.access_violations("flights")] == ["analysts", "campaigns"]
    revoked = mesh.enforce_access("flights")
    assert sorted(v.recipient for v in revoked) == ["analysts", "campaigns"]
    assert mesh.catalog.grants_on_share("flight_ops") == []
    assert {s.status for s in mesh.subscriptions("flights", active_only=False)} == {"revoked"}
    (access,) = [r for r in mesh.check("flights").results if r.policy == "access-policy"]
    assert access.status == "PASS"
    assert cli_main(["--home", str(lab_home), "mesh", "violations", "flights"]) == 0


def test_dropping_a_product_releases_its_conditions_and_pins(lab_home: Path) -> None:
    mesh, _ = _lab(lab_home)
    mesh.publish("flights", access_policy={"allowed_domains": ["marketing"]})
    assert mesh.catalog.grant_conditions("flight_ops") and mesh.catalog.table_pins("flight_ops")
    mesh.drop_product("flights")
    assert mesh.catalog.grant_conditions("flight_ops") == []
    assert mesh.catalog.table_pins("flight_ops") == []
    mesh.catalog.create_recipient("anyone")
    mesh.catalog.grant("flight_ops", "anyone")  # no product, no policy: the share is plain again


# ------------------------------------------------------------------------ 2. published versions pinned


def _wait_for_audit(mesh: Mesh, n: int) -> pd.DataFrame:
    deadline = time.monotonic() + 30
    while True:
        audit = mesh.catalog.audit_frame()
        if len(audit) >= n or time.monotonic() > deadline:
            return audit
        time.sleep(0.1)


def test_recipients_read_the_published_version_only(
    lab_home: Path, server_factory, tmp_path: Path
) -> None:
    delta_sharing = pytest.importorskip("delta_sharing")
    mesh, loc = _lab(lab_home)
    v1 = mesh.publish("flights")
    assert v1.table_versions == {"ops.flights": 0}
    mesh.subscribe("flights", "bi", consumer_domain="marketing")
    server = server_factory(lab_home)
    profile = tmp_path / "bi.share"
    write_profile(profile, profile_dict(server.endpoint, mesh.catalog.issue_token("bi")))
    url = f"{profile}#flight_ops.ops.flights"

    # an unpublished change: 8 new rows and a new column (a compatible change)
    extra = _flights(8, start=N).assign(gate=["A1"] * 8)
    write_deltalake(str(loc), extra, mode="append", schema_mode="merge")
    assert mesh.served_versions("flights").values.tolist() == [["ops.flights", 0, 1, True, 1]]
    for fmt in (False, True):  # parquet and delta response formats
        assert delta_sharing.get_table_version(url) == 0
        frame = delta_sharing.load_as_pandas(url, use_delta_format=fmt)
        assert len(frame) == N and "gate" not in frame.columns
    meta = delta_sharing.get_table_metadata(url)
    assert "gate" not in meta.schema_string
    with pytest.raises(Exception, match="does not exist; the latest version is 0"):
        delta_sharing.load_as_pandas(url, version=1)
    changes = delta_sharing.load_table_changes_as_pandas(url, starting_version=0)
    assert set(changes["_commit_version"]) == {0} and len(changes) == N
    with pytest.raises(Exception, match="greater than the latest version"):
        delta_sharing.load_table_changes_as_pandas(url, starting_version=1)

    # publishing moves the pin: the recipient now reads version 1, with its history
    mesh.update_product("flights", optional_columns={"ops.flights": ["gate"]})  # null in old rows
    v2 = mesh.publish("flights")
    assert v2.version == "1.1.0" and v2.table_versions == {"ops.flights": 1}
    assert delta_sharing.get_table_version(url) == 1
    for fmt in (False, True):
        frame = delta_sharing.load_as_pandas(url, use_delta_format=fmt)
        assert len(frame) == N + 8 and "gate" in frame.columns
    assert len(delta_sharing.load_as_pandas(url, version=0)) == N
    changes = delta_sharing.load_table_changes_as_pandas(url, starting_version=1)
    assert len(changes) == 8 and set(changes["_commit_version"]) == {1}


def test_a_breaking_major_version_gets_its_own_alias(
    lab_home: Path, server_factory, tmp_path: Path
) -> None:
    delta_sharing = pytest.importorskip("delta_sharing")
    mesh, loc = _lab(lab_home)
    mesh.publish("flights")
    mesh.subscribe("flights", "bi", consumer_domain="marketing")
    server = server_factory(lab_home)
    profile = tmp_path / "bi.share"
    write_profile(profile, profile_dict(server.endpoint, mesh.catalog.issue_token("bi")))
    # the provider drops a column: breaking under FULL, refused as a minor, published as 2.0.0
    write_deltalake(
        str(loc), _flights().drop(columns=["dep_delay"]), mode="overwrite", schema_mode="overwrite"
    )
    with pytest.raises(Exception, match="publish it as version '2.0.0'"):
        mesh.publish("flights")
    assert "dep_delay" in delta_sharing.load_as_pandas(f"{profile}#flight_ops.ops.flights").columns
    v2 = mesh.publish("flights", "2.0.0")
    assert list(v2.schemas) == ["ops.flights_v2"]
    client = delta_sharing.SharingClient(str(profile))
    assert sorted(t.name for t in client.list_all_tables()) == ["flights", "flights_v2"]
    old = delta_sharing.load_as_pandas(f"{profile}#flight_ops.ops.flights")
    new = delta_sharing.load_as_pandas(f"{profile}#flight_ops.ops.flights_v2")
    assert (
        "dep_delay" in old.columns and "dep_delay" not in new.columns
    )  # 1.x consumers keep working
    assert delta_sharing.get_table_version(f"{profile}#flight_ops.ops.flights") == 0
    assert delta_sharing.get_table_version(f"{profile}#flight_ops.ops.flights_v2") == 1


def test_pins_are_checked_and_follow_the_entry(lab_home: Path) -> None:
    mesh, loc = _lab(lab_home)
    cat = mesh.catalog
    with pytest.raises(InvalidArgumentError, match="has no version 3 \\(latest: 0\\)"):
        cat.pin_table_version("flight_ops", "ops.flights", 3, set_by="test")
    cat.pin_table_version("flight_ops", "ops.flights", 0, set_by="test")
    assert cat.get_shared_table("flight_ops", "ops", "flights").pinned_version == 0
    cat.remove_table_from_share("flight_ops", "ops.flights")
    cat.add_table_to_share("flight_ops", "airline.ops.flights")
    assert cat.get_shared_table("flight_ops", "ops", "flights").pinned_version is None


# ------------------------------------------------------------------------ 3. lineage of derived tables


def test_ctas_records_lineage_and_impact_follows_the_closure(lab_home: Path) -> None:
    mesh, _ = _lab(lab_home)
    p = Provider(lab_home)
    p.sql("CREATE SCHEMA IF NOT EXISTS airline.marts")
    ctas = (
        "CREATE TABLE airline.marts.delays AS SELECT origin, avg(dep_delay) AS avg_delay "
        "FROM airline.ops.flights GROUP BY origin"
    )
    p.sql(ctas)
    p.sql(
        "CREATE TABLE airline.marts.worst AS SELECT * FROM airline.marts.delays "
        "ORDER BY avg_delay DESC LIMIT 2"
    )
    d = mesh.derivations("airline.marts.delays")
    assert d[["target", "source", "kind"]].values.tolist() == [
        ["airline.marts.delays", "airline.ops.flights", "ctas"],
        ["airline.marts.worst", "airline.marts.delays", "ctas"],
    ]
    assert d["sql"][0] == ctas.split(" AS ", 1)[1]  # the query the table is built by
    p.sql("CREATE SHARE marts; ALTER SHARE marts ADD TABLE airline.marts.worst")
    p.sql("CREATE RECIPIENT board; GRANT SELECT ON SHARE marts TO RECIPIENT board")
    impact = mesh.impact("airline.ops.flights")
    assert impact.levels == {"airline.marts.delays": 1, "airline.marts.worst": 2}
    assert "over 2 level(s)" in impact.summary()
    consumers = impact.consumers()
    assert consumers[["recipient", "share", "table", "level"]].values.tolist() == [
        ["board", "marts", "airline.marts.worst", 4]
    ]
    frame = impact.to_frame()
    assert frame[frame.kind == "recipient"]["path"].tolist() == [
        "airline.ops.flights -> airline.marts.delays -> airline.marts.worst -> marts -> board"
    ]
    # a rebuild from another source replaces the lineage; the derivation API records too
    p.sql("CREATE OR REPLACE TABLE airline.marts.worst AS SELECT 1 AS n")
    assert mesh.derivations("airline.marts.worst").query("target == 'airline.marts.worst'").empty
    mesh.record_derivation(
        "airline.marts.worst", ["airline.marts.delays"], "SELECT count(*) FROM delays"
    )
    assert mesh.impact("airline.ops.flights").levels["airline.marts.worst"] == 2
    with pytest.raises(InvalidArgumentError, match="cycle"):
        mesh.record_derivation("airline.ops.flights", ["airline.marts.worst"], "SELECT 1")
    html = mesh.report_html()
    assert "Lineage of derived tables" in html and "airline.marts.worst" in html


def test_generators_record_derived_tables_with_sql_that_recomputes_them(lab_home: Path) -> None:
    from helpers.datagen import generate

    generate("airline", lab_home, scale="small", progress=False)
    mesh = Mesh(lab_home)
    p = Provider(lab_home)
    derived = mesh.derivations()
    for target in ("daily_revenue", "customer_360"):
        rows = derived[derived.target == f"airline.sales_domain.{target}"]
        assert "airline.sales_domain.bookings" in set(rows.source)
        sql = rows["sql"].iloc[0]
        got = p.sql(sql).reset_index(drop=True)
        want = p.sql(f"SELECT * FROM airline.sales_domain.{target}")
        want = want.sort_values(want.columns[0]).reset_index(drop=True)
        assert list(got.columns) == list(want.columns) and len(got) == len(want)
        for col in want.columns:
            a, b = got[col], want[col]
            if pd.api.types.is_numeric_dtype(b):
                assert (a.astype(float) - b.astype(float)).abs().fillna(0).max() < 1e-9, col
                assert (a.isna() == b.isna()).all(), col
            else:
                assert (a.astype(str) == b.astype(str)).all(), col
    impact = mesh.impact("airline.sales_domain.bookings")
    assert impact.levels["airline.sales_domain.daily_revenue"] == 1
    assert impact.levels["airline.sales_domain.customer_360"] == 1
    assert "0 derived" not in impact.summary()


# ------------------------------------------------------------------------ 4. trends, retention, SLA


def test_quality_trend_verdicts(lab_home: Path, capsys) -> None:
    mesh, loc = _lab(lab_home)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    mesh.measure("flights", now=t0)
    mesh.measure("flights", now=t0 + timedelta(days=1))
    assert set(mesh.quality_trends("flights").verdict) == {"stable"}
    # the data gets worse: every second delay missing
    write_deltalake(str(loc), _flights(null_every=2), mode="overwrite")
    mesh.measure("flights", now=t0 + timedelta(days=2))
    trends = mesh.quality_trends("flights").set_index(["metric", "column"])
    assert trends.loc[("completeness", ""), "verdict"] == "degrading"
    assert trends.loc[("row_count", ""), "verdict"] == "stable"
    write_deltalake(str(loc), _flights(N * 2), mode="overwrite")  # fixed and doubled
    mesh.measure("flights", now=t0 + timedelta(days=3))
    mesh.measure("flights", now=t0 + timedelta(days=4))
    trends = mesh.quality_trends("flights").set_index(["metric", "column"])
    assert trends.loc[("row_count", ""), "verdict"] == "improving"
    assert cli_main(["--home", str(lab_home), "mesh", "trends", "flights"]) == 0
    assert "improving" in capsys.readouterr().out
    # the rule itself, on a hand-made history
    history = pd.DataFrame(
        {
            "product": "p",
            "table": "t",
            "metric": ["freshness_hours"] * 3 + ["validity"],
            "column": ["", "", "", "r"],
            "value": [1.0, 5.0, 9.0, 99.0],
            "measured_at": pd.to_datetime(
                ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-01"], utc=True
            ),
        }
    )
    verdicts = trend_verdicts(history).set_index("metric")["verdict"].to_dict()
    assert verdicts == {"freshness_hours": "degrading", "validity": "n/a"}


def test_retention_policy_is_evaluated_on_the_table_history(lab_home: Path) -> None:
    mesh, loc = _lab(lab_home)
    p = Provider(lab_home)
    now = datetime.now(UTC)
    (tt,) = [r for r in mesh.check("flights", now=now).results if r.policy == "time-travel-window"]
    assert tt.status == "N/A"  # no window promised
    mesh.update_product("flights", sla={"time_travel_days": 7})
    (tt,) = [r for r in mesh.check("flights", now=now).results if r.policy == "time-travel-window"]
    assert tt.status == "PASS" and "file retention 7 d, log retention 30 d" in tt.evidence
    # a retention shorter than the promise fails, with the configured value as evidence
    p.sql(
        "ALTER TABLE airline.ops.flights SET TBLPROPERTIES "
        "(delta.deletedFileRetentionDuration = 'interval 2 days')"
    )
    (tt,) = [r for r in mesh.check("flights", now=now).results if r.policy == "time-travel-window"]
    assert tt.status == "FAIL" and "file retention 2 d" in tt.evidence
    p.sql(
        "ALTER TABLE airline.ops.flights SET TBLPROPERTIES "
        "(delta.deletedFileRetentionDuration = 'interval 14 days')"
    )
    assert mesh.retention("flights", now=now)["covered"].tolist() == [True]
    # a VACUUM RETAIN 0 HOURS in the history deletes the window's oldest version: FAIL, with evidence
    write_deltalake(str(loc), _flights(), mode="overwrite")
    p.sql("SET spark.databricks.delta.retentionDurationCheck.enabled = false")
    time.sleep(0.01)
    p.sql("VACUUM airline.ops.flights RETAIN 0 HOURS")
    later = datetime.now(UTC)
    frame = mesh.retention("flights", now=later)
    assert frame["vacuum_retention_hours"].tolist() == [0.0]
    assert frame["window_version"].tolist() == [0] and frame["readable"].tolist() == [False]
    (tt,) = [
        r for r in mesh.check("flights", now=later).results if r.policy == "time-travel-window"
    ]
    assert tt.status == "FAIL" and "VACUUM ran with 0 h retention" in tt.evidence
    assert "lost 1 of 1 data file(s) to VACUUM" in tt.evidence
    with pytest.raises(Exception, match="time-travel-window"):
        mesh.publish("flights", now=later)
    sla = mesh.sla_status("flights", now=later).set_index("sla")
    assert sla.loc["time_travel_days", "status"] == "FAIL"


def test_availability_is_measured_over_the_audit_window(
    lab_home: Path, server_factory, tmp_path: Path
) -> None:
    delta_sharing = pytest.importorskip("delta_sharing")
    mesh, _ = _lab(lab_home)
    mesh.update_product("flights", sla={"availability_pct": 99, "availability_window_days": 7})
    mesh.publish("flights")
    mesh.subscribe("flights", "bi", consumer_domain="marketing")
    server = server_factory(lab_home)
    profile = tmp_path / "bi.share"
    write_profile(profile, profile_dict(server.endpoint, mesh.catalog.issue_token("bi")))
    url = f"{profile}#flight_ops.ops.flights"
    delta_sharing.load_as_pandas(url)
    with pytest.raises(HTTPError, match="400"):  # a client mistake (4xx) is not unavailability
        delta_sharing.load_as_pandas(url, version=99)
    stop_server(server)  # a stopped server has committed every audit row: the count below is final
    audit = _wait_for_audit(mesh, 4)
    on_share = audit[audit.share == "flight_ops"]
    assert len(on_share) >= 3 and (on_share.status_code < 500).all()
    # server errors older than the window do not count; those inside it do
    old = datetime.now(UTC) - timedelta(days=30)
    mesh.catalog.record_audit(
        [AuditEvent("queryTable", old, "bi", "flight_ops", "ops", "flights", status_code=500)] * 5
    )
    now = datetime.now(UTC) + timedelta(seconds=1)
    sla = mesh.sla_status("flights", now=now).set_index("sla")
    assert sla.loc["availability_pct", "measured"] == 100.0
    assert "0 5xx" in sla.loc["availability_pct", "evidence"]
    recent = datetime.now(UTC)
    mesh.catalog.record_audit(
        [AuditEvent("queryTable", recent, "bi", "flight_ops", "ops", "flights", status_code=503)]
    )
    n = len(on_share) + 1
    sla = mesh.sla_status("flights", now=now).set_index("sla")
    assert sla.loc["availability_pct", "measured"] == pytest.approx(100.0 * (n - 1) / n)
    assert sla.loc["availability_pct", "status"] == "FAIL"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MeshPolicyWarning)
        assert "Served versions" in mesh.report_html(now=now)
