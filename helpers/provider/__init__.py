"""The provider's Python API: one method per SQL statement, plus :meth:`Provider.sql`.

``Provider(home)`` opens the lab home's catalog (:mod:`helpers.catalog`). Control-plane methods (shares,
recipients, grants) are thin, checked wrappers around the catalog that return pandas DataFrames shaped
like Databricks' results. Data methods run real engines:

* reads (``SELECT``, ``table_changes``, ``DESCRIBE HISTORY``) use DuckDB over
  ``DeltaTable(location).to_pyarrow_dataset()`` (no DuckDB extensions, so no network);
* writes (``INSERT``, ``UPDATE``, ``DELETE``, ``MERGE``, ``SET TBLPROPERTIES``) are Delta commits made by
  deltalake, so a table with ``delta.enableChangeDataFeed = true`` gets real ``_change_data`` files.

Table names in SQL are resolved against the catalog: ``catalog.schema.table`` (a shorter name works when it
matches exactly one registered table), ``delta.`/path``` and ``system.access.audit`` (the sharing server's
audit log).
"""

from __future__ import annotations

import os
import re
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from helpers import sql as sqlmod
from helpers.exceptions import (
    InvalidArgumentError,
    NotADeltaTableError,
    NotFoundError,
    SharelabError,
)
from helpers.home import LabHome

if TYPE_CHECKING:
    import pyarrow as pa
    from sqlglot import exp

    from helpers.catalog import Catalog

#: Where activation links point when no sharing server runs on this lab home.
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8080"

# Activation codes are stored hashed, so DESCRIBE RECIPIENT can only show a link this process created.
# Keyed by (catalog path, recipient name lower-cased); shared by every Provider of the process.
_ACTIVATION_CODES: dict[tuple[str, str], str] = {}
_ACTIVATION_LOCK = threading.Lock()

_AUDIT_NAME = ("system", "access", "audit")
# Display order of change types within one commit (a pre-image before its post-image).
_CHANGE_ORDER = {"delete": 0, "update_preimage": 1, "update_postimage": 2, "insert": 3}


def _status(message: str) -> pd.DataFrame:
    """The result of a statement that returns no rows: one ``status`` line (shown by notebooks and the CLI)."""
    return pd.DataFrame({"status": [message]})


def _frame(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame([dict(r) for r in rows], columns=list(columns))


def _utc(value: datetime | None) -> pd.Timestamp | None:
    return None if value is None else pd.Timestamp(value).tz_convert("UTC")


@dataclass(frozen=True)
class MergeClause:
    """One ``WHEN`` clause of a MERGE.

    :param kind: ``matched_update``, ``matched_delete``, ``not_matched_insert``,
        ``not_matched_by_source_update`` or ``not_matched_by_source_delete``.
    :param condition: the ``AND ...`` condition (Databricks SQL text, or a parsed sqlglot expression), or None.
    :param assignments: ``{target column: SQL expression}``; None means ``*`` (all columns by name).
    """

    kind: str
    condition: Any = None
    assignments: Mapping[str, Any] | None = None


_MERGE_KINDS = (
    "matched_update",
    "matched_delete",
    "not_matched_insert",
    "not_matched_by_source_update",
    "not_matched_by_source_delete",
)


class Provider:
    """The data provider of one lab home: catalog, SQL and Delta tables.

    :param home: the lab home (default: ``$SHARELAB_HOME``, else ``~/.sharelab``).
    """

    def __init__(self, home: str | os.PathLike[str] | LabHome | None = None) -> None:
        self.home = home if isinstance(home, LabHome) else LabHome.resolve(home)
        self.catalog: Catalog = self.home.open_catalog()
        #: ``USE CATALOG`` / ``USE SCHEMA`` defaults for one- and two-part table names (this object only).
        self.current_catalog: str | None = None
        self.current_schema: str | None = None

    def __repr__(self) -> str:
        return f"Provider(home={str(self.home.path)!r})"

    # ------------------------------------------------------------------------------------------
    # SQL
    # ------------------------------------------------------------------------------------------

    def sql(self, text: str) -> pd.DataFrame:
        """Run one or more ``;``-separated statements; return the last statement's result.

        :raises SqlParseError: nothing ran. :raises SharelabError: see :func:`helpers.sql.run_script`.
        """
        results = self.sql_all(text)
        return results[-1] if results else _status("no statement to run")

    def sql_all(self, text: str) -> list[pd.DataFrame]:
        """Run one or more ``;``-separated statements; return every statement's result, in order."""
        return sqlmod.run_script(self, text)

    # ------------------------------------------------------------------------------------------
    # Shares
    # ------------------------------------------------------------------------------------------

    def create_share(
        self, name: str, comment: str | None = None, *, if_not_exists: bool = False
    ) -> pd.DataFrame:
        """``CREATE SHARE [IF NOT EXISTS] name [COMMENT '...']``."""
        existed = if_not_exists and self._share_exists(name)
        share = self.catalog.create_share(name, comment, if_not_exists=if_not_exists)
        if existed:
            return _status(f"share {share.name} already exists (IF NOT EXISTS): nothing changed")
        return _status(f"share {share.name} created")

    def drop_share(self, name: str, *, if_exists: bool = False) -> pd.DataFrame:
        """``DROP SHARE [IF EXISTS] name`` (its entries and grants go with it; the tables stay)."""
        if self.catalog.drop_share(name, if_exists=if_exists):
            return _status(f"share {name} dropped")
        return _status(f"share {name} does not exist (IF EXISTS): nothing changed")

    def add_table(
        self,
        share: str,
        source: str,
        *,
        alias: str | None = None,
        comment: str | None = None,
        partition: Any = (),
        history: bool = False,
        start_version: int | None = None,
    ) -> pd.DataFrame:
        """``ALTER SHARE share ADD TABLE source [COMMENT] [PARTITION (...)] [AS alias] [WITH HISTORY]``.

        :param source: ``catalog.schema.table`` or ``delta.`/path``` (then ``alias`` is required).
        :param partition: a ``PARTITION`` body as text (``"region = 'EU'"`` or
            ``"region = CURRENT_RECIPIENT().region"``), a ``{column: value}`` dict, or clauses.
        """
        clauses = self._partition_clauses(partition)
        entry = self.catalog.add_table_to_share(
            share,
            source,
            alias=alias,
            comment=comment,
            history=history,
            partition=clauses,
            start_version=start_version,
        )
        return _status(f"table {entry.source} added to share {share} as {entry.alias}")

    def add_schema(self, share: str, source: str, *, history: bool = False) -> pd.DataFrame:
        """``ALTER SHARE share ADD SCHEMA catalog.schema`` (also covers tables registered later)."""
        entry = self.catalog.add_schema_to_share(share, source, history=history)
        count = len(self.catalog.list_tables(*entry.source.split(".")))
        return _status(
            f"schema {entry.source} added to share {share} ({count} table{'s' * (count != 1)} now)"
        )

    def remove_table(self, share: str, alias: str) -> pd.DataFrame:
        """``ALTER SHARE share REMOVE TABLE schema.table``."""
        self.catalog.remove_table_from_share(share, alias)
        return _status(f"table {alias} removed from share {share}")

    def remove_schema(self, share: str, schema: str) -> pd.DataFrame:
        """``ALTER SHARE share REMOVE SCHEMA [catalog.]schema``."""
        self.catalog.remove_schema_from_share(share, schema)
        return _status(f"schema {schema} removed from share {share}")

    def show_shares(self) -> pd.DataFrame:
        """``SHOW SHARES``: name, created_at, comment."""
        rows = [
            {"name": s.name, "created_at": _utc(s.created_at), "comment": s.comment}
            for s in self.catalog.list_shares()
        ]
        return _frame(rows, ["name", "created_at", "comment"])

    def show_all_in_share(self, share: str) -> pd.DataFrame:
        """``SHOW ALL IN SHARE share``: one row per entry, and one per table a schema entry covers now."""
        rows: list[dict[str, Any]] = []
        for entry in self.catalog.share_entries(share):
            rows.append(
                {
                    "name": entry.alias,
                    "type": entry.kind.upper(),
                    "shared_object": entry.source,
                    "added_at": _utc(entry.added_at),
                    "comment": entry.comment,
                    "partitions": ", ".join(str(c) for c in entry.partition_filter) or None,
                    "history_shared": entry.history,
                    "start_version": entry.start_version,
                    "via_schema": None,
                }
            )
            if entry.kind == "schema":
                catalog_name, schema_name = entry.source.split(".")
                for table in self.catalog.list_tables(catalog_name, schema_name):
                    rows.append(
                        {
                            "name": f"{entry.alias}.{table.table}",
                            "type": "TABLE",
                            "shared_object": table.name,
                            "added_at": _utc(entry.added_at),
                            "comment": None,
                            "partitions": None,
                            "history_shared": entry.history,
                            "start_version": None,
                            "via_schema": entry.source,
                        }
                    )
        columns = [
            "name",
            "type",
            "shared_object",
            "added_at",
            "comment",
            "partitions",
            "history_shared",
            "start_version",
            "via_schema",
        ]
        frame = _frame(rows, columns)
        frame["start_version"] = frame["start_version"].astype("Int64")
        return frame

    def describe_share(self, name: str) -> pd.DataFrame:
        """``DESCRIBE SHARE name``: name, created_at, comment, tables, recipients."""
        share = self.catalog.get_share(name)
        tables = len(self.catalog.shared_tables(share.name))
        recipients = len(self.catalog.grants_on_share(share.name))
        return _frame(
            [
                {
                    "name": share.name,
                    "created_at": _utc(share.created_at),
                    "comment": share.comment,
                    "tables": tables,
                    "recipients": recipients,
                }
            ],
            ["name", "created_at", "comment", "tables", "recipients"],
        )

    def set_comment(self, kind: str, name: str, comment: str | None) -> pd.DataFrame:
        """``COMMENT ON SHARE|RECIPIENT name IS 'text' | NULL``: replace the comment (NULL removes it)."""
        if kind not in ("share", "recipient"):
            raise InvalidArgumentError(f"COMMENT ON takes SHARE or RECIPIENT, not {kind!r}")
        if comment is not None and (not isinstance(comment, str) or len(comment) > 65536):
            raise InvalidArgumentError("a comment is text of at most 65536 characters")
        # validates the name and raises NotFoundError like every other statement
        obj = self.catalog.get_share(name) if kind == "share" else self.catalog.get_recipient(name)

        def body(conn: Any) -> None:
            # The catalog has no "set comment" call; one UPDATE in its own write transaction.
            row = (
                self.catalog._share_row(conn, name)
                if kind == "share"
                else self.catalog._recipient_row(conn, name)
            )
            table = "shares" if kind == "share" else "recipients"
            conn.execute(f"UPDATE {table} SET comment = ? WHERE id = ?", (comment, row["id"]))

        self.catalog._write(body)
        what = "removed" if comment is None else "set"
        return _status(f"comment of {kind} {obj.name} {what}")

    def _share_exists(self, name: str) -> bool:
        try:
            self.catalog.get_share(name)
        except NotFoundError:
            return False
        return True

    def _partition_clauses(self, partition: Any) -> tuple[Any, ...]:
        """Coerce the ``partition`` argument of :meth:`add_table` into catalog ``PartitionClause`` objects."""
        from helpers.catalog import PartitionClause

        if partition is None or partition == () or partition == []:
            return ()
        if isinstance(partition, str):
            text = partition.strip()
            if not text.startswith("("):
                text = f"({text})"
            parser = sqlmod._Parser(text, sqlmod.tokenize(text), sqlmod._Lines(text))
            items = parser.partition_clause()
            parser.expect_end("end of the partition specification")
            partition = items
        if isinstance(partition, Mapping):
            return tuple(PartitionClause(str(k), v, False) for k, v in partition.items())
        out = []
        for item in partition:
            if isinstance(item, sqlmod.PartitionValue):
                out.append(PartitionClause(item.column, item.value, item.is_property))
            else:
                out.append(item)
        return tuple(out)

    # ------------------------------------------------------------------------------------------
    # Recipients and tokens
    # ------------------------------------------------------------------------------------------

    def public_url(self) -> str:
        """Base URL of the running sharing server (``server/server.json``), else :data:`DEFAULT_PUBLIC_URL`."""
        state = self.home.server_state() or {}
        url = state.get("public_url")
        if not url and state.get("port"):
            host = state.get("host") or "127.0.0.1"
            host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
            url = f"http://{host}:{state['port']}"
        return str(url or DEFAULT_PUBLIC_URL).rstrip("/")

    def activation_link(self, code: str) -> str:
        """The URL that hands out a recipient's profile once (served by the sharing server).

        Built from the running server's profile endpoint (``{public_url}/delta-sharing/``), else from
        :data:`DEFAULT_PUBLIC_URL`.
        """
        state = self.home.server_state() or {}
        endpoint = state.get("endpoint") or f"{self.public_url()}/delta-sharing/"
        return f"{str(endpoint).rstrip('/')}/activation/{code}"

    def _remember_code(self, recipient: str, code: str) -> None:
        with _ACTIVATION_LOCK:
            _ACTIVATION_CODES[(str(self.catalog.path), recipient.lower())] = code

    def _known_code(self, recipient: str) -> str | None:
        with _ACTIVATION_LOCK:
            return _ACTIVATION_CODES.get((str(self.catalog.path), recipient.lower()))

    def create_recipient(
        self,
        name: str,
        comment: str | None = None,
        properties: Mapping[str, Any] | None = None,
        *,
        if_not_exists: bool = False,
    ) -> pd.DataFrame:
        """``CREATE RECIPIENT [IF NOT EXISTS] name [COMMENT] [PROPERTIES (...)]``.

        Creates an open-sharing (token) recipient and a one-time activation link; the link yields the
        profile file (with a fresh token) exactly once. Only hashes of the code and token are stored.
        """
        existed = False
        if if_not_exists:
            try:
                self.catalog.get_recipient(name)
                existed = True
            except NotFoundError:
                pass
        recipient = self.catalog.create_recipient(
            name, comment, properties, if_not_exists=if_not_exists
        )
        if existed:
            frame = self.describe_recipient(recipient.name)
            return frame
        try:
            code = self.catalog.create_activation(recipient.name)
        except BaseException:  # keep the statement atomic: no recipient without its activation
            self.catalog.drop_recipient(recipient.name, if_exists=True)
            raise
        self._remember_code(recipient.name, code)
        return _frame(
            [
                {
                    "name": recipient.name,
                    "authentication_type": "TOKEN",
                    "activation_link": self.activation_link(code),
                    "created_at": _utc(recipient.created_at),
                    "comment": recipient.comment,
                }
            ],
            ["name", "authentication_type", "activation_link", "created_at", "comment"],
        )

    def alter_recipient(self, name: str, properties: Mapping[str, Any]) -> pd.DataFrame:
        """``ALTER RECIPIENT name SET PROPERTIES ('k' = 'v', ...)`` (other properties are kept)."""
        recipient = self.catalog.set_recipient_properties(name, properties)
        shown = ", ".join(f"{k}={v}" for k, v in sorted(recipient.properties.items()))
        return _status(f"recipient {recipient.name} properties: {shown or '(none)'}")

    def rotate_token(self, name: str, *, expire_existing_in_seconds: int = 0) -> pd.DataFrame:
        """``ALTER RECIPIENT name ROTATE TOKEN [EXPIRE EXISTING IN n SECONDS]``.

        Like Databricks' rotate-token: live tokens expire in ``n`` seconds (0 = now) and a new activation
        link is created; its one-time profile carries the new token. Done in one catalog transaction.
        """
        from helpers.catalog import hash_token

        if (
            isinstance(expire_existing_in_seconds, bool)
            or not isinstance(expire_existing_in_seconds, int)
            or expire_existing_in_seconds < 0
        ):
            raise InvalidArgumentError(
                "EXPIRE EXISTING IN needs a non-negative whole number of seconds, got "
                f"{expire_existing_in_seconds!r}"
            )
        recipient = self.catalog.get_recipient(name)
        code = secrets.token_urlsafe(24)

        def body(conn: Any) -> None:
            # The catalog has no "expire without issuing" call; this mirrors its token and
            # activation tables (see helpers/catalog.py) inside its own write transaction.
            row = self.catalog._recipient_row(conn, name)
            now = time.time()
            conn.execute(
                "UPDATE tokens SET expires_at = MIN(expires_at, ?) WHERE recipient_id = ? "
                "AND revoked_at IS NULL AND expires_at > ?",
                (now + expire_existing_in_seconds, row["id"], now),
            )
            conn.execute(
                "DELETE FROM activations WHERE recipient_id = ? AND redeemed_at IS NULL",
                (row["id"],),
            )
            conn.execute(
                "INSERT INTO activations (code_hash, recipient_id, created_at) VALUES (?, ?, ?)",
                (hash_token(code), row["id"], now),
            )

        self.catalog._write(body)
        self._remember_code(recipient.name, code)
        return _frame(
            [
                {
                    "name": recipient.name,
                    "activation_link": self.activation_link(code),
                    "existing_tokens_expire_in_seconds": expire_existing_in_seconds,
                }
            ],
            ["name", "activation_link", "existing_tokens_expire_in_seconds"],
        )

    def revoke_tokens(self, name: str) -> pd.DataFrame:
        """``ALTER RECIPIENT name REVOKE TOKENS``: every token stops working now."""
        count = self.catalog.revoke_tokens(name)
        return _status(f"{count} token{'s' * (count != 1)} of recipient {name} revoked")

    def drop_recipient(self, name: str, *, if_exists: bool = False) -> pd.DataFrame:
        """``DROP RECIPIENT [IF EXISTS] name`` (its tokens, activation and grants go with it)."""
        if self.catalog.drop_recipient(name, if_exists=if_exists):
            with _ACTIVATION_LOCK:
                _ACTIVATION_CODES.pop((str(self.catalog.path), name.lower()), None)
            return _status(f"recipient {name} dropped")
        return _status(f"recipient {name} does not exist (IF EXISTS): nothing changed")

    def show_recipients(self) -> pd.DataFrame:
        """``SHOW RECIPIENTS``: name, created_at, comment, live tokens, whether activation is pending."""
        rows = []
        for r in self.catalog.list_recipients():
            tokens = self.catalog.list_tokens(r.name)
            rows.append(
                {
                    "name": r.name,
                    "created_at": _utc(r.created_at),
                    "comment": r.comment,
                    "authentication_type": "TOKEN",
                    "active_tokens": sum(1 for t in tokens if t.status == "active"),
                    "activation_pending": self.catalog.activation_pending(r.name),
                }
            )
        return _frame(
            rows,
            [
                "name",
                "created_at",
                "comment",
                "authentication_type",
                "active_tokens",
                "activation_pending",
            ],
        )

    def describe_recipient(self, name: str) -> pd.DataFrame:
        """``DESCRIBE RECIPIENT name``: ``info_name`` / ``info_value`` rows like Databricks.

        Rows: name, id, authentication type, created, comment, each property, each token (prefix,
        created, expires, status) and the activation link while it is unused.
        """
        recipient = self.catalog.get_recipient(name)
        info: list[tuple[str, Any]] = [
            ("recipient_name", recipient.name),
            ("recipient_id", recipient.id),
            ("authentication_type", "TOKEN"),
            ("created_at", _iso(recipient.created_at)),
            ("comment", recipient.comment),
        ]
        for key, value in sorted(recipient.properties.items()):
            info.append((f"property.{key}", value))
        for token in self.catalog.list_tokens(recipient.name):
            info.append(
                (
                    f"token.{token.prefix}",
                    f"created {_iso(token.created_at)}, expires {_iso(token.expires_at)}, "
                    f"{token.status}",
                )
            )
        if self.catalog.activation_pending(recipient.name):
            code = self._known_code(recipient.name)
            if code is not None:
                info.append(("activation_link", self.activation_link(code)))
            else:
                info.append(
                    (
                        "activation_link",
                        "pending; the link was shown when it was created (only its hash is kept). "
                        f"ALTER RECIPIENT {recipient.name} ROTATE TOKEN makes a new one",
                    )
                )
        else:
            info.append(("activation_link", "used (or none); ROTATE TOKEN makes a new one"))
        return pd.DataFrame(info, columns=["info_name", "info_value"])

    # ------------------------------------------------------------------------------------------
    # Grants
    # ------------------------------------------------------------------------------------------

    def grant(self, share: str, recipient: str) -> pd.DataFrame:
        """``GRANT SELECT ON SHARE share TO RECIPIENT recipient`` (granting twice is harmless)."""
        g = self.catalog.grant(share, recipient)
        return _status(f"granted SELECT on share {g.share} to recipient {g.recipient}")

    def revoke(self, share: str, recipient: str) -> pd.DataFrame:
        """``REVOKE SELECT ON SHARE share FROM RECIPIENT recipient``."""
        if self.catalog.revoke(share, recipient):
            return _status(f"revoked SELECT on share {share} from recipient {recipient}")
        return _status(f"recipient {recipient} had no grant on share {share}: nothing changed")

    def show_grants_on_share(self, share: str) -> pd.DataFrame:
        """``SHOW GRANTS ON SHARE share``: recipient, privilege, share, granted_at."""
        rows = [
            {
                "recipient": g.recipient,
                "privilege": "SELECT",
                "share": g.share,
                "granted_at": _utc(g.granted_at),
            }
            for g in self.catalog.grants_on_share(share)
        ]
        return _frame(rows, ["recipient", "privilege", "share", "granted_at"])

    def show_grants_to_recipient(self, recipient: str) -> pd.DataFrame:
        """``SHOW GRANTS TO RECIPIENT recipient``: share, privilege, recipient, granted_at."""
        rows = [
            {
                "share": g.share,
                "privilege": "SELECT",
                "recipient": g.recipient,
                "granted_at": _utc(g.granted_at),
            }
            for g in self.catalog.grants_to_recipient(recipient)
        ]
        return _frame(rows, ["share", "privilege", "recipient", "granted_at"])

    # ------------------------------------------------------------------------------------------
    # Provider tables
    # ------------------------------------------------------------------------------------------

    def register_table(
        self,
        name: str,
        location: str | os.PathLike[str],
        *,
        replace: bool = False,
        if_not_exists: bool = False,
    ) -> pd.DataFrame:
        """``CREATE [OR REPLACE] TABLE [IF NOT EXISTS] c.s.t LOCATION '/path'``: register a Delta table."""
        if if_not_exists and not replace:
            try:
                existing = self.catalog.get_table(name)
            except NotFoundError:
                pass
            else:
                return _status(
                    f"table {existing.name} is already registered at {existing.location} "
                    "(IF NOT EXISTS): nothing changed"
                )
        info = self.catalog.register_table(name, location, replace=replace)
        return _status(f"table {info.name} registered at {info.location}")

    def use(self, catalog: str | None = None, schema: str | None = None) -> pd.DataFrame:
        """``USE CATALOG c`` / ``USE SCHEMA [c.]s``: where one- and two-part table names are looked up first.

        Catalogs and schemas exist implicitly in the lab (through the tables registered under them), so
        an unknown one is accepted; ``SHOW TABLES`` then lists nothing.
        """
        from helpers.catalog import validate_name

        for value, kind in ((catalog, "catalog"), (schema, "schema")):
            if value is not None:
                validate_name(value, kind, allow_dot=False)
        if catalog is not None:
            self.current_catalog = catalog
            if schema is None:
                self.current_schema = None
        if schema is not None:
            self.current_schema = schema
        where = ".".join(p for p in (self.current_catalog, self.current_schema) if p)
        return _status(f"using {where}")

    def show_tables(self, catalog: str | None = None, schema: str | None = None) -> pd.DataFrame:
        """``SHOW TABLES [IN catalog[.schema]]``: catalog, schema, table, location.

        Without ``IN``, the ``USE`` defaults apply.
        """
        if catalog is None:
            catalog, schema = self.current_catalog, self.current_schema
            if catalog is None and schema is not None:  # USE SCHEMA s alone: any catalog's s
                return self.show_tables_in_schema(schema)
        rows = [
            {"catalog": t.catalog, "schema": t.schema, "table": t.table, "location": t.location}
            for t in self.catalog.list_tables(catalog, schema)
        ]
        return _frame(rows, ["catalog", "schema", "table", "location"])

    def show_tables_in_schema(self, schema: str) -> pd.DataFrame:
        """Tables whose schema is ``schema``, in any catalog."""
        rows = [
            {"catalog": t.catalog, "schema": t.schema, "table": t.table, "location": t.location}
            for t in self.catalog.list_tables()
            if t.schema.lower() == schema.lower()
        ]
        return _frame(rows, ["catalog", "schema", "table", "location"])

    def describe_table(self, table: str) -> pd.DataFrame:
        """``DESCRIBE TABLE t``: col_name, data_type, nullable, partition."""
        location, label = self._locate(table)
        dt = self._delta(location, label)
        partitions = {c.lower() for c in dt.metadata().partition_columns}
        rows = [
            {
                "col_name": f.name,
                "data_type": _type_name(f.type),
                "nullable": bool(f.nullable),
                "partition": f.name.lower() in partitions,
            }
            for f in dt.schema().fields
        ]
        return _frame(rows, ["col_name", "data_type", "nullable", "partition"])

    def history(self, table: str, limit: int | None = None) -> pd.DataFrame:
        """``DESCRIBE HISTORY t [LIMIT n]``: newest version first, Databricks' columns."""
        location, label = self._locate(table)
        dt = self._delta(location, label)
        rows = []
        for h in dt.history(limit):
            rows.append(
                {
                    "version": h.get("version"),
                    "timestamp": pd.Timestamp(h.get("timestamp", 0), unit="ms", tz="UTC"),
                    "operation": h.get("operation"),
                    "operationParameters": dict(h.get("operationParameters") or {}),
                    "readVersion": h.get("readVersion"),
                    "isolationLevel": h.get("isolationLevel"),
                    "isBlindAppend": h.get("isBlindAppend"),
                    "operationMetrics": dict(h.get("operationMetrics") or {}),
                    "userMetadata": h.get("userMetadata"),
                    "engineInfo": h.get("engineInfo"),
                }
            )
        columns = [
            "version",
            "timestamp",
            "operation",
            "operationParameters",
            "readVersion",
            "isolationLevel",
            "isBlindAppend",
            "operationMetrics",
            "userMetadata",
            "engineInfo",
        ]
        frame = _frame(rows, columns).sort_values("version", ascending=False, ignore_index=True)
        frame["version"] = frame["version"].astype("Int64")
        frame["readVersion"] = frame["readVersion"].astype("Int64")
        return frame

    def set_tblproperties(self, table: str, properties: Mapping[str, Any]) -> pd.DataFrame:
        """``ALTER TABLE t SET TBLPROPERTIES (key = value, ...)`` as one Delta commit.

        ``delta.*`` keys are checked by deltalake (a misspelt ``delta.`` key is an error); other keys are free.
        """
        if not properties:
            raise InvalidArgumentError("SET TBLPROPERTIES needs at least one key = value")
        location, label = self._locate(table)
        dt = self._delta(location, label)
        props = {
            str(k): (str(v).lower() if isinstance(v, bool) else str(v))
            for k, v in properties.items()
        }
        strict = all(k.lower().startswith("delta.") for k in props)
        try:
            dt.alter.set_table_properties(props, raise_if_not_exists=strict)
        except Exception as exc:
            raise InvalidArgumentError(
                f"cannot set properties {props} on {label}: {_clean(exc)}; property values are "
                "strings, numbers or true/false (delta.enableChangeDataFeed = true)"
            ) from exc
        version = self._delta(location, label).version()
        shown = ", ".join(f"{k} = {v}" for k, v in props.items())
        return _status(f"table {label} version {version}: set {shown}")

    def show_tblproperties(self, table: str) -> pd.DataFrame:
        """``SHOW TBLPROPERTIES t``: key, value (protocol versions included)."""
        location, label = self._locate(table)
        dt = self._delta(location, label)
        protocol = dt.protocol()
        rows = [
            {"key": "delta.minReaderVersion", "value": str(protocol.min_reader_version)},
            {"key": "delta.minWriterVersion", "value": str(protocol.min_writer_version)},
        ]
        rows += [{"key": k, "value": v} for k, v in sorted(dt.metadata().configuration.items())]
        return _frame(rows, ["key", "value"])

    # ------------------------------------------------------------------------------------------
    # Data: reads
    # ------------------------------------------------------------------------------------------

    def select(self, query: str) -> pd.DataFrame:
        """Run a ``SELECT`` (Databricks SQL) over provider tables, ``table_changes(...)`` and the audit log."""
        statement = sqlmod.parse_one(query)
        if not isinstance(statement, sqlmod.DataStatement) or statement.kind != "query":
            raise InvalidArgumentError("select() runs queries only (SELECT / WITH / VALUES)")
        return self._run_data_statement(statement)

    query = select

    def table_changes(
        self, table: str, start: int | str, end: int | str | None = None
    ) -> pd.DataFrame:
        """``SELECT * FROM table_changes('t', start[, end])``: the change data feed, oldest commit first.

        :param start: first version (int) or timestamp (``'2024-01-01 00:00:00'``, UTC).
        :param end: last version or timestamp (inclusive); default: the latest.
        """
        location, label = self._locate(table)
        data = self._changes_arrow(location, label, start, end)
        frame = data.to_pandas()
        order = frame["_change_type"].map(_CHANGE_ORDER).fillna(len(_CHANGE_ORDER))
        frame = frame.assign(__order=order).sort_values(
            ["_commit_version", "__order"], kind="stable", ignore_index=True
        )
        return frame.drop(columns="__order")

    def audit(self) -> pd.DataFrame:
        """``SELECT * FROM system.access.audit``: the sharing server's requests."""
        return self.catalog.audit_frame()

    # ------------------------------------------------------------------------------------------
    # Data: writes
    # ------------------------------------------------------------------------------------------

    def insert(
        self,
        table: str,
        data: pd.DataFrame | pa.Table | Sequence[Mapping[str, Any]] | str,
        *,
        columns: Sequence[str] | None = None,
        overwrite: bool = False,
    ) -> pd.DataFrame:
        """Append rows (``INSERT INTO t ...``) as one Delta commit.

        :param data: a DataFrame, an Arrow table, a list of row dicts (columns by name), or a query text
            (``"SELECT ..."``/``"VALUES (...)"``, columns by position unless ``columns`` is given).
        :param overwrite: replace the table's rows (``INSERT OVERWRITE``).
        """
        import pyarrow as pa

        location, label = self._locate(table)
        if isinstance(data, str):
            statement = sqlmod.parse_one(data)
            if not isinstance(statement, sqlmod.DataStatement) or statement.kind != "query":
                raise InvalidArgumentError("insert() takes rows or a SELECT / VALUES query")
            arrow, _ = self._run_query_arrow(statement.expression)
            return self._append(location, label, arrow, columns, by_name=False, overwrite=overwrite)
        if isinstance(data, pd.DataFrame):
            arrow = pa.Table.from_pandas(data, preserve_index=False)
        elif isinstance(data, pa.Table):
            arrow = data
        else:
            arrow = pa.Table.from_pylist([dict(r) for r in data])
        return self._append(location, label, arrow, columns, by_name=True, overwrite=overwrite)

    def update(self, table: str, set: Mapping[str, str], where: str | None = None) -> pd.DataFrame:
        """``UPDATE t SET col = expr, ... [WHERE cond]`` (expressions in Databricks SQL) as one Delta commit."""
        import sqlglot

        location, label = self._locate(table)
        dt = self._delta(location, label)
        columns = self._columns(dt)
        dialect = sqlmod.sqlglot_dialect()
        updates = {}
        for col, expr_text in set.items():
            target = self._column(columns, str(col), label)
            tree = sqlglot.parse_one(str(expr_text), read=dialect)
            updates[_quote(target)] = self._to_datafusion(tree, {None: columns}, label)
        predicate = None
        if where:
            predicate = self._to_datafusion(
                sqlglot.parse_one(where, read=dialect), {None: columns}, label
            )
        return self._do_update(dt, label, updates, predicate)

    def delete(self, table: str, where: str | None = None) -> pd.DataFrame:
        """``DELETE FROM t [WHERE cond]`` as one Delta commit."""
        import sqlglot

        location, label = self._locate(table)
        dt = self._delta(location, label)
        predicate = None
        if where:
            tree = sqlglot.parse_one(where, read=sqlmod.sqlglot_dialect())
            predicate = self._to_datafusion(tree, {None: self._columns(dt)}, label)
        return self._do_delete(dt, label, predicate)

    def merge(
        self,
        table: str,
        source: str | pd.DataFrame | pa.Table,
        on: str,
        clauses: Sequence[MergeClause] = (),
        *,
        target_alias: str = "t",
        source_alias: str = "s",
        update: Mapping[str, str] | str | None = None,
        insert: Mapping[str, str] | str | None = None,
        delete_when: str | None = None,
    ) -> pd.DataFrame:
        """``MERGE INTO t USING source ON cond WHEN ...`` as one Delta commit.

        :param source: a table name, a query text, a DataFrame or an Arrow table.
        :param on: the match condition, naming columns as ``<target_alias>.col`` / ``<source_alias>.col``.
        :param clauses: :class:`MergeClause` objects, applied in order.
        :param update: shortcut for ``WHEN MATCHED THEN UPDATE SET ...`` (``"*"`` = all columns).
        :param insert: shortcut for ``WHEN NOT MATCHED THEN INSERT ...`` (``"*"`` = all columns).
        :param delete_when: shortcut for ``WHEN MATCHED AND <cond> THEN DELETE`` (placed first).
        """
        import pyarrow as pa
        import sqlglot
        from sqlglot import exp

        all_clauses: list[MergeClause] = []
        if delete_when:
            all_clauses.append(MergeClause("matched_delete", delete_when))
        all_clauses += list(clauses)
        if update is not None:
            all_clauses.append(
                MergeClause("matched_update", None, None if update == "*" else update)
            )
        if insert is not None:
            all_clauses.append(
                MergeClause("not_matched_insert", None, None if insert == "*" else insert)
            )
        location, label = self._locate(table)
        if isinstance(source, pd.DataFrame):
            src = pa.Table.from_pandas(source, preserve_index=False)
        elif isinstance(source, pa.Table):
            src = source
        else:
            text = str(source).strip()
            dialect = sqlmod.sqlglot_dialect()
            if re.match(r"(?is)^(select|with|values|\()", text):
                tree = sqlglot.parse_one(text, read=dialect)
            else:
                tree = exp.select("*").from_(sqlglot.parse_one(text, read=dialect, into=exp.Table))
            src, _ = self._run_query_arrow(tree)
        return self._do_merge(location, label, src, on, all_clauses, target_alias, source_alias)

    # ------------------------------------------------------------------------------------------
    # Engine
    # ------------------------------------------------------------------------------------------

    def _run_data_statement(self, statement: sqlmod.DataStatement) -> pd.DataFrame:
        tree = statement.expression
        if statement.kind == "query":
            arrow, _ = self._run_query_arrow(tree)
            return _arrow_to_pandas(arrow)
        if statement.kind == "insert":
            return self._sql_insert(tree)
        if statement.kind == "update":
            return self._sql_update(tree)
        if statement.kind == "delete":
            return self._sql_delete(tree)
        return self._sql_merge(tree)

    def _locate(self, name: str) -> tuple[str, str]:
        """``(location, label)`` of a table given as ``c.s.t`` (or a unique shorter name) or ``delta.`/p```."""
        from helpers.catalog import parse_delta_path

        if not isinstance(name, str) or not name.strip():
            raise InvalidArgumentError("give a table name such as catalog.schema.table")
        path = parse_delta_path(name)
        if path is not None:
            return path, name
        parts = [p.strip("`") for p in name.strip().split(".")]
        info = self._resolve_name(parts)
        return info.location, info.name

    def _resolve_name(self, parts: Sequence[str]) -> Any:
        if len(parts) == 3:
            return self.catalog.get_table(".".join(parts))
        if not 1 <= len(parts) <= 3:
            raise InvalidArgumentError(
                f"table name {'.'.join(parts)!r} has {len(parts)} parts; use catalog.schema.table"
            )
        # USE defaults first: USE CATALOG c + USE SCHEMA s make "t" mean c.s.t and "x.t" mean c.x.t
        full = list(parts)
        if len(full) == 1 and self.current_schema is not None:
            full = [self.current_schema, *full]
        if len(full) == 2 and self.current_catalog is not None:
            full = [self.current_catalog, *full]
        if len(full) == 3:
            try:
                return self.catalog.get_table(".".join(full))
            except NotFoundError:
                pass
        wanted = [p.lower() for p in parts]
        matches = [
            t
            for t in self.catalog.list_tables()
            if [t.catalog.lower(), t.schema.lower(), t.table.lower()][-len(parts) :] == wanted
        ]
        if len(matches) == 1:
            return matches[0]
        name = ".".join(parts)
        if not matches:
            raise NotFoundError(
                f"table {name!r} is not registered; use a three-part name catalog.schema.table "
                "(SHOW TABLES lists them) or CREATE TABLE c.s.t LOCATION '/path' first"
            )
        options = ", ".join(m.name for m in matches)
        raise InvalidArgumentError(
            f"table name {name!r} is ambiguous ({options}); use the three-part name"
        )

    @staticmethod
    def _delta(location: str, label: str, version: int | str | None = None) -> Any:
        from deltalake import DeltaTable

        try:
            dt = DeltaTable(location)
            if isinstance(version, str):
                dt.load_as_version(_utc_timestamp(version))
            elif version is not None:
                dt.load_as_version(version)
            return dt
        except Exception as exc:
            if version is not None:
                raise InvalidArgumentError(
                    f"cannot read {label} as of {version!r}: {_clean(exc)} (DESCRIBE HISTORY lists "
                    "its versions)"
                ) from exc
            raise NotADeltaTableError(
                f"cannot read the Delta table {label} at {location}: {_clean(exc)}"
            ) from exc

    @staticmethod
    def _columns(dt: Any) -> dict[str, str]:
        """Lower-cased column name → actual name."""
        return {f.name.lower(): f.name for f in dt.schema().fields}

    @staticmethod
    def _column(columns: Mapping[str, str], name: str, label: str) -> str:
        actual = columns.get(name.lower())
        if actual is None:
            raise InvalidArgumentError(
                f"column {name!r} does not exist in {label}; its columns are {', '.join(columns.values())}"
            )
        return actual

    def _changes_arrow(self, location: str, label: str, start: Any, end: Any = None) -> pa.Table:
        import pyarrow as pa

        dt = self._delta(location, label)
        kwargs: dict[str, Any] = {}
        for key, value in (("starting", start), ("ending", end)):
            if value is None:
                continue
            if isinstance(value, bool):
                raise InvalidArgumentError(f"table_changes {key} must be a version or a timestamp")
            if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
                if int(value) < 0:
                    raise InvalidArgumentError(f"table_changes {key} version must be >= 0")
                kwargs[f"{key}_version"] = int(value)
            elif isinstance(value, (str, datetime)):
                kwargs[f"{key}_timestamp"] = _utc_timestamp(value).isoformat()
            else:
                raise InvalidArgumentError(
                    f"table_changes {key} must be a version number or a timestamp string, got {value!r}"
                )
        latest = dt.version()
        if "starting_version" in kwargs and kwargs["starting_version"] > latest:
            raise InvalidArgumentError(
                f"table_changes start version {kwargs['starting_version']} is after the latest version "
                f"{latest} of {label}"
            )
        if (
            "ending_version" in kwargs
            and "starting_version" in kwargs
            and kwargs["ending_version"] < kwargs["starting_version"]
        ):
            raise InvalidArgumentError("table_changes end version is before its start version")
        if "ending_version" in kwargs and kwargs["ending_version"] > latest:
            kwargs["ending_version"] = latest
        try:
            reader = dt.load_cdf(**kwargs)
            table = pa.RecordBatchReader.from_stream(reader).read_all()
        except Exception as exc:
            text = _clean(exc)
            hint = ""
            if "change data" in text.lower() or "cdf" in text.lower():
                hint = (
                    f"; enable it with ALTER TABLE {label} SET TBLPROPERTIES "
                    "(delta.enableChangeDataFeed = true) and read from the versions after that commit "
                    "(DESCRIBE HISTORY shows them)"
                )
            raise InvalidArgumentError(
                f"cannot read the change data feed of {label}: {text}{hint}"
            ) from exc
        return _normalize_arrow(table)

    # -- SELECT --------------------------------------------------------------------------------

    def _bind(self, tree: exp.Expression, con: Any, names: dict[str, str]) -> exp.Expression:
        """Replace provider table references in ``tree`` by DuckDB-registered Arrow data."""
        from sqlglot import exp

        tree = tree.copy()
        # current_catalog() / current_schema() answer with the USE defaults, not DuckDB's own
        for node in list(tree.find_all(exp.CurrentCatalog, exp.CurrentSchema, exp.CurrentDatabase)):
            value = (
                self.current_catalog
                if isinstance(node, exp.CurrentCatalog)
                else self.current_schema
            )
            node.replace(exp.Literal.string(value) if value is not None else exp.null())
        ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
        for table in list(tree.find_all(exp.Table)):
            data, label = self._table_data(table, ctes)
            if data is None:
                continue
            reg = f"__sharelab_{len(names)}"
            try:
                con.register(reg, data)
            except Exception as exc:
                raise InvalidArgumentError(f"cannot query {label}: {_clean(exc)}") from exc
            names[reg] = label
            alias = table.args.get("alias")
            if alias is None and isinstance(table.this, exp.Identifier):
                alias = exp.TableAlias(this=exp.to_identifier(table.name))
            table.replace(exp.Table(this=exp.to_identifier(reg, quoted=True), alias=alias))
        return tree

    def _table_data(self, table: exp.Table, ctes: set[str]) -> tuple[Any, str]:
        from sqlglot import exp

        if not isinstance(table.this, exp.Identifier):
            func = table.this
            fname = (func.name if isinstance(func, exp.Anonymous) else func.key) if func else ""
            if str(fname).lower() != "table_changes":
                return None, ""
            args = [_literal_value(a) for a in func.expressions]
            if not 2 <= len(args) <= 3 or not isinstance(args[0], str):
                raise InvalidArgumentError(
                    "table_changes takes ('catalog.schema.table', start[, end]) with versions or timestamps"
                )
            location, label = self._locate(args[0])
            end = args[2] if len(args) == 3 else None
            return self._changes_arrow(location, label, args[1], end), f"table_changes('{label}')"
        parts = [p.name for p in table.parts]
        if len(parts) == 1 and parts[0].lower() in ctes:
            return None, ""
        if [p.lower() for p in parts] == list(_AUDIT_NAME):
            return self.catalog.audit_frame(), "system.access.audit"
        version = table.args.get("version")
        version_value: Any = None
        if version is not None:
            version_value = _literal_value(version.expression)
            if str(version.this).upper() == "TIMESTAMP":
                version_value = str(version_value)
            elif not isinstance(version_value, int):
                raise InvalidArgumentError("VERSION AS OF needs a whole version number")
        if len(parts) == 2 and parts[0].lower() == "delta":
            location, label = parts[1], f"delta.`{parts[1]}`"
        else:
            info = self._resolve_name(parts)
            location, label = info.location, info.name
        dt = self._delta(location, label, version_value)
        try:
            return dt.to_pyarrow_dataset(), label
        except Exception as exc:  # e.g. table features deltalake cannot read as a dataset
            raise InvalidArgumentError(f"cannot read {label}: {_clean(exc)}") from exc

    def _run_query_arrow(self, tree: exp.Expression) -> tuple[pa.Table, dict[str, str]]:
        import duckdb

        con = duckdb.connect()
        try:
            con.execute("SET TimeZone = 'UTC'")
            names: dict[str, str] = {}
            bound = self._bind(tree, con, names)
            text = bound.sql(dialect="duckdb")
            try:
                result = con.sql(text)
                if result is None:
                    raise InvalidArgumentError("the query returned no result set")
                table = result.to_arrow_table()
            except duckdb.Error as exc:
                message = str(exc).split("\n")[0]
                for reg, label in names.items():
                    message = message.replace(reg, label)
                raise InvalidArgumentError(f"query failed: {message}") from exc
            return _normalize_arrow(table), names
        finally:
            con.close()

    # -- INSERT --------------------------------------------------------------------------------

    def _target(self, table: exp.Expression) -> tuple[str, str, str]:
        """``(location, label, alias)`` of a write target."""
        from sqlglot import exp

        if not isinstance(table, exp.Table) or not isinstance(table.this, exp.Identifier):
            raise InvalidArgumentError("the target of a write must be a table name")
        parts = [p.name for p in table.parts]
        if [p.lower() for p in parts] == list(_AUDIT_NAME):
            raise InvalidArgumentError("system.access.audit is read-only")
        if len(parts) == 2 and parts[0].lower() == "delta":
            location, label = parts[1], f"delta.`{parts[1]}`"
        else:
            info = self._resolve_name(parts)
            location, label = info.location, info.name
        alias = table.alias or parts[-1]
        return location, label, alias

    def _sql_insert(self, tree: exp.Insert) -> pd.DataFrame:
        from sqlglot import exp

        target = tree.this
        columns = None
        if isinstance(target, exp.Schema):
            columns = [c.name for c in target.expressions]
            target = target.this
        location, label, _ = self._target(target)
        source = tree.expression
        if source is None:
            raise InvalidArgumentError("INSERT needs VALUES (...) or a SELECT")
        arrow, _ = self._run_query_arrow(source)
        return self._append(
            location,
            label,
            arrow,
            columns,
            by_name=False,
            overwrite=bool(tree.args.get("overwrite")),
        )

    def _append(
        self,
        location: str,
        label: str,
        data: pa.Table,
        columns: Sequence[str] | None,
        *,
        by_name: bool,
        overwrite: bool = False,
    ) -> pd.DataFrame:
        import pyarrow as pa
        from deltalake import write_deltalake

        dt = self._delta(location, label)
        schema = dt.to_pyarrow_dataset().schema
        lookup = {f.name.lower(): f.name for f in schema}
        if columns is not None:
            targets = [self._column(lookup, c, label) for c in columns]
            if len({t.lower() for t in targets}) != len(targets):
                raise InvalidArgumentError("a column is named twice in the INSERT column list")
        elif by_name:
            targets = [self._column(lookup, c, label) for c in data.column_names]
        else:
            targets = [f.name for f in schema]
        if data.num_columns != len(targets):
            raise InvalidArgumentError(
                f"INSERT into {label} gives {data.num_columns} value{'s' * (data.num_columns != 1)} per row "
                f"but {len(targets)} column{'s' * (len(targets) != 1)} "
                f"({', '.join(targets)}) are expected"
            )
        given = dict(zip([t.lower() for t in targets], data.columns, strict=True))
        arrays = []
        for f in schema:
            col = given.get(f.name.lower())
            if col is None:
                if not f.nullable:
                    raise InvalidArgumentError(
                        f"column {f.name} of {label} is NOT NULL and needs a value"
                    )
                arrays.append(pa.nulls(data.num_rows, type=f.type))
                continue
            arrays.append(_cast(col, f, label))
        table = pa.Table.from_arrays(arrays, schema=schema)
        try:
            write_deltalake(location, table, mode="overwrite" if overwrite else "append")
        except Exception as exc:
            raise InvalidArgumentError(f"cannot write to {label}: {_clean(exc)}") from exc
        n = table.num_rows
        return pd.DataFrame({"num_affected_rows": [n], "num_inserted_rows": [n]})

    # -- UPDATE / DELETE -----------------------------------------------------------------------

    def _to_datafusion(
        self,
        tree: exp.Expression,
        scopes: Mapping[str | None, Mapping[str, str]],
        label: str,
    ) -> str:
        """Render a Databricks expression as DataFusion SQL with exact, quoted column names.

        ``scopes`` maps an alias (lower-cased; None for unqualified single-table statements) to that side's
        lower-cased → actual column names.
        """
        from sqlglot import exp

        tree = tree.copy()
        if tree.find(exp.Subquery, exp.Select):
            raise InvalidArgumentError(
                f"subqueries are not supported in this condition on {label}; use MERGE INTO ... USING "
                "(SELECT ...) instead"
            )
        for col in list(tree.find_all(exp.Column)):
            qualifier = col.table.lower() if col.table else None
            name = col.name
            if None in scopes:  # single table: drop qualifiers (the table name or its alias)
                actual = self._column(scopes[None], name, label)
                col.replace(exp.column(actual, quoted=True))
                continue
            if qualifier is None:
                sides = [a for a, cols in scopes.items() if name.lower() in cols]
                if len(sides) != 1:
                    where = "both tables" if sides else "neither table"
                    raise InvalidArgumentError(
                        f"column {name!r} is in {where} of the MERGE; qualify it as "
                        f"{' or '.join(f'{a}.{name}' for a in scopes)}"
                    )
                qualifier = sides[0]
            if qualifier not in scopes:
                raise InvalidArgumentError(
                    f"{col.sql()} refers to {col.table!r}, which is neither the target nor the source "
                    f"alias ({', '.join(str(a) for a in scopes)})"
                )
            actual = self._column(scopes[qualifier], name, f"{label} ({qualifier})")
            col.replace(exp.column(actual, table=qualifier, quoted=True))
        return tree.sql(dialect="postgres")

    def _sql_update(self, tree: exp.Update) -> pd.DataFrame:
        from sqlglot import exp

        if tree.args.get("from") or tree.args.get("from_") or tree.args.get("joins"):
            raise InvalidArgumentError("UPDATE ... FROM is not supported; use MERGE INTO ... USING")
        location, label, alias = self._target(tree.this)
        dt = self._delta(location, label)
        columns = self._columns(dt)
        if not tree.expressions:
            raise InvalidArgumentError("UPDATE needs SET column = value")
        updates: dict[str, str] = {}
        for assignment in tree.expressions:
            if not isinstance(assignment, exp.EQ) or not isinstance(assignment.this, exp.Column):
                raise InvalidArgumentError(
                    f"expected column = value in SET, found {assignment.sql()}"
                )
            target = self._column(columns, assignment.this.name, label)
            updates[_quote(target)] = self._to_datafusion(
                assignment.expression, {None: columns}, label
            )
        where = tree.args.get("where")
        predicate = self._to_datafusion(where.this, {None: columns}, label) if where else None
        return self._do_update(dt, label, updates, predicate)

    def _do_update(
        self, dt: Any, label: str, updates: Mapping[str, str], predicate: str | None
    ) -> pd.DataFrame:
        if not updates:
            raise InvalidArgumentError("UPDATE needs at least one SET column = value")
        try:
            metrics = dt.update(updates=dict(updates), predicate=predicate)
        except Exception as exc:
            raise InvalidArgumentError(f"UPDATE of {label} failed: {_clean(exc)}") from exc
        n = int(metrics.get("num_updated_rows", 0))
        return pd.DataFrame({"num_affected_rows": [n]})

    def _sql_delete(self, tree: exp.Delete) -> pd.DataFrame:
        location, label, _ = self._target(tree.this)
        dt = self._delta(location, label)
        where = tree.args.get("where")
        predicate = (
            self._to_datafusion(where.this, {None: self._columns(dt)}, label) if where else None
        )
        return self._do_delete(dt, label, predicate)

    def _do_delete(self, dt: Any, label: str, predicate: str | None) -> pd.DataFrame:
        try:
            metrics = dt.delete(predicate)
        except Exception as exc:
            raise InvalidArgumentError(f"DELETE from {label} failed: {_clean(exc)}") from exc
        n = int(metrics.get("num_deleted_rows", 0))
        return pd.DataFrame({"num_affected_rows": [n]})

    # -- MERGE ---------------------------------------------------------------------------------

    def _sql_merge(self, tree: exp.Merge) -> pd.DataFrame:
        from sqlglot import exp

        location, label, target_alias = self._target(tree.this)
        using = tree.args.get("using")
        if using is None:
            raise InvalidArgumentError("MERGE needs USING source")
        source_alias = using.alias
        inner = using.copy()
        inner.set("alias", None)
        if isinstance(inner, exp.Subquery):
            query = inner.this
        else:
            if not source_alias:
                source_alias = inner.name if isinstance(inner.this, exp.Identifier) else "source"
            query = exp.select("*").from_(inner)
        src, _ = self._run_query_arrow(query)
        on = tree.args.get("on")
        if on is None:
            raise InvalidArgumentError("MERGE needs ON condition")
        clauses: list[MergeClause] = []
        whens = tree.args.get("whens")
        for when in whens.expressions if whens is not None else []:
            matched = bool(when.args.get("matched"))
            by_source = bool(when.args.get("source"))
            condition = when.args.get("condition")
            then = when.args.get("then")
            if isinstance(then, exp.Update):
                kind = "not_matched_by_source_update" if by_source else "matched_update"
                if len(then.expressions) == 1 and isinstance(then.expressions[0], exp.Star):
                    assignments = None
                else:
                    assignments = {}
                    for a in then.expressions:
                        if not isinstance(a, exp.EQ) or not isinstance(a.this, exp.Column):
                            raise InvalidArgumentError(f"expected column = value, found {a.sql()}")
                        assignments[a.this.name] = a.expression
            elif isinstance(then, exp.Insert):
                kind = "not_matched_insert"
                if isinstance(then.this, exp.Star) or then.this is None:
                    assignments = None
                else:
                    cols = [c.name for c in then.this.expressions]
                    values = (
                        list(then.expression.expressions) if then.expression is not None else []
                    )
                    if len(cols) != len(values):
                        raise InvalidArgumentError(
                            f"INSERT names {len(cols)} columns but gives {len(values)} values"
                        )
                    assignments = dict(zip(cols, values, strict=True))
            elif (isinstance(then, exp.Var) and then.name.upper() == "DELETE") or (
                isinstance(then, exp.Delete)
            ):
                kind = "not_matched_by_source_delete" if by_source else "matched_delete"
                assignments = None
            else:
                raise InvalidArgumentError(
                    f"unsupported MERGE action {then.sql() if then else None}"
                )
            if not matched and not by_source and kind != "not_matched_insert":
                raise InvalidArgumentError("WHEN NOT MATCHED can only INSERT")
            if matched and kind == "not_matched_insert":
                raise InvalidArgumentError("WHEN MATCHED can UPDATE or DELETE, not INSERT")
            clauses.append(MergeClause(kind, condition, assignments))
        return self._do_merge(location, label, src, on, clauses, target_alias, source_alias)

    def _do_merge(
        self,
        location: str,
        label: str,
        source: pa.Table,
        on: Any,
        clauses: Sequence[MergeClause],
        target_alias: str,
        source_alias: str,
    ) -> pd.DataFrame:
        import sqlglot

        if not clauses:
            raise InvalidArgumentError("MERGE needs at least one WHEN clause")
        if target_alias.lower() == source_alias.lower():
            raise InvalidArgumentError("MERGE target and source need different aliases")
        dt = self._delta(location, label)
        target_schema = dt.to_pyarrow_dataset().schema
        target_cols = {f.name.lower(): f.name for f in target_schema}
        source = _cast_like(source, target_schema)
        source_cols = {n.lower(): n for n in source.column_names}
        ta, sa = target_alias.lower(), source_alias.lower()
        scopes = {ta: target_cols, sa: source_cols}
        dialect = sqlmod.sqlglot_dialect()

        def render(value: Any) -> str:
            tree = sqlglot.parse_one(value, read=dialect) if isinstance(value, str) else value
            return self._to_datafusion(tree, scopes, label)

        def assignments(values: Mapping[str, Any] | None, kind: str) -> dict[str, str] | None:
            if values is None:
                missing = [c for c in target_cols if c not in source_cols]
                if missing and kind != "not_matched_insert":
                    raise InvalidArgumentError(
                        f"UPDATE SET * needs every column of {label} in the source; missing: "
                        + ", ".join(target_cols[m] for m in missing)
                    )
                if missing:
                    raise InvalidArgumentError(
                        f"INSERT * needs every column of {label} in the source; missing: "
                        + ", ".join(target_cols[m] for m in missing)
                    )
                return None
            out = {}
            for col, value in values.items():
                name = str(col).split(".")[-1]
                out[_quote(self._column(target_cols, name, label))] = render(value)
            return out

        try:
            builder = dt.merge(
                source=source,
                predicate=render(on),
                source_alias=sa,
                target_alias=ta,
            )
        except SharelabError:
            raise
        except Exception as exc:
            raise InvalidArgumentError(f"MERGE into {label} failed: {_clean(exc)}") from exc
        for clause in clauses:
            if clause.kind not in _MERGE_KINDS:
                raise InvalidArgumentError(f"unknown MERGE clause kind {clause.kind!r}")
            predicate = render(clause.condition) if clause.condition is not None else None
            updates = (
                assignments(clause.assignments, clause.kind)
                if not clause.kind.endswith("delete")
                else None
            )
            if clause.kind == "matched_update":
                builder = (
                    builder.when_matched_update_all(predicate=predicate)
                    if updates is None
                    else builder.when_matched_update(updates=updates, predicate=predicate)
                )
            elif clause.kind == "matched_delete":
                builder = builder.when_matched_delete(predicate=predicate)
            elif clause.kind == "not_matched_insert":
                builder = (
                    builder.when_not_matched_insert_all(predicate=predicate)
                    if updates is None
                    else builder.when_not_matched_insert(updates=updates, predicate=predicate)
                )
            elif clause.kind == "not_matched_by_source_update":
                if updates is None:
                    raise InvalidArgumentError(
                        "WHEN NOT MATCHED BY SOURCE needs UPDATE SET col = value"
                    )
                builder = builder.when_not_matched_by_source_update(
                    updates=updates, predicate=predicate
                )
            else:
                builder = builder.when_not_matched_by_source_delete(predicate=predicate)
        try:
            metrics = builder.execute()
        except Exception as exc:
            raise InvalidArgumentError(f"MERGE into {label} failed: {_clean(exc)}") from exc
        updated = int(metrics.get("num_target_rows_updated", 0))
        deleted = int(metrics.get("num_target_rows_deleted", 0))
        inserted = int(metrics.get("num_target_rows_inserted", 0))
        return pd.DataFrame(
            {
                "num_affected_rows": [updated + deleted + inserted],
                "num_updated_rows": [updated],
                "num_deleted_rows": [deleted],
                "num_inserted_rows": [inserted],
            }
        )


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _utc_timestamp(value: str | datetime) -> datetime:
    """A timestamp given as text or datetime, as an aware UTC datetime (naive values are UTC)."""
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise InvalidArgumentError(
            f"{value!r} is not a timestamp; write it like '2024-01-31 12:00:00' (UTC) or with an offset"
        ) from exc
    if pd.isna(stamp):
        raise InvalidArgumentError(f"{value!r} is not a timestamp")
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


def _clean(exc: BaseException) -> str:
    """A one-line message from a library exception."""
    text = " ".join(str(exc).split())
    return text[:500] or type(exc).__name__


def _literal_value(node: Any) -> Any:
    from sqlglot import exp

    if isinstance(node, exp.Neg):
        value = _literal_value(node.this)
        return -value if isinstance(value, int | float) else value
    if isinstance(node, exp.Literal):
        if node.is_string:
            return node.this
        text = node.this
        try:
            return int(text)
        except ValueError:
            return float(text)
    if isinstance(node, exp.Cast | exp.TsOrDsToDate | exp.TsOrDsToTimestamp) and isinstance(
        node.this, exp.Literal
    ):
        return node.this.this
    raise InvalidArgumentError(f"expected a literal value, found {node.sql() if node else None}")


_TYPE_NAMES = {
    "integer": "int",
    "long": "bigint",
    "short": "smallint",
    "byte": "tinyint",
    "timestamp_ntz": "timestamp_ntz",
}


def _type_name(delta_type: Any) -> str:
    raw = getattr(delta_type, "type", None)
    if isinstance(raw, str):
        return _TYPE_NAMES.get(raw, raw)
    return str(delta_type)


def _normalize_arrow(table: pa.Table) -> pa.Table:
    """View types → plain types (pandas and old readers), ``_commit_timestamp`` → UTC tz-aware."""
    import pyarrow as pa

    fields = []
    changed = False
    for f in table.schema:
        t = f.type
        if t == pa.string_view():
            t = pa.string()
        elif t == pa.binary_view():
            t = pa.binary()
        elif f.name == "_commit_timestamp" and pa.types.is_timestamp(t) and t.tz is None:
            t = pa.timestamp(t.unit, tz="UTC")
        changed |= t != f.type
        fields.append(pa.field(f.name, t, f.nullable))
    if not changed:
        return table
    arrays = []
    for col, f in zip(table.columns, fields, strict=True):
        if pa.types.is_timestamp(f.type) and f.type.tz == "UTC" and col.type.tz is None:
            arrays.append(col.cast(pa.timestamp(col.type.unit)).cast(f.type))
        else:
            arrays.append(col.cast(f.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _arrow_to_pandas(table: pa.Table) -> pd.DataFrame:
    """Query results as pandas; DuckDB's HUGEINT (``sum`` of integers) becomes int64 like Databricks' bigint."""
    import pyarrow as pa

    arrays = []
    for col in table.columns:
        t = col.type
        if pa.types.is_decimal(t) and t.scale == 0 and t.precision == 38:
            try:
                col = col.cast(pa.int64(), safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass  # too large for int64: keep the exact decimal
        arrays.append(col)
    return pa.Table.from_arrays(arrays, names=table.column_names).to_pandas()


def _cast(column: Any, field: Any, label: str) -> Any:
    """Cast an inserted column to the table's Arrow type, with a message naming the column."""
    import pyarrow as pa

    target = field.type
    col = column
    try:
        if pa.types.is_timestamp(target):
            if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
                col = col.cast(pa.timestamp(target.unit))  # text timestamps are read as UTC
            if pa.types.is_timestamp(col.type) and col.type.tz is None and target.tz is not None:
                col = col.cast(pa.timestamp(col.type.unit, tz="UTC"))  # naive values are UTC
        return col.cast(target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise InvalidArgumentError(
            f"cannot store the given {col.type} values in column {field.name} ({target}) of {label}: "
            f"{_clean(exc)}"
        ) from exc


def _cast_like(source: pa.Table, schema: pa.Schema) -> pa.Table:
    """Cast source columns named like target columns to the target's types where that is lossless."""
    import pyarrow as pa

    by_name = {f.name.lower(): f for f in schema}
    arrays, fields = [], []
    for name, col in zip(source.column_names, source.columns, strict=True):
        f = by_name.get(name.lower())
        if f is not None and col.type != f.type:
            try:
                col = _cast(col, f, "the MERGE target")
            except InvalidArgumentError:
                pass
        arrays.append(col)
        fields.append(pa.field(name, col.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))
