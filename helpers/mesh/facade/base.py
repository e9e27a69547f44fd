"""The core of :class:`~helpers.mesh.Mesh`: its catalog and store, the event log, and the lookups of stored
mesh records and of the catalog that every concern (products, governance, publishing, ...) reads."""

from __future__ import annotations

import os
import sqlite3
from datetime import datetime
from typing import Any

import pandas as pd

from helpers.catalog import Catalog, SharedTable, open_catalog
from helpers.exceptions import InvalidArgumentError, NotFoundError, SharelabError
from helpers.home import LabHome
from helpers.mesh.common import SET_BY, iso, norm_location, resolve_now
from helpers.mesh.models import Domain, Policy, Product, ProductVersion, Subscription, ValidityRule
from helpers.mesh.store import MeshStore


class MeshBase:
    """State and lookups shared by the concerns of :class:`~helpers.mesh.Mesh` (see its parameters)."""

    def __init__(
        self, home: str | os.PathLike[str] | None = None, *, catalog: Catalog | None = None
    ):
        self.home: LabHome | None
        if catalog is None:
            self.home = LabHome.resolve(home)
            self.catalog = open_catalog(self.home)
        else:
            self.catalog = catalog
            self.home = LabHome.resolve(home) if home is not None else None
        # the mesh tables live in the catalog's file, behind the catalog's one database layer
        self._store = MeshStore(self.catalog.db)

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
            (iso(resolve_now(now)), kind, product, subject, detail),
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

    # ---------------------------------------------------------------------------------- enforcement
    def _governance_changed(self) -> None:
        """A policy or a column tag changed: the enforcement concern rewrites the grant conditions."""

    def _release_share(self, share: str) -> None:
        """Drop the grant conditions and version pins the mesh set on ``share`` (product dropped)."""
        self.catalog.set_grant_conditions(share, [], set_by=SET_BY)
        for pin in self.catalog.table_pins(share):
            if pin.set_by == SET_BY:
                self.catalog.unpin_table_version(share, pin.alias)

    # ---------------------------------------------------------------------------------- domains
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

    # ---------------------------------------------------------------------------------- products
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

    # ------------------------------------------------------------------ tables of a product
    def _share_tables(self, share: str) -> list[SharedTable]:
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

    # ------------------------------------------------------------------ rules and tags
    def validity_rules(self, product: str) -> list[ValidityRule]:
        p = self.get_product(product)
        rows = self._store.read(
            "SELECT * FROM mesh_rules WHERE product = ? ORDER BY table_alias, name", (p.name,)
        )
        return [ValidityRule(p.name, r["table_alias"], r["name"], r["expression"]) for r in rows]

    def _tagged_columns(self, location: str, tag: str) -> list[str]:
        rows = self._store.read(
            "SELECT column_name FROM mesh_column_tags WHERE location = ? AND tag = ?",
            (norm_location(location), tag),
        )
        return [r["column_name"] for r in rows]

    # ------------------------------------------------------------------ policies
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

    # ------------------------------------------------------------------ versions
    def versions(self, product: str) -> list[ProductVersion]:
        p = self.get_product(product)
        rows = self._store.read(
            "SELECT * FROM mesh_versions WHERE product = ? ORDER BY major, minor, patch", (p.name,)
        )
        return [ProductVersion.from_row(r) for r in rows]

    def latest_version(self, product: str) -> ProductVersion | None:
        versions = self.versions(product)
        return versions[-1] if versions else None

    # ------------------------------------------------------------------ subscriptions
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

    # ------------------------------------------------------------------ catalog and audit log
    def _recipient_properties(self, name: str) -> dict[str, str]:
        try:
            rec = self.catalog.get_recipient(name)
        except NotFoundError:
            return {}
        return {str(k): str(v) for k, v in dict(rec.properties or {}).items()}

    def _granted(self, share: str) -> list[str]:
        return [g.recipient for g in self.catalog.grants_on_share(share)]

    def _audit(self) -> pd.DataFrame | None:
        try:
            return self.catalog.audit_frame()
        except SharelabError:
            return None

    def _location_names(self) -> dict[str, str]:
        """Normalized location -> catalog table name."""
        return {norm_location(t.location): t.name for t in self.catalog.list_tables()}
