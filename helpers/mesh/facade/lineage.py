"""Lineage and usage of :class:`~helpers.mesh.Mesh`: derivations between catalog tables, the graph up to
the recipients, the audit log's actual reads, and the impact of a change to a table."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import pandas as pd

from helpers.exceptions import InvalidArgumentError, SharelabError
from helpers.mesh.common import READ_ACTIONS, norm_location
from helpers.mesh.facade.base import MeshBase
from helpers.mesh.lineage import Impact, LineageGraph


class LineageMixin(MeshBase):
    """Record derivations and trace tables to shares, products, recipients and reads."""

    def add_lineage(self, source: str, target: str, transformation: str = "") -> None:
        """Record that catalog table ``target`` is derived from ``source`` (both registered), adding to
        its other sources (see :meth:`record_derivation` to record a whole build)."""
        src = self.catalog.get_table(source).name
        dst = self.catalog.get_table(target).name
        if src.lower() == dst.lower():
            raise InvalidArgumentError(f"a table cannot derive from itself ({src})")
        self.catalog.record_derivation(dst, [src], sql=transformation, kind="api", replace=False)

    def record_derivation(
        self, target: str, sources: Iterable[str], sql: str = "", *, replace: bool = True
    ) -> pd.DataFrame:
        """Record that registered table ``target`` is built from the registered ``sources`` by ``sql``
        (in the catalog, where ``CREATE TABLE ... AS SELECT`` and the generators record theirs too);
        ``replace`` forgets the target's earlier sources (a rebuild). Returns :meth:`derivations`."""
        dst = self.catalog.get_table(target).name
        srcs = [self.catalog.get_table(s).name for s in sources]
        if not srcs:
            raise InvalidArgumentError(
                f"record_derivation of {dst} needs at least one source table"
            )
        self.catalog.record_derivation(dst, srcs, sql=sql, kind="api", replace=replace)
        return self.derivations(dst)

    def derivations(self, table: str | None = None) -> pd.DataFrame:
        """Recorded derivations (of one table as target or source): target, source, kind, sql."""
        rows: list[tuple[str, str, str, str, datetime | None]] = [
            (d.target, d.source, d.kind, d.sql, d.recorded_at)
            for d in self.catalog.derivations(table)
        ]
        legacy = self._store.read("SELECT * FROM mesh_lineage ORDER BY target, source")
        for r in legacy:  # written by earlier versions of the mesh
            if table is None or table.lower() in (r["source"].lower(), r["target"].lower()):
                rows.append((r["target"], r["source"], "api", r["transformation"], None))
        return pd.DataFrame(rows, columns=["target", "source", "kind", "sql", "recorded_at"])

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
                    loc = norm_location(t.location)
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
        for r in self.derivations().drop_duplicates(["source", "target"]).itertuples(index=False):
            label = r.sql if len(r.sql) <= 80 else r.sql[:77] + "..."
            edges.append((node("table", r.source), node("table", r.target), "derives", label))
        product_of = {p.share.lower(): p for p in self.list_products()}
        for share in self.catalog.list_shares():
            s = node("share", share.name)
            for t in self._share_tables(share.name):
                tname = names.get(norm_location(t.location), t.location)
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
        """What a change to catalog table ``table`` would affect: the closure of derived tables with their
        level (1 = built directly from it), the shares and products holding any of them, the recipients
        granted those shares (the consumers reached), and the recipients who actually read them."""
        info = self.catalog.get_table(table)
        graph = self.lineage()
        start = f"table:{info.name}"
        # only follow data-flow edges (not "reads", which point from recipients to tables)
        flow = LineageGraph(graph.nodes, tuple(e for e in graph.edges if e[2] != "reads"))
        levels = flow.levels(start)
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
            info.name,
            tuple(derived),
            tuple(shares),
            tuple(products),
            tuple(recipients),
            usage,
            levels={n.split(":", 1)[1]: lv for n, lv in levels.items() if n.startswith("table:")},
            paths=flow.paths(start),
        )
