"""The airline multi-domain dataset (seed 000's scenario), coherent by construction.

Catalog ``airline``; three schemas, one per data domain:

* ``shared_airline`` (core data every team needs): ``airports``, ``aircraft``, ``routes``,
  ``flights``, and the derived ``flight_performance`` (one row per flight, joined with its aircraft
  and route);
* ``sales_domain``: ``customers``, ``bookings``, ``marketing_campaigns``, ``daily_revenue`` and the
  derived ``customer_360`` (one row per customer);
* ``operations_domain``: ``maintenance_logs``, ``crew_assignments``, ``ground_handling``,
  ``daily_operations_metrics`` and the derived ``fleet_status`` (one row per aircraft).

Columns are seed 000's, plus a few that make the aggregates verifiable (``flights.flight_date``,
``bookings.ancillary_amount``, ``ground_handling.issue_reported``) and the partition columns
``flights.flight_month`` and ``bookings.booking_month`` (``'YYYY-MM'``: a file per month, not per day,
so the official client fetches a few files, not one per day).

Rules a recipient can check (the tests check every one of them):

* every foreign key resolves (flights → airports, aircraft, routes; bookings → flights, customers;
  crew, ground handling → flights; maintenance → aircraft);
* ``ON_TIME`` flights leave less than 15 minutes late, ``DELAYED`` ones 15 minutes or more;
  ``CANCELLED`` flights have no actual times, and all their bookings are ``CANCELLED`` with
  ``refund_amount = total_price``; crew and ground handling exist only for flights that operated;
* ``routes.distance_km`` is the great-circle distance between the airports' real coordinates
  (rounded to 0.1 km) and ``is_international`` is ``origin country != destination country``;
* ``daily_revenue`` aggregates bookings by the UTC day of ``booking_date`` (``booking_revenue`` =
  sum of ``total_price``, ``ancillary_revenue`` = sum of ``ancillary_amount``, ``bookings_count``,
  ``average_ticket_price`` = revenue / count) and by the day of ``cancellation_date``
  (``cancellation_count``, ``refund_total``);
* ``daily_operations_metrics`` aggregates flights by ``flight_date`` (see :func:`.operations.ops_metrics`);
* a crew assignment's duty runs from 60 minutes before the actual departure to 30 minutes after the
  actual arrival, ``flight_hours`` is the actual block time, ``overtime_hours`` is duty beyond 10 h
  and ``rest_hours`` is ``max(10, duty hours)``;
* a customer's ``total_lifetime_value`` is ``sum(total_price + ancillary_amount - refund_amount)``
  over their bookings, ``loyalty_points`` its whole currency units and ``loyalty_tier`` follows the
  points (:data:`.reference.TIERS`); ``acquisition_date`` is on or before the first booking.

Volumes: ``xlarge`` has seed 000's volumes (1 M flights, 500 k customers, 5 M bookings, 200 k
maintenance logs); crew and ground handling are per operated flight (about 5 rows each), so they are
not free parameters as in the seed. The fleet grows with the scale so the flights stay plausible.

Modules: :mod:`~helpers.datagen.airline.spec` (names, scales, table specs, random streams),
:mod:`~helpers.datagen.airline.reference` (airports, aircraft models, names, category weights), and one
module per domain building its tables: :mod:`~helpers.datagen.airline.network` (shared airline),
:mod:`~helpers.datagen.airline.sales`, :mod:`~helpers.datagen.airline.operations`. :func:`build` runs
them in :data:`TABLES` order.
"""

from __future__ import annotations

from collections.abc import Iterator

from helpers.datagen.airline.lineage import DERIVATIONS
from helpers.datagen.airline.network import (
    build_aircraft,
    build_airports,
    build_flights,
    build_routes,
    flight_performance,
)
from helpers.datagen.airline.operations import (
    build_crew_assignments,
    build_ground_handling,
    build_maintenance_logs,
    fleet_status,
    ops_metrics,
)
from helpers.datagen.airline.sales import (
    bookings_table,
    build_bookings,
    build_customers,
    customer_360,
    daily_revenue,
    marketing_campaigns,
    summarise_bookings,
)
from helpers.datagen.airline.spec import (
    DEFAULT_DAYS,
    DEFAULT_START,
    NAME,
    SCALES,
    TABLES,
    make_table,
)
from helpers.datagen.common import GeneratedTable, Params

__all__ = ["DEFAULT_DAYS", "DEFAULT_START", "DERIVATIONS", "NAME", "SCALES", "TABLES", "build"]


def build(params: Params) -> Iterator[GeneratedTable]:
    """Generate every table of the dataset, in :data:`TABLES` order.

    One step per table; each step draws from its own random stream
    (:func:`~helpers.datagen.airline.spec.rng`), so a step's output depends only on the parameters and
    the earlier steps' values it is given.
    """
    scale = SCALES[params.scale]
    # a step returns its table and what later steps need; the table is dropped once yielded
    # (written), so the large scales never hold two copies of a table's data
    table, airports = build_airports()
    yield table
    del table
    table, fleet = build_aircraft(params, scale)
    yield table
    del table
    table, routes = build_routes(params, airports, fleet)
    yield table
    del table
    table, flights = build_flights(params, scale, routes, fleet)
    yield table
    del table
    # bookings are built before customers (customers summarise their bookings), written after
    bookings = build_bookings(params, scale, flights, fleet)
    table, customers = build_customers(params, scale, bookings)
    yield table
    del table
    yield bookings_table(bookings)
    yield marketing_campaigns(params)
    yield daily_revenue(params, bookings)
    # what later tables need from the bookings, then free the 5 M-row arrays (xlarge memory)
    summary = summarise_bookings(bookings, scale)
    del bookings
    table, maintenance = build_maintenance_logs(params, scale, fleet)
    yield table
    del table
    table, crew = build_crew_assignments(params, fleet, flights)
    yield table
    del table
    table, ground = build_ground_handling(params, fleet, flights, summary, crew)
    yield table
    del table
    yield make_table(
        "daily_operations_metrics",
        ops_metrics(
            params,
            flights.day,
            flights.status,
            flights.dep_delay_min,
            flights.arr_delay_min,
            fleet.seats[flights.aircraft],
            summary.pax_per_flight,
            ground.flight,
            ground.kind,
            ground.issue,
            flights.operated_idx,
            ground.fuel_dl,
        ),
    )
    yield flight_performance(airports, fleet, routes, flights)
    yield customer_360(customers, summary)
    yield fleet_status(fleet, flights, maintenance)
