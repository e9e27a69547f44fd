"""SQL identifier quoting shared by every stage that writes DuckDB SQL text (provider, recipient, mesh)."""

from __future__ import annotations


def quote_ident(name: str) -> str:
    """``name`` as a double-quoted SQL identifier (embedded quotes doubled), safe in DuckDB and SQLite."""
    return '"' + name.replace('"', '""') + '"'
