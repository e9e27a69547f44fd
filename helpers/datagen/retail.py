"""The retail dataset (seed 003's seven tables), seeded, vectorised and free of wall-clock time.

Catalog ``retail``, schema ``sales``: ``stores``, ``products``, ``customers``, ``promotions``,
``orders``, ``order_items``, ``inventory_snapshots``. Columns are seed 003's, plus ``order_date`` and
``order_month`` on orders and order items and ``snapshot_date`` and ``snapshot_month`` on inventory
snapshots; the ``'YYYY-MM'`` month columns are the partition columns (a file per month, not per day).

Distributions follow the seed: orders arrive with a diurnal rhythm (peaks near 12:00 and 18:00,
0.6-1.4x) and 15% more at weekends; stores have a popularity bias; products are picked with a
Zipf-like popularity over a shuffled order; about 25% of products get one promotion of 5-14 days;
``unit_price = round(base_price * (1 - order discount) * (1 - active promotion discount), 2)`` and
``extended_price = unit_price * qty``; inventory is one snapshot per day x store x product at 06:00,
starting from the seed's noise and then moving with the units sold and a two-step replenishment
(see :func:`_inventory_batches`), so it is no longer unrelated to the sales as in the seed.

Differences from the seed (its defects): no ``now()`` (customers sign up relative to the start date),
SKUs and promotion ids are unique by construction, an order never lists the same product twice, and the
order volume is per 14 days (``orders_estimate * days / 14``) so longer windows get more orders.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa

from helpers.datagen.common import (
    SECONDS_PER_DAY,
    TS,
    GeneratedTable,
    Params,
    TableSpec,
    concat,
    date_array,
    id_strings,
    money,
    month_strings,
    position_in_group,
    rng_for,
    take_str,
    ts_array,
    unique_codes,
    weighted_choice,
)

NAME = "retail"
SCHEMA = "sales"
DEFAULT_START = date(2025, 3, 3)  # a Monday
DEFAULT_DAYS = 14


@dataclass(frozen=True)
class RetailScale:
    """Volumes of one scale preset (orders per 14 days)."""

    stores: int
    products: int
    customers: int
    orders_per_14_days: int


SCALES: dict[str, RetailScale] = {
    "small": RetailScale(10, 200, 2_000, 4_000),
    "medium": RetailScale(50, 1_000, 25_000, 75_000),
    "large": RetailScale(200, 5_000, 120_000, 500_000),
}

TABLES: tuple[TableSpec, ...] = (
    TableSpec(SCHEMA, "stores", cdf=True),
    TableSpec(SCHEMA, "products", cdf=True),
    TableSpec(SCHEMA, "customers", cdf=True),
    TableSpec(SCHEMA, "promotions", cdf=True),
    TableSpec(SCHEMA, "orders", partition_by=("order_month",), cdf=True),
    TableSpec(SCHEMA, "order_items", partition_by=("order_month",), cdf=True),
    TableSpec(SCHEMA, "inventory_snapshots", partition_by=("snapshot_month",), cdf=True),
)
_SPEC = {t.name: t for t in TABLES}

REGIONS = ("West", "Central", "East")
# six cities per region with their coordinates (stores are placed within ~15 km of the centre)
CITIES: dict[str, tuple[tuple[str, float, float], ...]] = {
    "West": (
        ("Seattle", 47.6062, -122.3321),
        ("Portland", 45.5152, -122.6784),
        ("San Francisco", 37.7749, -122.4194),
        ("Los Angeles", 34.0522, -118.2437),
        ("San Diego", 32.7157, -117.1611),
        ("Phoenix", 33.4484, -112.0740),
    ),
    "Central": (
        ("Chicago", 41.8781, -87.6298),
        ("Dallas", 32.7767, -96.7970),
        ("Houston", 29.7604, -95.3698),
        ("Denver", 39.7392, -104.9903),
        ("Minneapolis", 44.9778, -93.2650),
        ("Kansas City", 39.0997, -94.5786),
    ),
    "East": (
        ("New York", 40.7128, -74.0060),
        ("Boston", 42.3601, -71.0589),
        ("Atlanta", 33.7490, -84.3880),
        ("Miami", 25.7617, -80.1918),
        ("Philadelphia", 39.9526, -75.1652),
        ("Washington", 38.9072, -77.0369),
    ),
}
CATEGORIES: dict[str, tuple[str, ...]] = {
    "Beverages": ("FizzCo", "AquaPure", "BrewHouse", "Orchard Gold"),
    "Snacks": ("CrunchTime", "Nutkin", "Golden Crisp"),
    "Household": ("CleanSweep", "HomeBright", "EcoNest"),
    "Personal Care": ("PureGlow", "Fresh & Co", "Silkline", "DermaCare"),
    "Produce": ("FarmFresh", "GreenLeaf", "Sunripe"),
    "Frozen": ("FrostBite", "Polar Pantry", "ChillChef"),
}
SEGMENTS = ("casual", "loyal", "bargain", "premium")
SEGMENT_WEIGHTS = np.array([0.5, 0.2, 0.2, 0.1])
SEGMENT_ACTIVITY = np.array([0.7, 2.0, 1.2, 1.5])  # relative order frequency
PROMO_TYPES = ("BOGO-lite", "PercentOff", "PriceDrop")
PAYMENT_TYPES = ("card", "cash", "mobile")
PAYMENT_WEIGHTS = np.array([0.7, 0.15, 0.15])
BASKET_WEIGHTS = np.array([0.30, 0.25, 0.17, 0.11, 0.08, 0.05, 0.03, 0.01])  # 1..8 lines
WEEKEND_FACTOR = 1.15
SNAPSHOT_HOUR = 6


def diurnal(hour: np.ndarray) -> np.ndarray:
    """Order-rate multiplier by hour of day: 0.6 at night, 1.4 at the 12:00 and 18:00 peaks."""
    peak = np.maximum(np.exp(-(((hour - 12.0) / 1.5) ** 2)), np.exp(-(((hour - 18.0) / 1.5) ** 2)))
    return 0.6 + 0.8 * peak


def _rng(params: Params, table: str, *more: int) -> np.random.Generator:
    return rng_for(params.seed, NAME, table, *more)


def _table(name: str, columns: dict[str, pa.Array]) -> GeneratedTable:
    return GeneratedTable(spec=_SPEC[name], table=pa.table(columns))


def build(params: Params) -> Iterator[GeneratedTable]:
    """Generate every table of the dataset, in :data:`TABLES` order (one step per table)."""
    scale = SCALES[params.scale]
    stores, store_bias = _stores(params, scale)
    yield stores
    products, base_cents = _products(params, scale)
    yield products
    customers, cu_seg = _customers(params, scale)
    yield customers
    promotions, promo = _promotions(params, scale)
    yield promotions

    # orders and items in a sub-generator: its arrays are freed before the inventory is streamed;
    # it returns the units sold per (snapshot window, store, product), which drive the inventory
    sold = yield from _orders_and_items(
        params,
        scale,
        store_bias,
        cu_seg,
        base_cents,
        promo.start,
        promo.end,
        promo.discount,
    )

    # ---- inventory snapshots: streamed one day at a time ---------------------------------------
    yield GeneratedTable(
        spec=_SPEC["inventory_snapshots"],
        schema=INVENTORY_SCHEMA,
        batches=_inventory_batches(params, scale.stores, scale.products, sold),
        num_rows=params.days * scale.stores * scale.products,
    )


def _cities() -> tuple[list[str], np.ndarray, np.ndarray]:
    """Names, latitudes and longitudes of the cities, region by region (6 per region)."""
    city_names = [c[0] for r in REGIONS for c in CITIES[r]]
    city_lat = np.array([c[1] for r in REGIONS for c in CITIES[r]])
    city_lon = np.array([c[2] for r in REGIONS for c in CITIES[r]])
    return city_names, city_lat, city_lon


def _stores(params: Params, scale: RetailScale) -> tuple[GeneratedTable, np.ndarray]:
    """The stores table, and each store's sales bias."""
    city_names, city_lat, city_lon = _cities()
    r = _rng(params, "stores")
    n_st = scale.stores
    st_region = r.integers(0, 3, n_st)
    st_city = st_region * 6 + r.integers(0, 6, n_st)
    st_id = np.arange(1, n_st + 1, dtype=np.int64)
    table = _table(
        "stores",
        {
            "store_id": pa.array(st_id),
            "name": id_strings("Store ", st_id, 3),
            "region": take_str(REGIONS, st_region),
            "city": take_str(city_names, st_city),
            "latitude": pa.array(np.round(city_lat[st_city] + r.uniform(-0.12, 0.12, n_st), 5)),
            "longitude": pa.array(np.round(city_lon[st_city] + r.uniform(-0.15, 0.15, n_st), 5)),
            "opened_date": date_array(params.start_day - r.integers(60, 5 * 365 + 1, n_st)),
        },
    )
    store_bias = r.uniform(0.5, 1.5, n_st)
    return table, store_bias


def _products(params: Params, scale: RetailScale) -> tuple[GeneratedTable, np.ndarray]:
    """The products table, and each product's base price in cents."""
    r = _rng(params, "products")
    n_pr = scale.products
    cats = list(CATEGORIES)
    per = n_pr // len(cats)
    pr_cat = np.concatenate(
        [np.repeat(np.arange(len(cats)), per), r.integers(0, len(cats), n_pr - per * len(cats))]
    )
    pr_cat = np.sort(pr_cat, kind="stable")
    n_brands = np.array([len(CATEGORIES[c]) for c in cats])
    brand_offset = np.concatenate([[0], np.cumsum(n_brands)[:-1]])
    brands = [b for c in cats for b in CATEGORIES[c]]
    pr_brand = brand_offset[pr_cat] + (r.random(n_pr) * n_brands[pr_cat]).astype(np.int64)
    cat_counts = np.bincount(pr_cat, minlength=len(cats))
    pr_num = position_in_group(cat_counts) + 1  # products are sorted by category
    base_cents = np.rint(
        r.uniform(1, 30, n_pr) * np.array([0.99, 0.95, 0.9, 1.0])[r.integers(0, 4, n_pr)] * 100
    )
    base_cents = np.maximum(base_cents, 1).astype(np.int64)
    pr_id = np.arange(1, n_pr + 1, dtype=np.int64)
    table = _table(
        "products",
        {
            "product_id": pa.array(pr_id),
            "sku": unique_codes(r, n_pr, 8),
            "name": concat(
                take_str(brands, pr_brand),
                " ",
                take_str(cats, pr_cat),
                " ",
                pa.array(pr_num).cast(pa.string()),
            ),
            "category": take_str(cats, pr_cat),
            "brand": take_str(brands, pr_brand),
            "base_price": money(base_cents),
        },
    )
    return table, base_cents


def _customers(params: Params, scale: RetailScale) -> tuple[GeneratedTable, np.ndarray]:
    """The customers table, and each customer's segment."""
    city_names = _cities()[0]
    start_ts = params.start_day * SECONDS_PER_DAY
    r = _rng(params, "customers")
    n_cu = scale.customers
    cu_seg = weighted_choice(r, SEGMENT_WEIGHTS, n_cu)
    cu_region = r.integers(0, 3, n_cu)
    signup = start_ts - r.integers(30 * SECONDS_PER_DAY, 1460 * SECONDS_PER_DAY, n_cu)
    table = _table(
        "customers",
        {
            "customer_id": pa.array(np.arange(1, n_cu + 1, dtype=np.int64)),
            "segment": take_str(SEGMENTS, cu_seg),
            "signup_ts": ts_array(signup),
            "home_region": take_str(REGIONS, cu_region),
            "home_city": take_str(city_names, cu_region * 6 + r.integers(0, 6, n_cu)),
        },
    )
    return table, cu_seg


@dataclass(frozen=True)
class ProductPromotions:
    """Each product's promotion (at most one): first and last day, discount (none: empty window, 0)."""

    start: np.ndarray
    end: np.ndarray
    discount: np.ndarray


def _promotions(params: Params, scale: RetailScale) -> tuple[GeneratedTable, ProductPromotions]:
    """Promotions: ~25% of products get one, 5-14 days inside the window."""
    r = _rng(params, "promotions")
    n_pr = scale.products
    promo_pr = np.flatnonzero(r.random(n_pr) < 0.25)
    n_pm = len(promo_pr)
    pm_start = params.start_day + r.integers(0, params.days, n_pm)
    pm_end = np.minimum(pm_start + r.integers(5, 15, n_pm) - 1, params.end_day)
    pm_disc = np.round(r.uniform(0.05, 0.30, n_pm), 2)
    pm_type = r.integers(0, len(PROMO_TYPES), n_pm)
    pm_ids = unique_codes(r, n_pm, 8)
    order = np.lexsort((promo_pr, pm_start))
    table = _table(
        "promotions",
        {
            "promo_id": pm_ids.take(pa.array(order)),
            "product_id": pa.array(promo_pr[order] + 1),
            "start_date": date_array(pm_start[order]),
            "end_date": date_array(pm_end[order]),
            "promo_type": take_str(PROMO_TYPES, pm_type[order]),
            "discount_pct": pa.array(pm_disc[order]),
        },
    )
    # product -> its promotion (at most one)
    prod_promo_start = np.full(n_pr, np.iinfo(np.int64).max)
    prod_promo_end = np.full(n_pr, np.iinfo(np.int64).min)
    prod_promo_disc = np.zeros(n_pr)
    prod_promo_start[promo_pr] = pm_start
    prod_promo_end[promo_pr] = pm_end
    prod_promo_disc[promo_pr] = pm_disc
    return table, ProductPromotions(prod_promo_start, prod_promo_end, prod_promo_disc)


def _orders_and_items(
    params: Params,
    scale: RetailScale,
    store_bias: np.ndarray,
    cu_seg: np.ndarray,
    base_cents: np.ndarray,
    prod_promo_start: np.ndarray,
    prod_promo_end: np.ndarray,
    prod_promo_disc: np.ndarray,
) -> Generator[GeneratedTable, None, Sales]:
    """Orders (diurnal and weekend rhythm) and their items (Zipf-like popularity, promotions applied).

    :returns: the units sold, by snapshot window (06:00 to 06:00), store and product.
    """
    orders_table, orders = _orders(params, scale, store_bias, cu_seg)
    yield orders_table
    del orders_table  # written by now: hold no reference to it while the items are built
    items, sales = _order_items(
        params, orders, base_cents, prod_promo_start, prod_promo_end, prod_promo_disc
    )
    # free the order-level arrays before the items are written (peak memory of large scales)
    del orders
    yield items
    return sales


@dataclass(frozen=True)
class _Orders:
    """What the order items need of the orders (one entry per order, in time order)."""

    ts: np.ndarray
    day: np.ndarray
    store: np.ndarray
    discount: np.ndarray
    ids: pa.Array


def _orders(
    params: Params, scale: RetailScale, store_bias: np.ndarray, cu_seg: np.ndarray
) -> tuple[GeneratedTable, _Orders]:
    """Orders: diurnal and weekend rhythm."""
    start_ts = params.start_day * SECONDS_PER_DAY
    r = _rng(params, "orders")
    n_min = params.days * 1440
    minute = np.arange(n_min)
    day_of = params.start_day + minute // 1440
    weekend = ((day_of + 3) % 7) >= 5  # Monday = 0 (1970-01-01 was a Thursday)
    rate = diurnal((minute % 1440) / 60.0) * np.where(weekend, WEEKEND_FACTOR, 1.0)
    expected = scale.orders_per_14_days * params.days / 14.0
    n_or = int(r.poisson(expected))
    o_min = weighted_choice(r, rate, n_or, shuffle=False)  # sorted: orders are in time order
    o_ts = start_ts + o_min * 60 + r.integers(0, 60, n_or)
    o_ts.sort()
    o_day = o_ts // SECONDS_PER_DAY
    o_store = weighted_choice(r, store_bias, n_or)
    o_cust = weighted_choice(r, SEGMENT_ACTIVITY[cu_seg], n_or)
    o_pay = weighted_choice(r, PAYMENT_WEIGHTS, n_or)
    disc = np.where(
        r.random(n_or) < 0.6, np.clip(np.round(r.normal(0.05, 0.03, n_or), 3), 0.0, 0.25), 0.0
    )
    o_num = np.arange(1, n_or + 1, dtype=np.int64)
    o_ids = id_strings(f"O{params.seed}", o_num, 8)
    table = _table(
        "orders",
        {
            "order_id": o_ids,
            "store_id": pa.array(o_store + 1),
            "customer_id": pa.array(o_cust + 1),
            "order_ts": ts_array(o_ts),
            "payment_type": take_str(PAYMENT_TYPES, o_pay),
            "discount_pct": pa.array(disc),
            "order_date": date_array(o_day),
            "order_month": month_strings(o_day),
        },
    )
    return table, _Orders(ts=o_ts, day=o_day, store=o_store, discount=disc, ids=o_ids)


def _order_items(
    params: Params,
    orders: _Orders,
    base_cents: np.ndarray,
    prod_promo_start: np.ndarray,
    prod_promo_end: np.ndarray,
    prod_promo_disc: np.ndarray,
) -> tuple[GeneratedTable, Sales]:
    """Order items (Zipf-like product popularity, promotions applied) and the units they sold."""
    o_ts, o_day, o_store, disc, o_ids = (
        orders.ts,
        orders.day,
        orders.store,
        orders.discount,
        orders.ids,
    )
    n_or = len(o_ts)
    n_pr = len(base_cents)
    r = _rng(params, "order_items")
    basket = weighted_choice(r, BASKET_WEIGHTS, n_or) + 1
    it_order = np.repeat(np.arange(n_or), basket)
    rank = r.permutation(n_pr)  # product -> popularity rank
    it_prod = weighted_choice(r, 1.0 / (rank + 1.0) ** 1.1, len(it_order))
    # an order lists each product once: keep the first line of each (order, product)
    _, first = np.unique(it_order * n_pr + it_prod, return_index=True)
    keep = np.sort(first)
    it_order, it_prod = it_order[keep], it_prod[keep]
    line = position_in_group(np.bincount(it_order, minlength=n_or)) + 1
    n_it = len(it_order)
    qty = np.where(r.random(n_it) < 0.75, 1, r.integers(2, 6, n_it))
    it_day = o_day[it_order]
    active = (prod_promo_start[it_prod] <= it_day) & (it_day <= prod_promo_end[it_prod])
    promo_disc = np.where(active, prod_promo_disc[it_prod], 0.0)
    unit_cents = np.rint(base_cents[it_prod] * (1.0 - disc[it_order]) * (1.0 - promo_disc)).astype(
        np.int64
    )
    items = _table(
        "order_items",
        {
            "order_id": o_ids.take(pa.array(it_order)),
            "line_number": pa.array(line.astype(np.int32)),
            "product_id": pa.array(it_prod + 1),
            "qty": pa.array(qty.astype(np.int32)),
            "unit_price": money(unit_cents),
            "extended_price": money(unit_cents * qty),
            "order_date": date_array(it_day),
            "order_month": month_strings(it_day),
        },
    )
    # a sale between 06:00 on day d and 06:00 on day d+1 lowers the d+1 snapshot
    window = (o_ts[it_order] - SNAPSHOT_HOUR * 3600) // SECONDS_PER_DAY - params.start_day
    in_window = (window >= 0) & (window < params.days - 1)
    order = np.argsort(window[in_window], kind="stable")
    sales = Sales(
        window=window[in_window][order],
        cell=(o_store[it_order] * len(base_cents) + it_prod)[in_window][order].astype(np.int32),
        qty=qty[in_window][order].astype(np.int32),
    )
    return items, sales


@dataclass(frozen=True)
class Sales:
    """Units sold, sorted by ``window`` (days after the start; the window runs 06:00 to 06:00);
    ``cell`` is ``store index * products + product index``."""

    window: np.ndarray
    cell: np.ndarray
    qty: np.ndarray


INVENTORY_SCHEMA = pa.schema(
    [
        ("snapshot_ts", TS),
        ("store_id", pa.int64()),
        ("product_id", pa.int64()),
        ("on_hand", pa.int32()),
        ("on_order", pa.int32()),
        ("safety_stock", pa.int32()),
        ("reorder_qty", pa.int32()),
        ("snapshot_date", pa.date32()),
        ("snapshot_month", pa.string()),
    ]
)


def _inventory_batches(
    params: Params, n_st: int, n_pr: int, sold: Sales
) -> Iterator[pa.RecordBatch]:
    """One record batch per day (stores x products rows at 06:00), stock moving with the sales.

    The first snapshot's stock is seed 003's noise (normal(40, 15); safety stock 15-35% of it, at
    least 5, fixed per store and product; nothing on order). Replenishment takes two snapshots: when
    ``on_hand + on_order`` is below the safety stock, ``reorder_qty = 3 x safety - on_hand - on_order``
    units are ordered; they are ``on_order`` at the next snapshot and arrive before the one after. So,
    with ``sold(d)`` the units sold from 06:00 on day d to 06:00 on day d+1 in that store:
    ``on_hand(d+1) = max(0, on_hand(d) + on_order(d) - sold(d))`` and ``on_order(d+1) = reorder_qty(d)``.
    """
    n = n_st * n_pr
    store = pa.array(np.repeat(np.arange(1, n_st + 1, dtype=np.int64), n_pr))
    product = pa.array(np.tile(np.arange(1, n_pr + 1, dtype=np.int64), n_st))
    r = _rng(params, "inventory_snapshots")
    on_hand = np.maximum(0, np.rint(r.normal(40.0, 15.0, n))).astype(np.int32)
    safety = np.maximum(5, (on_hand * r.uniform(0.15, 0.35, n)).astype(np.int32))
    on_order = np.zeros(n, dtype=np.int32)
    bounds = np.searchsorted(sold.window, np.arange(params.days + 1))
    for d in range(params.days):
        day = params.start_day + d
        position = on_hand + on_order
        reorder = np.where(position < safety, safety * 3 - position, 0).astype(np.int32)
        ts = (day * SECONDS_PER_DAY + SNAPSHOT_HOUR * 3600) * 1_000_000
        yield pa.RecordBatch.from_arrays(
            [
                pa.repeat(pa.scalar(ts, TS), n),
                store,
                product,
                pa.array(on_hand),
                pa.array(on_order),
                pa.array(safety),
                pa.array(reorder),
                pa.repeat(pa.scalar(day, pa.int32()).cast(pa.date32()), n),
                pa.repeat(pa.scalar(month_strings(np.array([day]))[0].as_py()), n),
            ],
            schema=INVENTORY_SCHEMA,
        )
        lo, hi = bounds[d], bounds[d + 1]
        units = np.bincount(sold.cell[lo:hi], weights=sold.qty[lo:hi], minlength=n).astype(np.int64)
        on_hand = np.maximum(0, on_hand + on_order - units).astype(np.int32)
        on_order = reorder
