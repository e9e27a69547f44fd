"""Lineage and usage from a REAL audit log: a real recipient reads through the official delta_sharing
client from the real server, and the mesh's usage, lineage graph and impact analysis reflect it."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
from deltalake import write_deltalake

from helpers.catalog import open_catalog
from helpers.exceptions import InvalidArgumentError, NotFoundError
from helpers.mesh import READ_ACTIONS, Mesh


def _lab(home: Path) -> Mesh:
    cat = open_catalog(home)
    raw = home / "data" / "airline" / "raw" / "flights_raw"
    ops = home / "data" / "airline" / "ops" / "flights"
    frame = pd.DataFrame(
        {"flight_id": range(20), "origin": ["JFK", "SFO"] * 10, "dep_delay": range(-5, 15)}
    )
    write_deltalake(str(raw), frame)
    # "derived" by a cleaning step: dep_delay -2..14 stays, 17 rows
    write_deltalake(str(ops), frame[frame.dep_delay > -3].reset_index(drop=True))
    cat.register_table("airline.raw.flights_raw", str(raw))
    cat.register_table("airline.ops.flights", str(ops))
    cat.create_share("flight_ops")
    cat.add_table_to_share("flight_ops", "airline.ops.flights")
    mesh = Mesh(home)
    mesh.register_domain("operations", "ops-team", description="Flight operations")
    mesh.register_domain("marketing", "mkt-team", description="Campaigns")
    mesh.create_product(
        "flights",
        domain="operations",
        share="flight_ops",
        description="Cleaned flights",
        tags=["flights"],
    )
    mesh.add_lineage("airline.raw.flights_raw", "airline.ops.flights", "drop implausible delays")
    return mesh


def test_lineage_edges_and_cycle_refusal(lab_home: Path) -> None:
    mesh = _lab(lab_home)
    with pytest.raises(InvalidArgumentError, match="cycle"):
        mesh.add_lineage("airline.ops.flights", "airline.raw.flights_raw")
    with pytest.raises(NotFoundError):
        mesh.add_lineage("airline.raw.flights_raw", "airline.nope.t")
    mesh.publish("flights")
    mesh.subscribe("flights", "analyst", consumer_domain="marketing")
    g = mesh.lineage()
    assert (
        "table:airline.raw.flights_raw",
        "table:airline.ops.flights",
        "derives",
        "drop implausible delays",
    ) in g.edges
    assert g.downstream("table:airline.raw.flights_raw") == [
        "table:airline.ops.flights",
        "share:flight_ops",
        "product:flights",
        "recipient:analyst",
    ]
    assert "recipient:analyst" in g.to_dot()


def test_usage_and_impact_come_from_a_real_recipient_read(
    lab_home: Path, server_factory, tmp_path: Path
) -> None:
    delta_sharing = pytest.importorskip("delta_sharing")
    from helpers.profiles import profile_dict, write_profile

    mesh = _lab(lab_home)
    mesh.publish("flights")
    mesh.subscribe("flights", "analyst", consumer_domain="marketing")
    mesh.subscribe("flights", "idle_reader", consumer_domain="operations")  # granted, never reads
    server = server_factory(lab_home)
    profile = tmp_path / "analyst.share"
    write_profile(profile, profile_dict(server.endpoint, mesh.catalog.issue_token("analyst")))

    client = delta_sharing.SharingClient(str(profile))
    assert [t.name for t in client.list_all_tables()] == ["flights"]
    url = f"{profile}#flight_ops.ops.flights"
    first = delta_sharing.load_as_pandas(url)
    second = delta_sharing.load_as_pandas(url)
    assert len(first) == len(second) == 17

    # the server writes its audit rows in batches from a background thread: wait for them
    deadline = time.monotonic() + 30
    while True:
        audit = mesh.catalog.audit_frame()
        # independent count: successful read requests on the table by this recipient
        reads = audit[
            (audit.recipient == "analyst")
            & (audit.table == "flights")
            & audit.action.str.lower().isin(READ_ACTIONS)
            & (audit.status_code == 200)
        ]
        if len(reads) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(reads) == 2
    usage = mesh.usage("flights")
    (row,) = usage.itertuples(index=False)
    assert (row.recipient, row.share, row.schema, row.table) == (
        "analyst",
        "flight_ops",
        "ops",
        "flights",
    )
    assert row.source_table == "airline.ops.flights" and row.product == "flights"
    assert row.reads == 2
    assert row.last_read == reads.event_time.max() and row.first_read == reads.event_time.min()
    assert row.versions == "0"

    g = mesh.lineage()
    read_edges = [e for e in g.edges if e[2] == "reads"]
    assert [(s, d) for s, d, _, _ in read_edges] == [
        ("recipient:analyst", "table:airline.ops.flights")
    ]
    assert read_edges[0][3].startswith("2 reads")

    impact = mesh.impact("airline.raw.flights_raw")
    assert impact.derived_tables == ("airline.ops.flights",)
    assert impact.shares == ("flight_ops",) and impact.products == ("flights",)
    assert set(impact.recipients) == {"analyst", "idle_reader"}
    assert list(impact.usage.recipient) == ["analyst"]  # the one who actually reads
    assert "recipients who actually read it: ['analyst']" in impact.summary()

    # availability is measured from the same audit log
    (avail,) = [r for r in mesh.check("flights").results if r.metric == "availability"] or [None]
    sla = mesh.sla_status("flights").set_index("sla")
    assert sla.loc["availability_pct", "measured"] == pytest.approx(
        100.0 * (audit[audit.share == "flight_ops"].status_code < 500).mean()
    )
    assert avail is None  # no policy on availability installed in this test
