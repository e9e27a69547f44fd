"""Domains, data products over shares, their validity rules and column tags (the :class:`~helpers.mesh.Mesh`
methods that declare what the mesh holds)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from helpers.exceptions import AlreadyExistsError, InvalidArgumentError, NotFoundError
from helpers.mesh.common import (
    COMPATIBILITY_MODES,
    PII_TAG,
    check_name,
    iso,
    norm_location,
    resolve_now,
)
from helpers.mesh.delta import delta_schema, open_delta
from helpers.mesh.facade.base import MeshBase
from helpers.mesh.models import SLA, Domain, Product, ValidityRule
from helpers.mesh.quality import validity
from helpers.mesh.rules import check_sql_expression
from helpers.mesh.store import fetch_row


class ProductsMixin(MeshBase):
    """Register domains, declare products over shares, add validity rules and tag columns."""

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
        check_name("domain", name)
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
                (name, owner, json.dumps(team_list), description, iso(resolve_now())),
            )
            self._event(con, "domain_registered", None, name, f"owner {owner}")

        self._store.write(tx)
        return self.get_domain(name)

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
        check_name("product", name)
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
        outputs = [str(t) for t in output_tables]
        keys_d = {str(k): [str(c) for c in v] for k, v in (keys or {}).items()}
        opt_d = {str(k): [str(c) for c in v] for k, v in (optional_columns or {}).items()}
        self._check_product_tables(share_name, outputs, keys_d, opt_d)
        tag_list = sorted({str(t).strip().lower() for t in tags if str(t).strip()})

        def tx(con: sqlite3.Connection) -> None:
            if con.execute("SELECT 1 FROM mesh_products WHERE name = ?", (name,)).fetchone():
                if if_not_exists:
                    return
                raise AlreadyExistsError(
                    f"product {name!r} already exists; use if_not_exists=True to keep it"
                )
            other = fetch_row(con, "SELECT name FROM mesh_products WHERE share = ?", (share_name,))
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
                    iso(resolve_now()),
                ),
            )
            self._event(con, "product_created", name, dom.name, f"share {share_name}")

        self._store.write(tx)
        return self.get_product(name)

    def _check_product_tables(
        self,
        share_name: str,
        outputs: list[str],
        keys_d: Mapping[str, list[str]],
        opt_d: Mapping[str, list[str]],
    ) -> None:
        """The output tables, keys and optional columns of a new product name tables and columns of
        ``share_name``."""
        existing = {t.lower(): t for t in self._share_aliases(share_name)}
        for alias in outputs:
            if alias.lower() not in existing:
                raise NotFoundError(
                    f"share {share_name!r} has no table {alias!r} (it has {sorted(existing.values())}); "
                    "add it to the share first"
                )
        for kind, mapping in (("keys", keys_d), ("optional_columns", opt_d)):
            for alias, cols in mapping.items():
                if alias.lower() not in existing:
                    raise NotFoundError(
                        f"{kind} names table {alias!r}, which share {share_name!r} does not hold "
                        f"({sorted(existing.values())})"
                    )
                self._check_columns(share_name, alias, cols, kind)

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
        values: dict[str, Any] = {
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
            self._release_share(product.share)
            self._event(con, "product_dropped", product.name, None, "")

        self._store.write(tx)
        return True

    def _check_columns(self, share: str, alias: str, cols: Iterable[str], what: str) -> None:
        locs = {f"{t.schema}.{t.name}".lower(): t.location for t in self._share_tables(share)}
        loc = locs.get(alias.lower())
        if loc is None:
            raise NotFoundError(f"share {share!r} has no table {alias!r}")
        names = {f["name"].lower() for f in delta_schema(open_delta(loc))["fields"]}
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
        check_name("rule", name)
        alias, location = self._location(p, table)
        text = check_sql_expression(expression)
        validity(location, {name: text})  # raises InvalidArgumentError naming the column/typo

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
                (p.name, alias, name, text, iso(resolve_now())),
            )

        self._store.write(tx)
        return ValidityRule(p.name, alias, name, text)

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
            f["name"].lower(): f["name"] for f in delta_schema(open_delta(info.location))["fields"]
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
                    norm_location(info.location),
                    info.name,
                    names[column.lower()],
                    tag_v,
                    iso(resolve_now()),
                ),
            )

        self._store.write(tx)
        self._governance_changed()

    def untag_column(self, table: str, column: str, tag: str = PII_TAG) -> None:
        info = self.catalog.get_table(table)
        self._store.write(
            lambda con: con.execute(
                "DELETE FROM mesh_column_tags WHERE location=? AND column_name=? AND tag=?",
                (norm_location(info.location), column, tag),
            )
        )
        self._governance_changed()

    def column_tags(self, table: str | None = None) -> pd.DataFrame:
        """Tagged columns (of one catalog table, or all)."""
        if table:
            info = self.catalog.get_table(table)
            rows = self._store.read(
                "SELECT table_name, column_name, tag FROM mesh_column_tags WHERE location = ?",
                (norm_location(info.location),),
            )
        else:
            rows = self._store.read("SELECT table_name, column_name, tag FROM mesh_column_tags")
        return pd.DataFrame([tuple(r) for r in rows], columns=["table", "column", "tag"])
