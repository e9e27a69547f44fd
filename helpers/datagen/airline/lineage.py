"""Lineage of the airline dataset's derived tables: what each is built from, with the SQL that computes it.

:data:`DERIVATIONS` maps a derived table (``schema.table``) to its source tables and SQL over the
catalog's names (``{catalog}`` is the dataset's catalog, ``airline``). :func:`helpers.datagen.generate`
records them in the catalog (:meth:`Catalog.record_derivation`, kind ``generator``) when it registers the
tables. The SQL of ``daily_revenue`` and ``customer_360`` recomputes the generated tables exactly (the tests
run it); the other derived tables are built with numpy and their entry says so instead of a query.
"""

from __future__ import annotations

from helpers.datagen.airline.spec import OPS, SALES, SHARED

__all__ = ["DERIVATIONS"]

_DAILY_REVENUE = f"""
WITH b AS (
    SELECT CAST(booking_date AS DATE) AS day, total_price, ancillary_amount
    FROM {{catalog}}.{SALES}.bookings
), c AS (
    SELECT CAST(cancellation_date AS DATE) AS day, refund_amount
    FROM {{catalog}}.{SALES}.bookings WHERE cancellation_date IS NOT NULL
), days AS (
    SELECT CAST(d AS DATE) AS date
    FROM range((SELECT min(day) FROM b),
               (SELECT max(day) FROM (SELECT day FROM b UNION ALL SELECT day FROM c)) + INTERVAL 1 DAY,
               INTERVAL 1 DAY) AS t(d)
)
SELECT days.date,
       coalesce(bs.booking_revenue, 0) AS booking_revenue,
       coalesce(bs.ancillary_revenue, 0) AS ancillary_revenue,
       coalesce(bs.booking_revenue, 0) + coalesce(bs.ancillary_revenue, 0) AS total_revenue,
       coalesce(bs.bookings_count, 0) AS bookings_count,
       -- revenue / count in whole cents, halves rounded up (whole-cent arithmetic)
       floor((2 * round(bs.booking_revenue * 100) + bs.bookings_count)
             / (2 * bs.bookings_count)) / 100.0 AS average_ticket_price,
       coalesce(cs.cancellation_count, 0) AS cancellation_count,
       coalesce(cs.refund_total, 0) AS refund_total
FROM days
LEFT JOIN (SELECT day, sum(total_price) AS booking_revenue, sum(ancillary_amount) AS ancillary_revenue,
                  count(*) AS bookings_count FROM b GROUP BY day) bs ON bs.day = days.date
LEFT JOIN (SELECT day, count(*) AS cancellation_count, sum(refund_amount) AS refund_total
           FROM c GROUP BY day) cs ON cs.day = days.date
ORDER BY days.date
""".strip()

_CUSTOMER_360 = f"""
SELECT c.customer_id, c.first_name, c.last_name, c.loyalty_tier, c.total_lifetime_value,
       count(b.booking_id) AS total_bookings,
       count(b.booking_id) FILTER (WHERE b.cancellation_date IS NOT NULL) AS cancelled_bookings,
       coalesce(sum(b.total_price), 0) AS total_spent,
       max(b.booking_date) AS last_booking_date
FROM {{catalog}}.{SALES}.customers c
LEFT JOIN {{catalog}}.{SALES}.bookings b ON b.customer_id = c.customer_id
GROUP BY c.customer_id, c.first_name, c.last_name, c.loyalty_tier, c.total_lifetime_value
ORDER BY c.customer_id
""".strip()


def _numpy(module: str, function: str) -> str:
    return f"-- built by helpers.datagen.airline.{module}.{function} (numpy), not by a SQL query"


#: ``schema.table`` -> (source tables ``schema.table``, SQL with ``{catalog}``).
DERIVATIONS: dict[str, tuple[tuple[str, ...], str]] = {
    f"{SALES}.daily_revenue": ((f"{SALES}.bookings",), _DAILY_REVENUE),
    f"{SALES}.customer_360": ((f"{SALES}.customers", f"{SALES}.bookings"), _CUSTOMER_360),
    f"{SHARED}.flight_performance": (
        (f"{SHARED}.flights", f"{SHARED}.aircraft", f"{SHARED}.routes", f"{SHARED}.airports"),
        _numpy("network", "flight_performance"),
    ),
    f"{OPS}.fleet_status": (
        (f"{SHARED}.aircraft", f"{SHARED}.flights", f"{OPS}.maintenance_logs"),
        _numpy("operations", "fleet_status"),
    ),
    f"{OPS}.daily_operations_metrics": (
        (f"{SHARED}.flights", f"{SHARED}.aircraft", f"{SALES}.bookings", f"{OPS}.ground_handling"),
        _numpy("operations", "ops_metrics"),
    ),
}
