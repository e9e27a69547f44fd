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
``bookings.ancillary_amount``, ``bookings.booking_month``, ``ground_handling.issue_reported``).

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
* ``daily_operations_metrics`` aggregates flights by ``flight_date`` (see :func:`_ops_metrics`);
* a crew assignment's duty runs from 60 minutes before the actual departure to 30 minutes after the
  actual arrival, ``flight_hours`` is the actual block time, ``overtime_hours`` is duty beyond 10 h
  and ``rest_hours`` is ``max(10, duty hours)``;
* a customer's ``total_lifetime_value`` is ``sum(total_price + ancillary_amount - refund_amount)``
  over their bookings, ``loyalty_points`` its whole currency units and ``loyalty_tier`` follows the
  points (:data:`TIERS`); ``acquisition_date`` is on or before the first booking.

Volumes: ``xlarge`` has seed 000's volumes (1 M flights, 500 k customers, 5 M bookings, 200 k
maintenance logs); crew and ground handling are per operated flight (about 5 rows each), so they are
not free parameters as in the seed. The fleet grows with the scale so the flights stay plausible.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa

from helpers.datagen.common import (
    SECONDS_PER_DAY,
    GeneratedTable,
    Params,
    TableSpec,
    concat,
    date_array,
    group_reduce,
    haversine_km,
    id_strings,
    money,
    month_strings,
    position_in_group,
    ratio_half_up,
    rng_for,
    take_str,
    ts_array,
    weighted_choice,
)

NAME = "airline"
DEFAULT_START = date(2025, 1, 1)
DEFAULT_DAYS = 90

SHARED = "shared_airline"
SALES = "sales_domain"
OPS = "operations_domain"


@dataclass(frozen=True)
class AirlineScale:
    """Row volumes of one scale preset."""

    flights: int
    customers: int
    bookings: int
    maintenance: int
    aircraft: int


SCALES: dict[str, AirlineScale] = {
    "small": AirlineScale(
        flights=1_000, customers=500, bookings=2_000, maintenance=500, aircraft=50
    ),
    "medium": AirlineScale(10_000, 5_000, 50_000, 2_000, 100),
    "large": AirlineScale(100_000, 50_000, 500_000, 20_000, 300),
    "xlarge": AirlineScale(1_000_000, 500_000, 5_000_000, 200_000, 1_000),
}
N_ROUTE_PAIRS = 50  # both directions: 100 routes, as in the seed
N_CAMPAIGNS = 20

TABLES: tuple[TableSpec, ...] = (
    TableSpec(SHARED, "airports", cdf=True),
    TableSpec(SHARED, "aircraft", cdf=True),
    TableSpec(SHARED, "routes", cdf=True),
    TableSpec(SHARED, "flights", partition_by=("flight_date",), cdf=True),
    TableSpec(SALES, "customers", cdf=True),
    TableSpec(SALES, "bookings", partition_by=("booking_month",), cdf=True),
    TableSpec(SALES, "marketing_campaigns", cdf=True),
    TableSpec(SALES, "daily_revenue", cdf=True),
    TableSpec(OPS, "maintenance_logs", cdf=True),
    TableSpec(OPS, "crew_assignments", cdf=True),
    TableSpec(OPS, "ground_handling", cdf=True),
    TableSpec(OPS, "daily_operations_metrics", cdf=True),
    TableSpec(SHARED, "flight_performance", derived=True),
    TableSpec(SALES, "customer_360", derived=True),
    TableSpec(OPS, "fleet_status", derived=True),
)
_SPEC = {t.name: t for t in TABLES}

# fmt: off
# code, name, city, state/region code, country, latitude, longitude, timezone, hub
AIRPORTS: tuple[tuple[str, str, str, str, str, float, float, str, bool], ...] = (
    ("ATL", "Hartsfield-Jackson Atlanta International", "Atlanta", "GA", "US", 33.6407, -84.4277, "America/New_York", True),
    ("LAX", "Los Angeles International", "Los Angeles", "CA", "US", 33.9416, -118.4085, "America/Los_Angeles", True),
    ("ORD", "O'Hare International", "Chicago", "IL", "US", 41.9742, -87.9073, "America/Chicago", True),
    ("DFW", "Dallas/Fort Worth International", "Dallas", "TX", "US", 32.8998, -97.0403, "America/Chicago", True),
    ("DEN", "Denver International", "Denver", "CO", "US", 39.8561, -104.6737, "America/Denver", True),
    ("JFK", "John F. Kennedy International", "New York", "NY", "US", 40.6413, -73.7781, "America/New_York", True),
    ("SFO", "San Francisco International", "San Francisco", "CA", "US", 37.6213, -122.3790, "America/Los_Angeles", True),
    ("SEA", "Seattle-Tacoma International", "Seattle", "WA", "US", 47.4502, -122.3088, "America/Los_Angeles", False),
    ("MIA", "Miami International", "Miami", "FL", "US", 25.7959, -80.2870, "America/New_York", True),
    ("BOS", "Boston Logan International", "Boston", "MA", "US", 42.3656, -71.0096, "America/New_York", False),
    ("LAS", "Harry Reid International", "Las Vegas", "NV", "US", 36.0840, -115.1537, "America/Los_Angeles", False),
    ("PHX", "Phoenix Sky Harbor International", "Phoenix", "AZ", "US", 33.4343, -112.0116, "America/Phoenix", False),
    ("IAH", "George Bush Intercontinental", "Houston", "TX", "US", 29.9902, -95.3368, "America/Chicago", False),
    ("MSP", "Minneapolis-Saint Paul International", "Minneapolis", "MN", "US", 44.8848, -93.2223, "America/Chicago", False),
    ("DTW", "Detroit Metropolitan Wayne County", "Detroit", "MI", "US", 42.2162, -83.3554, "America/Detroit", False),
    ("PHL", "Philadelphia International", "Philadelphia", "PA", "US", 39.8744, -75.2424, "America/New_York", False),
    ("CLT", "Charlotte Douglas International", "Charlotte", "NC", "US", 35.2144, -80.9473, "America/New_York", False),
    ("MCO", "Orlando International", "Orlando", "FL", "US", 28.4312, -81.3081, "America/New_York", False),
    ("HNL", "Daniel K. Inouye International", "Honolulu", "HI", "US", 21.3187, -157.9225, "Pacific/Honolulu", False),
    ("ANC", "Ted Stevens Anchorage International", "Anchorage", "AK", "US", 61.1743, -149.9963, "America/Anchorage", False),
    ("YYZ", "Toronto Pearson International", "Toronto", "ON", "CA", 43.6777, -79.6248, "America/Toronto", True),
    ("YVR", "Vancouver International", "Vancouver", "BC", "CA", 49.1967, -123.1815, "America/Vancouver", False),
    ("YUL", "Montreal-Trudeau International", "Montreal", "QC", "CA", 45.4706, -73.7408, "America/Toronto", False),
    ("MEX", "Mexico City International", "Mexico City", "CMX", "MX", 19.4361, -99.0719, "America/Mexico_City", False),
    ("CUN", "Cancun International", "Cancun", "ROO", "MX", 21.0365, -86.8771, "America/Cancun", False),
    ("LHR", "London Heathrow", "London", "ENG", "GB", 51.4700, -0.4543, "Europe/London", True),
    ("CDG", "Paris Charles de Gaulle", "Paris", "IDF", "FR", 49.0097, 2.5479, "Europe/Paris", True),
    ("FRA", "Frankfurt am Main", "Frankfurt", "HE", "DE", 50.0379, 8.5622, "Europe/Berlin", True),
    ("AMS", "Amsterdam Schiphol", "Amsterdam", "NH", "NL", 52.3105, 4.7683, "Europe/Amsterdam", False),
    ("MAD", "Adolfo Suarez Madrid-Barajas", "Madrid", "MD", "ES", 40.4983, -3.5676, "Europe/Madrid", False),
    ("FCO", "Rome Fiumicino", "Rome", "LAZ", "IT", 41.8003, 12.2389, "Europe/Rome", False),
    ("DUB", "Dublin", "Dublin", "L", "IE", 53.4264, -6.2499, "Europe/Dublin", False),
    ("ZRH", "Zurich", "Zurich", "ZH", "CH", 47.4582, 8.5555, "Europe/Zurich", False),
    ("NRT", "Narita International", "Tokyo", "12", "JP", 35.7720, 140.3929, "Asia/Tokyo", True),
    ("ICN", "Incheon International", "Seoul", "28", "KR", 37.4602, 126.4407, "Asia/Seoul", False),
    ("SIN", "Singapore Changi", "Singapore", "01", "SG", 1.3644, 103.9915, "Asia/Singapore", False),
    ("HKG", "Hong Kong International", "Hong Kong", "HK", "HK", 22.3080, 113.9185, "Asia/Hong_Kong", False),
    ("DXB", "Dubai International", "Dubai", "DU", "AE", 25.2532, 55.3657, "Asia/Dubai", True),
    ("SYD", "Sydney Kingsford Smith", "Sydney", "NSW", "AU", -33.9399, 151.1753, "Australia/Sydney", False),
    ("GRU", "Sao Paulo Guarulhos International", "Sao Paulo", "SP", "BR", -23.4356, -46.4731, "America/Sao_Paulo", False),
    ("BOG", "El Dorado International", "Bogota", "DC", "CO", 4.7016, -74.1469, "America/Bogota", False),
    ("JNB", "O. R. Tambo International", "Johannesburg", "GP", "ZA", -26.1367, 28.2411, "Africa/Johannesburg", False),
)
# fmt: on

# manufacturer, model, economy, business, first, range_km, cruise_kmh, fuel burn l/km, fleet weight
MODELS: tuple[tuple[str, str, int, int, int, int, int, float, float], ...] = (
    ("Airbus", "A320neo", 150, 12, 0, 6300, 833, 2.9, 0.25),
    ("Airbus", "A321neo", 182, 16, 0, 7400, 833, 3.3, 0.15),
    ("Airbus", "A350-900", 253, 40, 8, 15000, 903, 6.9, 0.08),
    ("Boeing", "737-800", 150, 16, 0, 5400, 842, 3.1, 0.25),
    ("Boeing", "787-9", 216, 48, 8, 14000, 903, 6.5, 0.10),
    ("Embraer", "E175", 64, 12, 0, 3700, 829, 2.0, 0.17),
)

FIRST_NAMES = tuple(
    """
    James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara
    Richard Susan Joseph Jessica Thomas Sarah Carlos Karen Daniel Lisa Matthew Nancy Anthony
    Sandra Mark Ashley Wei Emily Hiroshi Yuki Amara Chidi Sofia Mateo Lucia Pierre Amelie
    Lukas Hannah Ahmed Fatima Priya Arjun Olga Ivan Ingrid Lars Aisha Noah Emma Liam Olivia
    Mei Jin Camila Diego Zara Kofi
    """.split()
)
LAST_NAMES = tuple(
    """
    Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez
    Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson
    White Harris Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott
    Nguyen Hill Flores Green Tanaka Sato Kim Park Chen Wang Mueller Schmidt Dubois Rossi
    Silva Santos Okafor Mensah Patel Singh Ivanova Novak Larsen Cohen
    """.split()
)

STATUSES = ("ON_TIME", "DELAYED", "CANCELLED", "DIVERTED")
ON_TIME, DELAYED, CANCELLED, DIVERTED = range(4)
STATUS_WEIGHTS = np.array([0.75, 0.20, 0.04, 0.01])
CLASSES = ("ECONOMY", "BUSINESS", "FIRST")
# price ranges per cabin in cents (seed: economy 150-800, business 800-3000, first 2000-8000)
CLASS_PRICE = np.array([[15_000, 80_000], [80_000, 300_000], [200_000, 800_000]])
PAYMENT_METHODS = ("CREDIT_CARD", "DEBIT_CARD", "PAYPAL", "APPLE_PAY", "MILES")
PAYMENT_WEIGHTS = np.array([0.55, 0.2, 0.1, 0.1, 0.05])
BOOKING_STATUSES = ("COMPLETED", "NO_SHOW", "CANCELLED")
COMPLETED, NO_SHOW, BK_CANCELLED = range(3)
#: loyalty tiers by loyalty points (one point per currency unit of lifetime value)
TIERS = (("BRONZE", 0), ("SILVER", 3_000), ("GOLD", 10_000), ("PLATINUM", 25_000))
CHANNELS = ("WEBSITE", "MOBILE_APP", "TRAVEL_AGENT", "REFERRAL", "SOCIAL_MEDIA", "PARTNER")
ROLES = ("CAPTAIN", "FIRST_OFFICER", "PURSER", "FLIGHT_ATTENDANT")
#: ground operations in the order they start before departure: name, start (min before departure,
#: low/high), duration minutes (low/high)
GROUND_OPS = (
    ("CLEANING", 80, 96, 15, 26),
    ("CATERING", 60, 76, 10, 21),
    ("FUELING", 55, 71, 15, 31),
    ("BAGGAGE", 50, 61, 25, 41),
    ("BOARDING", 40, 51, 25, 36),
)
# type, weight, hours low/high, cost low/high (currency units), next due in days (0: none), description
MAINTENANCE_TYPES = (
    ("LINE", 0.45, 1, 8, 500, 5_000, 7, "Line check: walk-around, fluids, tyres and brakes"),
    ("A_CHECK", 0.22, 50, 150, 10_000, 50_000, 90, "A check: systems inspection and lubrication"),
    (
        "B_CHECK",
        0.10,
        150,
        400,
        40_000,
        120_000,
        180,
        "B check: detailed inspection of systems and panels",
    ),
    ("C_CHECK", 0.05, 2_000, 6_000, 300_000, 900_000, 730, "C check: heavy structural inspection"),
    ("D_CHECK", 0.02, 20_000, 40_000, 2_000_000, 5_000_000, 2190, "D check: full overhaul"),
    ("UNSCHEDULED", 0.16, 2, 48, 2_000, 80_000, 0, "Unscheduled repair after a defect report"),
)


def _rng(params: Params, table: str) -> np.random.Generator:
    return rng_for(params.seed, NAME, table)


def _table(name: str, columns: dict[str, pa.Array | np.ndarray]) -> GeneratedTable:
    return GeneratedTable(spec=_SPEC[name], table=pa.table(columns))


def build(params: Params) -> Iterator[GeneratedTable]:
    """Generate every table of the dataset, in :data:`TABLES` order."""
    scale = SCALES[params.scale]

    # ---- airports ----------------------------------------------------------------------------
    ap = list(zip(*AIRPORTS, strict=True))
    ap_code = np.array(ap[0])
    ap_country = np.array(ap[4])
    ap_lat = np.array(ap[5], dtype=np.float64)
    ap_lon = np.array(ap[6], dtype=np.float64)
    ap_hub = np.array(ap[8], dtype=bool)
    yield _table(
        "airports",
        {
            "airport_code": pa.array(ap[0]),
            "airport_name": pa.array(ap[1]),
            "city": pa.array(ap[2]),
            "state_code": pa.array(ap[3]),
            "country_code": pa.array(ap[4]),
            "latitude": pa.array(ap_lat),
            "longitude": pa.array(ap_lon),
            "timezone": pa.array(ap[7]),
            "is_hub": pa.array(ap_hub),
        },
    )

    # ---- aircraft ----------------------------------------------------------------------------
    r = _rng(params, "aircraft")
    md = list(zip(*MODELS, strict=True))
    n_ac = scale.aircraft
    # one of each model first, so every route has an aircraft that can fly it
    model = np.concatenate(
        [np.arange(len(MODELS)), weighted_choice(r, np.array(md[8]), n_ac - len(MODELS))]
    )
    maker_codes = np.array([m[0][0] for m in MODELS])
    order = np.lexsort((r.random(n_ac), model, maker_codes[model]))  # group by maker, then model
    model = model[order]
    maker_initial = maker_codes[model]
    seq = np.zeros(n_ac, dtype=np.int64)
    for initial in np.unique(maker_initial):  # 3 makers, not rows
        sel = maker_initial == initial
        seq[sel] = np.arange(1, int(sel.sum()) + 1)
    ac_id = concat(pa.array(maker_initial.tolist(), type=pa.string()), pc_lpad(seq, 3))
    ac_eco = np.array(md[2])[model]
    ac_bus = np.array(md[3])[model]
    ac_first = np.array(md[4])[model]
    ac_seats = ac_eco + ac_bus + ac_first
    ac_range = np.array(md[5])[model]
    ac_burn = np.array(md[7])[model]
    yield _table(
        "aircraft",
        {
            "aircraft_id": ac_id,
            "manufacturer": take_str(md[0], model),
            "model": take_str(md[1], model),
            "capacity_economy": pa.array(ac_eco.astype(np.int32)),
            "capacity_business": pa.array(ac_bus.astype(np.int32)),
            "capacity_first": pa.array(ac_first.astype(np.int32)),
            "range_km": pa.array(ac_range.astype(np.int32)),
            "cruise_speed_kmh": pa.array(np.array(md[6])[model].astype(np.int32)),
            "year_manufactured": pa.array(
                r.integers(2005, params.start_date.year + 1, n_ac).astype(np.int32)
            ),
        },
    )

    # ---- routes: 50 airport pairs, both directions ---------------------------------------------
    r = _rng(params, "routes")
    n_ap = len(AIRPORTS)
    ii, jj = np.triu_indices(n_ap, k=1)
    pair_km = haversine_km(ap_lat[ii], ap_lon[ii], ap_lat[jj], ap_lon[jj])
    weight = (1.0 + 2.0 * ap_hub[ii]) * (1.0 + 2.0 * ap_hub[jj])
    weight = weight * (pair_km <= 0.95 * ac_range.max()) * np.where(pair_km < 300, 0.0, 1.0)
    picked = r.choice(len(ii), size=N_ROUTE_PAIRS, replace=False, p=weight / weight.sum())
    rt_o = np.concatenate([ii[picked], jj[picked]])
    rt_d = np.concatenate([jj[picked], ii[picked]])
    order = np.lexsort((ap_code[rt_d], ap_code[rt_o]))
    rt_o, rt_d = rt_o[order], rt_d[order]
    n_rt = len(rt_o)
    rt_km = np.round(haversine_km(ap_lat[rt_o], ap_lon[rt_o], ap_lat[rt_d], ap_lon[rt_d]), 1)
    rt_minutes = np.round(rt_km / 800.0 * 60.0 + 30.0).astype(np.int64)  # taxi + climb allowance
    # most routes fly daily; a few only on some weekdays (at least three)
    service = np.ones((n_rt, 7), dtype=bool)
    partial = r.random(n_rt) < 0.2
    service[partial] = r.random((int(partial.sum()), 7)) < 0.6
    service[partial, r.integers(0, 7, int(partial.sum()))] = True
    while (bad := service.sum(axis=1) < 3).any():  # at most a few passes over 100 routes
        service[bad, r.integers(0, 7, int(bad.sum()))] = True
    if not service.all(axis=1).any():  # keep one daily route, so any window has flights
        service[0] = True
    service_str = ["".join("1" if b else "0" for b in row) for row in service]  # 100 routes
    yield _table(
        "routes",
        {
            "route_id": pa.array(np.arange(1, n_rt + 1, dtype=np.int64)),
            "origin_airport": pa.array(ap_code[rt_o]),
            "destination_airport": pa.array(ap_code[rt_d]),
            "distance_km": pa.array(rt_km),
            "flight_duration_minutes": pa.array(rt_minutes.astype(np.int32)),
            "is_international": pa.array(ap_country[rt_o] != ap_country[rt_d]),
            "service_days": pa.array(service_str),
        },
    )

    # ---- flights -------------------------------------------------------------------------------
    r = _rng(params, "flights")
    n_fl = scale.flights
    # a route, then a day of the window on which it flies (service_days is Monday-first); a window
    # shorter than a week can miss all of a route's days: such routes get no flights
    day_idx = np.arange(params.days)
    weekday = (params.start_day + day_idx + 3) % 7  # 1970-01-01 was a Thursday
    allowed = service[:, weekday]  # routes x days
    n_allowed = allowed.sum(axis=1)
    fl_route = weighted_choice(r, (1.0 + ap_hub[rt_o] + ap_hub[rt_d]) * (n_allowed > 0), n_fl)
    allowed_days = np.argsort(~allowed, axis=1, kind="stable")  # allowed day indices first
    k = (r.random(n_fl) * n_allowed[fl_route]).astype(np.int64)
    fl_day = params.start_day + allowed_days[fl_route, k]
    hour_w = np.array(
        [
            0.2,
            0.1,
            0.1,
            0.1,
            0.2,
            0.6,
            1.5,
            2.0,
            1.8,
            1.5,
            1.3,
            1.2,
            1.3,
            1.3,
            1.2,
            1.3,
            1.5,
            1.8,
            1.9,
            1.6,
            1.2,
            0.9,
            0.6,
            0.4,
        ]
    )
    hour = weighted_choice(r, hour_w, n_fl)
    sched_dep = fl_day * SECONDS_PER_DAY + hour * 3600 + r.integers(0, 12, n_fl) * 300
    order = np.lexsort((fl_route, sched_dep))
    fl_route, fl_day, hour, sched_dep = (
        fl_route[order],
        fl_day[order],
        hour[order],
        sched_dep[order],
    )
    fl_dur = rt_minutes[fl_route]
    sched_arr = sched_dep + fl_dur * 60
    fl_km = rt_km[fl_route]
    # an aircraft whose range covers the route: a suffix of the fleet sorted by range
    by_range = np.argsort(ac_range, kind="stable")
    first_ok = np.searchsorted(ac_range[by_range], fl_km, side="left")
    pick = first_ok + (r.random(n_fl) * (n_ac - first_ok)).astype(np.int64)
    fl_ac = by_range[pick]
    status = weighted_choice(r, STATUS_WEIGHTS, n_fl)
    delay = np.where(
        status == ON_TIME,
        r.integers(-5, 15, n_fl),
        np.where(
            status == DELAYED,
            15 + np.minimum(r.exponential(35.0, n_fl).astype(np.int64), 585),
            r.integers(0, 61, n_fl),
        ),
    )
    arr_noise = r.integers(-15, 16, n_fl) + np.where(
        status == DIVERTED, r.integers(60, 241, n_fl), 0
    )
    cancelled = status == CANCELLED
    operated = ~cancelled
    act_dep = sched_dep + delay * 60
    act_arr = act_dep + (fl_dur + arr_noise) * 60
    dep_delay_min = np.where(operated, delay, 0)
    arr_delay_min = np.where(operated, (act_arr - sched_arr) // 60, 0)
    fl_id = np.arange(1, n_fl + 1, dtype=np.int64)
    flight_number = concat("SL", pc_lpad(1000 + fl_route * 24 + hour, 4))
    created_day = fl_day - r.integers(30, 181, n_fl)
    yield _table(
        "flights",
        {
            "flight_id": pa.array(fl_id),
            "flight_number": flight_number,
            "origin_airport": take_str(list(ap_code), rt_o[fl_route]),
            "destination_airport": take_str(list(ap_code), rt_d[fl_route]),
            "scheduled_departure": ts_array(sched_dep),
            "scheduled_arrival": ts_array(sched_arr),
            "actual_departure": ts_array(act_dep, mask=cancelled),
            "actual_arrival": ts_array(act_arr, mask=cancelled),
            "aircraft_id": ac_id.take(pa.array(fl_ac)),
            "status": take_str(STATUSES, status),
            "created_date": date_array(created_day),
            "route_id": pa.array(fl_route + 1),
            "flight_date": date_array(fl_day),
        },
    )

    # ---- bookings (built before customers: customers summarise their bookings) -------------------
    r = _rng(params, "bookings")
    n_cu = scale.customers
    n_bk = scale.bookings
    # flight and booking time first, sorted by booking time (booking ids follow it); every other
    # attribute is drawn afterwards, already in that order, so no column needs reordering
    bk_fl = weighted_choice(r, ac_seats[fl_ac], n_bk, shuffle=False)
    lead = np.clip(r.gamma(1.5, 20.0, n_bk) * SECONDS_PER_DAY, 2 * 3600, 120 * SECONDS_PER_DAY)
    bk_ts = sched_dep[bk_fl] - lead.astype(np.int64)
    order = np.lexsort((bk_fl, bk_ts))
    bk_fl, bk_ts = bk_fl[order], bk_ts[order]
    del lead, order
    popularity = 1.0 / np.arange(1, n_cu + 1) ** 0.6  # frequent flyers: a skewed customer base
    bk_cu = r.permutation(n_cu)[weighted_choice(r, popularity, n_bk)]
    u = r.random(n_bk)
    has_first = ac_first[fl_ac[bk_fl]] > 0
    bk_class = np.where((u < 0.04) & has_first, 2, np.where(u < 0.18, 1, 0))
    lo, hi = CLASS_PRICE[bk_class, 0], CLASS_PRICE[bk_class, 1]
    frac = np.clip(
        np.clip(fl_km[bk_fl] / 12_000.0, 0, 1) ** 0.7 * r.uniform(0.75, 1.0, n_bk)
        + r.uniform(0, 0.15, n_bk),
        0,
        1,
    )
    base = np.round((lo + (hi - lo) * frac) / 100.0).astype(np.int64) * 100 - 1  # x.99 prices
    taxes = np.round(base * r.uniform(0.08, 0.25, n_bk)).astype(np.int64)
    total = base + taxes
    del u, has_first, lo, hi, frac
    dep = sched_dep[bk_fl]
    flight_cancelled = cancelled[bk_fl]
    cust_cancel = ~flight_cancelled & (r.random(n_bk) < 0.06)
    no_show = ~flight_cancelled & ~cust_cancel & (r.random(n_bk) < 0.02)
    bk_cancelled = flight_cancelled | cust_cancel
    cancel_ts = np.where(
        flight_cancelled,
        np.maximum(bk_ts + 60, dep - r.integers(3600, 48 * 3600, n_bk)),
        bk_ts + (r.random(n_bk) * (dep - bk_ts)).astype(np.int64),
    )
    refund = np.where(
        flight_cancelled,
        total,
        np.where(cust_cancel, np.round(total * r.uniform(0.5, 0.95, n_bk)), 0),
    ).astype(np.int64)
    bk_status = np.where(bk_cancelled, BK_CANCELLED, np.where(no_show, NO_SHOW, COMPLETED))
    ancillary = np.where(
        (bk_status == COMPLETED) & (r.random(n_bk) < 0.45), r.integers(15, 151, n_bk) * 100, 0
    )
    payment = weighted_choice(r, PAYMENT_WEIGHTS, n_bk)
    del dep, flight_cancelled, cust_cancel, no_show
    bk_id = np.arange(1, n_bk + 1, dtype=np.int64)
    bk_day = bk_ts // SECONDS_PER_DAY
    cancel_day = cancel_ts // SECONDS_PER_DAY

    # ---- customers -----------------------------------------------------------------------------
    r = _rng(params, "customers")
    cu_id = np.arange(1, n_cu + 1, dtype=np.int64)
    first_idx = r.integers(0, len(FIRST_NAMES), n_cu)
    last_idx = r.integers(0, len(LAST_NAMES), n_cu)
    first = take_str(FIRST_NAMES, first_idx)
    last = take_str(LAST_NAMES, last_idx)
    email = concat(
        take_str([f.lower() for f in FIRST_NAMES], first_idx),
        ".",
        take_str([x.lower() for x in LAST_NAMES], last_idx),
        ".",
        pa.array(cu_id).cast(pa.string()),
        "@example.com",
    )
    phone = concat(
        "+1-555-", pc_lpad((cu_id // 10_000) % 1_000, 3), "-", pc_lpad(cu_id % 10_000, 4)
    )
    ltv = np.bincount(bk_cu, weights=total + ancillary - refund, minlength=n_cu).astype(np.int64)
    n_bookings = np.bincount(bk_cu, minlength=n_cu)
    first_bk_day = group_reduce(np.minimum, bk_cu, bk_day, n_cu, np.iinfo(np.int64).max)
    last_act_day = np.maximum(
        group_reduce(np.maximum, bk_cu, bk_day, n_cu, np.iinfo(np.int64).min),
        group_reduce(
            np.maximum, bk_cu[bk_cancelled], cancel_day[bk_cancelled], n_cu, np.iinfo(np.int64).min
        ),
    )
    has_bk = n_bookings > 0
    anchor = np.where(has_bk, first_bk_day, params.start_day)
    acq_day = anchor - r.integers(0, 3 * 365, n_cu)
    last_act_day = np.where(has_bk, last_act_day, acq_day)
    points = ltv // 100
    tier = np.searchsorted(np.array([t[1] for t in TIERS]), points, side="right") - 1
    yield _table(
        "customers",
        {
            "customer_id": pa.array(cu_id),
            "first_name": first,
            "last_name": last,
            "email": email,
            "phone": phone,
            "date_of_birth": date_array(params.start_day - r.integers(18 * 365, 85 * 365, n_cu)),
            "loyalty_tier": take_str([t[0] for t in TIERS], tier),
            "loyalty_points": pa.array(points),
            "total_lifetime_value": money(ltv),
            "acquisition_channel": take_str(
                CHANNELS, weighted_choice(r, np.array([0.35, 0.25, 0.1, 0.1, 0.12, 0.08]), n_cu)
            ),
            "acquisition_date": date_array(acq_day),
            "last_activity_date": date_array(last_act_day),
        },
    )

    yield _table(
        "bookings",
        {
            "booking_id": pa.array(bk_id),
            "booking_reference": id_strings("BK", bk_id, 8),
            "customer_id": pa.array(bk_cu + 1),
            "flight_id": pa.array(bk_fl + 1),
            "booking_date": ts_array(bk_ts),
            "travel_class": take_str(CLASSES, bk_class),
            "base_price": money(base),
            "taxes": money(taxes),
            "total_price": money(total),
            "payment_method": take_str(PAYMENT_METHODS, payment),
            "booking_status": take_str(BOOKING_STATUSES, bk_status),
            "cancellation_date": ts_array(cancel_ts, mask=~bk_cancelled),
            "refund_amount": money(refund),
            "ancillary_amount": money(ancillary),
            "booking_month": month_strings(bk_day),
        },
    )

    # ---- marketing campaigns -------------------------------------------------------------------
    r = _rng(params, "marketing_campaigns")
    ctypes = ("EMAIL", "SOCIAL", "SEARCH", "DISPLAY", "LOYALTY", "PARTNERSHIP")
    themes = (
        "Winter Escape",
        "Spring Fares",
        "Summer Getaway",
        "Autumn Deals",
        "Business Class Upgrade",
        "Loyalty Double Points",
        "Europe Explorer",
        "Asia Pacific Launch",
        "Weekend Breaks",
        "Family Travel",
    )
    audiences = ("ALL", "BRONZE", "SILVER", "GOLD", "PLATINUM", "BUSINESS_TRAVELERS", "FAMILIES")
    channels = ("EMAIL", "INSTAGRAM", "GOOGLE_ADS", "WEBSITE", "MOBILE_APP", "TV")
    ct = r.integers(0, len(ctypes), N_CAMPAIGNS)
    c_start = params.start_day + r.integers(-30, params.days, N_CAMPAIGNS)
    c_end = c_start + r.integers(7, 46, N_CAMPAIGNS)
    budget = r.integers(100, 2_501, N_CAMPAIGNS) * 10_000  # cents: 1,000 .. 25,000 x 10
    spend = np.round(budget * r.uniform(0.6, 1.05, N_CAMPAIGNS)).astype(np.int64)
    c_order = np.lexsort((np.arange(N_CAMPAIGNS), c_start))
    c_id = np.arange(1, N_CAMPAIGNS + 1)
    yield _table(
        "marketing_campaigns",
        {
            "campaign_id": pa.array(c_id.astype(np.int64)),
            "campaign_name": concat(
                take_str(themes, r.integers(0, len(themes), N_CAMPAIGNS)[c_order]),
                " ",
                pa.array(c_id.astype(np.int64)).cast(pa.string()),
            ),
            "campaign_type": take_str(ctypes, ct[c_order]),
            "start_date": date_array(c_start[c_order]),
            "end_date": date_array(c_end[c_order]),
            "budget": money(budget[c_order]),
            "actual_spend": money(spend[c_order]),
            "target_audience": take_str(
                audiences, r.integers(0, len(audiences), N_CAMPAIGNS)[c_order]
            ),
            "channel": take_str(channels, r.integers(0, len(channels), N_CAMPAIGNS)[c_order]),
            "conversion_rate": pa.array(np.round(r.uniform(0.005, 0.08, N_CAMPAIGNS), 4)[c_order]),
            "roi": pa.array(np.round(r.uniform(-0.3, 4.0, N_CAMPAIGNS), 2)[c_order]),
        },
    )

    # ---- daily revenue: exact aggregates of bookings --------------------------------------------
    d0 = int(bk_day.min()) if n_bk else params.start_day
    d1 = (
        int(max(bk_day.max(), cancel_day[bk_cancelled].max(initial=d0))) if n_bk else params.end_day
    )
    n_days = d1 - d0 + 1
    rev = np.bincount(bk_day - d0, weights=total, minlength=n_days).astype(np.int64)
    anc = np.bincount(bk_day - d0, weights=ancillary, minlength=n_days).astype(np.int64)
    cnt = np.bincount(bk_day - d0, minlength=n_days)
    ccnt = np.bincount(cancel_day[bk_cancelled] - d0, minlength=n_days)
    refunds = np.bincount(
        cancel_day[bk_cancelled] - d0, weights=refund[bk_cancelled], minlength=n_days
    ).astype(np.int64)
    avg = ratio_half_up(rev, cnt, 0) / 100.0  # cents, rounded like SQL round()
    yield _table(
        "daily_revenue",
        {
            "date": date_array(np.arange(d0, d1 + 1)),
            "booking_revenue": money(rev),
            "ancillary_revenue": money(anc),
            "total_revenue": money(rev + anc),
            "bookings_count": pa.array(cnt.astype(np.int64)),
            "average_ticket_price": pa.array(avg, mask=cnt == 0),
            "cancellation_count": pa.array(ccnt.astype(np.int64)),
            "refund_total": money(refunds),
        },
    )
    # what later tables need from the bookings, then free the 5 M-row arrays (xlarge memory)
    pax_per_flight = np.bincount(bk_fl[bk_status == COMPLETED], minlength=n_fl)
    total_spent = np.bincount(bk_cu, weights=total, minlength=n_cu).astype(np.int64)
    last_bk_ts = group_reduce(np.maximum, bk_cu, bk_ts, n_cu, 0)
    cancelled_per_cu = np.bincount(bk_cu[bk_cancelled], minlength=n_cu).astype(np.int64)
    del bk_fl, bk_cu, bk_class, base, taxes, total, bk_ts, bk_cancelled, cancel_ts, refund
    del bk_status, ancillary, payment, bk_id, bk_day, cancel_day

    # ---- maintenance logs ----------------------------------------------------------------------
    r = _rng(params, "maintenance_logs")
    n_mt = scale.maintenance
    mtypes = list(zip(*MAINTENANCE_TYPES, strict=True))
    mt = weighted_choice(r, np.array(mtypes[1]), n_mt)
    mt_ac = r.integers(0, n_ac, n_mt)
    sched_day = r.integers(params.start_day - 30, params.end_day + 31, n_mt)
    hours = np.round(r.uniform(np.array(mtypes[2])[mt], np.array(mtypes[3])[mt]), 1)
    done_day = sched_day + np.ceil(hours / 16.0).astype(np.int64) + r.integers(0, 3, n_mt)
    completed = (done_day <= params.end_day) & (r.random(n_mt) < 0.97)
    cost = np.round(r.uniform(np.array(mtypes[4])[mt], np.array(mtypes[5])[mt]) * 100).astype(
        np.int64
    )
    due_in = np.array(mtypes[6])[mt]
    order = np.lexsort((mt_ac, sched_day))
    mt, mt_ac, sched_day, hours, done_day, completed, cost, due_in = (
        a[order] for a in (mt, mt_ac, sched_day, hours, done_day, completed, cost, due_in)
    )
    mt_id = np.arange(1, n_mt + 1, dtype=np.int64)
    yield _table(
        "maintenance_logs",
        {
            "maintenance_id": pa.array(mt_id),
            "aircraft_id": ac_id.take(pa.array(mt_ac)),
            "maintenance_type": take_str(mtypes[0], mt),
            "description": take_str(mtypes[7], mt),
            "scheduled_date": date_array(sched_day),
            "completed_date": date_array(done_day, mask=~completed),
            "technician_id": id_strings("T", r.integers(1, 400, n_mt), 4),
            "hours_required": pa.array(hours),
            "cost": money(cost),
            "next_due_date": date_array(done_day + due_in, mask=~completed | (due_in == 0)),
            "compliance_status": take_str(("PENDING", "COMPLIANT"), completed.astype(np.int64)),
        },
    )

    # ---- crew assignments: one crew per operated flight ----------------------------------------
    r = _rng(params, "crew_assignments")
    op_fl = np.flatnonzero(operated)
    n_crew = 3 + np.maximum(1, ac_seats[fl_ac[op_fl]] // 80)
    cr_fl = np.repeat(op_fl, n_crew)
    pos = position_in_group(n_crew)
    role = np.minimum(pos, 3)
    pool = np.array([6, 6, 6, 12]) * n_ac  # crew members per role
    pool_start = np.concatenate([[0], np.cumsum(pool)[:-1]])
    member = pool_start[role] + (r.random(len(cr_fl)) * pool[role]).astype(np.int64)
    names = concat(
        take_str(FIRST_NAMES, r.integers(0, len(FIRST_NAMES), int(pool.sum()))),
        " ",
        take_str(LAST_NAMES, r.integers(0, len(LAST_NAMES), int(pool.sum()))),
    )
    duty_start = act_dep[cr_fl] - 3600
    duty_end = act_arr[cr_fl] + 1800
    block_h = np.round((act_arr[cr_fl] - act_dep[cr_fl]) / 3600.0, 2)
    duty_h = (duty_end - duty_start) / 3600.0
    yield _table(
        "crew_assignments",
        {
            "assignment_id": pa.array(np.arange(1, len(cr_fl) + 1, dtype=np.int64)),
            "crew_member_id": id_strings("CR", member + 1, 6),
            "crew_member_name": names.take(pa.array(member)),
            "role": take_str(ROLES, role),
            "flight_id": pa.array(cr_fl + 1),
            "assignment_date": date_array(fl_day[cr_fl]),
            "duty_start_time": ts_array(duty_start),
            "duty_end_time": ts_array(duty_end),
            "flight_hours": pa.array(block_h),
            "rest_hours": pa.array(np.round(np.maximum(10.0, duty_h), 2)),
            "overtime_hours": pa.array(np.round(np.maximum(0.0, duty_h - 10.0), 2)),
        },
    )
    crew_per_flight = np.bincount(cr_fl, minlength=n_fl)

    # ---- ground handling: five operations per operated flight ----------------------------------
    r = _rng(params, "ground_handling")
    n_ops = len(GROUND_OPS)
    gops = list(zip(*GROUND_OPS, strict=True))
    n_op_fl = len(op_fl)
    start_before = r.integers(np.array(gops[1]), np.array(gops[2]), (n_op_fl, n_ops))  # minutes
    duration = r.integers(np.array(gops[3]), np.array(gops[4]), (n_op_fl, n_ops))
    op_start = act_dep[op_fl][:, None] - start_before * 60
    op_end = op_start + duration * 60
    turnaround = start_before.max(axis=1)  # first operation start -> departure, minutes
    gate = concat(
        take_str("ABCDEF", r.integers(0, 6, n_op_fl)),
        pa.array(r.integers(1, 41, n_op_fl)).cast(pa.string()),
    )
    pax = pax_per_flight[op_fl]
    bags = r.binomial(pax, 0.85) + r.binomial(pax, 0.25)
    fuel_dl = np.round((fl_km[op_fl] * ac_burn[fl_ac[op_fl]] * 1.05 + 1_500.0) * 10).astype(
        np.int64
    )
    meals = pax + crew_per_flight[op_fl]
    cleaned = r.random(n_op_fl) >= 0.005
    kind = np.tile(np.arange(n_ops), n_op_fl)
    gh_fl = np.repeat(op_fl, n_ops)
    issue = r.random(len(kind)) < np.where(kind == 3, 0.02, 0.002)
    is_kind = {name: kind == i for i, name in enumerate(gops[0])}
    per_flight = np.repeat(np.arange(n_op_fl), n_ops)
    yield _table(
        "ground_handling",
        {
            "operation_id": pa.array(np.arange(1, len(kind) + 1, dtype=np.int64)),
            "flight_id": pa.array(gh_fl + 1),
            "operation_type": take_str(gops[0], kind),
            "start_time": ts_array(op_start.ravel()),
            "end_time": ts_array(op_end.ravel()),
            "gate_number": gate.take(pa.array(per_flight)),
            "baggage_loaded": pa.array(bags[per_flight].astype(np.int32), mask=~is_kind["BAGGAGE"]),
            "fuel_loaded_liters": pa.array(fuel_dl[per_flight] / 10.0, mask=~is_kind["FUELING"]),
            "catering_loaded": pa.array(
                meals[per_flight].astype(np.int32), mask=~is_kind["CATERING"]
            ),
            "cleaning_completed": pa.array(cleaned[per_flight], mask=~is_kind["CLEANING"]),
            "turnaround_minutes": pa.array(turnaround[per_flight].astype(np.int32)),
            "issue_reported": pa.array(issue),
        },
    )

    # ---- daily operations metrics: exact aggregates of flights ---------------------------------
    yield _table(
        "daily_operations_metrics",
        _ops_metrics(
            params,
            fl_day,
            status,
            dep_delay_min,
            arr_delay_min,
            ac_seats[fl_ac],
            pax_per_flight,
            gh_fl,
            kind,
            issue,
            op_fl,
            fuel_dl,
        ),
    )

    # ---- derived tables ------------------------------------------------------------------------
    yield _table(
        "flight_performance",
        {
            "flight_id": pa.array(fl_id),
            "flight_number": flight_number,
            "flight_date": date_array(fl_day),
            "origin_airport": take_str(list(ap_code), rt_o[fl_route]),
            "destination_airport": take_str(list(ap_code), rt_d[fl_route]),
            "scheduled_departure": ts_array(sched_dep),
            "actual_departure": ts_array(act_dep, mask=cancelled),
            "scheduled_arrival": ts_array(sched_arr),
            "actual_arrival": ts_array(act_arr, mask=cancelled),
            "status": take_str(STATUSES, status),
            "departure_delay_minutes": pa.array(dep_delay_min.astype(np.int32), mask=cancelled),
            "arrival_delay_minutes": pa.array(arr_delay_min.astype(np.int32), mask=cancelled),
            "aircraft_id": ac_id.take(pa.array(fl_ac)),
            "manufacturer": take_str(md[0], model[fl_ac]),
            "model": take_str(md[1], model[fl_ac]),
            "distance_km": pa.array(fl_km),
            "flight_duration_minutes": pa.array(fl_dur.astype(np.int32)),
        },
    )

    yield _table(
        "customer_360",
        {
            "customer_id": pa.array(cu_id),
            "first_name": first,
            "last_name": last,
            "loyalty_tier": take_str([t[0] for t in TIERS], tier),
            "total_lifetime_value": money(ltv),
            "total_bookings": pa.array(n_bookings.astype(np.int64)),
            "cancelled_bookings": pa.array(cancelled_per_cu),
            "total_spent": money(total_spent),
            "last_booking_date": ts_array(last_bk_ts, mask=~has_bk),
        },
    )

    events = np.bincount(mt_ac, minlength=n_ac)
    done_events = np.bincount(mt_ac[completed], minlength=n_ac)
    pending = ~completed
    last_done = group_reduce(
        np.maximum, mt_ac[completed], done_day[completed], n_ac, np.iinfo(np.int64).min
    )
    next_due = group_reduce(
        np.minimum, mt_ac[pending], sched_day[pending], n_ac, np.iinfo(np.int64).max
    )
    ac_flights = np.bincount(fl_ac[op_fl], minlength=n_ac)
    ac_hours = (
        np.bincount(fl_ac[op_fl], weights=(act_arr - act_dep)[op_fl], minlength=n_ac) / 3600.0
    )
    yield _table(
        "fleet_status",
        {
            "aircraft_id": ac_id,
            "manufacturer": take_str(md[0], model),
            "model": take_str(md[1], model),
            "maintenance_events": pa.array(events.astype(np.int64)),
            "completed_events": pa.array(done_events.astype(np.int64)),
            "pending_events": pa.array((events - done_events).astype(np.int64)),
            "last_maintenance": date_array(last_done, mask=done_events == 0),
            "next_maintenance": date_array(next_due, mask=(events - done_events) == 0),
            "total_maintenance_cost": money(
                np.bincount(mt_ac, weights=cost, minlength=n_ac).astype(np.int64)
            ),
            "compliance_status": take_str(
                ("COMPLIANT", "PENDING"), ((events - done_events) > 0).astype(np.int64)
            ),
            "flights_operated": pa.array(ac_flights.astype(np.int64)),
            "flight_hours": pa.array(np.round(ac_hours, 2)),
        },
    )


def _ops_metrics(
    params: Params,
    fl_day: np.ndarray,
    status: np.ndarray,
    dep_delay: np.ndarray,
    arr_delay: np.ndarray,
    seats: np.ndarray,
    pax: np.ndarray,
    gh_fl: np.ndarray,
    kind: np.ndarray,
    issue: np.ndarray,
    op_fl: np.ndarray,
    fuel_dl: np.ndarray,
) -> dict[str, pa.Array]:
    """Daily operations metrics, by ``flight_date`` over every day of the window.

    * ``total_flights``: flights scheduled that day; ``cancelled_flights`` / ``delayed_flights``: by
      status; ``on_time_departures`` / ``on_time_arrivals``: operated flights less than 15 minutes late
      (departure / arrival);
    * ``average_delay_minutes``: mean of ``max(0, departure delay)`` over operated flights (2 places);
    * ``fuel_consumption_liters``: sum of the ``FUELING`` operations' ``fuel_loaded_liters``;
    * ``passenger_load_factor``: passengers flown (``COMPLETED`` bookings) / seats of operated flights
      (4 places);
    * ``baggage_issues`` / ``safety_incidents``: ground operations with ``issue_reported`` that are /
      are not ``BAGGAGE``.
    """
    n = params.days
    day = fl_day - params.start_day
    operated = status != CANCELLED
    total = np.bincount(day, minlength=n)
    op_count = np.bincount(day[operated], minlength=n)
    delay_sum = np.bincount(day[operated], weights=np.maximum(dep_delay[operated], 0), minlength=n)
    seat_sum = np.bincount(day[operated], weights=seats[operated], minlength=n)
    pax_sum = np.bincount(day[operated], weights=pax[operated], minlength=n)
    fuel = np.zeros(n, dtype=np.int64)
    np.add.at(fuel, day[op_fl], fuel_dl)
    gh_day = day[gh_fl]
    return {
        "date": date_array(np.arange(params.start_day, params.end_day + 1)),
        "total_flights": pa.array(total.astype(np.int64)),
        "on_time_departures": pa.array(
            np.bincount(day[operated & (dep_delay < 15)], minlength=n).astype(np.int64)
        ),
        "on_time_arrivals": pa.array(
            np.bincount(day[operated & (arr_delay < 15)], minlength=n).astype(np.int64)
        ),
        "cancelled_flights": pa.array(
            np.bincount(day[status == CANCELLED], minlength=n).astype(np.int64)
        ),
        "delayed_flights": pa.array(
            np.bincount(day[status == DELAYED], minlength=n).astype(np.int64)
        ),
        "average_delay_minutes": pa.array(
            ratio_half_up(delay_sum, op_count, 2), mask=op_count == 0
        ),
        "fuel_consumption_liters": pa.array(fuel / 10.0),
        "passenger_load_factor": pa.array(ratio_half_up(pax_sum, seat_sum, 4), mask=op_count == 0),
        "baggage_issues": pa.array(
            np.bincount(gh_day[issue & (kind == 3)], minlength=n).astype(np.int64)
        ),
        "safety_incidents": pa.array(
            np.bincount(gh_day[issue & (kind != 3)], minlength=n).astype(np.int64)
        ),
    }


def pc_lpad(numbers: np.ndarray, width: int) -> pa.Array:
    """Zero-padded decimal strings of ``numbers``."""
    import pyarrow.compute as pc

    return pc.utf8_lpad(pa.array(np.asarray(numbers, dtype=np.int64)).cast(pa.string()), width, "0")


__all__ = ["DEFAULT_DAYS", "DEFAULT_START", "NAME", "SCALES", "TABLES", "build"]
