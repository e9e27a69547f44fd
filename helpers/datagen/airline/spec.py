"""Names, scales, table specs and the shared building blocks of the airline dataset."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa

from helpers.datagen.common import (
    GeneratedTable,
    Params,
    TableSpec,
    rng_for,
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
    TableSpec(SHARED, "flights", partition_by=("flight_month",), cdf=True),
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


def rng(params: Params, table: str) -> np.random.Generator:
    return rng_for(params.seed, NAME, table)


def make_table(name: str, columns: dict[str, pa.Array | np.ndarray]) -> GeneratedTable:
    return GeneratedTable(spec=_SPEC[name], table=pa.table(columns))


def pc_lpad(numbers: np.ndarray, width: int) -> pa.Array:
    """Zero-padded decimal strings of ``numbers``."""
    import pyarrow.compute as pc

    return pc.utf8_lpad(pa.array(np.asarray(numbers, dtype=np.int64)).cast(pa.string()), width, "0")
