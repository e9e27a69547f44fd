"""The airline dataset: written as Delta tables, registered, deterministic and coherent.

Every rule is checked on the Delta tables as written (read back with deltalake, queried with DuckDB),
the way a recipient would verify them.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from helpers.catalog import open_catalog
from helpers.datagen import dataset_tables, generate

# DATAGEN_TEST_SEED reruns the coherence checks on another seed
SEED = int(os.environ.get("DATAGEN_TEST_SEED", "7"))
DAYS = 21
START = "2025-01-01"


def read_tables(root: Path) -> dict[str, pa.Table]:
    """Every Delta table of a dataset directory, by table name."""
    out = {}
    for spec in dataset_tables("airline"):
        out[spec.name] = DeltaTable(str(root / spec.schema / spec.name)).to_pyarrow_table()
    return out


def sorted_table(t: pa.Table) -> pa.Table:
    """Rows in a canonical order (file order in a partitioned table is not part of its contents)."""
    cols = sorted(t.column_names)
    t = t.select(cols)
    return t.sort_by([(c, "ascending") for c in cols])


@pytest.fixture(scope="module")
def airline(tmp_path_factory: pytest.TempPathFactory) -> dict:
    home = tmp_path_factory.mktemp("airline-home")
    summary = generate("airline", home, scale="small", seed=SEED, days=DAYS, progress=False)
    tables = read_tables(summary.location)
    con = duckdb.connect()
    for name, table in tables.items():
        con.register(name, table)
    return {"home": home, "summary": summary, "tables": tables, "con": con}


def q(airline: dict, sql: str) -> list[tuple]:
    return airline["con"].execute(sql).fetchall()


def scalar(airline: dict, sql: str):
    return q(airline, sql)[0][0]


# ---- storage, registration ---------------------------------------------------------------------


def test_summary_counts_match_tables_and_volumes(airline: dict) -> None:
    summary = airline["summary"]
    rows = summary.rows()
    assert len(rows) == 15
    for name, table in airline["tables"].items():
        schema = next(s.schema for s in dataset_tables("airline") if s.name == name)
        assert rows[f"{schema}.{name}"] == table.num_rows > 0
    # seed 000's small volumes
    assert rows["shared_airline.flights"] == 1_000
    assert rows["sales_domain.customers"] == 500
    assert rows["sales_domain.bookings"] == 2_000
    assert rows["operations_domain.maintenance_logs"] == 500
    assert rows["shared_airline.routes"] == 100
    assert rows["sales_domain.marketing_campaigns"] == 20
    assert rows["operations_domain.daily_operations_metrics"] == DAYS


def test_tables_are_registered_in_the_catalog(airline: dict) -> None:
    catalog = open_catalog(airline["home"])
    registered = {t.name: t for t in catalog.list_tables(catalog="airline")}
    expected = {f"airline.{s.schema}.{s.name}" for s in dataset_tables("airline")}
    assert set(registered) == expected
    schemas = {t.schema for t in registered.values()}
    assert schemas == {"shared_airline", "sales_domain", "operations_domain"}
    for info in registered.values():
        assert Path(info.location, "_delta_log").is_dir()
        assert Path(info.location).parts[-2:] == (info.schema, info.table)


def test_delta_metadata_timestamps_partitions_cdf(airline: dict) -> None:
    root = airline["summary"].location
    for spec in dataset_tables("airline"):
        dt = DeltaTable(str(root / spec.schema / spec.name))
        assert dt.version() == 0  # one commit per table
        meta = dt.metadata()
        assert list(meta.partition_columns) == list(spec.partition_by)
        assert (meta.configuration.get("delta.enableChangeDataFeed") == "true") == spec.cdf
        log = (
            root / spec.schema / spec.name / "_delta_log" / "00000000000000000000.json"
        ).read_text()
        assert "timestamp_ntz" not in log
        for field in dt.schema().to_arrow():
            t = pa.field(field).type if not isinstance(field, pa.Field) else field.type
            if pa.types.is_timestamp(t):
                assert t.tz == "UTC", (spec.name, field)
        # stats with min/max are written (the server skips files with them)
        adds = [json.loads(line)["add"] for line in log.splitlines() if '"add"' in line]
        assert adds and all(json.loads(a["stats"])["minValues"] for a in adds)
    parts = {s.name: s.partition_by for s in dataset_tables("airline") if s.partition_by}
    assert parts == {"flights": ("flight_month",), "bookings": ("booking_month",)}
    cdf = {s.name for s in dataset_tables("airline") if s.cdf}
    assert {"flights", "bookings", "customers"} <= cdf
    assert airline["tables"]["flights"].schema.field("scheduled_departure").type == pa.timestamp(
        "us", tz="UTC"
    )


# ---- keys ----------------------------------------------------------------------------------------

PRIMARY_KEYS = {
    "airports": "airport_code",
    "aircraft": "aircraft_id",
    "routes": "route_id",
    "flights": "flight_id",
    "customers": "customer_id",
    "bookings": "booking_id",
    "marketing_campaigns": "campaign_id",
    "daily_revenue": "date",
    "maintenance_logs": "maintenance_id",
    "crew_assignments": "assignment_id",
    "ground_handling": "operation_id",
    "daily_operations_metrics": "date",
    "flight_performance": "flight_id",
    "customer_360": "customer_id",
    "fleet_status": "aircraft_id",
}

FOREIGN_KEYS = [
    ("flights", "origin_airport", "airports", "airport_code"),
    ("flights", "destination_airport", "airports", "airport_code"),
    ("flights", "aircraft_id", "aircraft", "aircraft_id"),
    ("flights", "route_id", "routes", "route_id"),
    ("routes", "origin_airport", "airports", "airport_code"),
    ("routes", "destination_airport", "airports", "airport_code"),
    ("bookings", "customer_id", "customers", "customer_id"),
    ("bookings", "flight_id", "flights", "flight_id"),
    ("maintenance_logs", "aircraft_id", "aircraft", "aircraft_id"),
    ("crew_assignments", "flight_id", "flights", "flight_id"),
    ("ground_handling", "flight_id", "flights", "flight_id"),
    ("flight_performance", "flight_id", "flights", "flight_id"),
    ("customer_360", "customer_id", "customers", "customer_id"),
    ("fleet_status", "aircraft_id", "aircraft", "aircraft_id"),
]


@pytest.mark.parametrize("table,key", sorted(PRIMARY_KEYS.items()))
def test_primary_keys_are_unique_and_not_null(airline: dict, table: str, key: str) -> None:
    n, distinct, nulls = q(
        airline, f"SELECT count(*), count(DISTINCT {key}), count(*) - count({key}) FROM {table}"
    )[0]
    assert n == distinct and nulls == 0


@pytest.mark.parametrize("child,col,parent,pk", FOREIGN_KEYS)
def test_foreign_keys_resolve(airline: dict, child: str, col: str, parent: str, pk: str) -> None:
    dangling = scalar(
        airline,
        f"SELECT count(*) FROM {child} c LEFT JOIN {parent} p ON c.{col} = p.{pk} "
        f"WHERE p.{pk} IS NULL",
    )
    assert dangling == 0
    assert scalar(airline, f"SELECT count({col}) FROM {child}") > 0


def test_unique_booking_references_and_emails(airline: dict) -> None:
    assert scalar(airline, "SELECT count(DISTINCT booking_reference) FROM bookings") == 2_000
    assert scalar(airline, "SELECT count(DISTINCT email) FROM customers") == 500
    assert (
        scalar(airline, "SELECT count(DISTINCT (origin_airport, destination_airport)) FROM routes")
        == 100
    )


# ---- semantic rules -------------------------------------------------------------------------------


def test_status_follows_departure_delay(airline: dict) -> None:
    rows = dict(
        q(
            airline,
            "SELECT status, count(*) FROM flights GROUP BY status",
        )
    )
    assert set(rows) <= {"ON_TIME", "DELAYED", "CANCELLED", "DIVERTED"}
    assert rows["ON_TIME"] > rows["DELAYED"] > rows["CANCELLED"] > 0
    late = "date_diff('second', scheduled_departure, actual_departure) / 60.0"
    assert (
        scalar(airline, f"SELECT count(*) FROM flights WHERE status = 'ON_TIME' AND {late} >= 15")
        == 0
    )
    assert (
        scalar(airline, f"SELECT count(*) FROM flights WHERE status = 'DELAYED' AND {late} < 15")
        == 0
    )
    assert (
        scalar(airline, "SELECT count(*) FROM flights WHERE actual_arrival <= actual_departure")
        == 0
    )


def test_cancelled_flights_have_no_actual_times_and_refunded_bookings(airline: dict) -> None:
    assert (
        scalar(
            airline,
            "SELECT count(*) FROM flights WHERE status = 'CANCELLED' "
            "AND (actual_departure IS NOT NULL OR actual_arrival IS NOT NULL)",
        )
        == 0
    )
    assert (
        scalar(
            airline,
            "SELECT count(*) FROM flights WHERE status <> 'CANCELLED' "
            "AND (actual_departure IS NULL OR actual_arrival IS NULL)",
        )
        == 0
    )
    n_bookings, bad = q(
        airline,
        "SELECT count(*), count(*) FILTER (WHERE b.booking_status <> 'CANCELLED' "
        "  OR b.refund_amount <> b.total_price OR b.cancellation_date IS NULL "
        "  OR b.cancellation_date > f.scheduled_departure) "
        "FROM bookings b JOIN flights f USING (flight_id) WHERE f.status = 'CANCELLED'",
    )[0]
    assert n_bookings > 0 and bad == 0
    for table in ("crew_assignments", "ground_handling"):
        assert (
            scalar(
                airline,
                f"SELECT count(*) FROM {table} JOIN flights f USING (flight_id) WHERE f.status = 'CANCELLED'",
            )
            == 0
        )


def test_booking_lifecycle_is_consistent(airline: dict) -> None:
    bad = scalar(
        airline,
        "SELECT count(*) FROM bookings b JOIN flights f USING (flight_id) WHERE "
        "b.booking_date >= f.scheduled_departure "
        "OR (b.booking_status = 'CANCELLED') <> (b.cancellation_date IS NOT NULL) "
        "OR (b.cancellation_date IS NOT NULL AND b.cancellation_date < b.booking_date) "
        "OR (b.booking_status <> 'CANCELLED' AND b.refund_amount <> 0) "
        "OR (b.booking_status = 'CANCELLED' AND (b.refund_amount <= 0 OR b.refund_amount > b.total_price)) "
        "OR abs(b.base_price + b.taxes - b.total_price) > 0.001 "
        "OR (b.booking_status <> 'COMPLETED' AND b.ancillary_amount <> 0) "
        "OR b.booking_month <> strftime(b.booking_date, '%Y-%m')",
    )
    assert bad == 0
    # a cabin a plane does not have is never sold, and no cabin is overbooked
    assert (
        scalar(
            airline,
            "SELECT count(*) FROM (SELECT b.flight_id, b.travel_class, count(*) n, any_value(a.capacity_first) cf, "
            "any_value(a.capacity_business) cb, any_value(a.capacity_economy) ce "
            "FROM bookings b JOIN flights f USING (flight_id) JOIN aircraft a USING (aircraft_id) "
            "GROUP BY ALL) WHERE n > CASE travel_class WHEN 'FIRST' THEN cf WHEN 'BUSINESS' THEN cb ELSE ce END",
        )
        == 0
    )


def _haversine(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0088 * math.asin(math.sqrt(a))


def test_routes_are_great_circle_distances_and_international_by_country(airline: dict) -> None:
    rows = q(
        airline,
        "SELECT r.distance_km, o.latitude, o.longitude, d.latitude, d.longitude, r.is_international, "
        "o.country_code <> d.country_code "
        "FROM routes r JOIN airports o ON r.origin_airport = o.airport_code "
        "JOIN airports d ON r.destination_airport = d.airport_code",
    )
    assert len(rows) == 100
    for dist, lat1, lon1, lat2, lon2, intl, countries_differ in rows:
        assert dist == pytest.approx(_haversine(lat1, lon1, lat2, lon2), abs=0.051)
        assert intl == countries_differ
    assert any(r[5] for r in rows) and not all(r[5] for r in rows)
    countries = {r[0] for r in q(airline, "SELECT DISTINCT country_code FROM airports")}
    assert len(countries) >= 10 and "US" in countries
    n_airports = scalar(airline, "SELECT count(*) FROM airports")
    assert 30 <= n_airports <= 50
    # JFK-LHR as a sanity check of the coordinates (about 5,540 km)
    jfk = q(airline, "SELECT latitude, longitude FROM airports WHERE airport_code = 'JFK'")[0]
    lhr = q(airline, "SELECT latitude, longitude FROM airports WHERE airport_code = 'LHR'")[0]
    assert _haversine(*jfk, *lhr) == pytest.approx(5540, abs=20)


def test_flights_follow_their_routes_aircraft_range_and_service_days(airline: dict) -> None:
    bad = scalar(
        airline,
        "SELECT count(*) FROM flights f JOIN routes r USING (route_id) JOIN aircraft a USING (aircraft_id) "
        "WHERE f.origin_airport <> r.origin_airport OR f.destination_airport <> r.destination_airport "
        "OR a.range_km < r.distance_km "
        "OR date_diff('minute', f.scheduled_departure, f.scheduled_arrival) <> r.flight_duration_minutes "
        "OR substr(r.service_days, isodow(f.scheduled_departure)::INT, 1) <> '1' "
        "OR f.flight_date <> CAST(f.scheduled_departure AS DATE) "
        "OR f.flight_month <> strftime(f.flight_date, '%Y-%m')",
    )
    assert bad == 0
    lo, hi = q(airline, "SELECT min(flight_date), max(flight_date) FROM flights")[0]
    assert str(lo) >= START and (hi - lo).days <= DAYS - 1


def test_short_window_still_respects_service_days(tmp_path: Path) -> None:
    summary = generate("airline", tmp_path, days=2, progress=False, register=False)
    t = read_tables(summary.location)
    con = duckdb.connect()
    con.register("flights", t["flights"])
    con.register("routes", t["routes"])
    assert con.execute("SELECT count(*) FROM flights").fetchone()[0] == 1_000
    bad = con.execute(
        "SELECT count(*) FROM flights f JOIN routes r USING (route_id) "
        "WHERE substr(r.service_days, isodow(f.scheduled_departure)::INT, 1) <> '1'"
    ).fetchone()[0]
    assert bad == 0


def test_flights_are_partitioned_by_month_one_file_a_month(tmp_path: Path) -> None:
    """``flight_month`` (``'YYYY-MM'``), not the day, is the partition: 40 days over January and
    February are two files (a file a day was 40 small files, ~11 HTTP requests each for the client)."""
    summary = generate("airline", tmp_path, days=40, progress=False, register=False)
    dt = DeltaTable(str(summary.location / "shared_airline" / "flights"))
    assert list(dt.metadata().partition_columns) == ["flight_month"]
    assert len(dt.file_uris()) == 2
    con = duckdb.connect()
    con.register("flights", dt.to_pyarrow_table())
    assert con.execute(
        "SELECT count(*) FILTER (WHERE flight_month <> strftime(flight_date, '%Y-%m')), "
        "list(DISTINCT flight_month ORDER BY flight_month), count(DISTINCT flight_date) FROM flights"
    ).fetchall()[0] == (0, ["2025-01", "2025-02"], 40)


def test_daily_revenue_is_an_exact_aggregate_of_bookings(airline: dict) -> None:
    # sums are exact to the cent; averages allow one unit in the last place, because a float
    # division can turn an exact tie (x.xx5) into x.xx4999 before SQL round()
    mismatches = scalar(
        airline,
        """
        WITH b AS (
          SELECT CAST(booking_date AS DATE) d, sum(total_price) rev, sum(ancillary_amount) anc, count(*) n
          FROM bookings GROUP BY 1),
        c AS (
          SELECT CAST(cancellation_date AS DATE) d, count(*) n, sum(refund_amount) refunds
          FROM bookings WHERE cancellation_date IS NOT NULL GROUP BY 1)
        SELECT count(*) FROM daily_revenue r
        LEFT JOIN b ON b.d = r.date LEFT JOIN c ON c.d = r.date
        WHERE abs(r.booking_revenue - coalesce(b.rev, 0)) > 0.005
           OR abs(r.ancillary_revenue - coalesce(b.anc, 0)) > 0.005
           OR abs(r.total_revenue - coalesce(b.rev, 0) - coalesce(b.anc, 0)) > 0.005
           OR r.bookings_count <> coalesce(b.n, 0)
           OR r.cancellation_count <> coalesce(c.n, 0)
           OR abs(r.refund_total - coalesce(c.refunds, 0)) > 0.005
           OR (b.n > 0 AND abs(r.average_ticket_price - round(b.rev / b.n, 2)) > 0.0101)
        """,
    )
    assert mismatches == 0
    # every day with a booking or a cancellation has a row
    assert (
        scalar(
            airline,
            "SELECT count(*) FROM (SELECT CAST(booking_date AS DATE) d FROM bookings UNION "
            "SELECT CAST(cancellation_date AS DATE) FROM bookings WHERE cancellation_date IS NOT NULL) x "
            "LEFT JOIN daily_revenue r ON r.date = x.d WHERE r.date IS NULL",
        )
        == 0
    )
    assert scalar(airline, "SELECT sum(bookings_count) FROM daily_revenue") == 2_000


def test_daily_operations_metrics_are_exact_aggregates_of_flights(airline: dict) -> None:
    mismatches = scalar(
        airline,
        """
        WITH f AS (
          SELECT f.*, a.capacity_economy + a.capacity_business + a.capacity_first seats,
                 date_diff('minute', scheduled_departure, actual_departure) dep_late,
                 date_diff('minute', scheduled_arrival, actual_arrival) arr_late,
                 (SELECT count(*) FROM bookings b WHERE b.flight_id = f.flight_id
                    AND b.booking_status = 'COMPLETED') pax
          FROM flights f JOIN aircraft a USING (aircraft_id)),
        agg AS (
          SELECT flight_date d, count(*) total,
            count(*) FILTER (WHERE status <> 'CANCELLED' AND dep_late < 15) otd,
            count(*) FILTER (WHERE status <> 'CANCELLED' AND arr_late < 15) ota,
            count(*) FILTER (WHERE status = 'CANCELLED') canc,
            count(*) FILTER (WHERE status = 'DELAYED') del,
            avg(greatest(dep_late, 0)) FILTER (WHERE status <> 'CANCELLED') avg_delay,
            sum(pax) FILTER (WHERE status <> 'CANCELLED') pax,
            sum(seats) FILTER (WHERE status <> 'CANCELLED') seats
          FROM f GROUP BY 1),
        g AS (
          SELECT f.flight_date d,
            sum(fuel_loaded_liters) FILTER (WHERE operation_type = 'FUELING') fuel,
            count(*) FILTER (WHERE issue_reported AND operation_type = 'BAGGAGE') bag,
            count(*) FILTER (WHERE issue_reported AND operation_type <> 'BAGGAGE') safety
          FROM ground_handling JOIN flights f USING (flight_id) GROUP BY 1)
        SELECT count(*) FROM daily_operations_metrics m
        LEFT JOIN agg ON agg.d = m.date LEFT JOIN g ON g.d = m.date
        WHERE m.total_flights <> coalesce(agg.total, 0)
           OR m.on_time_departures <> coalesce(agg.otd, 0)
           OR m.on_time_arrivals <> coalesce(agg.ota, 0)
           OR m.cancelled_flights <> coalesce(agg.canc, 0)
           OR m.delayed_flights <> coalesce(agg.del, 0)
           OR abs(m.average_delay_minutes - round(agg.avg_delay, 2)) > 0.0101
           OR abs(m.fuel_consumption_liters - coalesce(g.fuel, 0)) > 0.05
           OR abs(m.passenger_load_factor - round(agg.pax / agg.seats, 4)) > 0.000101
           OR m.baggage_issues <> coalesce(g.bag, 0)
           OR m.safety_incidents <> coalesce(g.safety, 0)
        """,
    )
    assert mismatches == 0
    assert scalar(airline, "SELECT sum(total_flights) FROM daily_operations_metrics") == 1_000


def test_crew_duty_and_flight_hours_match_their_flights(airline: dict) -> None:
    bad = scalar(
        airline,
        "SELECT count(*) FROM crew_assignments c JOIN flights f USING (flight_id) WHERE "
        "c.duty_start_time <> f.actual_departure - INTERVAL 60 MINUTE "
        "OR c.duty_end_time <> f.actual_arrival + INTERVAL 30 MINUTE "
        "OR abs(c.flight_hours - date_diff('second', f.actual_departure, f.actual_arrival) / 3600.0) > 0.0051 "
        "OR abs(c.overtime_hours - greatest(0, date_diff('second', c.duty_start_time, c.duty_end_time) / 3600.0 - 10)) > 0.0051 "
        "OR c.rest_hours < 10 "
        "OR c.assignment_date <> f.flight_date",
    )
    assert bad == 0
    # every operated flight has exactly one captain and one first officer
    assert (
        scalar(
            airline,
            "SELECT count(*) FROM flights f WHERE f.status <> 'CANCELLED' AND "
            "(SELECT count(*) FROM crew_assignments c WHERE c.flight_id = f.flight_id AND c.role = 'CAPTAIN') <> 1",
        )
        == 0
    )


def test_ground_handling_happens_before_departure(airline: dict) -> None:
    bad = scalar(
        airline,
        "SELECT count(*) FROM ground_handling g JOIN flights f USING (flight_id) "
        "WHERE g.end_time > f.actual_departure OR g.start_time >= g.end_time "
        "OR (g.operation_type = 'FUELING') <> (g.fuel_loaded_liters IS NOT NULL)",
    )
    assert bad == 0
    assert (
        scalar(
            airline,
            "SELECT count(*) FROM (SELECT flight_id, count(*) n FROM ground_handling GROUP BY 1) WHERE n <> 5",
        )
        == 0
    )


def test_maintenance_refers_to_real_aircraft_and_is_consistent(airline: dict) -> None:
    bad = scalar(
        airline,
        "SELECT count(*) FROM maintenance_logs WHERE "
        "(completed_date IS NULL) <> (compliance_status = 'PENDING') "
        "OR completed_date < scheduled_date "
        "OR (next_due_date IS NOT NULL AND next_due_date <= completed_date) "
        "OR cost <= 0 OR hours_required <= 0",
    )
    assert bad == 0
    # maintenance spreads over the fleet (seed 000 matched almost no aircraft)
    assert scalar(airline, "SELECT count(DISTINCT aircraft_id) FROM maintenance_logs") >= 45


def test_customers_summarise_their_bookings(airline: dict) -> None:
    bad = scalar(
        airline,
        """
        WITH b AS (SELECT customer_id, sum(total_price + ancillary_amount - refund_amount) ltv,
                          min(CAST(booking_date AS DATE)) first_day
                   FROM bookings GROUP BY 1)
        SELECT count(*) FROM customers c LEFT JOIN b USING (customer_id)
        WHERE abs(c.total_lifetime_value - coalesce(b.ltv, 0)) > 0.005
           OR c.loyalty_points <> floor(round(coalesce(b.ltv, 0), 2))
           OR c.loyalty_tier <> CASE WHEN c.loyalty_points >= 25000 THEN 'PLATINUM'
                                     WHEN c.loyalty_points >= 10000 THEN 'GOLD'
                                     WHEN c.loyalty_points >= 3000 THEN 'SILVER' ELSE 'BRONZE' END
           OR c.acquisition_date > b.first_day
           OR c.last_activity_date < c.acquisition_date
        """,
    )
    assert bad == 0


def test_derived_tables_equal_their_recomputation(airline: dict) -> None:
    assert (
        scalar(
            airline,
            """
        WITH x AS (SELECT c.customer_id, c.first_name, c.last_name, c.loyalty_tier, c.total_lifetime_value,
                     count(b.booking_id) total_bookings, coalesce(sum(b.total_price), 0) total_spent,
                     max(b.booking_date) last_booking_date
                   FROM customers c LEFT JOIN bookings b USING (customer_id) GROUP BY ALL)
        SELECT count(*) FROM customer_360 v JOIN x USING (customer_id)
        WHERE v.total_bookings <> x.total_bookings OR abs(v.total_spent - x.total_spent) > 0.005
           OR v.last_booking_date IS DISTINCT FROM x.last_booking_date
           OR v.loyalty_tier <> x.loyalty_tier OR v.first_name <> x.first_name
        """,
        )
        == 0
    )
    assert (
        scalar(
            airline,
            """
        WITH m AS (SELECT aircraft_id, count(*) n, count(completed_date) done, max(completed_date) last_done,
                          min(scheduled_date) FILTER (WHERE completed_date IS NULL) next_due, sum(cost) cost
                   FROM maintenance_logs GROUP BY 1),
             f AS (SELECT aircraft_id, count(*) n,
                          sum(date_diff('second', actual_departure, actual_arrival)) / 3600.0 AS hrs
                   FROM flights WHERE status <> 'CANCELLED' GROUP BY 1)
        SELECT count(*) FROM fleet_status s LEFT JOIN m USING (aircraft_id) LEFT JOIN f USING (aircraft_id)
        WHERE s.maintenance_events <> coalesce(m.n, 0) OR s.completed_events <> coalesce(m.done, 0)
           OR s.last_maintenance IS DISTINCT FROM m.last_done
           OR s.next_maintenance IS DISTINCT FROM m.next_due
           OR abs(s.total_maintenance_cost - coalesce(m.cost, 0)) > 0.005
           OR s.compliance_status <> CASE WHEN coalesce(m.n, 0) > coalesce(m.done, 0) THEN 'PENDING' ELSE 'COMPLIANT' END
           OR s.flights_operated <> coalesce(f.n, 0) OR abs(s.flight_hours - round(coalesce(f.hrs, 0), 2)) > 0.0051
        """,
        )
        == 0
    )
    assert scalar(airline, "SELECT count(*) FROM fleet_status") == scalar(
        airline, "SELECT count(*) FROM aircraft"
    )
    assert (
        scalar(
            airline,
            "SELECT count(*) FROM flight_performance p JOIN flights f ON f.flight_id = p.flight_id "
            "JOIN aircraft a ON a.aircraft_id = f.aircraft_id JOIN routes r ON r.route_id = f.route_id "
            "WHERE p.model <> a.model OR p.distance_km <> r.distance_km OR p.status <> f.status "
            "OR p.departure_delay_minutes IS DISTINCT FROM date_diff('minute', f.scheduled_departure, f.actual_departure)",
        )
        == 0
    )


# ---- determinism --------------------------------------------------------------------------------


def test_same_parameters_give_identical_tables_and_other_seeds_differ(
    airline: dict, tmp_path: Path
) -> None:
    again = generate(
        "airline", tmp_path / "a", seed=SEED, days=DAYS, progress=False, register=False
    )
    other = generate(
        "airline", tmp_path / "b", seed=SEED + 1, days=DAYS, progress=False, register=False
    )
    first = airline["tables"]
    second = read_tables(again.location)
    third = read_tables(other.location)
    for name in first:
        assert sorted_table(first[name]).equals(sorted_table(second[name])), name
    differing = [n for n in first if not sorted_table(first[n]).equals(sorted_table(third[n]))]
    assert "flights" in differing and "bookings" in differing and "customers" in differing
    assert "airports" not in differing  # reference data does not depend on the seed
