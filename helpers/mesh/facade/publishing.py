"""Publishing a product version (:class:`~helpers.mesh.Mesh`): the schema contract against the latest
published version, the version number, the policies that must pass, and the recorded version."""

from __future__ import annotations

import json
import sqlite3
import warnings
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NoReturn

from helpers.exceptions import (
    AlreadyExistsError,
    InvalidArgumentError,
    PolicyViolationError,
    SchemaCompatibilityError,
)
from helpers.mesh.common import MeshPolicyWarning, iso, resolve_now
from helpers.mesh.compat import CompatibilityResult, SchemaChange, compare_schemas, type_text
from helpers.mesh.delta import delta_schema, open_delta
from helpers.mesh.facade.enforcement import EnforcementMixin
from helpers.mesh.models import (
    AccessPolicy,
    ComplianceReport,
    Product,
    ProductVersion,
    QualityReport,
    parse_version,
    version_text,
)


class PublishingMixin(EnforcementMixin):
    """Check schema compatibility and publish versions."""

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
            out[alias] = compare_schemas(old, delta_schema(open_delta(loc)), alias)
        cur_lower = {k.lower() for k in current}
        for alias, schema in published.items():
            if alias.lower() not in cur_lower:  # a removed output table breaks every consumer of it
                out[alias] = CompatibilityResult(
                    alias,
                    tuple(
                        SchemaChange(
                            alias + "." + f["name"],
                            "drop_column",
                            type_text(f["type"]),
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
        major_alias: bool = True,
        now: datetime | None = None,
    ) -> ProductVersion:
        """Publish a version: measure quality, enforce the policies and the schema contract, record every
        output table's Delta schema and version and the access policy, then pin the share's tables at
        the published versions (recipients read the published version, never a later commit) and write
        the access policy as the share's grant conditions (a plain GRANT obeys it too).

        :param version: ``MAJOR.MINOR.PATCH``; default: 1.0.0 first, then the next minor when a schema
            changed compatibly, else the next patch. A breaking change needs a higher major.
        :param access_policy: who may subscribe (default: the previous version's, else open).
        :param major_alias: a breaking change published as a new major version is served under its own
            alias ``<schema>.<table>_v<major>``, while the old alias stays pinned at the previous major's
            last version so existing consumers keep working (``retire_alias`` removes it later);
            False moves the old alias to the new version instead.
        :raises PolicyViolationError: a mandatory policy failed (message names it and the evidence).
        :raises SchemaCompatibilityError: breaking schema change without a new major version.
        """
        p = self.get_product(product)
        at = resolve_now(now)
        latest = self.latest_version(p.name)
        policy = self._access_policy(access_policy, latest)
        outputs = self.output_tables(p)
        report = self._measure(p, at)
        compliance = self._evaluate(p, report, at)
        if compliance.failures:
            self._refuse_publication(p, compliance, at)
        compat = self.check_compatibility(p.name) if latest else {}
        new = _next_version(p, latest, version, compat)
        text = version_text(new)
        warn_texts = tuple(f"{r.policy}: {r.evidence}" for r in compliance.warnings)
        schemas, table_versions = _published_schemas(report)
        changes = {t: [c.to_dict() for c in r.changes] for t, r in compat.items() if r.changed}
        assert set(schemas) == set(outputs)
        renames: dict[str, str] = {}
        if major_alias and latest is not None and new[0] > parse_version(latest.version)[0]:
            renames = {
                t: f"{t}_v{new[0]}" for t, r in compat.items() if r.breaking(p.compatibility)
            }
            renames = {t: a for t, a in renames.items() if t in schemas}
            schemas = {renames.get(t, t): v for t, v in schemas.items()}
            table_versions = {renames.get(t, t): v for t, v in table_versions.items()}
            changes = {renames.get(t, t): v for t, v in changes.items()}
        row = (
            p.name,
            text,
            new[0],
            new[1],
            new[2],
            iso(at),
            json.dumps(schemas),
            json.dumps(table_versions),
            json.dumps(policy.to_dict()),
            json.dumps(_compliance_rows(compliance)),
            json.dumps(list(warn_texts)),
            json.dumps(changes),
        )

        def tx(
            con: sqlite3.Connection,
        ) -> None:  # one transaction with the catalog's pins and conditions
            self._record_version(con, row, report, policy, at)
            if renames:
                self._add_major_aliases(con, p, renames, text, at)
            self._pin_versions(p, table_versions)
            self._sync_conditions(self.get_product(p.name), text, policy)

        self._store.write(tx)
        for w in warn_texts:
            warnings.warn(f"{p.name} {text}: advisory policy {w}", MeshPolicyWarning, stacklevel=2)
        for v in self.catalog.grant_violations(p.share):
            warnings.warn(
                f"{p.name} {text}: the existing grant to {v.recipient!r} breaks {v.policy}: {v.reason}; "
                "mesh.enforce_access revokes it",
                MeshPolicyWarning,
                stacklevel=2,
            )
        return [v for v in self.versions(p.name) if v.version == text][0]

    def _add_major_aliases(
        self,
        con: sqlite3.Connection,
        p: Product,
        renames: Mapping[str, str],
        text: str,
        at: datetime,
    ) -> None:
        """Share each renamed output table under its new alias too; the product's outputs become the
        new aliases while the old ones stay in the share, pinned at the previous version."""
        tables = {f"{t.schema}.{t.name}".lower(): t for t in self._share_tables(p.share)}
        existing = set(tables)
        for old, new_alias in renames.items():
            t = tables[old.lower()]
            if new_alias.lower() not in existing:
                self.catalog.add_table_to_share(
                    p.share,
                    t.source,
                    alias=new_alias,
                    history=t.history,
                    partition=t.partition_filter,
                    comment=f"{p.name} {text}: major version of {old}",
                )
            self._event(
                con,
                "major_alias",
                p.name,
                new_alias,
                f"{text} is served as {new_alias}; {old} stays at the previous version",
                at,
            )
        outputs = [renames.get(a, a) for a in self.output_tables(p)]
        con.execute(
            "UPDATE mesh_products SET output_tables = ? WHERE name = ?",
            (json.dumps(outputs), p.name),
        )

    def retire_alias(self, product: str, alias: str, *, now: datetime | None = None) -> None:
        """Remove an alias a major version left behind (``schema.table``, no longer an output table)
        from the product's share; its consumers must have moved to the new alias."""
        p = self.get_product(product)
        if alias.lower() in {a.lower() for a in self.output_tables(p)}:
            raise InvalidArgumentError(
                f"{alias} is an output table of {p.name!r}; only an alias left behind by a major "
                "version can be retired"
            )
        at = resolve_now(now)

        def tx(con: sqlite3.Connection) -> None:
            self.catalog.remove_table_from_share(p.share, alias)
            self._event(con, "alias_retired", p.name, alias, "removed from the share", at)

        self._store.write(tx)

    def _access_policy(
        self,
        access_policy: AccessPolicy | Mapping[str, Any] | None,
        latest: ProductVersion | None,
    ) -> AccessPolicy:
        """The access policy of a new version: the given one, else the previous version's, else open."""
        policy = (
            AccessPolicy.from_value(access_policy)
            if access_policy is not None
            else (latest.access_policy if latest else AccessPolicy())
        )
        for d in policy.allowed_domains:
            self.get_domain(d)  # an allowed domain must exist: typos would lock everybody out
        return policy

    def _refuse_publication(
        self, p: Product, compliance: ComplianceReport, at: datetime
    ) -> NoReturn:
        """Log the refused publication and raise the first failed mandatory policy."""
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

    def _record_version(
        self,
        con: sqlite3.Connection,
        row: tuple[Any, ...],
        report: QualityReport,
        policy: AccessPolicy,
        at: datetime,
    ) -> None:
        """Insert the version ``row`` with the quality measured for it, in the caller's transaction."""
        product, text = row[0], row[1]
        if con.execute(
            "SELECT 1 FROM mesh_versions WHERE product=? AND version=?", (product, text)
        ).fetchone():
            raise AlreadyExistsError(f"version {text} of {product!r} is already published")
        con.execute("INSERT INTO mesh_versions VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", row)
        self._store_quality(con, report)
        self._event(con, "published", product, text, policy.describe(), at)


def _next_version(
    p: Product,
    latest: ProductVersion | None,
    version: str | None,
    compat: Mapping[str, CompatibilityResult],
) -> tuple[int, int, int]:
    """The version to publish: ``version`` checked against the latest one and the schema contract, or
    (None) 1.0.0 first, then the next minor when a schema changed compatibly, else the next patch.

    :raises SchemaCompatibilityError: a breaking change without a higher major version.
    """
    breaking = {
        t: r.breaking(p.compatibility) for t, r in compat.items() if r.breaking(p.compatibility)
    }
    changed = any(r.changed for r in compat.values())
    if version is None:
        if latest is None:
            return (1, 0, 0)
        ma, mi, pa_ = parse_version(latest.version)
        if breaking:
            new = (ma + 1, 0, 0)
            # an automatic major bump would hide the break: make the caller say it
            raise SchemaCompatibilityError(
                _breaking_message(p, latest.version, breaking)
                + f"; publish it as version '{version_text(new)}' on purpose",
                policy="schema-contract",
                evidence=_breaking_evidence(breaking),
            )
        return (ma, mi + 1, 0) if changed else (ma, mi, pa_ + 1)
    new = parse_version(version)
    if latest is not None:
        old = parse_version(latest.version)
        if new <= old:
            raise InvalidArgumentError(
                f"version {version_text(new)} of {p.name!r} must be greater than the latest "
                f"published version {latest.version}"
            )
        if breaking and new[0] <= old[0]:
            raise SchemaCompatibilityError(
                _breaking_message(p, latest.version, breaking)
                + f"; a breaking change needs a new major version, e.g. '{old[0] + 1}.0.0'",
                policy="schema-contract",
                evidence=_breaking_evidence(breaking),
            )
    return new


def _published_schemas(report: QualityReport) -> tuple[dict[str, Any], dict[str, int]]:
    """Each measured output table's Delta schema and the Delta version the measurement read."""
    schemas: dict[str, Any] = {}
    table_versions: dict[str, int] = {}
    for t in report.tables:
        dt = open_delta(t.location)
        schemas[t.table] = delta_schema(dt)
        table_versions[t.table] = t.delta_version
    return schemas, table_versions


def _compliance_rows(compliance: ComplianceReport) -> list[dict[str, Any]]:
    return [
        {
            "policy": r.policy,
            "enforcement": r.enforcement,
            "status": r.status,
            "measured": r.measured,
            "evidence": r.evidence,
        }
        for r in compliance.results
    ]


def _breaking_evidence(breaking: Mapping[str, Sequence[SchemaChange]]) -> str:
    return "; ".join(f"{t}: " + ", ".join(c.describe() for c in cs) for t, cs in breaking.items())


def _breaking_message(
    p: Product, published: str, breaking: Mapping[str, Sequence[SchemaChange]]
) -> str:
    return (
        f"schema of {p.name!r} breaks its {p.compatibility} contract with published version {published}: "
        + _breaking_evidence(breaking)
    )
