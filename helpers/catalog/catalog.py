"""The :class:`Catalog`: the provider catalog's API over one :class:`~helpers.catalog.db.Database`.

The catalog lives at ``<lab home>/catalog.db``; the lab home is ``sharelab --home DIR``, else
``$SHARELAB_HOME``, else ``~/.sharelab`` (see :mod:`helpers.home`). Its calls are grouped by subject in
mixins: :mod:`~helpers.catalog.shares` (tables, shares), :mod:`~helpers.catalog.recipients` (recipients,
tokens, activation, grants) and :mod:`~helpers.catalog.audit`.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from helpers.catalog.access import AccessMixin
from helpers.catalog.audit import AuditMixin
from helpers.catalog.backends import catalog_url, is_postgres_url, redact_url, url_for_path
from helpers.catalog.checks import check_comment
from helpers.catalog.db import Database
from helpers.catalog.generation import ensure_generation
from helpers.catalog.governance import COMPONENT as GOVERNANCE_COMPONENT
from helpers.catalog.governance import MIGRATIONS as GOVERNANCE_MIGRATIONS
from helpers.catalog.governance import GovernanceMixin
from helpers.catalog.lineage import COMPONENT as LINEAGE_COMPONENT
from helpers.catalog.lineage import MIGRATIONS as LINEAGE_MIGRATIONS
from helpers.catalog.lineage import LineageMixin
from helpers.catalog.names import validate_name
from helpers.catalog.objects import COMPONENT as OBJECTS_COMPONENT
from helpers.catalog.objects import MIGRATIONS as OBJECTS_MIGRATIONS
from helpers.catalog.objects import ObjectsMixin
from helpers.catalog.recipients import RecipientsMixin
from helpers.catalog.rows import recipient_row, share_row
from helpers.catalog.schema import COMPONENT, MIGRATIONS
from helpers.catalog.shares import SharesMixin
from helpers.catalog.views_schema import COMPONENT as VIEWS_COMPONENT
from helpers.catalog.views_schema import MIGRATIONS as VIEWS_MIGRATIONS
from helpers.catalog.watch import ensure_watch_schema
from helpers.exceptions import InvalidArgumentError, SharelabError
from helpers.home import LabHome

__all__ = ["Catalog", "open_catalog"]


class Catalog(
    SharesMixin,
    RecipientsMixin,
    AuditMixin,
    GovernanceMixin,
    LineageMixin,
    ObjectsMixin,
    AccessMixin,
):
    """The provider catalog in one SQLite file (see :mod:`helpers.catalog` for the guarantees).

    :param path: the SQLite file, or a lab home directory (then ``<dir>/catalog.db``); default: the
        catalog of :func:`helpers.home.resolve_home`.
    :param url: a ``postgresql://`` URL: the catalog lives in that PostgreSQL database instead (default:
        ``$SHARELAB_CATALOG_URL``, which ``sharelab --catalog-url`` sets; unset means the SQLite file).
    """

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, url: str | None = None
    ) -> None:
        if path is None:
            path = LabHome.resolve().catalog_path
        p = Path(path).expanduser()
        if p.is_dir():
            p = p / "catalog.db"
        p.parent.mkdir(parents=True, exist_ok=True)
        self.path: Path = p.resolve()
        #: The PostgreSQL catalog's URL, or None for the SQLite file :attr:`path`.
        self.url: str | None = catalog_url(url)
        if self.url is not None:
            self.url = url_for_path(self.url, self.path)
        if self.url is not None and not is_postgres_url(self.url):
            raise InvalidArgumentError(
                f"catalog URL {redact_url(self.url)!r} must start with postgresql:// "
                "(e.g. postgresql://sharelab@db:5432/sharelab); leave it unset for the SQLite file"
            )
        #: The database layer: ``with catalog.db.transaction():`` makes several calls one transaction.
        self.db: Database = Database(self.url or self.path)
        try:
            self.db.ensure_schema(COMPONENT, MIGRATIONS)
            self.db.ensure_schema(GOVERNANCE_COMPONENT, GOVERNANCE_MIGRATIONS)
            self.db.ensure_schema(LINEAGE_COMPONENT, LINEAGE_MIGRATIONS)
            self.db.ensure_schema(OBJECTS_COMPONENT, OBJECTS_MIGRATIONS)  # catalogs, schemas
            self.db.ensure_schema(VIEWS_COMPONENT, VIEWS_MIGRATIONS)  # shared views, IP lists
            ensure_generation(self.db)  # last: a trigger on every table that decides access
            ensure_watch_schema(
                self.db
            )  # PostgreSQL: its notify trigger, writers wait for watchers
        except sqlite3.DatabaseError as exc:  # not a database, unreadable directory, disk full...
            self.close()
            raise SharelabError(
                f"cannot open the catalog {self.path}: {exc}; check the file and its permissions, "
                "or use another lab home (--home DIR)"
            ) from exc

    def __repr__(self) -> str:
        return f"Catalog({self.db.location!r})"

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every idle connection this object opened (in this process); it reopens when used again."""
        self.db.close()

    def schema_version(self) -> int:
        """The catalog file's ``PRAGMA user_version``."""
        return self.db.schema_version(COMPONENT)

    # -- comments (shares and recipients) --------------------------------------------------------

    def set_comment(self, kind: str, name: str, comment: str | None) -> None:
        """``COMMENT ON SHARE|RECIPIENT name IS 'text' | NULL``: replace the comment (None removes it).

        :param kind: ``"share"`` or ``"recipient"``.
        :raises NotFoundError: unknown share or recipient. :raises InvalidArgumentError: bad kind or comment.
        """
        if kind not in ("share", "recipient"):
            raise InvalidArgumentError(f"COMMENT ON takes SHARE or RECIPIENT, not {kind!r}")
        validate_name(name, kind)
        check_comment(comment)

        def body(conn: sqlite3.Connection) -> None:
            if kind == "share":
                row = share_row(conn, name)
                conn.execute("UPDATE shares SET comment = ? WHERE id = ?", (comment, row["id"]))
            else:
                row = recipient_row(conn, name)
                conn.execute("UPDATE recipients SET comment = ? WHERE id = ?", (comment, row["id"]))

        self.db.write(body)


def open_catalog(home: LabHome | str | os.PathLike[str] | None = None) -> Catalog:
    """Open (creating and migrating) the catalog of the lab home ``home`` (see :func:`helpers.home.resolve_home`)."""
    lab = home if isinstance(home, LabHome) else LabHome.resolve(home)
    return Catalog(lab.catalog_path)
