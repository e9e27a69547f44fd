"""The catalog's database backends: SQLite (the embedded default) and PostgreSQL.

:class:`helpers.catalog.db.Database` holds the transaction, pool and migration policy; a backend holds what
differs: how to connect, how a write transaction takes the write lock, where schema versions live and the
SQL dialect. ``Database("…/catalog.db")`` is SQLite; ``Database("postgresql://…")`` is PostgreSQL.
"""

from __future__ import annotations

import os

__all__ = [
    "CATALOG_URL_ENV",
    "HOME_SCHEMA",
    "catalog_url",
    "is_postgres_url",
    "redact_url",
    "url_for_path",
]

#: In a catalog URL, ``schema={home}`` names one schema per lab home (``lab_`` + a hash of the catalog's
#: path): one PostgreSQL database then holds the catalogs of many lab homes, each apart.
HOME_SCHEMA = "{home}"

#: Environment variable naming a PostgreSQL catalog (``sharelab --catalog-url`` sets it).
CATALOG_URL_ENV = "SHARELAB_CATALOG_URL"


def is_postgres_url(value: object) -> bool:
    """Whether ``value`` is a ``postgresql://`` (or ``postgres://``) URL."""
    return isinstance(value, str) and value.startswith(("postgresql://", "postgres://"))


def catalog_url(explicit: str | None = None) -> str | None:
    """The PostgreSQL catalog URL in force: ``explicit``, else ``$SHARELAB_CATALOG_URL``, else None (SQLite)."""
    url = (explicit or os.environ.get(CATALOG_URL_ENV, "")).strip()
    return url or None


def redact_url(url: str) -> str:
    """``url`` without its password (for messages and ``repr``)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username}:***@{host}" if parts.username else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def url_for_path(url: str, path: os.PathLike[str] | str) -> str:
    """``url`` with ``{home}`` (see :data:`HOME_SCHEMA`) replaced by the schema of the catalog at ``path``."""
    import hashlib

    for token in (HOME_SCHEMA, "%7Bhome%7D", "%7bhome%7d"):
        if token in url:
            digest = hashlib.sha256(os.fspath(path).encode()).hexdigest()[:16]
            return url.replace(token, f"lab_{digest}")
    return url
