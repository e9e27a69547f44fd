"""Enforcement of :class:`~helpers.mesh.Mesh` below the mesh: what a published product asks the catalog to
guard on every path, whoever acts.

- **grant conditions**: a product's access policy (allowed consumer domains, required recipient
  properties) and its mandatory ``pii_columns_external == 0`` policies (when a column is tagged pii) are
  written as the share's grant conditions (:meth:`Catalog.set_grant_conditions`, ``set_by="mesh"``), so a
  plain ``GRANT SELECT ON SHARE`` through SQL, the Python API or the CLI is refused like a subscription;
- **violations**: existing grants a changed policy (or changed recipient properties) no longer allows,
  reported by :meth:`check` (policy ``access-policy``, mandatory) and the report, revoked on request by
  :meth:`enforce_access`;
- **pins**: every output table of the share is pinned at the Delta version published
  (:meth:`Catalog.pin_table_version`), so the server serves the published version and its history only.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pandas as pd

from helpers.catalog import GrantCondition, GrantViolation
from helpers.exceptions import SharelabError
from helpers.mesh.common import (
    DOMAIN_PROPERTY,
    EXTERNAL_PROPERTY,
    PII_TAG,
    SET_BY,
    iso,
    resolve_now,
)
from helpers.mesh.facade.governance import GovernanceMixin
from helpers.mesh.models import AccessPolicy, ComplianceReport, PolicyResult, Product
from helpers.mesh.rules import parse_rule

#: The policy name of a product's access policy (in refusals, violations and compliance).
ACCESS_POLICY = "access-policy"
#: Values of the ``external`` recipient property that mean "inside the organisation" ("" = unset).
INTERNAL_VALUES = ("", "false", "0", "no")


def access_conditions(p: Product, version: str, policy: AccessPolicy) -> list[dict[str, Any]]:
    """The grant conditions of a product's access policy."""
    where = f"access policy of data product {p.name!r} {version} (owner {p.owner!r})"
    conds: list[dict[str, Any]] = []
    if policy.allowed_domains:
        conds.append(
            {
                "policy": ACCESS_POLICY,
                "property": DOMAIN_PROPERTY,
                "allowed": list(policy.allowed_domains),
                "description": f"the {where} allows consumer domains "
                f"{list(policy.allowed_domains)} only",
            }
        )
    for key, value in policy.required_properties.items():
        conds.append(
            {
                "policy": ACCESS_POLICY,
                "property": key,
                "allowed": [value],
                "description": f"the {where} requires recipient property {key}={value}",
            }
        )
    return conds


class EnforcementMixin(GovernanceMixin):
    """Grant conditions, grant violations and pinned versions of published products."""

    # ------------------------------------------------------------------ grant conditions
    def _pii_conditions(self, p: Product) -> list[dict[str, Any]]:
        """A condition per mandatory no-pii-to-external policy, when the product has pii columns."""
        pii = [
            c for loc in self.output_tables(p).values() for c in self._tagged_columns(loc, PII_TAG)
        ]
        if not pii:
            return []
        out = []
        for pol in self.list_policies():
            if pol.enforcement != "mandatory" or not pol.applies(p):
                continue
            metric, op, threshold = parse_rule(pol.rule)
            if metric == "pii_columns_external" and op in ("==", "<=", "<") and threshold < 1:
                out.append(
                    {
                        "policy": pol.name,
                        "property": EXTERNAL_PROPERTY,
                        "allowed": list(INTERNAL_VALUES),
                        "description": f"mandatory policy {pol.name!r} ({pol.rule}): product "
                        f"{p.name!r} has pii columns {sorted(pii)}, external recipients are refused",
                    }
                )
        return out

    def _sync_conditions(
        self, p: Product, version: str | None = None, policy: AccessPolicy | None = None
    ) -> list[GrantCondition]:
        """Write the product's grant conditions on its share (the latest published version's policy)."""
        if policy is None or version is None:
            latest = self.latest_version(p.name)
            if latest is None:
                return []
            version, policy = latest.version, latest.access_policy
        conds = access_conditions(p, version, policy) + self._pii_conditions(p)
        return self.catalog.set_grant_conditions(p.share, conds, set_by=SET_BY)

    def _governance_changed(self) -> None:
        self.sync_enforcement()

    def sync_enforcement(self) -> None:
        """Rewrite the grant conditions of every published product (after a policy or tag change)."""
        for p in self.list_products():
            try:
                self._sync_conditions(p)
            except SharelabError:  # a product whose tables are gone keeps its last conditions
                continue

    def grant_conditions(self, product: str) -> pd.DataFrame:
        """The grant conditions the catalog enforces on the product's share."""
        p = self.get_product(product)
        rows = [
            (
                c.policy,
                c.property,
                ", ".join(a or "(unset)" for a in c.allowed),
                c.description,
                c.set_by,
            )
            for c in self.catalog.grant_conditions(p.share)
        ]
        return pd.DataFrame(
            rows, columns=["policy", "property", "allowed", "description", "set_by"]
        )

    # ------------------------------------------------------------------ violations
    def access_violations(self, product: str | None = None) -> list[GrantViolation]:
        """Grants on the product's share (or every product's) that its policies no longer allow."""
        products = [self.get_product(product)] if product else self.list_products()
        out: list[GrantViolation] = []
        for p in products:
            out += self.catalog.grant_violations(p.share)
        return out

    def _access_result(self, p: Product) -> PolicyResult | None:
        """The ``access-policy`` verdict on the existing grants (None before the first publication)."""
        latest = self.latest_version(p.name)
        if latest is None:
            return None
        bad = self.catalog.grant_violations(p.share)
        granted = len(self._granted(p.share))
        if bad:
            evidence = (
                f"{len(bad)} of {granted} grant(s) on share {p.share!r} violate the policies: "
                + "; ".join(f"{v.recipient} ({v.policy}: {v.reason})" for v in bad)
                + "; revoke them (mesh.enforce_access) or change the policy"
            )
        else:
            evidence = (
                f"all {granted} grant(s) on share {p.share!r} are allowed by "
                f"{latest.access_policy.describe()}"
            )
        return PolicyResult(
            ACCESS_POLICY,
            "mandatory",
            "FAIL" if bad else "PASS",
            "grant_violations",
            "==",
            0.0,
            float(len(bad)),
            evidence,
        )

    def check(
        self, product: str, *, now: datetime | None = None, record: bool = True
    ) -> ComplianceReport:
        """Measure the product and evaluate every applicable policy (PASS / FAIL / N/A with evidence),
        plus ``access-policy``: whether every existing grant is one its access policy allows."""
        report = super().check(product, now=now, record=record)
        extra = self._access_result(self.get_product(product))
        if extra is None:
            return report
        return ComplianceReport(report.product, report.checked_at, (*report.results, extra))

    def enforce_access(self, product: str, *, now: datetime | None = None) -> list[GrantViolation]:
        """Revoke every grant on the product's share that its policies no longer allow (and end those
        recipients' subscriptions), in one transaction; returns what was revoked."""
        p = self.get_product(product)
        at = resolve_now(now)
        bad = self.catalog.grant_violations(p.share)

        def tx(con: sqlite3.Connection) -> None:
            for v in bad:
                self.catalog.revoke(p.share, v.recipient)
                con.execute(
                    "UPDATE mesh_subscriptions SET status='revoked', ended_at=? WHERE product=? AND "
                    "recipient=? AND status='active'",
                    (iso(at), p.name, v.recipient),
                )
                self._event(
                    con, "grant_revoked", p.name, v.recipient, f"{v.policy}: {v.reason}", at
                )

        self._store.write(tx)
        return bad

    # ------------------------------------------------------------------ pins
    def _pin_versions(self, p: Product, table_versions: Mapping[str, int]) -> None:
        """Pin every published output table of the share at its published Delta version."""
        for alias, version in table_versions.items():
            self.catalog.pin_table_version(p.share, alias, int(version), set_by=SET_BY)

    def served_versions(self, product: str) -> pd.DataFrame:
        """Per table of the product's share: the Delta version recipients are served (the pin) and the
        table's latest version (a difference is an unpublished change)."""
        from helpers.storage.delta_log import get_log

        p = self.get_product(product)
        rows = []
        for t in self._share_tables(p.share):
            latest = get_log(str(t.location)).latest_version()
            served = t.pinned_version if t.pinned_version is not None else latest
            rows.append(
                (
                    f"{t.schema}.{t.name}",
                    served,
                    latest,
                    t.pinned_version is not None,
                    latest - served,
                )
            )
        return pd.DataFrame(
            rows,
            columns=["table", "served_version", "latest_version", "pinned", "unpublished_commits"],
        )
