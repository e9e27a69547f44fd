"""Lineage recorded by the provider: a table created from a query (``CREATE TABLE ... AS SELECT``) is
recorded in the catalog as derived from the tables the query read (:meth:`Catalog.record_derivation`),
with the query's SQL, so the data mesh's impact analysis follows it."""

from __future__ import annotations

from collections.abc import Iterable

from helpers.catalog import Catalog, Derivation

__all__ = ["query_sources", "record_query_lineage"]

#: Labels of the engine's table references that are not tables of the catalog.
_NOT_TABLES = ("system.access.audit",)


def query_sources(labels: Iterable[str]) -> list[str]:
    """The catalog tables (``catalog.schema.table`` or ``delta.`/path```) among the labels the query
    engine gave the tables a query read (``table_changes('t')`` reads ``t``), in order, once each."""
    out: list[str] = []
    for label in labels:
        text = str(label)
        if text.startswith("table_changes('") and text.endswith("')"):
            text = text[len("table_changes('") : -2]
        if text.lower() in _NOT_TABLES or text in out:
            continue
        out.append(text)
    return out


def record_query_lineage(
    catalog: Catalog, target: str, labels: Iterable[str], sql: str, *, kind: str = "ctas"
) -> list[Derivation]:
    """Record ``target`` as built by ``sql`` from the tables behind ``labels`` (replacing what an earlier
    build recorded). A query that reads no table (``VALUES``) records nothing and forgets old sources."""
    sources = query_sources(labels)
    if not sources:
        catalog.forget_derivation(target)
        return []
    return catalog.record_derivation(target, sources, sql=sql, kind=kind)
