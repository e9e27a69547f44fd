"""The data mesh made real on top of the share catalog, the Delta tables and the server's audit log.

Seeds 001 and 002 describe a data mesh (domains own data products with SLAs, consumers subscribe, federated
governance checks policies, schemas evolve under compatibility rules, lineage shows impact) but fake the hard
parts: compliance always passes, access policies are stored and never enforced, the access log is never
written. Here each part is computed from real state:

- a **data product** is a share of the catalog owned by a **domain**; its output tables are the share's tables;
- **publishing** a version records every output table's Delta schema and version plus an access policy, after
  the mandatory governance policies passed and the schema contract held;
- **subscribing** creates the recipient and the grant in the catalog, or is refused with the policy's reason
  and leaves nothing behind;
- **quality** is measured on the Delta tables with DuckDB (row count, completeness, key uniqueness, validity
  rules as SQL expressions, freshness from the Delta commit timestamps) and kept with history;
- **policies** are rules such as ``completeness >= 95%`` evaluated against those measurements, with evidence;
- **lineage** links source tables, derived tables, shares, products and recipients, and **usage** comes from
  the sharing server's audit log.

Mesh state lives in the catalog's SQLite file, in tables prefixed ``mesh_``. See ``docs/mesh.md``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import re
import sqlite3
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from helpers.exceptions import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotADeltaTableError,
    NotFoundError,
    PolicyViolationError,
    SchemaCompatibilityError,
    SharelabError,
)

if TYPE_CHECKING:  # the catalog imports heavy modules; the mesh only needs its methods
    from helpers.catalog import Catalog

__all__ = [
    "SLA",
    "AccessPolicy",
    "CompatibilityResult",
    "ComplianceReport",
    "DEFAULT_POLICIES",
    "Domain",
    "Impact",
    "LineageGraph",
    "Mesh",
    "MeshPolicyWarning",
    "Policy",
    "PolicyResult",
    "Product",
    "ProductVersion",
    "QualityReport",
    "SchemaChange",
    "Subscription",
    "TableQuality",
    "ValidityRule",
    "compare_schemas",
]

COMPATIBILITY_MODES = ("BACKWARD", "FORWARD", "FULL", "NONE")
ENFORCEMENTS = ("mandatory", "advisory")
#: Recipient property that marks a recipient outside the organisation (``external=true``).
EXTERNAL_PROPERTY = "external"
#: Recipient property holding the consumer's domain (set by :meth:`Mesh.subscribe`).
DOMAIN_PROPERTY = "domain"
#: Column tag that the default privacy policy looks for.
PII_TAG = "pii"
#: Audit actions that count as a recipient reading a table (the server's names, lower case): a snapshot
#: query or a change-data-feed query; file downloads are parts of those reads, not reads of their own.
READ_ACTIONS = ("querytable", "querytablechanges")


class MeshPolicyWarning(UserWarning):
    """An advisory governance policy failed: publishing goes on, the warning names the evidence."""


# --------------------------------------------------------------------------------------------------
# storage: own tables in the catalog's SQLite file
# --------------------------------------------------------------------------------------------------

_DDL = (
    """CREATE TABLE IF NOT EXISTS mesh_domains (
        name TEXT PRIMARY KEY COLLATE NOCASE, owner TEXT NOT NULL, team TEXT NOT NULL,
        description TEXT NOT NULL, created_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS mesh_products (
        name TEXT PRIMARY KEY COLLATE NOCASE, domain TEXT NOT NULL COLLATE NOCASE,
        share TEXT NOT NULL UNIQUE COLLATE NOCASE, owner TEXT NOT NULL, description TEXT NOT NULL,
        tags TEXT NOT NULL, tier INTEGER NOT NULL, sla TEXT NOT NULL, output_tables TEXT NOT NULL,
        keys TEXT NOT NULL, optional_columns TEXT NOT NULL, compatibility TEXT NOT NULL,
        created_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS mesh_rules (
        product TEXT NOT NULL COLLATE NOCASE, table_alias TEXT NOT NULL COLLATE NOCASE,
        name TEXT NOT NULL COLLATE NOCASE, expression TEXT NOT NULL, created_at TEXT NOT NULL,
        PRIMARY KEY (product, table_alias, name))""",
    """CREATE TABLE IF NOT EXISTS mesh_versions (
        product TEXT NOT NULL COLLATE NOCASE, version TEXT NOT NULL, major INTEGER NOT NULL,
        minor INTEGER NOT NULL, patch INTEGER NOT NULL, published_at TEXT NOT NULL,
        schemas TEXT NOT NULL, table_versions TEXT NOT NULL, access_policy TEXT NOT NULL,
        compliance TEXT NOT NULL, warnings TEXT NOT NULL, changes TEXT NOT NULL,
        PRIMARY KEY (product, version))""",
    """CREATE TABLE IF NOT EXISTS mesh_subscriptions (
        product TEXT NOT NULL COLLATE NOCASE, recipient TEXT NOT NULL COLLATE NOCASE,
        consumer_domain TEXT, version TEXT NOT NULL, status TEXT NOT NULL,
        subscribed_at TEXT NOT NULL, ended_at TEXT, created_recipient INTEGER NOT NULL,
        PRIMARY KEY (product, recipient))""",
    """CREATE TABLE IF NOT EXISTS mesh_quality (
        run_id TEXT NOT NULL, product TEXT NOT NULL COLLATE NOCASE, table_alias TEXT NOT NULL,
        metric TEXT NOT NULL, column_name TEXT NOT NULL, value REAL, delta_version INTEGER,
        measured_at TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS mesh_quality_product ON mesh_quality (product, measured_at)",
    """CREATE TABLE IF NOT EXISTS mesh_policies (
        name TEXT PRIMARY KEY COLLATE NOCASE, rule TEXT NOT NULL, enforcement TEXT NOT NULL,
        applies_to TEXT NOT NULL, description TEXT NOT NULL, created_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS mesh_column_tags (
        location TEXT NOT NULL, table_name TEXT NOT NULL COLLATE NOCASE,
        column_name TEXT NOT NULL COLLATE NOCASE, tag TEXT NOT NULL COLLATE NOCASE,
        created_at TEXT NOT NULL, PRIMARY KEY (location, column_name, tag))""",
    """CREATE TABLE IF NOT EXISTS mesh_lineage (
        source TEXT NOT NULL COLLATE NOCASE, target TEXT NOT NULL COLLATE NOCASE,
        transformation TEXT NOT NULL, created_at TEXT NOT NULL, PRIMARY KEY (source, target))""",
    """CREATE TABLE IF NOT EXISTS mesh_events (
        event_time TEXT NOT NULL, kind TEXT NOT NULL, product TEXT, subject TEXT, detail TEXT NOT NULL)""",
)


class _Store:
    """Short-lived SQLite connections to the catalog file; writes in ``BEGIN IMMEDIATE`` with retries.

    The catalog, the server's threads and a notebook use the same file at once, hence WAL, a busy timeout
    and one connection per call.
    """

    RETRIES = 8

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.write(lambda con: [con.execute(stmt) for stmt in _DDL])

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA busy_timeout = 30000")
        if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            con.execute("PRAGMA journal_mode = WAL")
        return con

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        con = self._connect()
        try:
            return con.execute(sql, params).fetchall()
        finally:
            con.close()

    def write(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        delay = 0.05
        for attempt in range(self.RETRIES):
            con = self._connect()
            try:
                con.execute("BEGIN IMMEDIATE")
                result = fn(con)
                con.execute("COMMIT")
                return result
            except sqlite3.OperationalError as exc:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                busy = "locked" in str(exc) or "busy" in str(exc)
                if not busy or attempt == self.RETRIES - 1:
                    raise
                time.sleep(delay)
                delay *= 2
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
            finally:
                con.close()
        raise AssertionError("unreachable")  # pragma: no cover


# --------------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------------


def _now(now: datetime | None = None) -> datetime:
    """``now`` as an aware UTC datetime (naive values are read as UTC); the real clock when None."""
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        return now.replace(tzinfo=UTC)
    return now.astimezone(UTC)


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]{0,127}$")


def _check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidArgumentError(
            f"invalid {kind} name {name!r}: use 1-128 letters, digits, '_' or '-' (no spaces or dots)"
        )
    return name


def _norm_location(location: str) -> str:
    """A comparable form of a table location (``file://`` URLs and relative paths resolved)."""
    text = str(location)
    if text.startswith("file://"):
        text = text[len("file://") :]
    if "://" in text:
        return text.rstrip("/")
    return str(Path(text).expanduser().resolve())


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if unit == "bool":
        return "true" if value else "false"
    if isinstance(value, float) and not value.is_integer():
        text = f"{value:.2f}"
    else:
        text = f"{int(value)}"
    return f"{text}{'%' if unit == '%' else (' h' if unit == 'h' else '')}"


def _open_delta(location: str):  # -> deltalake.DeltaTable
    from deltalake import DeltaTable

    try:
        return DeltaTable(location)
    except Exception as exc:  # deltalake raises TableNotFoundError / OSError flavours
        raise NotADeltaTableError(
            f"no Delta table at {location} ({exc.__class__.__name__}); regenerate the dataset or fix the "
            "share's table location"
        ) from exc


def _delta_schema(dt: Any) -> dict[str, Any]:
    return json.loads(dt.schema().to_json())


def _last_commit(dt: Any) -> datetime:
    entry = dt.history(1)[0]
    return datetime.fromtimestamp(int(entry["timestamp"]) / 1000.0, tz=UTC)


# --------------------------------------------------------------------------------------------------
# public value types
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SLA:
    """What a product promises its consumers.

    :param freshness_hours: the newest commit of every output table is at most this old.
    :param completeness_pct: every output table is at least this complete (non-null share of required cells).
    :param availability_pct: at least this share of the server's requests for the product succeed (audit log).
    """

    freshness_hours: float = 24.0
    completeness_pct: float = 95.0
    availability_pct: float = 99.0

    def __post_init__(self) -> None:
        if not self.freshness_hours > 0:
            raise InvalidArgumentError(
                f"SLA freshness_hours must be > 0, got {self.freshness_hours}"
            )
        for name in ("completeness_pct", "availability_pct"):
            value = getattr(self, name)
            if not 0 <= value <= 100:
                raise InvalidArgumentError(f"SLA {name} must be between 0 and 100, got {value}")

    @classmethod
    def from_value(cls, value: SLA | Mapping[str, Any] | None) -> SLA:
        if value is None:
            return cls()
        if isinstance(value, SLA):
            return value
        unknown = set(value) - {"freshness_hours", "completeness_pct", "availability_pct"}
        if unknown:
            raise InvalidArgumentError(
                f"unknown SLA field(s) {sorted(unknown)}; use freshness_hours, completeness_pct, "
                "availability_pct"
            )
        return cls(**{k: float(v) for k, v in value.items()})

    def to_dict(self) -> dict[str, float]:
        return {
            "freshness_hours": self.freshness_hours,
            "completeness_pct": self.completeness_pct,
            "availability_pct": self.availability_pct,
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
            _parse_iso(row["created_at"]),  # type: ignore[arg-type]
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
            created_at=_parse_iso(row["created_at"]),  # type: ignore[arg-type]
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
        return pd.DataFrame(_quality_rows(self), columns=_QUALITY_COLUMNS)


_QUALITY_COLUMNS = [
    "run_id",
    "product",
    "table",
    "metric",
    "column",
    "value",
    "delta_version",
    "measured_at",
]


def _quality_rows(report: QualityReport) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    at = _iso(report.measured_at)

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
        if "tier" in scope and product.tier not in {int(t) for t in _as_list(scope["tier"])}:
            return False
        if "domains" in scope and product.domain.lower() not in {
            d.lower() for d in _as_list(scope["domains"])
        }:
            return False
        if "tags" in scope and not {t.lower() for t in _as_list(scope["tags"])} & {
            t.lower() for t in product.tags
        }:
            return False
        return True

    def scope_text(self) -> str:
        if not self.applies_to:
            return "every product"
        return ", ".join(f"{k} in {_as_list(v)}" for k, v in self.applies_to.items())


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, list | tuple | set):
        return list(value)
    return [value]


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
        return _parse_version(self.version)[0]

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> ProductVersion:
        return cls(
            product=row["product"],
            version=row["version"],
            published_at=_parse_iso(row["published_at"]),  # type: ignore[arg-type]
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
            _parse_iso(row["subscribed_at"]),  # type: ignore[arg-type]
            _parse_iso(row["ended_at"]),
        )


@dataclass(frozen=True)
class SearchHit:
    """A product found by :meth:`Mesh.search` and where the text matched."""

    product: Product
    matches: tuple[str, ...]


# --------------------------------------------------------------------------------------------------
# schema contracts
# --------------------------------------------------------------------------------------------------

_INT_RANK = {"byte": 0, "short": 1, "integer": 2, "long": 3}
_INT_DIGITS = {"byte": 3, "short": 5, "integer": 10, "long": 20}
_DECIMAL_RE = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")


def _widens(old: str, new: str) -> bool:
    """Whether every value of Delta primitive type ``old`` is representable in ``new`` (type widening)."""
    if old == new:
        return True
    if old in _INT_RANK and new in _INT_RANK:
        return _INT_RANK[old] < _INT_RANK[new]
    if old == "float" and new == "double":
        return True
    if old in ("byte", "short", "integer") and new == "double":
        return True  # Delta type widening allows these (a long does not fit a double's mantissa)
    if old == "date" and new in ("timestamp_ntz", "timestamp"):
        return True
    new_dec = _DECIMAL_RE.match(new)
    if new_dec:
        p2, s2 = int(new_dec.group(1)), int(new_dec.group(2))
        old_dec = _DECIMAL_RE.match(old)
        if old_dec:
            p1, s1 = int(old_dec.group(1)), int(old_dec.group(2))
            return s2 >= s1 and (p2 - s2) >= (p1 - s1)
        if old in _INT_DIGITS:
            return p2 - s2 >= _INT_DIGITS[old]
    return False


def _type_text(t: Any) -> str:
    if isinstance(t, str):
        return t
    kind = t.get("type")
    if kind == "array":
        return f"array<{_type_text(t['elementType'])}>"
    if kind == "map":
        return f"map<{_type_text(t['keyType'])},{_type_text(t['valueType'])}>"
    if kind == "struct":
        return (
            "struct<" + ",".join(f"{f['name']}:{_type_text(f['type'])}" for f in t["fields"]) + ">"
        )
    return json.dumps(t)


@dataclass(frozen=True)
class SchemaChange:
    """One difference between a published schema and the current one.

    ``backward``: a reader with the new schema can read data written with the old one.
    ``forward``: a reader with the old schema (an existing consumer) can read data written with the new one.
    """

    path: str
    kind: str
    old: str | None
    new: str | None
    backward: bool
    forward: bool

    def describe(self) -> str:
        verdict = _level(self.backward, self.forward)
        return f"{self.kind} {self.path} ({self.old or '-'} -> {self.new or '-'}): {verdict}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "old": self.old,
            "new": self.new,
            "backward": self.backward,
            "forward": self.forward,
        }


def _level(backward: bool, forward: bool) -> str:
    if backward and forward:
        return "FULL"
    if backward:
        return "BACKWARD"
    if forward:
        return "FORWARD"
    return "NONE"


@dataclass(frozen=True)
class CompatibilityResult:
    """Compatibility of a table's current schema with its published schema.

    ``level`` is the strongest class that holds: FULL (both directions), BACKWARD, FORWARD or NONE.
    """

    table: str
    changes: tuple[SchemaChange, ...]

    @property
    def backward(self) -> bool:
        return all(c.backward for c in self.changes)

    @property
    def forward(self) -> bool:
        return all(c.forward for c in self.changes)

    @property
    def full(self) -> bool:
        return self.backward and self.forward

    @property
    def level(self) -> str:
        return _level(self.backward, self.forward)

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def compatible(self, mode: str) -> bool:
        """Whether the change satisfies the contract ``mode`` (BACKWARD, FORWARD, FULL, NONE)."""
        mode = mode.upper()
        if mode == "NONE":
            return True
        if mode == "BACKWARD":
            return self.backward
        if mode == "FORWARD":
            return self.forward
        if mode == "FULL":
            return self.full
        raise InvalidArgumentError(
            f"unknown compatibility mode {mode!r}; use {COMPATIBILITY_MODES}"
        )

    def breaking(self, mode: str = "FULL") -> tuple[SchemaChange, ...]:
        """The changes that violate ``mode``."""
        mode = mode.upper()
        return tuple(
            c
            for c in self.changes
            if (mode in ("BACKWARD", "FULL") and not c.backward)
            or (mode in ("FORWARD", "FULL") and not c.forward)
        )

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [dict(table=self.table, **c.to_dict()) for c in self.changes],
            columns=["table", "path", "kind", "old", "new", "backward", "forward"],
        )


def _compare_type(path: str, old: Any, new: Any, out: list[SchemaChange]) -> None:
    if old == new:
        return
    if isinstance(old, dict) and isinstance(new, dict) and old.get("type") == new.get("type"):
        kind = old["type"]
        if kind == "struct":
            _compare_fields(path + ".", old["fields"], new["fields"], out)
            return
        if kind == "array":
            _compare_type(path + "[]", old["elementType"], new["elementType"], out)
            _compare_nullability(path + "[]", old["containsNull"], new["containsNull"], out)
            return
        if kind == "map":
            _compare_type(path + "{key}", old["keyType"], new["keyType"], out)
            _compare_type(path + "{value}", old["valueType"], new["valueType"], out)
            _compare_nullability(
                path + "{value}", old["valueContainsNull"], new["valueContainsNull"], out
            )
            return
    old_t, new_t = _type_text(old), _type_text(new)
    if isinstance(old, str) and isinstance(new, str) and _widens(old, new):
        out.append(SchemaChange(path, "widen_type", old_t, new_t, backward=True, forward=False))
    elif isinstance(old, str) and isinstance(new, str) and _widens(new, old):
        out.append(SchemaChange(path, "narrow_type", old_t, new_t, backward=False, forward=True))
    else:
        out.append(SchemaChange(path, "change_type", old_t, new_t, backward=False, forward=False))


def _compare_nullability(path: str, old: bool, new: bool, out: list[SchemaChange]) -> None:
    if old == new:
        return
    if old and not new:  # new readers refuse the nulls old data may hold
        out.append(SchemaChange(path, "make_required", "nullable", "not null", False, True))
    else:  # old readers do not expect nulls
        out.append(SchemaChange(path, "make_nullable", "not null", "nullable", True, False))


def _compare_fields(
    prefix: str, old_fields: list[dict], new_fields: list[dict], out: list[SchemaChange]
) -> None:
    old_by = {f["name"].lower(): f for f in old_fields}
    new_by = {f["name"].lower(): f for f in new_fields}
    for key, f in old_by.items():
        if key not in new_by:
            # Delta columns have no defaults: an existing consumer's query naming the column fails, so a
            # drop is never forward compatible; a new reader simply ignores the old column (backward).
            out.append(
                SchemaChange(
                    prefix + f["name"], "drop_column", _type_text(f["type"]), None, True, False
                )
            )
    for key, f in new_by.items():
        if key not in old_by:
            nullable = bool(f.get("nullable", True))
            out.append(
                SchemaChange(
                    prefix + f["name"],
                    "add_column" if nullable else "add_required_column",
                    None,
                    _type_text(f["type"]) + ("" if nullable else " not null"),
                    backward=nullable,  # old rows read as null only if the column may be null
                    forward=True,  # an old reader ignores a column it does not know
                )
            )
            continue
        o = old_by[key]
        _compare_type(prefix + f["name"], o["type"], f["type"], out)
        _compare_nullability(
            prefix + f["name"], bool(o.get("nullable", True)), bool(f.get("nullable", True)), out
        )


def compare_schemas(
    old: Mapping[str, Any] | Any, new: Mapping[str, Any] | Any, table: str = ""
) -> CompatibilityResult:
    """Compare two Delta schemas (JSON dicts as in the Delta log, ``deltalake.Schema`` or pyarrow schemas).

    Classes as schema registries define them: BACKWARD = readers of the new schema read old data; FORWARD =
    readers of the old schema read new data; FULL = both. An added nullable column is FULL; an added
    NOT NULL column is FORWARD only; a dropped column and a widened type are BACKWARD only; a narrowed type
    is FORWARD only; an unrelated type change is NONE.
    """
    old_s, new_s = _schema_dict(old), _schema_dict(new)
    changes: list[SchemaChange] = []
    _compare_fields("", old_s["fields"], new_s["fields"], changes)
    return CompatibilityResult(table, tuple(changes))


def _schema_dict(schema: Any) -> dict[str, Any]:
    if isinstance(schema, Mapping):
        return dict(schema)
    if hasattr(schema, "to_json"):
        return json.loads(schema.to_json())
    try:  # a pyarrow schema
        from deltalake import Schema

        return json.loads(Schema.from_arrow(schema).to_json())
    except Exception as exc:
        raise InvalidArgumentError(
            f"cannot read a schema from {type(schema).__name__}; pass a Delta JSON schema dict, a "
            "deltalake.Schema or a pyarrow.Schema"
        ) from exc


_VERSION_RE = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?$")


def _parse_version(version: str) -> tuple[int, int, int]:
    m = _VERSION_RE.match(str(version).strip())
    if not m:
        raise InvalidArgumentError(
            f"invalid version {version!r}: use semantic versions MAJOR.MINOR.PATCH such as '1.0.0'"
        )
    return int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0)


def _version_text(v: tuple[int, int, int]) -> str:
    return f"{v[0]}.{v[1]}.{v[2]}"


# --------------------------------------------------------------------------------------------------
# governance rules
# --------------------------------------------------------------------------------------------------

#: Metrics a policy rule can name: unit and meaning.
METRICS: dict[str, tuple[str, str]] = {
    "completeness": ("%", "lowest table completeness (non-null share of required cells)"),
    "min_column_completeness": ("%", "lowest completeness of any required column"),
    "uniqueness": ("%", "lowest key uniqueness (distinct keys / rows)"),
    "validity": ("%", "lowest pass rate of any validity rule"),
    "freshness_hours": ("h", "hours since the last commit of the stalest output table"),
    "row_count": ("rows", "rows of the smallest output table"),
    "availability": ("%", "share of the server's requests on the product's share that succeeded"),
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
_OPS: dict[str, Callable[[float, float], bool]] = {
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
        "documented",
        "documented == true",
        "mandatory",
        {},
        "Every product names an owner and has a description.",
    ),
)


# --------------------------------------------------------------------------------------------------
# lineage
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineageGraph:
    """Nodes ``kind:name`` (table, share, product, recipient) and directed edges ``(src, dst, kind, label)``."""

    nodes: Mapping[str, Mapping[str, Any]]
    edges: tuple[tuple[str, str, str, str], ...]

    def successors(self, node: str) -> list[str]:
        return [d for s, d, _, _ in self.edges if s == node]

    def predecessors(self, node: str) -> list[str]:
        return [s for s, d, _, _ in self.edges if d == node]

    def downstream(self, node: str) -> list[str]:
        """Every node reachable from ``node`` (breadth first)."""
        return self._walk(node, self.successors)

    def upstream(self, node: str) -> list[str]:
        """Every node ``node`` depends on."""
        return self._walk(node, self.predecessors)

    @staticmethod
    def _walk(node: str, step: Callable[[str], list[str]]) -> list[str]:
        seen: list[str] = []
        queue = [node]
        while queue:
            for nxt in step(queue.pop(0)):
                if nxt not in seen and nxt != node:
                    seen.append(nxt)
                    queue.append(nxt)
        return seen

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.edges), columns=["source", "target", "kind", "label"])

    def to_dot(self) -> str:
        """The graph in Graphviz DOT (paste into any Graphviz viewer)."""
        shapes = {"table": "box", "share": "folder", "product": "component", "recipient": "ellipse"}
        lines = ["digraph lineage {", "  rankdir=LR;"]
        for node, attrs in self.nodes.items():
            lines.append(f'  "{node}" [shape={shapes.get(attrs.get("kind"), "box")}];')
        for s, d, kind, label in self.edges:
            text = f"{kind}: {label}" if label else kind
            lines.append(f'  "{s}" -> "{d}" [label="{text}"];')
        lines.append("}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Impact:
    """What a change to ``table`` would affect."""

    table: str
    derived_tables: tuple[str, ...]
    shares: tuple[str, ...]
    products: tuple[str, ...]
    recipients: tuple[str, ...]
    usage: pd.DataFrame

    def summary(self) -> str:
        readers = sorted(set(self.usage["recipient"])) if len(self.usage) else []
        return (
            f"A change to {self.table} affects {len(self.derived_tables)} derived table(s) "
            f"{list(self.derived_tables)}, {len(self.shares)} share(s) {list(self.shares)}, "
            f"{len(self.products)} product(s) {list(self.products)} and {len(self.recipients)} "
            f"recipient(s) {list(self.recipients)}; recipients who actually read it: {readers}"
        )


# --------------------------------------------------------------------------------------------------
# the mesh
# --------------------------------------------------------------------------------------------------


def _sql_expression(expression: str) -> str:
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


class Mesh:
    """The data mesh of one lab home.

    :param home: the lab home (``None``: ``$SHARELAB_HOME``, else ``~/.sharelab``).
    :param catalog: an open :class:`~helpers.catalog.Catalog` to use instead of opening the home's.
    """

    def __init__(
        self, home: str | os.PathLike[str] | None = None, *, catalog: Catalog | None = None
    ):
        from helpers.home import LabHome

        if catalog is None:
            self.home: LabHome | None = LabHome.resolve(home)
            self.catalog = self.home.open_catalog()
            path = self.home.catalog_path
        else:
            self.catalog = catalog
            self.home = LabHome.resolve(home) if home is not None else None
            path = Path(getattr(catalog, "path", None) or self.home.catalog_path)  # type: ignore[union-attr]
        self._store = _Store(Path(path))

    # ---------------------------------------------------------------------------------- events
    def _event(
        self,
        con: sqlite3.Connection,
        kind: str,
        product: str | None,
        subject: str | None,
        detail: str,
        now: datetime | None = None,
    ) -> None:
        con.execute(
            "INSERT INTO mesh_events VALUES (?,?,?,?,?)",
            (_iso(_now(now)), kind, product, subject, detail),
        )

    def events(self, product: str | None = None) -> pd.DataFrame:
        """The mesh's own log: publications, subscriptions, refusals, policy changes."""
        sql = "SELECT * FROM mesh_events"
        params: tuple[Any, ...] = ()
        if product:
            sql += " WHERE product = ? COLLATE NOCASE"
            params = (product,)
        rows = self._store.read(sql + " ORDER BY rowid", params)
        return pd.DataFrame(
            [tuple(r) for r in rows], columns=["event_time", "kind", "product", "subject", "detail"]
        )

    # ---------------------------------------------------------------------------------- domains
    def register_domain(
        self,
        name: str,
        owner: str,
        *,
        team: Iterable[str] = (),
        description: str = "",
        if_not_exists: bool = False,
    ) -> Domain:
        """Register a domain that owns data products.

        :raises AlreadyExistsError: when it exists and ``if_not_exists`` is False.
        """
        _check_name("domain", name)
        if not owner or not str(owner).strip():
            raise InvalidArgumentError(f"domain {name!r} needs an owner (a team or person)")
        team_list = [str(t) for t in team]

        def tx(con: sqlite3.Connection) -> None:
            if con.execute("SELECT 1 FROM mesh_domains WHERE name = ?", (name,)).fetchone():
                if if_not_exists:
                    return
                raise AlreadyExistsError(
                    f"domain {name!r} already exists; use if_not_exists=True to keep it"
                )
            con.execute(
                "INSERT INTO mesh_domains VALUES (?,?,?,?,?)",
                (name, owner, json.dumps(team_list), description, _iso(_now())),
            )
            self._event(con, "domain_registered", None, name, f"owner {owner}")

        self._store.write(tx)
        return self.get_domain(name)

    def get_domain(self, name: str) -> Domain:
        rows = self._store.read("SELECT * FROM mesh_domains WHERE name = ?", (name,))
        if not rows:
            known = [d.name for d in self.list_domains()]
            raise NotFoundError(f"unknown domain {name!r}; register it first (known: {known})")
        return Domain.from_row(rows[0])

    def list_domains(self) -> list[Domain]:
        return [
            Domain.from_row(r) for r in self._store.read("SELECT * FROM mesh_domains ORDER BY name")
        ]

    def domains_frame(self) -> pd.DataFrame:
        """Domains with their product counts."""
        products = self.list_products()
        rows = [
            (
                d.name,
                d.owner,
                ", ".join(d.team),
                d.description,
                sum(p.domain.lower() == d.name.lower() for p in products),
            )
            for d in self.list_domains()
        ]
        return pd.DataFrame(rows, columns=["domain", "owner", "team", "description", "products"])

    # ---------------------------------------------------------------------------------- products
    def create_product(
        self,
        name: str,
        *,
        domain: str,
        share: str | None = None,
        owner: str | None = None,
        description: str = "",
        tags: Iterable[str] = (),
        tier: int = 2,
        sla: SLA | Mapping[str, Any] | None = None,
        output_tables: Iterable[str] = (),
        keys: Mapping[str, Iterable[str]] | None = None,
        optional_columns: Mapping[str, Iterable[str]] | None = None,
        compatibility: str = "FULL",
        if_not_exists: bool = False,
    ) -> Product:
        """Declare a data product over an existing share.

        :param share: the share holding the product's tables (default: ``name``); it must exist and may
            belong to one product only.
        :param owner: accountable person (default: the domain's owner).
        :param output_tables: share aliases ``schema.table`` (default: every table of the share).
        :param keys: ``{"schema.table": ["col", ...]}`` row identity for the uniqueness metric.
        :param optional_columns: ``{"schema.table": ["col"]}`` columns null by design, out of completeness.
        :param compatibility: schema contract between versions: BACKWARD, FORWARD, FULL (default) or NONE.
        """
        _check_name("product", name)
        dom = self.get_domain(domain)
        share_name = share or name
        self.catalog.get_share(share_name)  # NotFoundError names the share
        if tier not in (1, 2, 3):
            raise InvalidArgumentError(f"tier must be 1, 2 or 3 (1 = most critical), got {tier!r}")
        mode = str(compatibility).upper()
        if mode not in COMPATIBILITY_MODES:
            raise InvalidArgumentError(
                f"unknown compatibility {compatibility!r}; use one of {COMPATIBILITY_MODES}"
            )
        sla_v = SLA.from_value(sla)
        existing = {t.lower(): t for t in self._share_aliases(share_name)}
        outputs = [str(t) for t in output_tables]
        for alias in outputs:
            if alias.lower() not in existing:
                raise NotFoundError(
                    f"share {share_name!r} has no table {alias!r} (it has {sorted(existing.values())}); "
                    "add it to the share first"
                )
        keys_d = {str(k): [str(c) for c in v] for k, v in (keys or {}).items()}
        opt_d = {str(k): [str(c) for c in v] for k, v in (optional_columns or {}).items()}
        for kind, mapping in (("keys", keys_d), ("optional_columns", opt_d)):
            for alias, cols in mapping.items():
                if alias.lower() not in existing:
                    raise NotFoundError(
                        f"{kind} names table {alias!r}, which share {share_name!r} does not hold "
                        f"({sorted(existing.values())})"
                    )
                self._check_columns(share_name, alias, cols, kind)
        tag_list = sorted({str(t).strip().lower() for t in tags if str(t).strip()})

        def tx(con: sqlite3.Connection) -> None:
            if con.execute("SELECT 1 FROM mesh_products WHERE name = ?", (name,)).fetchone():
                if if_not_exists:
                    return
                raise AlreadyExistsError(
                    f"product {name!r} already exists; use if_not_exists=True to keep it"
                )
            other = con.execute(
                "SELECT name FROM mesh_products WHERE share = ?", (share_name,)
            ).fetchone()
            if other:
                raise AlreadyExistsError(
                    f"share {share_name!r} already backs product {other['name']!r}; a share belongs to "
                    "one product, create another share"
                )
            con.execute(
                "INSERT INTO mesh_products VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    name,
                    dom.name,
                    share_name,
                    owner if owner is not None else dom.owner,
                    description,
                    json.dumps(tag_list),
                    int(tier),
                    json.dumps(sla_v.to_dict()),
                    json.dumps(outputs),
                    json.dumps(keys_d),
                    json.dumps(opt_d),
                    mode,
                    _iso(_now()),
                ),
            )
            self._event(con, "product_created", name, dom.name, f"share {share_name}")

        self._store.write(tx)
        return self.get_product(name)

    def update_product(self, name: str, **changes: Any) -> Product:
        """Change a product's owner, description, tags, tier, sla, keys, optional_columns or
        compatibility (the share and domain stay)."""
        product = self.get_product(name)
        allowed = {
            "owner",
            "description",
            "tags",
            "tier",
            "sla",
            "keys",
            "optional_columns",
            "compatibility",
            "output_tables",
        }
        unknown = set(changes) - allowed
        if unknown:
            raise InvalidArgumentError(
                f"cannot update {sorted(unknown)}; updatable: {sorted(allowed)}"
            )
        values = {
            "owner": product.owner,
            "description": product.description,
            "tags": product.tags,
            "tier": product.tier,
            "sla": product.sla,
            "keys": product.keys,
            "optional_columns": product.optional_columns,
            "compatibility": product.compatibility,
            "output_tables": product.output_tables,
        }
        values.update(changes)
        # validate through the same path as create, on a scratch name, without writing
        if values["tier"] not in (1, 2, 3):
            raise InvalidArgumentError(f"tier must be 1, 2 or 3, got {values['tier']!r}")
        mode = str(values["compatibility"]).upper()
        if mode not in COMPATIBILITY_MODES:
            raise InvalidArgumentError(
                f"unknown compatibility {mode!r}; use one of {COMPATIBILITY_MODES}"
            )
        sla_v = SLA.from_value(values["sla"])
        existing = {t.lower() for t in self._share_aliases(product.share)}
        for alias in values["output_tables"]:
            if alias.lower() not in existing:
                raise NotFoundError(f"share {product.share!r} has no table {alias!r}")
        for kind in ("keys", "optional_columns"):
            for alias, cols in dict(values[kind]).items():
                self._check_columns(product.share, alias, list(cols), kind)

        def tx(con: sqlite3.Connection) -> None:
            con.execute(
                "UPDATE mesh_products SET owner=?, description=?, tags=?, tier=?, sla=?, keys=?, "
                "optional_columns=?, compatibility=?, output_tables=? WHERE name=?",
                (
                    values["owner"],
                    values["description"],
                    json.dumps(sorted({str(t).lower() for t in values["tags"]})),
                    int(values["tier"]),
                    json.dumps(sla_v.to_dict()),
                    json.dumps({k: list(v) for k, v in dict(values["keys"]).items()}),
                    json.dumps({k: list(v) for k, v in dict(values["optional_columns"]).items()}),
                    mode,
                    json.dumps(list(values["output_tables"])),
                    product.name,
                ),
            )
            self._event(con, "product_updated", product.name, None, ", ".join(sorted(changes)))

        self._store.write(tx)
        return self.get_product(name)

    def get_product(self, name: str) -> Product:
        rows = self._store.read("SELECT * FROM mesh_products WHERE name = ?", (name,))
        if not rows:
            known = [p.name for p in self.list_products()]
            raise NotFoundError(f"unknown data product {name!r}; create it first (known: {known})")
        return Product.from_row(rows[0])

    def list_products(self, domain: str | None = None) -> list[Product]:
        if domain:
            rows = self._store.read(
                "SELECT * FROM mesh_products WHERE domain = ? ORDER BY name", (domain,)
            )
        else:
            rows = self._store.read("SELECT * FROM mesh_products ORDER BY name")
        return [Product.from_row(r) for r in rows]

    def drop_product(self, name: str, *, if_exists: bool = False) -> bool:
        """Forget a product's mesh metadata (its share and grants stay in the catalog)."""
        try:
            product = self.get_product(name)
        except NotFoundError:
            if if_exists:
                return False
            raise

        def tx(con: sqlite3.Connection) -> None:
            for table in ("mesh_products", "mesh_versions", "mesh_rules", "mesh_subscriptions"):
                col = "name" if table == "mesh_products" else "product"
                con.execute(f"DELETE FROM {table} WHERE {col} = ?", (product.name,))
            self._event(con, "product_dropped", product.name, None, "")

        self._store.write(tx)
        return True

    # ------------------------------------------------------------------ tables of a product
    def _share_tables(self, share: str) -> list[Any]:
        return list(self.catalog.shared_tables(share))

    def _share_aliases(self, share: str) -> list[str]:
        return [f"{t.schema}.{t.name}" for t in self._share_tables(share)]

    def output_tables(self, product: str | Product) -> dict[str, str]:
        """The product's output tables: ``{"schema.table": location}`` (from the catalog, now)."""
        p = product if isinstance(product, Product) else self.get_product(product)
        tables = {f"{t.schema}.{t.name}": t.location for t in self._share_tables(p.share)}
        if not p.output_tables:
            if not tables:
                raise InvalidArgumentError(
                    f"product {p.name!r} has no tables: share {p.share!r} is empty; add tables to it"
                )
            return dict(sorted(tables.items()))
        by_lower = {k.lower(): (k, v) for k, v in tables.items()}
        out: dict[str, str] = {}
        for alias in p.output_tables:
            if alias.lower() not in by_lower:
                raise NotFoundError(
                    f"output table {alias!r} of product {p.name!r} is no longer in share {p.share!r}; "
                    "add it back or update_product(output_tables=...)"
                )
            key, loc = by_lower[alias.lower()]
            out[key] = loc
        return out

    def _location(self, product: Product, alias: str) -> tuple[str, str]:
        for key, loc in self.output_tables(product).items():
            if key.lower() == alias.lower():
                return key, loc
        raise NotFoundError(f"product {product.name!r} has no output table {alias!r}")

    def _check_columns(self, share: str, alias: str, cols: Iterable[str], what: str) -> None:
        locs = {f"{t.schema}.{t.name}".lower(): t.location for t in self._share_tables(share)}
        loc = locs.get(alias.lower())
        if loc is None:
            raise NotFoundError(f"share {share!r} has no table {alias!r}")
        names = {f["name"].lower() for f in _delta_schema(_open_delta(loc))["fields"]}
        missing = [c for c in cols if c.lower() not in names]
        if missing:
            raise InvalidArgumentError(
                f"{what} of {alias}: unknown column(s) {missing}; the table has {sorted(names)}"
            )

    # ------------------------------------------------------------------ validity rules
    def add_validity_rule(
        self, product: str, table: str, name: str, expression: str, *, replace: bool = False
    ) -> ValidityRule:
        """Add a row rule (DuckDB SQL boolean expression over the table's columns), checked right away
        against the table so a typo fails now, not at publishing time."""
        p = self.get_product(product)
        _check_name("rule", name)
        alias, location = self._location(p, table)
        text = _sql_expression(expression)
        self._validity(location, {name: text})  # raises InvalidArgumentError naming the column/typo

        def tx(con: sqlite3.Connection) -> None:
            exists = con.execute(
                "SELECT 1 FROM mesh_rules WHERE product=? AND table_alias=? AND name=?",
                (p.name, alias, name),
            ).fetchone()
            if exists and not replace:
                raise AlreadyExistsError(
                    f"rule {name!r} exists on {alias} of {p.name!r}; pass replace=True to change it"
                )
            con.execute(
                "INSERT OR REPLACE INTO mesh_rules VALUES (?,?,?,?,?)",
                (p.name, alias, name, text, _iso(_now())),
            )

        self._store.write(tx)
        return ValidityRule(p.name, alias, name, text)

    def validity_rules(self, product: str) -> list[ValidityRule]:
        p = self.get_product(product)
        rows = self._store.read(
            "SELECT * FROM mesh_rules WHERE product = ? ORDER BY table_alias, name", (p.name,)
        )
        return [ValidityRule(p.name, r["table_alias"], r["name"], r["expression"]) for r in rows]

    def remove_validity_rule(self, product: str, table: str, name: str) -> None:
        p = self.get_product(product)

        def tx(con: sqlite3.Connection) -> None:
            cur = con.execute(
                "DELETE FROM mesh_rules WHERE product=? AND table_alias=? AND name=?",
                (p.name, table, name),
            )
            if cur.rowcount == 0:
                raise NotFoundError(f"product {p.name!r} has no rule {name!r} on {table}")

        self._store.write(tx)

    # ------------------------------------------------------------------ column tags
    def tag_column(self, table: str, column: str, tag: str = PII_TAG) -> None:
        """Tag a column of a registered catalog table (``catalog.schema.table``), e.g. as ``pii``."""
        info = self.catalog.get_table(table)
        names = {
            f["name"].lower(): f["name"]
            for f in _delta_schema(_open_delta(info.location))["fields"]
        }
        if column.lower() not in names:
            raise InvalidArgumentError(
                f"table {table} has no column {column!r}; columns: {sorted(names.values())}"
            )
        tag_v = str(tag).strip().lower()
        if not tag_v:
            raise InvalidArgumentError("a tag cannot be empty")

        def tx(con: sqlite3.Connection) -> None:
            con.execute(
                "INSERT OR IGNORE INTO mesh_column_tags VALUES (?,?,?,?,?)",
                (
                    _norm_location(info.location),
                    info.name,
                    names[column.lower()],
                    tag_v,
                    _iso(_now()),
                ),
            )

        self._store.write(tx)

    def untag_column(self, table: str, column: str, tag: str = PII_TAG) -> None:
        info = self.catalog.get_table(table)
        self._store.write(
            lambda con: con.execute(
                "DELETE FROM mesh_column_tags WHERE location=? AND column_name=? AND tag=?",
                (_norm_location(info.location), column, tag),
            )
        )

    def column_tags(self, table: str | None = None) -> pd.DataFrame:
        """Tagged columns (of one catalog table, or all)."""
        if table:
            info = self.catalog.get_table(table)
            rows = self._store.read(
                "SELECT table_name, column_name, tag FROM mesh_column_tags WHERE location = ?",
                (_norm_location(info.location),),
            )
        else:
            rows = self._store.read("SELECT table_name, column_name, tag FROM mesh_column_tags")
        return pd.DataFrame([tuple(r) for r in rows], columns=["table", "column", "tag"])

    def _tagged_columns(self, location: str, tag: str) -> list[str]:
        rows = self._store.read(
            "SELECT column_name FROM mesh_column_tags WHERE location = ? AND tag = ?",
            (_norm_location(location), tag),
        )
        return [r["column_name"] for r in rows]

    # ------------------------------------------------------------------ quality
    @staticmethod
    def _validity(location: str, rules: Mapping[str, str]) -> dict[str, float | None]:
        if not rules:
            return {}
        import duckdb

        ds = _open_delta(location).to_pyarrow_dataset()
        con = duckdb.connect()
        try:
            con.register("t", ds)
            out: dict[str, float | None] = {}
            for name, expr in rules.items():
                try:
                    total, bad = con.execute(
                        f"SELECT count(*), count(*) FILTER (WHERE NOT ({expr})) FROM t"
                    ).fetchone()
                except duckdb.Error as exc:
                    raise InvalidArgumentError(
                        f"validity rule {name!r} ({expr}) fails on the table: "
                        f"{str(exc).splitlines()[0]}"
                    ) from exc
                out[name] = None if total == 0 else 100.0 * (total - bad) / total
            return out
        finally:
            con.close()

    def _measure_table(
        self,
        alias: str,
        location: str,
        keys: Sequence[str],
        optional: Sequence[str],
        rules: Mapping[str, str],
        now: datetime,
    ) -> TableQuality:
        import duckdb
        import pyarrow as pa

        dt = _open_delta(location)
        ds = dt.to_pyarrow_dataset()
        con = duckdb.connect()
        try:
            con.register("t", ds)
            exprs = ["count(*)"]
            names = [f.name for f in ds.schema]
            for f in ds.schema:
                q = _quote(f.name)
                if pa.types.is_floating(f.type):  # NaN is missing too, as pandas counts it
                    exprs.append(f"count(*) FILTER (WHERE {q} IS NOT NULL AND NOT isnan({q}))")
                else:
                    exprs.append(f"count({q})")
            row = con.execute("SELECT " + ", ".join(exprs) + " FROM t").fetchone()
            total = int(row[0])
            completeness = {
                n: (None if total == 0 else 100.0 * int(c) / total)
                for n, c in zip(names, row[1:], strict=True)
            }
            key_cols = tuple(keys)
            uniqueness: float | None = None
            if key_cols:
                distinct = con.execute(
                    "SELECT count(*) FROM (SELECT DISTINCT "
                    + ", ".join(_quote(k) for k in key_cols)
                    + " FROM t)"
                ).fetchone()[0]
                uniqueness = None if total == 0 else 100.0 * int(distinct) / total
        finally:
            con.close()
        optional_l = {c.lower() for c in optional}
        required = [
            v for n, v in completeness.items() if n.lower() not in optional_l and v is not None
        ]
        table_pct = sum(required) / len(required) if required else None
        last = _last_commit(dt)
        return TableQuality(
            table=alias,
            location=location,
            delta_version=int(dt.version()),
            row_count=total,
            column_completeness=completeness,
            completeness_pct=table_pct,
            key_columns=key_cols,
            uniqueness_pct=uniqueness,
            validity=self._validity(location, rules),
            last_commit=last,
            freshness_hours=max(0.0, (now - last).total_seconds() / 3600.0),
        )

    def _measure(self, p: Product, now: datetime) -> QualityReport:
        rules: dict[str, dict[str, str]] = {}
        for r in self.validity_rules(p.name):
            rules.setdefault(r.table.lower(), {})[r.name] = r.expression
        keys = {k.lower(): v for k, v in p.keys.items()}
        optional = {k.lower(): v for k, v in p.optional_columns.items()}
        tables = tuple(
            self._measure_table(
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
            [(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]) for r in _quality_rows(report)],
        )

    def measure(
        self, product: str, *, now: datetime | None = None, record: bool = True
    ) -> QualityReport:
        """Measure the product's quality on its Delta tables now and (by default) keep it in the history.

        :param now: the clock used for freshness (default: real now); pass one for deterministic results.
        """
        p = self.get_product(product)
        report = self._measure(p, _now(now))
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
        frame = pd.DataFrame([tuple(r) for r in rows], columns=_QUALITY_COLUMNS)
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
        _check_name("policy", name)
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
                (name, rule, enf, json.dumps(scope), description, _iso(_now())),
            )
            self._event(con, "policy_set", None, name, f"{rule} ({enf})")

        self._store.write(tx)
        return self.get_policy(name)

    def install_default_policies(self) -> list[Policy]:
        """Create the four example policies of :data:`DEFAULT_POLICIES` if missing."""
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

    def get_policy(self, name: str) -> Policy:
        rows = self._store.read("SELECT * FROM mesh_policies WHERE name = ?", (name,))
        if not rows:
            raise NotFoundError(f"unknown policy {name!r}; see list_policies()")
        return Policy.from_row(rows[0])

    def list_policies(self) -> list[Policy]:
        return [
            Policy.from_row(r)
            for r in self._store.read("SELECT * FROM mesh_policies ORDER BY name")
        ]

    def drop_policy(self, name: str) -> None:
        policy = self.get_policy(name)
        self._store.write(
            lambda con: con.execute("DELETE FROM mesh_policies WHERE name = ?", (policy.name,))
        )

    def _recipient_properties(self, name: str) -> dict[str, str]:
        try:
            rec = self.catalog.get_recipient(name)
        except NotFoundError:
            return {}
        return {str(k): str(v) for k, v in dict(rec.properties or {}).items()}

    @staticmethod
    def _is_external(properties: Mapping[str, str]) -> bool:
        for k, v in properties.items():
            if k.lower() == EXTERNAL_PROPERTY and str(v).strip().lower() in ("true", "1", "yes"):
                return True
        return False

    def _granted(self, share: str) -> list[str]:
        return [g.recipient for g in self.catalog.grants_on_share(share)]

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

    def _availability(self, p: Product) -> tuple[float | None, str]:
        frame = self._audit()
        if frame is None or frame.empty:
            return None, "no requests in the audit log yet"
        rows = frame[frame["share"].astype(str).str.lower() == p.share.lower()]
        if rows.empty:
            return None, f"no requests on share {p.share!r} in the audit log yet"
        ok = int((pd.to_numeric(rows["status_code"], errors="coerce").fillna(500) < 500).sum())
        return 100.0 * ok / len(
            rows
        ), f"{ok} of {len(rows)} requests on share {p.share!r} succeeded"

    def _facts(
        self,
        p: Product,
        report: QualityReport,
        extra_recipient: tuple[str, Mapping[str, str]] | None = None,
    ) -> dict[str, tuple[float | None, str]]:
        """Every metric a rule can name, measured on this product, with its evidence."""
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
            f"stalest: {stalest.table}, last commit {_iso(stalest.last_commit)}"
            if stalest
            else "no tables",
        )
        facts["row_count"] = (
            None if report.row_count is None else float(report.row_count),
            "smallest: " + worst_table("row_count", min),
        )
        facts["availability"] = self._availability(p)
        facts["pii_columns_external"] = tuple(  # type: ignore[assignment]
            (float(x) if isinstance(x, int) else x) for x in self._pii_exposure(p, extra_recipient)
        )
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
                status = "PASS" if _OPS[op](measured, threshold) else "FAIL"
                evidence = (
                    f"{metric} = {_fmt(measured, unit)} {'meets' if status == 'PASS' else 'violates'} "
                    f"{op} {_fmt(threshold, unit)} ({detail})"
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
        at = _now(now)
        report = self._measure(p, at)
        if record:
            self._store.write(lambda con: self._store_quality(con, report))
        return self._evaluate(p, report, at)

    def sla_status(self, product: str, *, now: datetime | None = None) -> pd.DataFrame:
        """The product's SLA targets against measured values (measures now, does not record)."""
        p = self.get_product(product)
        at = _now(now)
        report = self._measure(p, at)
        avail, avail_detail = self._availability(p)
        rows = [
            ("freshness_hours", "<=", p.sla.freshness_hours, report.freshness_hours, "h"),
            ("completeness_pct", ">=", p.sla.completeness_pct, report.completeness_pct, "%"),
            ("availability_pct", ">=", p.sla.availability_pct, avail, "%"),
        ]
        out = []
        for name, op, target, measured, unit in rows:
            status = (
                "N/A" if measured is None else ("PASS" if _OPS[op](measured, target) else "FAIL")
            )
            out.append((p.name, name, op, target, measured, unit, status))
        return pd.DataFrame(
            out, columns=["product", "sla", "op", "target", "measured", "unit", "status"]
        )

    # ------------------------------------------------------------------ versions and publishing
    def versions(self, product: str) -> list[ProductVersion]:
        p = self.get_product(product)
        rows = self._store.read(
            "SELECT * FROM mesh_versions WHERE product = ? ORDER BY major, minor, patch", (p.name,)
        )
        return [ProductVersion.from_row(r) for r in rows]

    def latest_version(self, product: str) -> ProductVersion | None:
        versions = self.versions(product)
        return versions[-1] if versions else None

    def check_compatibility(self, product: str) -> dict[str, CompatibilityResult]:
        """Each output table's current Delta schema against the latest published schema.

        Tables new since the last version compare against an empty schema (all columns added).
        """
        p = self.get_product(product)
        latest = self.latest_version(p.name)
        published = dict(latest.schemas) if latest else {}
        pub_lower = {k.lower(): v for k, v in published.items()}
        out: dict[str, CompatibilityResult] = {}
        current = self.output_tables(p)
        for alias, loc in current.items():
            old = pub_lower.get(alias.lower(), {"type": "struct", "fields": []})
            out[alias] = compare_schemas(old, _delta_schema(_open_delta(loc)), alias)
        cur_lower = {k.lower() for k in current}
        for alias, schema in published.items():
            if alias.lower() not in cur_lower:  # a removed output table breaks every consumer of it
                out[alias] = CompatibilityResult(
                    alias,
                    tuple(
                        SchemaChange(
                            alias + "." + f["name"],
                            "drop_column",
                            _type_text(f["type"]),
                            None,
                            True,
                            False,
                        )
                        for f in schema["fields"]
                    ),
                )
        return out

    def publish(
        self,
        product: str,
        version: str | None = None,
        *,
        access_policy: AccessPolicy | Mapping[str, Any] | None = None,
        now: datetime | None = None,
    ) -> ProductVersion:
        """Publish a version: measure quality, enforce the policies and the schema contract, then record
        every output table's Delta schema and version and the access policy.

        :param version: ``MAJOR.MINOR.PATCH``; default: 1.0.0 first, then the next minor when a schema
            changed compatibly, else the next patch. A breaking change needs a higher major.
        :param access_policy: who may subscribe (default: the previous version's, else open).
        :raises PolicyViolationError: a mandatory policy failed (message names it and the evidence).
        :raises SchemaCompatibilityError: breaking schema change without a new major version.
        """
        p = self.get_product(product)
        at = _now(now)
        latest = self.latest_version(p.name)
        policy = (
            AccessPolicy.from_value(access_policy)
            if access_policy is not None
            else (latest.access_policy if latest else AccessPolicy())
        )
        for d in policy.allowed_domains:
            self.get_domain(d)  # an allowed domain must exist: typos would lock everybody out
        outputs = self.output_tables(p)
        report = self._measure(p, at)
        compliance = self._evaluate(p, report, at)
        if compliance.failures:
            first = compliance.failures[0]
            others = "; ".join(f"{r.policy}: {r.evidence}" for r in compliance.failures[1:])
            self._store.write(
                lambda con: self._event(
                    con,
                    "publish_refused",
                    p.name,
                    first.policy,
                    "; ".join(r.evidence for r in compliance.failures),
                    at,
                )
            )
            raise PolicyViolationError(
                f"cannot publish {p.name!r}: mandatory policy {first.policy!r} failed: {first.evidence}"
                + (f"; also {others}" if others else "")
                + "; fix the data or the product and publish again",
                policy=first.policy,
                evidence=first.evidence,
            )
        compat = self.check_compatibility(p.name) if latest else {}
        breaking = {
            t: r.breaking(p.compatibility) for t, r in compat.items() if r.breaking(p.compatibility)
        }
        changed = any(r.changed for r in compat.values())
        if version is None:
            if latest is None:
                new = (1, 0, 0)
            else:
                ma, mi, pa_ = _parse_version(latest.version)
                if breaking:
                    new = (ma + 1, 0, 0)
                    # an automatic major bump would hide the break: make the caller say it
                    raise SchemaCompatibilityError(
                        _breaking_message(p, latest.version, breaking)
                        + f"; publish it as version '{_version_text(new)}' on purpose",
                        policy="schema-contract",
                        evidence=_breaking_evidence(breaking),
                    )
                new = (ma, mi + 1, 0) if changed else (ma, mi, pa_ + 1)
        else:
            new = _parse_version(version)
            if latest is not None:
                old = _parse_version(latest.version)
                if new <= old:
                    raise InvalidArgumentError(
                        f"version {_version_text(new)} of {p.name!r} must be greater than the latest "
                        f"published version {latest.version}"
                    )
                if breaking and new[0] <= old[0]:
                    raise SchemaCompatibilityError(
                        _breaking_message(p, latest.version, breaking)
                        + f"; a breaking change needs a new major version, e.g. '{old[0] + 1}.0.0'",
                        policy="schema-contract",
                        evidence=_breaking_evidence(breaking),
                    )
        text = _version_text(new)
        warn_texts = tuple(f"{r.policy}: {r.evidence}" for r in compliance.warnings)
        schemas: dict[str, Any] = {}
        table_versions: dict[str, int] = {}
        for t in report.tables:
            dt = _open_delta(t.location)
            schemas[t.table] = _delta_schema(dt)
            table_versions[t.table] = t.delta_version
        changes = {t: [c.to_dict() for c in r.changes] for t, r in compat.items() if r.changed}
        compliance_rows = [
            {
                "policy": r.policy,
                "enforcement": r.enforcement,
                "status": r.status,
                "measured": r.measured,
                "evidence": r.evidence,
            }
            for r in compliance.results
        ]
        assert set(schemas) == set(outputs)

        def tx(con: sqlite3.Connection) -> None:
            if con.execute(
                "SELECT 1 FROM mesh_versions WHERE product=? AND version=?", (p.name, text)
            ).fetchone():
                raise AlreadyExistsError(f"version {text} of {p.name!r} is already published")
            con.execute(
                "INSERT INTO mesh_versions VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    p.name,
                    text,
                    new[0],
                    new[1],
                    new[2],
                    _iso(at),
                    json.dumps(schemas),
                    json.dumps(table_versions),
                    json.dumps(policy.to_dict()),
                    json.dumps(compliance_rows),
                    json.dumps(list(warn_texts)),
                    json.dumps(changes),
                ),
            )
            self._store_quality(con, report)
            self._event(con, "published", p.name, text, policy.describe(), at)

        self._store.write(tx)
        for w in warn_texts:
            warnings.warn(f"{p.name} {text}: advisory policy {w}", MeshPolicyWarning, stacklevel=2)
        return [v for v in self.versions(p.name) if v.version == text][0]

    # ------------------------------------------------------------------ subscriptions
    def subscribe(
        self,
        product: str,
        recipient: str,
        *,
        consumer_domain: str | None = None,
        properties: Mapping[str, str] | None = None,
        comment: str | None = None,
        now: datetime | None = None,
    ) -> Subscription:
        """Subscribe a recipient to the latest published version: create the recipient if needed and
        grant the product's share, or refuse with the reason and change nothing.

        :param consumer_domain: the consumer's domain (stored as the recipient property ``domain``).
        :param properties: recipient properties to set (merged into existing ones).
        :raises PolicyViolationError: the access policy or a mandatory policy refuses the consumer.
        """
        p = self.get_product(product)
        latest = self.latest_version(p.name)
        if latest is None:
            raise InvalidArgumentError(
                f"product {p.name!r} has no published version; publish it before consumers subscribe"
            )
        if consumer_domain:
            consumer_domain = self.get_domain(consumer_domain).name
        exists = True
        try:
            existing = self.catalog.get_recipient(recipient)
            props = {str(k): str(v) for k, v in dict(existing.properties or {}).items()}
        except NotFoundError:
            exists = False
            props = {}
        given = {str(k): str(v) for k, v in dict(properties or {}).items()}
        if consumer_domain:
            given[DOMAIN_PROPERTY] = consumer_domain
        merged = {**props, **given}
        domain = consumer_domain or next(
            (v for k, v in merged.items() if k.lower() == DOMAIN_PROPERTY), None
        )
        at = _now(now)
        ok, reason = latest.access_policy.evaluate(domain, merged)
        refused_policy = "access-policy"
        if ok:
            # grant-time governance: e.g. no pii to an external recipient
            pii_policies = [
                pol
                for pol in self.list_policies()
                if pol.enforcement == "mandatory"
                and pol.applies(p)
                and parse_rule(pol.rule)[0] == "pii_columns_external"
            ]
            if pii_policies:
                count, evidence = self._pii_exposure(p, (recipient, merged))
                for pol in pii_policies:
                    _, op, threshold = parse_rule(pol.rule)
                    if not _OPS[op](float(count), threshold):
                        ok, refused_policy = False, pol.name
                        reason = (
                            f"mandatory policy {pol.name!r} ({pol.rule}) would fail: "
                            f"pii_columns_external = {count}; {evidence}"
                        )
                        break
        if not ok:
            self._store.write(
                lambda con: self._event(con, "subscription_refused", p.name, recipient, reason, at)
            )
            raise PolicyViolationError(
                f"subscription of {recipient!r} to {p.name!r} {latest.version} refused: {reason}; "
                f"ask the owner {p.owner!r} of domain {p.domain!r} to change the policy",
                policy=refused_policy,
                evidence=reason,
            )
        granted_before = {r.lower() for r in self._granted(p.share)}
        created = False
        try:
            if not exists:
                self.catalog.create_recipient(recipient, comment, merged or None)
                created = True
            elif given and merged != props:
                self.catalog.set_recipient_properties(recipient, merged)
            if recipient.lower() not in granted_before:
                self.catalog.grant(p.share, recipient)

            def tx(con: sqlite3.Connection) -> None:
                con.execute(
                    "INSERT OR REPLACE INTO mesh_subscriptions VALUES (?,?,?,?,?,?,?,?)",
                    (
                        p.name,
                        recipient,
                        domain,
                        latest.version,
                        "active",
                        _iso(at),
                        None,
                        int(created),
                    ),
                )
                self._event(con, "subscribed", p.name, recipient, f"version {latest.version}", at)

            self._store.write(tx)
        except BaseException:
            # undo the catalog side so a failed subscription leaves no grant and no new recipient
            if recipient.lower() not in granted_before:
                try:
                    self.catalog.revoke(p.share, recipient)
                except SharelabError:
                    pass
            if created:
                try:
                    self.catalog.drop_recipient(recipient, if_exists=True)
                except SharelabError:
                    pass
            elif given and merged != props:
                try:  # set_recipient_properties merges: put back old values, drop added keys
                    self.catalog.set_recipient_properties(
                        recipient, {k: props.get(k) for k in given}
                    )
                except SharelabError:
                    pass
            raise
        return self.get_subscription(p.name, recipient)

    def unsubscribe(
        self, product: str, recipient: str, *, now: datetime | None = None
    ) -> Subscription:
        """End a subscription and revoke the grant on the product's share."""
        p = self.get_product(product)
        sub = self.get_subscription(p.name, recipient)
        if sub.status != "active":
            raise InvalidArgumentError(
                f"{recipient!r} is not subscribed to {p.name!r} (status {sub.status})"
            )
        if recipient.lower() in {r.lower() for r in self._granted(p.share)}:
            self.catalog.revoke(p.share, recipient)
        at = _now(now)

        def tx(con: sqlite3.Connection) -> None:
            con.execute(
                "UPDATE mesh_subscriptions SET status='cancelled', ended_at=? WHERE product=? AND recipient=?",
                (_iso(at), p.name, recipient),
            )
            self._event(con, "unsubscribed", p.name, recipient, "grant revoked", at)

        self._store.write(tx)
        return self.get_subscription(p.name, recipient)

    def get_subscription(self, product: str, recipient: str) -> Subscription:
        rows = self._store.read(
            "SELECT * FROM mesh_subscriptions WHERE product = ? AND recipient = ?",
            (product, recipient),
        )
        if not rows:
            raise NotFoundError(f"{recipient!r} never subscribed to {product!r}")
        return Subscription.from_row(rows[0])

    def subscriptions(
        self, product: str | None = None, *, active_only: bool = True
    ) -> list[Subscription]:
        sql = "SELECT * FROM mesh_subscriptions WHERE 1=1"
        params: list[Any] = []
        if product:
            sql += " AND product = ?"
            params.append(product)
        if active_only:
            sql += " AND status = 'active'"
        return [
            Subscription.from_row(r)
            for r in self._store.read(sql + " ORDER BY product, recipient", params)
        ]

    # ------------------------------------------------------------------ discovery
    def search(
        self,
        text: str | None = None,
        *,
        domain: str | None = None,
        owner: str | None = None,
        tag: str | None = None,
    ) -> list[SearchHit]:
        """Find products by domain, owner, tag and free text (every word must match a product's name,
        description, domain, tags, table names or column names; case-insensitive)."""
        words = [w.lower() for w in (text or "").split() if w.strip()]
        hits: list[SearchHit] = []
        domains = {d.name.lower(): d for d in self.list_domains()}
        for p in self.list_products():
            if domain and p.domain.lower() != domain.lower():
                continue
            if owner and p.owner.lower() != owner.lower():
                continue
            if tag and tag.lower() not in {t.lower() for t in p.tags}:
                continue
            fields: list[tuple[str, str]] = [
                ("name", p.name),
                ("description", p.description),
                ("domain", p.domain),
                ("owner", p.owner),
            ]
            dom = domains.get(p.domain.lower())
            if dom:
                fields.append(("domain description", dom.description))
            fields += [("tag", t) for t in p.tags]
            if words:
                try:
                    for alias, loc in self.output_tables(p).items():
                        fields.append(("table", alias))
                        fields += [
                            ("column", f"{alias}.{f['name']}")
                            for f in _delta_schema(_open_delta(loc))["fields"]
                        ]
                except SharelabError:
                    pass  # a broken table must not hide the product from search
            matches: list[str] = []
            ok = True
            for w in words:
                found = [f"{kind}: {value}" for kind, value in fields if w in str(value).lower()]
                if not found:
                    ok = False
                    break
                matches += [m for m in found if m not in matches]
            if ok:
                hits.append(SearchHit(p, tuple(matches)))
        return hits

    def discover(
        self,
        text: str | None = None,
        *,
        domain: str | None = None,
        owner: str | None = None,
        tag: str | None = None,
    ) -> pd.DataFrame:
        """:meth:`search` as a table: product, domain, owner, tier, tags, latest version, subscribers,
        where the text matched."""
        rows = []
        for hit in self.search(text, domain=domain, owner=owner, tag=tag):
            p = hit.product
            latest = self.latest_version(p.name)
            rows.append(
                (
                    p.name,
                    p.domain,
                    p.owner,
                    p.tier,
                    ", ".join(p.tags),
                    latest.version if latest else None,
                    len(self.subscriptions(p.name)),
                    p.description,
                    "; ".join(hit.matches[:5]),
                )
            )
        return pd.DataFrame(
            rows,
            columns=[
                "product",
                "domain",
                "owner",
                "tier",
                "tags",
                "latest_version",
                "subscribers",
                "description",
                "matched",
            ],
        )

    # ------------------------------------------------------------------ lineage and usage
    def add_lineage(self, source: str, target: str, transformation: str = "") -> None:
        """Record that catalog table ``target`` is derived from ``source`` (both registered)."""
        src = self.catalog.get_table(source).name
        dst = self.catalog.get_table(target).name
        if src.lower() == dst.lower():
            raise InvalidArgumentError(f"a table cannot derive from itself ({src})")
        graph = self.lineage()
        if f"table:{src}" in graph.downstream(f"table:{dst}"):
            raise InvalidArgumentError(
                f"{dst} -> {src} exists already; {src} -> {dst} would make a cycle"
            )
        self._store.write(
            lambda con: con.execute(
                "INSERT OR REPLACE INTO mesh_lineage VALUES (?,?,?,?)",
                (src, dst, transformation, _iso(_now())),
            )
        )

    def _audit(self) -> pd.DataFrame | None:
        try:
            return self.catalog.audit_frame()
        except SharelabError:
            return None

    def _location_names(self) -> dict[str, str]:
        """Normalized location -> catalog table name."""
        return {_norm_location(t.location): t.name for t in self.catalog.list_tables()}

    def usage(self, product: str | None = None) -> pd.DataFrame:
        """Actual reads from the server's audit log: per recipient and shared table, how many successful
        reads, the first and last read and the versions read."""
        columns = [
            "recipient",
            "share",
            "schema",
            "table",
            "source_table",
            "product",
            "reads",
            "first_read",
            "last_read",
            "versions",
        ]
        frame = self._audit()
        if frame is None or frame.empty:
            return pd.DataFrame(columns=columns)
        status = pd.to_numeric(frame["status_code"], errors="coerce")
        action = frame["action"].astype(str).str.lower()
        reads = frame[
            status.between(200, 299)
            & action.isin(READ_ACTIONS)
            & frame["table"].notna()
            & frame["recipient"].notna()
        ].copy()
        products = {p.share.lower(): p.name for p in self.list_products()}
        if product:
            share = self.get_product(product).share.lower()
            reads = reads[reads["share"].astype(str).str.lower() == share]
        if reads.empty:
            return pd.DataFrame(columns=columns)
        names = self._location_names()
        locations: dict[tuple[str, str, str], str | None] = {}
        for share in {s for s in reads["share"].astype(str)}:
            try:
                for t in self._share_tables(share):
                    key = (share.lower(), t.schema.lower(), t.name.lower())
                    loc = _norm_location(t.location)
                    locations[key] = names.get(loc, t.location)
            except SharelabError:
                continue
        reads["event_time"] = pd.to_datetime(reads["event_time"], utc=True)
        out = []
        for (rec, share, schema, table), g in reads.groupby(
            ["recipient", "share", "schema", "table"], dropna=True
        ):
            versions = sorted(
                {int(v) for v in pd.to_numeric(g["version"], errors="coerce").dropna()}
            )
            out.append(
                (
                    rec,
                    share,
                    schema,
                    table,
                    locations.get((str(share).lower(), str(schema).lower(), str(table).lower())),
                    products.get(str(share).lower()),
                    len(g),
                    g["event_time"].min(),
                    g["event_time"].max(),
                    ",".join(str(v) for v in versions),
                )
            )
        return (
            pd.DataFrame(out, columns=columns)
            .sort_values(["reads", "recipient"], ascending=[False, True])
            .reset_index(drop=True)
        )

    def lineage(self) -> LineageGraph:
        """The graph source tables -> derived tables -> shares -> products -> recipients, with the
        audit log's actual reads as ``reads`` edges (recipient -> table)."""
        nodes: dict[str, dict[str, Any]] = {}
        edges: list[tuple[str, str, str, str]] = []

        def node(kind: str, name: str, **attrs: Any) -> str:
            key = f"{kind}:{name}"
            nodes.setdefault(key, {"kind": kind, "name": name}).update(attrs)
            return key

        names = self._location_names()
        for r in self._store.read("SELECT * FROM mesh_lineage ORDER BY source, target"):
            edges.append(
                (
                    node("table", r["source"]),
                    node("table", r["target"]),
                    "derives",
                    r["transformation"],
                )
            )
        product_of = {p.share.lower(): p for p in self.list_products()}
        for share in self.catalog.list_shares():
            s = node("share", share.name)
            for t in self._share_tables(share.name):
                tname = names.get(_norm_location(t.location), t.location)
                edges.append((node("table", tname), s, "shared_as", f"{t.schema}.{t.name}"))
            p = product_of.get(share.name.lower())
            holder = s
            if p is not None:
                holder = node("product", p.name, domain=p.domain)
                edges.append((s, holder, "published_as", p.domain))
            for g in self.catalog.grants_on_share(share.name):
                edges.append((holder, node("recipient", g.recipient), "granted", share.name))
        usage = self.usage()
        for row in usage.itertuples(index=False):
            target = (
                node("table", row.source_table)
                if row.source_table
                else node("table", f"{row.share}.{row.schema}.{row.table}")
            )
            edges.append(
                (
                    node("recipient", row.recipient),
                    target,
                    "reads",
                    f"{row.reads} reads, last {row.last_read:%Y-%m-%d %H:%M}",
                )
            )
        return LineageGraph(nodes, tuple(edges))

    def impact(self, table: str) -> Impact:
        """What a change to catalog table ``table`` would affect: derived tables, shares, products,
        granted recipients, and the recipients who actually read it (audit log)."""
        info = self.catalog.get_table(table)
        graph = self.lineage()
        start = f"table:{info.name}"
        # only follow data-flow edges (not "reads", which point from recipients to tables)
        flow = LineageGraph(graph.nodes, tuple(e for e in graph.edges if e[2] != "reads"))
        reach = flow.downstream(start)
        derived = [n[len("table:") :] for n in reach if n.startswith("table:")]
        shares = [n[len("share:") :] for n in reach if n.startswith("share:")]
        products = [n[len("product:") :] for n in reach if n.startswith("product:")]
        recipients = [n[len("recipient:") :] for n in reach if n.startswith("recipient:")]
        tables = {info.name.lower(), *(d.lower() for d in derived)}
        usage = self.usage()
        if len(usage):
            usage = usage[usage["source_table"].astype(str).str.lower().isin(tables)].reset_index(
                drop=True
            )
        return Impact(
            info.name, tuple(derived), tuple(shares), tuple(products), tuple(recipients), usage
        )

    # ------------------------------------------------------------------ overview and report
    def products_frame(self, *, now: datetime | None = None) -> pd.DataFrame:
        """One row per product: domain, owner, tier, latest version, subscribers, compliance status
        and the latest stored quality figures."""
        rows = []
        hist = self.quality_history()
        for p in self.list_products():
            latest = self.latest_version(p.name)
            h = hist[(hist["product"] == p.name)]
            last = h[h["run_id"] == h["run_id"].iloc[-1]] if len(h) else h

            def metric(
                name: str, fn: Callable[..., Any], frame: pd.DataFrame = last
            ) -> float | None:
                vals = frame[frame["metric"] == name]["value"].dropna()
                return float(fn(vals)) if len(vals) else None

            rows.append(
                (
                    p.name,
                    p.domain,
                    p.owner,
                    p.tier,
                    ", ".join(p.tags),
                    latest.version if latest else None,
                    len(self.subscriptions(p.name)),
                    metric("completeness", min),
                    metric("freshness_hours", max),
                    metric("row_count", min),
                    last["measured_at"].iloc[0] if len(last) else None,
                )
            )
        return pd.DataFrame(
            rows,
            columns=[
                "product",
                "domain",
                "owner",
                "tier",
                "tags",
                "latest_version",
                "subscribers",
                "completeness_pct",
                "freshness_hours",
                "min_row_count",
                "measured_at",
            ],
        )

    def report_html(self, *, now: datetime | None = None, measure: bool = True) -> str:
        """The mesh report as one self-contained HTML page (plots embedded as base64 PNG)."""
        return _render_report(self, _now(now), measure)

    def write_report(
        self, out: str | os.PathLike[str], *, now: datetime | None = None, measure: bool = True
    ) -> Path:
        """Write :meth:`report_html` to ``out`` (parent directories created) and return the path."""
        path = Path(out).expanduser()
        text = self.report_html(now=now, measure=measure)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        return path


def _breaking_evidence(breaking: Mapping[str, Sequence[SchemaChange]]) -> str:
    return "; ".join(f"{t}: " + ", ".join(c.describe() for c in cs) for t, cs in breaking.items())


def _breaking_message(
    p: Product, published: str, breaking: Mapping[str, Sequence[SchemaChange]]
) -> str:
    return (
        f"schema of {p.name!r} breaks its {p.compatibility} contract with published version {published}: "
        + _breaking_evidence(breaking)
    )


# --------------------------------------------------------------------------------------------------
# HTML report
# --------------------------------------------------------------------------------------------------


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _esc(text: Any) -> str:
    return html.escape("" if text is None else str(text))


def _table_html(frame: pd.DataFrame, empty: str = "none yet") -> str:
    if frame is None or frame.empty:
        return f"<p class='empty'>{_esc(empty)}</p>"
    return frame.to_html(index=False, escape=True, na_rep="n/a", float_format=lambda v: f"{v:.2f}")


def _img(b64: str, alt: str) -> str:
    return f"<img alt='{_esc(alt)}' src='data:image/png;base64,{b64}'/>"


def trend_figure(history: pd.DataFrame) -> Any:
    """A matplotlib figure of quality trends per product: completeness (%), freshness (h), rows.

    :param history: :meth:`Mesh.quality_history` (all products or one).
    """
    import matplotlib.dates as mdates
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 3.6))
    axes = fig.subplots(1, 3)
    specs = (
        ("completeness", "min", "Completeness (lowest table)", "completeness (%)"),
        ("freshness_hours", "max", "Freshness (stalest table)", "hours since last commit (h)"),
        ("row_count", "min", "Rows (smallest table)", "rows"),
    )
    for ax, (metric, fn, title, ylabel) in zip(axes, specs, strict=True):
        data = history[history["metric"] == metric].dropna(subset=["value"])
        for product, g in data.groupby("product"):
            per_run = (
                g.groupby("run_id")
                .agg(t=("measured_at", "first"), v=("value", fn))
                .sort_values("t")
            )
            ax.plot(per_run["t"], per_run["v"], marker="o", label=str(product))
        ax.set_title(title)
        ax.set_xlabel("measured at (UTC)")
        ax.set_ylabel(ylabel)
        locator = mdates.AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        ax.tick_params(axis="x", labelsize=7)
        if len(data):
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no measurements", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle("Data product quality trends")
    fig.tight_layout()
    return fig


def usage_figure(usage: pd.DataFrame) -> Any:
    """A horizontal bar chart of successful reads per recipient and shared table (audit log)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, max(2.5, 0.4 * len(usage) + 1.2)))
    ax = fig.subplots()
    if len(usage):
        labels = [f"{r.recipient} -> {r.share}.{r.schema}.{r.table}" for r in usage.itertuples()]
        ax.barh(labels, usage["reads"].astype(int))
        ax.invert_yaxis()
    else:
        ax.text(
            0.5,
            0.5,
            "no reads in the audit log yet",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    ax.set_title("Reads per recipient and table (server audit log)")
    ax.set_xlabel("successful reads (requests)")
    ax.set_ylabel("recipient -> shared table")
    fig.tight_layout()
    return fig


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f2f2f2} .PASS{color:#176f2c;font-weight:bold} .FAIL{color:#b00020;font-weight:bold}
.N\\/A{color:#777} .empty{color:#777;font-style:italic} img{max-width:100%}
"""


def _render_report(mesh: Mesh, now: datetime, measure: bool) -> str:
    products = mesh.list_products()
    parts: list[str] = []
    compliance: dict[str, ComplianceReport] = {}
    sla: list[pd.DataFrame] = []
    errors: list[str] = []
    for p in products:
        try:
            compliance[p.name] = mesh.check(p.name, now=now, record=measure)
            sla.append(mesh.sla_status(p.name, now=now))
        except SharelabError as exc:  # a broken product is reported, not fatal for the report
            errors.append(f"{p.name}: {exc}")
    policies = mesh.list_policies()
    subs = mesh.subscriptions()
    parts.append(f"<h1>Data mesh report</h1><p>Generated at {_esc(_iso(now))}")
    if mesh.home is not None:
        parts.append(f" for lab home <code>{_esc(mesh.home.path)}</code>")
    parts.append("</p>")
    summary = pd.DataFrame(
        [
            ("domains", len(mesh.list_domains())),
            ("data products", len(products)),
            ("published versions", sum(len(mesh.versions(p.name)) for p in products)),
            ("active subscriptions", len(subs)),
            ("governance policies", len(policies)),
            (
                "products passing every mandatory policy",
                sum(1 for c in compliance.values() if c.passed),
            ),
        ],
        columns=["item", "count"],
    )
    parts.append("<h2>Summary</h2>" + _table_html(summary))
    parts.append("<h2>Domains</h2>" + _table_html(mesh.domains_frame()))
    parts.append("<h2>Data products</h2>" + _table_html(mesh.products_frame()))
    rows = []
    for p in products:
        latest = mesh.latest_version(p.name)
        rows.append(
            (
                p.name,
                latest.version if latest else "unpublished",
                _iso(latest.published_at) if latest else None,
                latest.access_policy.describe() if latest else None,
                ", ".join(f"{t}@v{v}" for t, v in latest.table_versions.items())
                if latest
                else None,
            )
        )
    parts.append(
        "<h3>Published versions</h3>"
        + _table_html(
            pd.DataFrame(
                rows, columns=["product", "version", "published_at", "access policy", "tables"]
            )
        )
    )
    parts.append("<h2>SLA status</h2>")
    parts.append(_table_html(pd.concat(sla, ignore_index=True) if sla else pd.DataFrame()))
    parts.append("<h2>Compliance</h2>")
    if policies:
        parts.append(
            _table_html(
                pd.DataFrame(
                    [
                        (p.name, p.rule, p.enforcement, p.scope_text(), p.description)
                        for p in policies
                    ],
                    columns=["policy", "rule", "enforcement", "applies to", "description"],
                )
            )
        )
    for name, rep in compliance.items():
        parts.append(
            f"<h3>{_esc(name)}: <span class='{rep.status}'>{rep.status}</span></h3>"
            + _table_html(rep.to_frame().drop(columns=["product"]), "no policy applies")
        )
    for err in errors:
        parts.append(f"<p class='FAIL'>{_esc(err)}</p>")
    history = mesh.quality_history()
    parts.append("<h2>Quality trends</h2>" + _img(_png(trend_figure(history)), "quality trends"))
    usage = mesh.usage()
    parts.append("<h2>Usage (audit log)</h2>" + _img(_png(usage_figure(usage)), "usage"))
    parts.append(_table_html(usage, "no reads yet"))
    parts.append("<h2>Subscriptions</h2>")
    parts.append(
        _table_html(
            pd.DataFrame(
                [
                    (s.product, s.recipient, s.consumer_domain, s.version, _iso(s.subscribed_at))
                    for s in subs
                ],
                columns=["product", "recipient", "consumer domain", "version", "subscribed_at"],
            )
        )
    )
    parts.append("<h2>Lineage</h2>" + _table_html(mesh.lineage().to_frame()))
    events = mesh.events().tail(30)
    parts.append("<h2>Recent mesh events</h2>" + _table_html(events))
    body = "\n".join(parts)
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>sharelab data mesh report</title>"
        f"<style>{_CSS}</style></head><body>{body}</body></html>"
    )
