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
- **lineage** links source tables, derived tables (recorded in the catalog by the generators, ``CREATE TABLE
  ... AS SELECT`` and :meth:`Mesh.record_derivation`), shares, products and recipients, and **usage** comes
  from the sharing server's audit log;
- **enforcement** below the mesh: publishing writes the access policy as the share's grant conditions (the
  catalog refuses a plain ``GRANT`` that breaks it) and pins the share's tables at the published versions
  (the server serves nothing newer).

Mesh state lives in the catalog's SQLite file, in tables prefixed ``mesh_``, behind the catalog's one database
layer. See ``docs/mesh.md``.

Modules: :mod:`.common` (constants, clock, names), :mod:`.models` (value types), :mod:`.store` (the mesh
tables), :mod:`.delta` (reading Delta tables), :mod:`.compat` (schema compatibility), :mod:`.rules` (policy
and validity rules), :mod:`.quality` (measuring a table), :mod:`.lineage` (graph and impact),
:mod:`.retention` (retention vs the promised time-travel window), :mod:`.trends` (trend verdicts),
:mod:`.report` and :mod:`.report_governance` (figures and HTML), :mod:`.facade` (the :class:`Mesh` API),
:mod:`.cli` (``sharelab mesh``).
"""

from __future__ import annotations

from helpers.mesh.common import (
    COMPATIBILITY_MODES,
    DOMAIN_PROPERTY,
    ENFORCEMENTS,
    EXTERNAL_PROPERTY,
    PII_TAG,
    READ_ACTIONS,
    MeshPolicyWarning,
)
from helpers.mesh.compat import CompatibilityResult, SchemaChange, compare_schemas
from helpers.mesh.facade import Mesh
from helpers.mesh.lineage import Impact, LineageGraph
from helpers.mesh.models import (
    SLA,
    AccessPolicy,
    ComplianceReport,
    Domain,
    Policy,
    PolicyResult,
    Product,
    ProductVersion,
    QualityReport,
    SearchHit,
    Subscription,
    TableQuality,
    ValidityRule,
)
from helpers.mesh.report import trend_figure, usage_figure
from helpers.mesh.rules import DEFAULT_POLICIES, METRICS, parse_rule
from helpers.mesh.trends import trend_verdicts

__all__ = [
    "COMPATIBILITY_MODES",
    "DEFAULT_POLICIES",
    "DOMAIN_PROPERTY",
    "ENFORCEMENTS",
    "EXTERNAL_PROPERTY",
    "METRICS",
    "PII_TAG",
    "READ_ACTIONS",
    "SLA",
    "AccessPolicy",
    "CompatibilityResult",
    "ComplianceReport",
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
    "SearchHit",
    "Subscription",
    "TableQuality",
    "ValidityRule",
    "compare_schemas",
    "parse_rule",
    "trend_figure",
    "trend_verdicts",
    "usage_figure",
]
