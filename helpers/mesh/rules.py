"""The rule languages of the mesh: governance rules ``<metric> <op> <threshold>[%|h]`` over measured
metrics (with the default policies), and validity rules, one SQL boolean expression per rule."""

from __future__ import annotations

import re
from collections.abc import Callable

from helpers.exceptions import InvalidArgumentError
from helpers.mesh.models import Policy

#: Metrics a policy rule can name: unit and meaning.
METRICS: dict[str, tuple[str, str]] = {
    "completeness": ("%", "lowest table completeness (non-null share of required cells)"),
    "min_column_completeness": ("%", "lowest completeness of any required column"),
    "uniqueness": ("%", "lowest key uniqueness (distinct keys / rows)"),
    "validity": ("%", "lowest pass rate of any validity rule"),
    "freshness_hours": ("h", "hours since the last commit of the stalest output table"),
    "row_count": ("rows", "rows of the smallest output table"),
    "availability": (
        "%",
        "share of the server's requests on the product's share answered without a 5xx, over the "
        "SLA's availability window",
    ),
    "time_travel_covered": (
        "bool",
        "every output table keeps the promised time-travel window (retention and VACUUM history)",
    ),
    "retention_hours": ("h", "smallest effective retention of an output table"),
    "pii_columns_external": (
        "columns",
        "columns tagged pii in the product's tables times external recipients granted the share",
    ),
    "documented": ("bool", "the product has an owner and a description"),
    "has_owner": ("bool", "the product names an owner"),
    "has_description": ("bool", "the product has a description"),
    "subscribers": ("recipients", "active subscriptions"),
}
_METRIC_ALIASES = {"freshness": "freshness_hours", "timeliness": "freshness_hours"}
_RULE_RE = re.compile(
    r"^\s*([a-z_]+)\s*(>=|<=|==|!=|=|>|<)\s*(true|false|-?\d+(?:\.\d+)?)\s*(%|h|hours)?\s*$",
    re.IGNORECASE,
)
OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


def parse_rule(rule: str) -> tuple[str, str, float]:
    """Parse ``<metric> <op> <threshold>[%|h]`` into (metric, op, threshold).

    :raises InvalidArgumentError: for anything else, naming the metrics a rule may use.
    """
    m = _RULE_RE.match(rule or "")
    if not m:
        raise InvalidArgumentError(
            f"invalid policy rule {rule!r}: write '<metric> <op> <number>[%|h]', e.g. 'completeness >= 95%'"
        )
    metric = _METRIC_ALIASES.get(m.group(1).lower(), m.group(1).lower())
    if metric not in METRICS:
        raise InvalidArgumentError(
            f"unknown metric {m.group(1)!r} in policy rule {rule!r}; use one of {sorted(METRICS)}"
        )
    op = "==" if m.group(2) == "=" else m.group(2)
    raw = m.group(3).lower()
    threshold = 1.0 if raw == "true" else 0.0 if raw == "false" else float(raw)
    return metric, op, threshold


#: The governance policies of the issue, installed by :meth:`Mesh.install_default_policies`.
DEFAULT_POLICIES: tuple[Policy, ...] = (
    Policy(
        "completeness",
        "completeness >= 95%",
        "mandatory",
        {},
        "Every product's tables are at least 95 % complete (required columns).",
    ),
    Policy(
        "tier1-freshness",
        "freshness_hours <= 24h",
        "advisory",
        {"tier": [1]},
        "Tier-1 products are refreshed at least once a day.",
    ),
    Policy(
        "no-pii-to-external",
        "pii_columns_external == 0",
        "mandatory",
        {},
        "No column tagged pii is shared with a recipient whose property external=true.",
    ),
    Policy(
        "time-travel-window",
        "time_travel_covered == true",
        "mandatory",
        {},
        "Tables keep the history the product promises (SLA time_travel_days): VACUUM and log "
        "retention cover the window and its oldest version is still readable.",
    ),
    Policy(
        "documented",
        "documented == true",
        "mandatory",
        {},
        "Every product names an owner and has a description.",
    ),
)


def check_sql_expression(expression: str) -> str:
    """Check that ``expression`` is one SQL boolean expression (no statement, no subquery)."""
    import sqlglot
    from sqlglot import exp

    text = (expression or "").strip()
    if not text:
        raise InvalidArgumentError("a validity rule needs a SQL expression, e.g. 'distance > 0'")
    try:
        trees = sqlglot.parse(f"SELECT ({text})", dialect="duckdb")
    except sqlglot.errors.ParseError as exc:
        raise InvalidArgumentError(
            f"validity rule {expression!r} is not a SQL expression: {str(exc).splitlines()[0]}"
        ) from exc
    if len(trees) != 1 or trees[0] is None:
        raise InvalidArgumentError(
            f"validity rule {expression!r} must be one expression, not statements"
        )
    selects = list(trees[0].find_all(exp.Select))
    if len(selects) != 1:
        raise InvalidArgumentError(f"validity rule {expression!r} may not contain a subquery")
    return text
