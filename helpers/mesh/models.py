"""The mesh's value types: frozen dataclasses read from the mesh tables (``from_row``) or computed by a
measurement or a policy check."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from helpers.exceptions import InvalidArgumentError
from helpers.mesh.common import as_list, iso, parse_iso, parse_iso_required


@dataclass(frozen=True)
class SLA:
    """What a product promises its consumers.

    :param freshness_hours: the newest commit of every output table is at most this old.
    :param completeness_pct: every output table is at least this complete (non-null share of required cells).
    :param availability_pct: at least this share of the server's requests for the product are answered
        without a server error (5xx), over the last ``availability_window_days`` of the audit log.
    :param availability_window_days: the window availability is measured over.
    :param time_travel_days: how far back consumers may read the product's history (time travel, change
        data feed); None promises none. The ``retention`` metric checks the tables keep that long.
    """

    freshness_hours: float = 24.0
    completeness_pct: float = 95.0
    availability_pct: float = 99.0
    availability_window_days: float = 30.0
    time_travel_days: float | None = None

    def __post_init__(self) -> None:
        if not self.freshness_hours > 0:
            raise InvalidArgumentError(
                f"SLA freshness_hours must be > 0, got {self.freshness_hours}"
            )
        for name in ("completeness_pct", "availability_pct"):
            value = getattr(self, name)
            if not 0 <= value <= 100:
                raise InvalidArgumentError(f"SLA {name} must be between 0 and 100, got {value}")
        if not self.availability_window_days > 0:
            raise InvalidArgumentError(
                f"SLA availability_window_days must be > 0, got {self.availability_window_days}"
            )
        if self.time_travel_days is not None and not self.time_travel_days >= 0:
            raise InvalidArgumentError(
                f"SLA time_travel_days must be >= 0 (or None), got {self.time_travel_days}"
            )

    @classmethod
    def from_value(cls, value: SLA | Mapping[str, Any] | None) -> SLA:
        if value is None:
            return cls()
        if isinstance(value, SLA):
            return value
        fields_ = set(cls.__dataclass_fields__)
        unknown = set(value) - fields_
        if unknown:
            raise InvalidArgumentError(
                f"unknown SLA field(s) {sorted(unknown)}; use {', '.join(sorted(fields_))}"
            )
        try:
            nums = {k: float(v) for k, v in value.items() if k != "time_travel_days"}
            travel = value.get("time_travel_days")
            return cls(**nums, time_travel_days=None if travel is None else float(travel))
        except (TypeError, ValueError) as exc:
            raise InvalidArgumentError(f"SLA values must be numbers: {exc}") from None

    def to_dict(self) -> dict[str, float | None]:
        return {
            "freshness_hours": self.freshness_hours,
            "completeness_pct": self.completeness_pct,
            "availability_pct": self.availability_pct,
            "availability_window_days": self.availability_window_days,
            "time_travel_days": self.time_travel_days,
        }


@dataclass(frozen=True)
class AccessPolicy:
    """Who may subscribe to a published version.

    Empty ``allowed_domains`` and ``required_properties`` mean open to every recipient.

    :param allowed_domains: consumer domains that may subscribe (case-insensitive).
    :param required_properties: recipient properties that must all match (``{"region": "eu"}``).
    """

    allowed_domains: tuple[str, ...] = ()
    required_properties: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_value(cls, value: AccessPolicy | Mapping[str, Any] | None) -> AccessPolicy:
        if value is None:
            return cls()
        if isinstance(value, AccessPolicy):
            return value
        unknown = set(value) - {"allowed_domains", "required_properties"}
        if unknown:
            raise InvalidArgumentError(
                f"unknown access policy field(s) {sorted(unknown)}; use allowed_domains, "
                "required_properties"
            )
        domains = value.get("allowed_domains") or ()
        if isinstance(domains, str):
            domains = (domains,)
        props = {str(k): str(v) for k, v in dict(value.get("required_properties") or {}).items()}
        return cls(tuple(str(d) for d in domains), props)

    def to_dict(self) -> dict[str, Any]:
        return {
            "allowed_domains": list(self.allowed_domains),
            "required_properties": dict(self.required_properties),
        }

    def describe(self) -> str:
        parts = []
        if self.allowed_domains:
            parts.append("consumer domain in " + ", ".join(self.allowed_domains))
        if self.required_properties:
            parts.append(
                "recipient properties "
                + ", ".join(f"{k}={v}" for k, v in self.required_properties.items())
            )
        return " and ".join(parts) if parts else "open to every recipient"

    def evaluate(self, domain: str | None, properties: Mapping[str, str]) -> tuple[bool, str]:
        """Whether a consumer of ``domain`` with recipient ``properties`` may subscribe, and why not."""
        if self.allowed_domains:
            allowed = {d.lower() for d in self.allowed_domains}
            if not domain:
                return False, (
                    f"the access policy allows consumer domains {list(self.allowed_domains)} only and the "
                    "recipient has no domain (pass consumer_domain=...)"
                )
            if domain.lower() not in allowed:
                return False, (
                    f"the access policy allows consumer domains {list(self.allowed_domains)} only, "
                    f"not {domain!r}"
                )
        props = {k.lower(): str(v) for k, v in properties.items()}
        for key, expected in self.required_properties.items():
            actual = props.get(key.lower())
            if actual is None or actual.lower() != str(expected).lower():
                return False, (
                    f"the access policy requires recipient property {key}={expected}, the recipient has "
                    f"{key}={actual if actual is not None else '(unset)'}"
                )
        return True, "allowed by " + self.describe()


@dataclass(frozen=True)
class Domain:
    """A business domain that owns data products."""

    name: str
    owner: str
    team: tuple[str, ...]
    description: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Domain:
        return cls(
            row["name"],
            row["owner"],
            tuple(json.loads(row["team"])),
            row["description"],
            parse_iso_required(row["created_at"]),
        )


@dataclass(frozen=True)
class Product:
    """A data product: a share of the catalog owned by a domain.

    :param output_tables: share aliases ``schema.table``; empty means every table of the share.
    :param keys: per output table, the columns that identify a row (for the uniqueness metric).
    :param optional_columns: per output table, columns that are null by design (left out of completeness).
    :param compatibility: the schema contract between versions: BACKWARD, FORWARD, FULL or NONE.
    """

    name: str
    domain: str
    share: str
    owner: str
    description: str
    tags: tuple[str, ...]
    tier: int
    sla: SLA
    output_tables: tuple[str, ...]
    keys: Mapping[str, tuple[str, ...]]
    optional_columns: Mapping[str, tuple[str, ...]]
    compatibility: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Product:
        return cls(
            name=row["name"],
            domain=row["domain"],
            share=row["share"],
            owner=row["owner"],
            description=row["description"],
            tags=tuple(json.loads(row["tags"])),
            tier=int(row["tier"]),
            sla=SLA(**json.loads(row["sla"])),
            output_tables=tuple(json.loads(row["output_tables"])),
            keys={k: tuple(v) for k, v in json.loads(row["keys"]).items()},
            optional_columns={k: tuple(v) for k, v in json.loads(row["optional_columns"]).items()},
            compatibility=row["compatibility"],
            created_at=parse_iso_required(row["created_at"]),
        )


@dataclass(frozen=True)
class ValidityRule:
    """A row-level rule of a product table, a DuckDB SQL boolean expression (SQL CHECK semantics:
    a row violates the rule when the expression is FALSE; NULL does not violate)."""

    product: str
    table: str
    name: str
    expression: str


@dataclass(frozen=True)
class TableQuality:
    """Quality of one output table measured on its Delta snapshot."""

    table: str
    location: str
    delta_version: int
    row_count: int
    column_completeness: Mapping[str, float | None]
    completeness_pct: float | None
    key_columns: tuple[str, ...]
    uniqueness_pct: float | None
    validity: Mapping[str, float | None]
    last_commit: datetime
    freshness_hours: float


@dataclass(frozen=True)
class QualityReport:
    """Quality of a product's output tables at ``measured_at`` (one run of :meth:`Mesh.measure`)."""

    product: str
    run_id: str
    measured_at: datetime
    tables: tuple[TableQuality, ...]

    def _worst(self, attr: str, fn: Callable[[Iterable[float]], float]) -> float | None:
        values = [getattr(t, attr) for t in self.tables if getattr(t, attr) is not None]
        return fn(values) if values else None

    @property
    def completeness_pct(self) -> float | None:
        """The lowest table completeness."""
        return self._worst("completeness_pct", min)

    @property
    def uniqueness_pct(self) -> float | None:
        """The lowest key uniqueness (None when no keys are declared)."""
        return self._worst("uniqueness_pct", min)

    @property
    def validity_pct(self) -> float | None:
        """The lowest pass rate of any validity rule (None without rules)."""
        values = [v for t in self.tables for v in t.validity.values() if v is not None]
        return min(values) if values else None

    @property
    def freshness_hours(self) -> float | None:
        """Age of the stalest output table."""
        return self._worst("freshness_hours", max)

    @property
    def row_count(self) -> int | None:
        """The smallest output table's row count."""
        value = self._worst("row_count", min)
        return None if value is None else int(value)

    def to_frame(self) -> pd.DataFrame:
        """One row per (table, metric, column) measurement."""
        return pd.DataFrame(quality_rows(self), columns=QUALITY_COLUMNS)


QUALITY_COLUMNS = [
    "run_id",
    "product",
    "table",
    "metric",
    "column",
    "value",
    "delta_version",
    "measured_at",
]


def quality_rows(report: QualityReport) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    at = iso(report.measured_at)

    def add(t: TableQuality, metric: str, column: str, value: float | None) -> None:
        rows.append(
            (report.run_id, report.product, t.table, metric, column, value, t.delta_version, at)
        )

    for t in report.tables:
        add(t, "row_count", "", float(t.row_count))
        add(t, "completeness", "", t.completeness_pct)
        for col, pct in t.column_completeness.items():
            add(t, "column_completeness", col, pct)
        if t.key_columns:
            add(t, "uniqueness", ",".join(t.key_columns), t.uniqueness_pct)
        for rule, pct in t.validity.items():
            add(t, "validity", rule, pct)
        add(t, "freshness_hours", "", t.freshness_hours)
    return rows


@dataclass(frozen=True)
class Policy:
    """A governance rule ``<metric> <op> <threshold>`` applied to products.

    :param applies_to: filter on products: ``{"tier": [1]}``, ``{"domains": [...]}``, ``{"tags": [...]}``;
        empty means every product.
    :param enforcement: ``mandatory`` (blocks publishing, refuses subscriptions) or ``advisory`` (warns).
    """

    name: str
    rule: str
    enforcement: str
    applies_to: Mapping[str, Any]
    description: str

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Policy:
        return cls(
            row["name"],
            row["rule"],
            row["enforcement"],
            json.loads(row["applies_to"]),
            row["description"],
        )

    def applies(self, product: Product) -> bool:
        scope = self.applies_to
        if "tier" in scope and product.tier not in {int(t) for t in as_list(scope["tier"])}:
            return False
        if "domains" in scope and product.domain.lower() not in {
            d.lower() for d in as_list(scope["domains"])
        }:
            return False
        if "tags" in scope and not {t.lower() for t in as_list(scope["tags"])} & {
            t.lower() for t in product.tags
        }:
            return False
        return True

    def scope_text(self) -> str:
        if not self.applies_to:
            return "every product"
        return ", ".join(f"{k} in {as_list(v)}" for k, v in self.applies_to.items())


@dataclass(frozen=True)
class PolicyResult:
    """The verdict of one policy on one product: PASS, FAIL or N/A (metric not measurable)."""

    policy: str
    enforcement: str
    status: str
    metric: str
    op: str
    threshold: float
    measured: float | None
    evidence: str


@dataclass(frozen=True)
class ComplianceReport:
    """All applicable policies evaluated on one product."""

    product: str
    checked_at: datetime
    results: tuple[PolicyResult, ...]

    @property
    def failures(self) -> tuple[PolicyResult, ...]:
        """Failed mandatory policies (they block publishing)."""
        return tuple(r for r in self.results if r.status == "FAIL" and r.enforcement == "mandatory")

    @property
    def warnings(self) -> tuple[PolicyResult, ...]:
        """Failed advisory policies."""
        return tuple(r for r in self.results if r.status == "FAIL" and r.enforcement == "advisory")

    @property
    def passed(self) -> bool:
        """True when no mandatory policy failed."""
        return not self.failures

    @property
    def status(self) -> str:
        return "PASS" if self.passed else "FAIL"

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                (
                    self.product,
                    r.policy,
                    r.enforcement,
                    r.status,
                    r.metric,
                    r.op,
                    r.threshold,
                    r.measured,
                    r.evidence,
                )
                for r in self.results
            ],
            columns=[
                "product",
                "policy",
                "enforcement",
                "status",
                "metric",
                "op",
                "threshold",
                "measured",
                "evidence",
            ],
        )


@dataclass(frozen=True)
class ProductVersion:
    """A published version: Delta schema and version of every output table, and the access policy."""

    product: str
    version: str
    published_at: datetime
    schemas: Mapping[str, Mapping[str, Any]]
    table_versions: Mapping[str, int]
    access_policy: AccessPolicy
    compliance: tuple[Mapping[str, Any], ...]
    warnings: tuple[str, ...]
    changes: Mapping[str, list[Mapping[str, Any]]]

    @property
    def major(self) -> int:
        return parse_version(self.version)[0]

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> ProductVersion:
        return cls(
            product=row["product"],
            version=row["version"],
            published_at=parse_iso_required(row["published_at"]),
            schemas=json.loads(row["schemas"]),
            table_versions=json.loads(row["table_versions"]),
            access_policy=AccessPolicy.from_value(json.loads(row["access_policy"])),
            compliance=tuple(json.loads(row["compliance"])),
            warnings=tuple(json.loads(row["warnings"])),
            changes=json.loads(row["changes"]),
        )

    def columns(self, table: str) -> list[str]:
        """Column names of an output table in this version's schema."""
        return [f["name"] for f in self.schemas[table]["fields"]]


@dataclass(frozen=True)
class Subscription:
    """A consumer's subscription to a product (its grant lives in the catalog)."""

    product: str
    recipient: str
    consumer_domain: str | None
    version: str
    status: str
    subscribed_at: datetime
    ended_at: datetime | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Subscription:
        return cls(
            row["product"],
            row["recipient"],
            row["consumer_domain"],
            row["version"],
            row["status"],
            parse_iso_required(row["subscribed_at"]),
            parse_iso(row["ended_at"]),
        )


@dataclass(frozen=True)
class SearchHit:
    """A product found by :meth:`Mesh.search` and where the text matched."""

    product: Product
    matches: tuple[str, ...]


_VERSION_RE = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?$")


def parse_version(version: str) -> tuple[int, int, int]:
    m = _VERSION_RE.match(str(version).strip())
    if not m:
        raise InvalidArgumentError(
            f"invalid version {version!r}: use semantic versions MAJOR.MINOR.PATCH such as '1.0.0'"
        )
    return int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0)


def version_text(v: tuple[int, int, int]) -> str:
    return f"{v[0]}.{v[1]}.{v[2]}"
