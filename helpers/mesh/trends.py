"""Quality trends with a verdict: per product, table and metric, the measurements of the history, the
least-squares slope over time, and **improving**, **degrading** or **stable**.

A trend is stable while the fitted change over the measured span stays within the metric's tolerance
(:data:`TOLERANCE`: half a percentage point for percentages, an hour for freshness, 1 % of the rows for row
counts), so measurement noise does not flip the verdict; otherwise its direction decides, with the
metric's sense (higher completeness is better, lower freshness hours are better). One measurement gives no
trend (``n/a``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["HIGHER_IS_BETTER", "TOLERANCE", "TREND_COLUMNS", "trend_verdicts"]

#: The metrics a trend is computed for, and whether a higher value is better.
HIGHER_IS_BETTER: dict[str, bool] = {
    "completeness": True,
    "uniqueness": True,
    "validity": True,
    "row_count": True,
    "freshness_hours": False,
}
#: The change over the span (in the metric's unit; row counts: a fraction of the mean) still "stable".
TOLERANCE: dict[str, float] = {
    "completeness": 0.5,
    "uniqueness": 0.5,
    "validity": 0.5,
    "row_count": 0.01,
    "freshness_hours": 1.0,
}
TREND_COLUMNS = [
    "product",
    "table",
    "metric",
    "column",
    "measurements",
    "first",
    "last",
    "change",
    "slope_per_day",
    "verdict",
]


def _verdict(metric: str, values: np.ndarray, days: np.ndarray) -> tuple[float, float, str]:
    """(fitted change over the span, slope per day, verdict) of one series."""
    if len(values) < 2 or float(days.max() - days.min()) <= 0:
        return 0.0, 0.0, "n/a"
    slope = float(np.polyfit(days, values, 1)[0])
    change = slope * float(days.max() - days.min())
    tol = TOLERANCE[metric]
    if metric == "row_count":
        tol *= max(1.0, float(np.mean(np.abs(values))))
    if abs(change) <= tol:
        return change, slope, "stable"
    better = (change > 0) == HIGHER_IS_BETTER[metric]
    return change, slope, "improving" if better else "degrading"


def trend_verdicts(history: pd.DataFrame) -> pd.DataFrame:
    """The trends of a :meth:`Mesh.quality_history` frame, one row per (product, table, metric, column)."""
    rows = []
    frame = history[history["metric"].isin(list(HIGHER_IS_BETTER))].dropna(subset=["value"])
    if frame.empty:
        return pd.DataFrame(columns=TREND_COLUMNS)
    for (product, table, metric, column), g in frame.groupby(
        ["product", "table", "metric", "column"], sort=True
    ):
        g = g.sort_values("measured_at")
        t = pd.to_datetime(g["measured_at"], utc=True)
        days = ((t - t.min()).dt.total_seconds() / 86400.0).to_numpy(dtype=float)
        values = g["value"].to_numpy(dtype=float)
        change, slope, verdict = _verdict(str(metric), values, days)
        rows.append(
            (product, table, metric, column, len(g), values[0], values[-1], change, slope, verdict)
        )
    return pd.DataFrame(rows, columns=TREND_COLUMNS)
