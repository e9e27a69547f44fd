"""Quality and governance of :class:`~helpers.mesh.Mesh`: measuring products (with history), policies,
the facts a policy rule can name, compliance checks and SLA status."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

import pandas as pd

from helpers.exceptions import AlreadyExistsError, InvalidArgumentError
from helpers.mesh.common import (
    ENFORCEMENTS,
    EXTERNAL_PROPERTY,
    PII_TAG,
    check_name,
    fmt_value,
    iso,
    resolve_now,
)
from helpers.mesh.facade.base import MeshBase
from helpers.mesh.models import (
    QUALITY_COLUMNS,
    ComplianceReport,
    Policy,
    PolicyResult,
    Product,
    QualityReport,
    quality_rows,
)
from helpers.mesh.quality import measure_table
from helpers.mesh.retention import TableRetention, table_retention
from helpers.mesh.rules import DEFAULT_POLICIES, METRICS, OPS, parse_rule
from helpers.mesh.trends import trend_verdicts


class GovernanceMixin(MeshBase):
    """Measure quality, keep policies, evaluate them with evidence."""

    # ------------------------------------------------------------------ quality
    def _measure(self, p: Product, now: datetime) -> QualityReport:
        rules: dict[str, dict[str, str]] = {}
        for r in self.validity_rules(p.name):
            rules.setdefault(r.table.lower(), {})[r.name] = r.expression
        keys = {k.lower(): v for k, v in p.keys.items()}
        optional = {k.lower(): v for k, v in p.optional_columns.items()}
        tables = tuple(
            measure_table(
                alias,
                loc,
                keys.get(alias.lower(), ()),
                optional.get(alias.lower(), ()),
                rules.get(alias.lower(), {}),
                now,
            )
            for alias, loc in self.output_tables(p).items()
        )
        return QualityReport(p.name, uuid.uuid4().hex[:12], now, tables)

    def _store_quality(self, con: sqlite3.Connection, report: QualityReport) -> None:
        con.executemany(
            "INSERT INTO mesh_quality VALUES (?,?,?,?,?,?,?,?)",
            [(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]) for r in quality_rows(report)],
        )

    def measure(
        self, product: str, *, now: datetime | None = None, record: bool = True
    ) -> QualityReport:
        """Measure the product's quality on its Delta tables now and (by default) keep it in the history.

        :param now: the clock used for freshness (default: real now); pass one for deterministic results.
        """
        p = self.get_product(product)
        report = self._measure(p, resolve_now(now))
        if record:
            self._store.write(lambda con: self._store_quality(con, report))
        return report

    def quality_history(
        self, product: str | None = None, metric: str | None = None
    ) -> pd.DataFrame:
        """Stored measurements, oldest first (``measured_at`` as UTC timestamps)."""
        sql = "SELECT * FROM mesh_quality WHERE 1=1"
        params: list[Any] = []
        if product:
            sql += " AND product = ?"
            params.append(self.get_product(product).name)
        if metric:
            sql += " AND metric = ?"
            params.append(metric)
        rows = self._store.read(sql + " ORDER BY measured_at, rowid", params)
        frame = pd.DataFrame([tuple(r) for r in rows], columns=QUALITY_COLUMNS)
        frame["measured_at"] = pd.to_datetime(frame["measured_at"], utc=True)
        return frame

    # ------------------------------------------------------------------ policies
    def create_policy(
        self,
        name: str,
        rule: str,
        *,
        enforcement: str = "mandatory",
        applies_to: Mapping[str, Any] | None = None,
        description: str = "",
        replace: bool = False,
        if_not_exists: bool = False,
    ) -> Policy:
        """Create a governance policy ``<metric> <op> <threshold>`` (see :data:`METRICS`).

        :param applies_to: ``{"tier": [1]}``, ``{"domains": [...]}``, ``{"tags": [...]}`` or empty (all).
        """
        check_name("policy", name)
        parse_rule(rule)
        enf = str(enforcement).lower()
        if enf not in ENFORCEMENTS:
            raise InvalidArgumentError(
                f"enforcement must be one of {ENFORCEMENTS}, got {enforcement!r}"
            )
        scope = dict(applies_to or {})
        unknown = set(scope) - {"tier", "domains", "tags"}
        if unknown:
            raise InvalidArgumentError(
                f"applies_to keys {sorted(unknown)} unknown; use tier, domains, tags"
            )

        def tx(con: sqlite3.Connection) -> None:
            if con.execute("SELECT 1 FROM mesh_policies WHERE name = ?", (name,)).fetchone():
                if if_not_exists:
                    return
                if not replace:
                    raise AlreadyExistsError(
                        f"policy {name!r} exists; pass replace=True to change it or if_not_exists=True"
                    )
            con.execute(
                "INSERT OR REPLACE INTO mesh_policies VALUES (?,?,?,?,?,?)",
                (name, rule, enf, json.dumps(scope), description, iso(resolve_now())),
            )
            self._event(con, "policy_set", None, name, f"{rule} ({enf})")

        self._store.write(tx)
        self._governance_changed()
        return self.get_policy(name)

    def install_default_policies(self) -> list[Policy]:
        """Create the example policies of :data:`DEFAULT_POLICIES` if missing."""
        return [
            self.create_policy(
                p.name,
                p.rule,
                enforcement=p.enforcement,
                applies_to=p.applies_to,
                description=p.description,
                if_not_exists=True,
            )
            for p in DEFAULT_POLICIES
        ]

    def drop_policy(self, name: str) -> None:
        policy = self.get_policy(name)
        self._store.write(
            lambda con: con.execute("DELETE FROM mesh_policies WHERE name = ?", (policy.name,))
        )
        self._governance_changed()

    @staticmethod
    def _is_external(properties: Mapping[str, str]) -> bool:
        for k, v in properties.items():
            if k.lower() == EXTERNAL_PROPERTY and str(v).strip().lower() in ("true", "1", "yes"):
                return True
        return False

    def _pii_exposure(
        self, p: Product, extra_recipient: tuple[str, Mapping[str, str]] | None = None
    ) -> tuple[int, str]:
        """Count (pii column x external recipient) pairs on the product's share, with evidence."""
        pii: list[str] = []
        for alias, loc in self.output_tables(p).items():
            pii += [f"{alias}.{c}" for c in self._tagged_columns(loc, PII_TAG)]
        externals = [
            r for r in self._granted(p.share) if self._is_external(self._recipient_properties(r))
        ]
        if extra_recipient and self._is_external(extra_recipient[1]):
            if extra_recipient[0].lower() not in {r.lower() for r in externals}:
                externals.append(extra_recipient[0])
        count = len(pii) * len(externals)
        if not pii:
            return 0, "no column of the product is tagged pii"
        if not externals:
            return 0, f"pii columns {pii} are granted to no external recipient"
        return count, f"pii columns {pii} reach external recipient(s) {externals}"

    def _availability(self, p: Product, now: datetime | None = None) -> tuple[float | None, str]:
        """Share of the server's requests on the product's share answered without a server error (5xx)
        over the SLA's window (the audit log's last ``availability_window_days`` before ``now``)."""
        at = resolve_now(now)
        days = p.sla.availability_window_days
        frame = self._audit()
        if frame is None or frame.empty:
            return None, "no requests in the audit log yet"
        rows = frame[frame["share"].astype(str).str.lower() == p.share.lower()]
        if len(rows):
            times = pd.to_datetime(rows["event_time"], utc=True)
            rows = rows[(times > at - pd.Timedelta(days=days)) & (times <= at)]
        if rows.empty:
            return (
                None,
                f"no requests on share {p.share!r} in the last {days:g} days of the audit log",
            )
        codes = pd.to_numeric(rows["status_code"], errors="coerce").fillna(500)
        ok = int((codes < 500).sum())
        return 100.0 * ok / len(rows), (
            f"{ok} of {len(rows)} requests on share {p.share!r} in the last {days:g} days answered "
            f"without a server error ({len(rows) - ok} 5xx)"
        )

    def retention(self, product: str, *, now: datetime | None = None) -> pd.DataFrame:
        """Each output table's retention against the promised time-travel window (``SLA.time_travel_days``):
        configured file and log retention, the retention VACUUM used, and whether the version at the
        window's start is still readable. Empty when the product promises no window."""
        p = self.get_product(product)
        columns = [
            "table",
            "promised_hours",
            "file_retention_hours",
            "log_retention_hours",
            "vacuum_retention_hours",
            "window_version",
            "readable",
            "covered",
            "evidence",
        ]
        rows = [
            (
                r.table,
                r.window_hours,
                r.file_retention_hours,
                r.log_retention_hours,
                r.vacuum_retention_hours,
                r.window_version,
                r.readable,
                r.covered,
                r.evidence(),
            )
            for r in self._retention(p, resolve_now(now))
        ]
        return pd.DataFrame(rows, columns=columns)

    def _retention(self, p: Product, now: datetime) -> list[TableRetention]:
        if p.sla.time_travel_days is None:
            return []
        window = p.sla.time_travel_days * 24.0
        return [
            table_retention(alias, loc, window, now) for alias, loc in self.output_tables(p).items()
        ]

    def _retention_facts(self, p: Product, now: datetime) -> dict[str, tuple[float | None, str]]:
        results = self._retention(p, now)
        if not results:
            none = (None, "the product promises no time-travel window (SLA time_travel_days)")
            return {"time_travel_covered": none, "retention_hours": none}
        worst = min(results, key=lambda r: (r.covered, r.effective_hours))
        text = "; ".join(r.evidence() for r in results)
        return {
            "time_travel_covered": (float(all(r.covered for r in results)), text),
            "retention_hours": (worst.effective_hours, worst.evidence()),
        }

    def quality_trends(self, product: str | None = None) -> pd.DataFrame:
        """Quality trends from the history with a verdict (improving / degrading / stable / n/a) per
        product, table, metric and column (see :mod:`helpers.mesh.trends`)."""
        return trend_verdicts(self.quality_history(product))

    def _facts(
        self,
        p: Product,
        report: QualityReport,
        extra_recipient: tuple[str, Mapping[str, str]] | None = None,
    ) -> dict[str, tuple[float | None, str]]:
        """Every metric a rule can name, measured on this product, with its evidence."""
        facts = quality_facts(p, report)
        facts["availability"] = self._availability(p, report.measured_at)
        facts.update(self._retention_facts(p, report.measured_at))
        count, evidence = self._pii_exposure(p, extra_recipient)
        facts["pii_columns_external"] = (float(count), evidence)
        has_owner = bool(p.owner and p.owner.strip())
        has_desc = bool(p.description and p.description.strip())
        facts["has_owner"] = (float(has_owner), f"owner={p.owner!r}")
        facts["has_description"] = (float(has_desc), f"description={p.description[:60]!r}")
        facts["documented"] = (
            float(has_owner and has_desc),
            f"owner={p.owner!r}, description={'set' if has_desc else 'missing'}",
        )
        facts["subscribers"] = (
            float(len(self.subscriptions(p.name))),
            "active subscriptions",
        )
        return facts

    def _evaluate(
        self,
        p: Product,
        report: QualityReport,
        now: datetime,
        extra_recipient: tuple[str, Mapping[str, str]] | None = None,
        policies: Iterable[Policy] | None = None,
    ) -> ComplianceReport:
        facts = self._facts(p, report, extra_recipient)
        results: list[PolicyResult] = []
        for pol in policies if policies is not None else self.list_policies():
            if not pol.applies(p):
                continue
            metric, op, threshold = parse_rule(pol.rule)
            measured, detail = facts[metric]
            unit = METRICS[metric][0]
            if measured is None:
                status = "N/A"
                evidence = f"{metric} not measurable: {detail}"
            else:
                status = "PASS" if OPS[op](measured, threshold) else "FAIL"
                evidence = (
                    f"{metric} = {fmt_value(measured, unit)} {'meets' if status == 'PASS' else 'violates'} "
                    f"{op} {fmt_value(threshold, unit)} ({detail})"
                )
            results.append(
                PolicyResult(
                    pol.name, pol.enforcement, status, metric, op, threshold, measured, evidence
                )
            )
        return ComplianceReport(p.name, now, tuple(results))

    def check(
        self, product: str, *, now: datetime | None = None, record: bool = True
    ) -> ComplianceReport:
        """Measure the product and evaluate every applicable policy (PASS / FAIL / N/A with evidence)."""
        p = self.get_product(product)
        at = resolve_now(now)
        report = self._measure(p, at)
        if record:
            self._store.write(lambda con: self._store_quality(con, report))
        return self._evaluate(p, report, at)

    def sla_status(self, product: str, *, now: datetime | None = None) -> pd.DataFrame:
        """The product's SLA targets against measured values (measures now, does not record)."""
        p = self.get_product(product)
        at = resolve_now(now)
        report = self._measure(p, at)
        avail, avail_detail = self._availability(p, at)
        rows: list[tuple[str, str, float, float | None, str, str]] = [
            (
                "freshness_hours",
                "<=",
                p.sla.freshness_hours,
                report.freshness_hours,
                "h",
                f"last commit {report.freshness_hours or 0:.1f} h before the check",
            ),
            (
                "completeness_pct",
                ">=",
                p.sla.completeness_pct,
                report.completeness_pct,
                "%",
                "lowest table completeness (required columns)",
            ),
            ("availability_pct", ">=", p.sla.availability_pct, avail, "%", avail_detail),
        ]
        if p.sla.time_travel_days is not None:
            facts = self._retention_facts(p, at)
            kept = facts["retention_hours"][0]
            covered = facts["time_travel_covered"]
            rows.append(
                (
                    "time_travel_days",
                    ">=",
                    p.sla.time_travel_days,
                    None if kept is None else (kept / 24.0 if covered[0] else 0.0),
                    "d",
                    covered[1],
                )
            )
        out = []
        for name, op, target, measured, unit, evidence in rows:
            status = (
                "N/A" if measured is None else ("PASS" if OPS[op](measured, target) else "FAIL")
            )
            out.append((p.name, name, op, target, measured, unit, status, evidence))
        return pd.DataFrame(
            out,
            columns=["product", "sla", "op", "target", "measured", "unit", "status", "evidence"],
        )


def quality_facts(p: Product, report: QualityReport) -> dict[str, tuple[float | None, str]]:
    """The metrics of a quality report a rule can name (completeness ... row_count), with evidence."""
    facts: dict[str, tuple[float | None, str]] = {}

    def worst_table(attr: str, fn: Callable[..., Any]) -> str:
        tabs = [t for t in report.tables if getattr(t, attr) is not None]
        if not tabs:
            return "not measurable"
        t = fn(tabs, key=lambda x: getattr(x, attr))
        return f"{t.table} at Delta version {t.delta_version}"

    facts["completeness"] = (
        report.completeness_pct,
        "lowest: " + worst_table("completeness_pct", min),
    )
    col_values = [
        (t.table, c, v)
        for t in report.tables
        for c, v in t.column_completeness.items()
        if v is not None
        and c.lower() not in {x.lower() for x in p.optional_columns.get(t.table, ())}
    ]
    if col_values:
        tab, col, val = min(col_values, key=lambda x: x[2])
        facts["min_column_completeness"] = (val, f"lowest column: {tab}.{col}")
    else:
        facts["min_column_completeness"] = (None, "no rows")
    facts["uniqueness"] = (
        report.uniqueness_pct,
        "no keys declared"
        if report.uniqueness_pct is None
        else "lowest: " + worst_table("uniqueness_pct", min),
    )
    val_rules = [
        (t.table, n, v) for t in report.tables for n, v in t.validity.items() if v is not None
    ]
    if val_rules:
        tab, rule, val = min(val_rules, key=lambda x: x[2])
        facts["validity"] = (val, f"lowest rule: {rule} on {tab}")
    else:
        facts["validity"] = (None, "no validity rules declared")
    stalest = max(report.tables, key=lambda t: t.freshness_hours) if report.tables else None
    facts["freshness_hours"] = (
        report.freshness_hours,
        f"stalest: {stalest.table}, last commit {iso(stalest.last_commit)}"
        if stalest
        else "no tables",
    )
    facts["row_count"] = (
        None if report.row_count is None else float(report.row_count),
        "smallest: " + worst_table("row_count", min),
    )
    return facts
