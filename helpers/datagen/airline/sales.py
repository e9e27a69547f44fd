"""The sales domain: bookings, customers, marketing campaigns, daily revenue and the derived customer_360."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from helpers.datagen.airline.network import Fleet, Flights
from helpers.datagen.airline.reference import (
    BK_CANCELLED,
    BOOKING_STATUSES,
    CHANNELS,
    CLASS_PRICE,
    CLASSES,
    COMPLETED,
    FIRST_NAMES,
    LAST_NAMES,
    NO_SHOW,
    PAYMENT_METHODS,
    PAYMENT_WEIGHTS,
    TIERS,
)
from helpers.datagen.airline.spec import (
    N_CAMPAIGNS,
    AirlineScale,
    make_table,
    pc_lpad,
    rng,
)
from helpers.datagen.common import (
    SECONDS_PER_DAY,
    GeneratedTable,
    Params,
    concat,
    date_array,
    group_reduce,
    id_strings,
    money,
    month_strings,
    ratio_half_up,
    take_str,
    ts_array,
    weighted_choice,
)

# ---- bookings ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bookings:
    """The bookings, in ``booking_id`` order (by booking time, then flight)."""

    flight: np.ndarray  # flight index
    customer: np.ndarray  # customer index
    ts: np.ndarray  # booking time, epoch seconds
    travel_class: np.ndarray  # index into CLASSES
    base: np.ndarray  # cents
    taxes: np.ndarray
    total: np.ndarray
    cancelled: np.ndarray
    cancel_ts: np.ndarray
    refund: np.ndarray
    status: np.ndarray  # index into BOOKING_STATUSES
    ancillary: np.ndarray
    payment: np.ndarray
    id: np.ndarray
    day: np.ndarray
    cancel_day: np.ndarray


def build_bookings(params: Params, scale: AirlineScale, flights: Flights, fleet: Fleet) -> Bookings:
    r = rng(params, "bookings")
    n_cu = scale.customers
    n_bk = scale.bookings
    fl_ac, sched_dep = flights.aircraft, flights.sched_dep
    # flight and booking time first, sorted by booking time (booking ids follow it); every other
    # attribute is drawn afterwards, already in that order, so no column needs reordering
    bk_fl = weighted_choice(r, fleet.seats[fl_ac], n_bk, shuffle=False)
    lead = np.clip(r.gamma(1.5, 20.0, n_bk) * SECONDS_PER_DAY, 2 * 3600, 120 * SECONDS_PER_DAY)
    bk_ts = sched_dep[bk_fl] - lead.astype(np.int64)
    order = np.lexsort((bk_fl, bk_ts))
    bk_fl, bk_ts = bk_fl[order], bk_ts[order]
    del lead, order
    popularity = 1.0 / np.arange(1, n_cu + 1) ** 0.6  # frequent flyers: a skewed customer base
    bk_cu = r.permutation(n_cu)[weighted_choice(r, popularity, n_bk)]
    u = r.random(n_bk)
    has_first = fleet.first[fl_ac[bk_fl]] > 0
    bk_class = np.where((u < 0.04) & has_first, 2, np.where(u < 0.18, 1, 0))
    lo, hi = CLASS_PRICE[bk_class, 0], CLASS_PRICE[bk_class, 1]
    frac = np.clip(
        np.clip(flights.km[bk_fl] / 12_000.0, 0, 1) ** 0.7 * r.uniform(0.75, 1.0, n_bk)
        + r.uniform(0, 0.15, n_bk),
        0,
        1,
    )
    base = np.round((lo + (hi - lo) * frac) / 100.0).astype(np.int64) * 100 - 1  # x.99 prices
    taxes = np.round(base * r.uniform(0.08, 0.25, n_bk)).astype(np.int64)
    total = base + taxes
    del u, has_first, lo, hi, frac
    dep = sched_dep[bk_fl]
    flight_cancelled = flights.cancelled[bk_fl]
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
    return Bookings(
        flight=bk_fl,
        customer=bk_cu,
        ts=bk_ts,
        travel_class=bk_class,
        base=base,
        taxes=taxes,
        total=total,
        cancelled=bk_cancelled,
        cancel_ts=cancel_ts,
        refund=refund,
        status=bk_status,
        ancillary=ancillary,
        payment=payment,
        id=bk_id,
        day=bk_ts // SECONDS_PER_DAY,
        cancel_day=cancel_ts // SECONDS_PER_DAY,
    )


def bookings_table(bk: Bookings) -> GeneratedTable:
    return make_table(
        "bookings",
        {
            "booking_id": pa.array(bk.id),
            "booking_reference": id_strings("BK", bk.id, 8),
            "customer_id": pa.array(bk.customer + 1),
            "flight_id": pa.array(bk.flight + 1),
            "booking_date": ts_array(bk.ts),
            "travel_class": take_str(CLASSES, bk.travel_class),
            "base_price": money(bk.base),
            "taxes": money(bk.taxes),
            "total_price": money(bk.total),
            "payment_method": take_str(PAYMENT_METHODS, bk.payment),
            "booking_status": take_str(BOOKING_STATUSES, bk.status),
            "cancellation_date": ts_array(bk.cancel_ts, mask=~bk.cancelled),
            "refund_amount": money(bk.refund),
            "ancillary_amount": money(bk.ancillary),
            "booking_month": month_strings(bk.day),
        },
    )


@dataclass(frozen=True)
class BookingSummary:
    """What the later tables need from the bookings (so the booking arrays can be freed)."""

    pax_per_flight: np.ndarray  # COMPLETED bookings per flight
    total_spent: np.ndarray  # cents per customer
    last_booking_ts: np.ndarray
    cancelled_per_customer: np.ndarray


def summarise_bookings(bk: Bookings, scale: AirlineScale) -> BookingSummary:
    n_cu = scale.customers
    return BookingSummary(
        pax_per_flight=np.bincount(bk.flight[bk.status == COMPLETED], minlength=scale.flights),
        total_spent=np.bincount(bk.customer, weights=bk.total, minlength=n_cu).astype(np.int64),
        last_booking_ts=group_reduce(np.maximum, bk.customer, bk.ts, n_cu, 0),
        cancelled_per_customer=np.bincount(bk.customer[bk.cancelled], minlength=n_cu).astype(
            np.int64
        ),
    )


# ---- customers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Customers:
    id: np.ndarray
    first: pa.Array
    last: pa.Array
    ltv: np.ndarray  # cents
    n_bookings: np.ndarray
    has_bookings: np.ndarray
    tier: np.ndarray  # index into TIERS


def build_customers(
    params: Params, scale: AirlineScale, bk: Bookings
) -> tuple[GeneratedTable, Customers]:
    r = rng(params, "customers")
    n_cu = scale.customers
    bk_cu, bk_day, bk_cancelled, cancel_day = bk.customer, bk.day, bk.cancelled, bk.cancel_day
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
    ltv = np.bincount(bk_cu, weights=bk.total + bk.ancillary - bk.refund, minlength=n_cu).astype(
        np.int64
    )
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
    table = make_table(
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
    return table, Customers(cu_id, first, last, ltv, n_bookings, has_bk, tier)


# ---- marketing campaigns -----------------------------------------------------------------------


def marketing_campaigns(params: Params) -> GeneratedTable:
    r = rng(params, "marketing_campaigns")
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
    # the dict's values are drawn in this order: keep it
    return make_table(
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


# ---- daily revenue: exact aggregates of bookings -----------------------------------------------


def daily_revenue(params: Params, bk: Bookings) -> GeneratedTable:
    bk_day, cancel_day, bk_cancelled = bk.day, bk.cancel_day, bk.cancelled
    n_bk = len(bk.id)
    d0 = int(bk_day.min()) if n_bk else params.start_day
    d1 = (
        int(max(bk_day.max(), cancel_day[bk_cancelled].max(initial=d0))) if n_bk else params.end_day
    )
    n_days = d1 - d0 + 1
    rev = np.bincount(bk_day - d0, weights=bk.total, minlength=n_days).astype(np.int64)
    anc = np.bincount(bk_day - d0, weights=bk.ancillary, minlength=n_days).astype(np.int64)
    cnt = np.bincount(bk_day - d0, minlength=n_days)
    ccnt = np.bincount(cancel_day[bk_cancelled] - d0, minlength=n_days)
    refunds = np.bincount(
        cancel_day[bk_cancelled] - d0, weights=bk.refund[bk_cancelled], minlength=n_days
    ).astype(np.int64)
    avg = ratio_half_up(rev, cnt, 0) / 100.0  # cents, rounded like SQL round()
    return make_table(
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


def customer_360(cu: Customers, summary: BookingSummary) -> GeneratedTable:
    return make_table(
        "customer_360",
        {
            "customer_id": pa.array(cu.id),
            "first_name": cu.first,
            "last_name": cu.last,
            "loyalty_tier": take_str([t[0] for t in TIERS], cu.tier),
            "total_lifetime_value": money(cu.ltv),
            "total_bookings": pa.array(cu.n_bookings.astype(np.int64)),
            "cancelled_bookings": pa.array(summary.cancelled_per_customer),
            "total_spent": money(summary.total_spent),
            "last_booking_date": ts_array(summary.last_booking_ts, mask=~cu.has_bookings),
        },
    )
