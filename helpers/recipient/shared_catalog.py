"""The recipient's SQL with **live** shared catalogs, over the recipient's own DuckDB (open protocol only).

``RecipientSession(providers)`` is what a Databricks recipient does in SQL, on the recipient's side::

    SHOW PROVIDERS;  DESCRIBE PROVIDER airline;  SHOW SHARES IN PROVIDER airline;
    CREATE CATALOG IF NOT EXISTS sales USING SHARE airline.sales_data_share;
    DESCRIBE CATALOG sales;  SHOW SCHEMAS IN sales;  SHOW TABLES IN sales.sales_domain;
    SELECT ... FROM sales.sales_domain.bookings JOIN core.shared_airline.flights USING (flight_id);
    SELECT count(*) FROM sales.sales_domain.bookings VERSION AS OF 1;
    DROP CATALOG sales;

A shared catalog holds no data. When a query names ``catalog.schema.table``, the session first asks the
provider's server the table's current version (``GET .../version``); it reuses the Arrow copy it holds in
memory only when that version is unchanged, and otherwise reads the table again (``/query`` and the signed
files). The Arrow table is registered with DuckDB (a zero-copy scan of Arrow memory, nothing written into
the DuckDB file) under a private name that replaces the reference in the query text. So a provider's new
commit is seen by the next query, with no re-mount. Everything else (``CREATE TABLE mine AS SELECT ...``,
the recipient's own tables) is plain DuckDB. Writes on a shared table are refused.

The **snapshot copy** (:func:`helpers.recipient.mount`) is the other option: copied once, offline, stale
until mounted again.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa
import requests

from helpers.exceptions import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
    ServerError,
    ShareAccessError,
)
from helpers.recipient.fast import fast_load_arrow
from helpers.recipient.mounting import is_mount
from helpers.recipient.providers import Provider, ProviderClient, load_providers, refusal
from helpers.recipient.shared_sql import (
    RecipientStatement,
    SharedRef,
    find_shared_refs,
    parse_describe_table,
    parse_recipient_statement,
    split_statements,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    import duckdb

    from helpers.recipient.profile_files import ProfileLike

__all__ = ["RecipientSession", "SharedCatalog"]

READ_COLUMNS = ["catalog", "schema", "table", "version", "read", "rows"]


@dataclass(frozen=True)
class SharedCatalog:
    """A catalog created ``USING SHARE provider.share``: a name for a share, no data."""

    name: str
    provider: str
    share: str
    comment: str = ""


@dataclass
class _Cached:
    version: int
    data: pa.Table
    view: str  # the name registered with DuckDB


class RecipientSession:
    """A recipient's SQL session: its providers (profile files), live shared catalogs, its own DuckDB.

    :param providers: a folder of profile files (``*.share``, one provider per file, named by its stem),
        one profile file, or ``{name: profile path or object}``.
    :param con: the recipient's DuckDB connection (a new in-memory one by default).
    :param catalogs_file: keep the catalogs created here in this JSON file (so they outlive the session,
        as catalogs do); default: in memory only.
    :param loader: ``"fast"`` (:func:`helpers.recipient.fast_load_arrow`: one ``/query`` and concurrent
        downloads) or ``"official"`` (the ``delta_sharing`` client).
    """

    def __init__(
        self,
        providers: str | os.PathLike[str] | Mapping[str, ProfileLike],
        con: duckdb.DuckDBPyConnection | None = None,
        *,
        catalogs_file: str | os.PathLike[str] | None = None,
        loader: str = "fast",
    ) -> None:
        import duckdb

        if loader not in ("fast", "official"):
            raise InvalidArgumentError(f"loader must be 'fast' or 'official', not {loader!r}")
        self.providers: dict[str, Provider] = load_providers(providers)
        self.con = con if con is not None else duckdb.connect()
        self.loader = loader
        self._file = Path(catalogs_file) if catalogs_file else None
        self._catalogs: dict[str, SharedCatalog] = self._load_catalogs()
        self._clients: dict[str, ProviderClient] = {}
        self._latest: dict[tuple[str, str, str, str], _Cached] = {}
        self._pinned: dict[tuple[str, str, str, str, int], _Cached] = {}
        self._views = 0
        #: What the last statement read from the providers: ``catalog, schema, table, version, read``
        #: (``fetched`` through the protocol, or ``cached``: the version was unchanged), ``rows``.
        self.reads = pd.DataFrame(columns=READ_COLUMNS)

    # ------------------------------------------------------------------ catalogs kept in a file
    def _load_catalogs(self) -> dict[str, SharedCatalog]:
        if self._file is None or not self._file.exists():
            return {}
        try:
            rows = json.loads(self._file.read_text(encoding="utf-8"))
            return {r["name"].lower(): SharedCatalog(**r) for r in rows}
        except (ValueError, TypeError, KeyError) as exc:
            raise InvalidArgumentError(
                f"{self._file} is not a catalogs file of this session ({exc}): remove it"
            ) from exc

    def _save_catalogs(self) -> None:
        if self._file is None:
            return
        self._file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._file.with_suffix(".tmp")
        tmp.write_text(json.dumps([asdict(c) for c in self._catalogs.values()], indent=1))
        tmp.replace(self._file)

    # ------------------------------------------------------------------ public API
    @property
    def catalogs(self) -> dict[str, SharedCatalog]:
        """The live shared catalogs, by lower-cased name."""
        return dict(self._catalogs)

    def sql(self, text: str) -> pd.DataFrame:
        """Run one statement or several (``;``-separated); the last one's result as a DataFrame.

        :raises SqlParseError: a malformed recipient statement (the message shows what to write).
        :raises NotFoundError: an unknown provider, share, catalog, schema or table.
        :raises ShareAccessError: the provider refused (token, address, grant revoked).
        :raises ReadOnlyShareError: a write on a shared table.
        """
        result = _status("OK")
        for statement in split_statements(text):
            result = self._run(statement)
        return result

    def close(self) -> None:
        """Forget the cached tables (and close the DuckDB connection)."""
        for cached in [*self._latest.values(), *self._pinned.values()]:
            self._unregister(cached.view)
        self._latest.clear()
        self._pinned.clear()
        self.con.close()

    # ------------------------------------------------------------------ dispatch
    def _run(self, statement: str) -> pd.DataFrame:
        parsed = parse_recipient_statement(statement) or parse_describe_table(
            statement, self._catalogs
        )
        self.reads = pd.DataFrame(columns=READ_COLUMNS)
        if parsed is None:
            return self._query(statement)
        handler = getattr(self, f"_do_{parsed.kind}")
        result: pd.DataFrame = handler(parsed)
        return result

    def _provider(self, name: str) -> Provider:
        provider = self.providers.get(name.lower())
        if provider is None:
            known = ", ".join(p.name for p in self.providers.values()) or "none"
            raise NotFoundError(
                f"no provider named {name!r} (known: {known}); SHOW PROVIDERS lists them, and a "
                "provider is a profile file (*.share) the provider gave you"
            )
        return provider

    def _client(self, name: str) -> ProviderClient:
        provider = self._provider(name)
        key = provider.name.lower()
        if key not in self._clients:
            self._clients[key] = ProviderClient(provider)
        return self._clients[key]

    def _catalog(self, name: str) -> SharedCatalog:
        catalog = self._catalogs.get(name.lower())
        if catalog is None:
            known = ", ".join(c.name for c in self._catalogs.values()) or "none yet"
            raise NotFoundError(
                f"no shared catalog named {name!r} (known: {known}); create it with CREATE CATALOG "
                f"{name} USING SHARE <provider>.<share>"
            )
        return catalog

    # ------------------------------------------------------------------ providers
    def _do_show_providers(self, _: RecipientStatement) -> pd.DataFrame:
        rows = [
            {"name": p.name, "endpoint": p.endpoint, "profile_file": Path(p.path).name}
            for p in self.providers.values()
        ]
        return pd.DataFrame(rows, columns=["name", "endpoint", "profile_file"])

    def _do_describe_provider(self, stmt: RecipientStatement) -> pd.DataFrame:
        p = self._provider(stmt.name)
        profile = p.profile
        token = profile.bearer_token
        info = [
            ("name", p.name),
            ("authentication_type", "TOKEN" if token else str(profile.type or "OAUTH")),
            ("endpoint", p.endpoint),
            ("profile_file", p.path),
            ("share_credentials_version", str(profile.share_credentials_version)),
            (
                "token_expiration_time",
                str(profile.expiration_time or "none (the profile sets none)"),
            ),
            ("bearer_token", "(in the profile file, not shown)" if token else "none"),
        ]
        return pd.DataFrame(info, columns=["info_name", "info_value"])

    def _do_show_shares(self, stmt: RecipientStatement) -> pd.DataFrame:
        client = self._client(stmt.name)
        rows = [{"name": s, "provider": client.provider.name} for s in client.shares()]
        return pd.DataFrame(rows, columns=["name", "provider"])

    # ------------------------------------------------------------------ catalogs
    def _do_create_catalog(self, stmt: RecipientStatement) -> pd.DataFrame:
        if stmt.name.lower() in self._catalogs:
            if stmt.if_exists:
                return _status(f"catalog {stmt.name} exists already: nothing to do")
            raise AlreadyExistsError(
                f"catalog {stmt.name} exists already; write CREATE CATALOG IF NOT EXISTS, or DROP "
                f"CATALOG {stmt.name} first"
            )
        client = self._client(stmt.provider)
        databases = {
            r[0].lower()
            for r in self.con.execute("SELECT database_name FROM duckdb_databases()").fetchall()
        }
        if stmt.name.lower() in databases:
            raise InvalidArgumentError(
                f"DuckDB already has a database named {stmt.name!r} (a snapshot mount or your own): "
                "give the catalog another name"
            )
        if not client.has_share(stmt.share):
            raise NotFoundError(
                f"provider {client.provider.name} shares no {stmt.share!r} with you; SHOW SHARES IN "
                f"PROVIDER {client.provider.name} lists what it shares"
            )
        self._catalogs[stmt.name.lower()] = SharedCatalog(
            stmt.name, client.provider.name, stmt.share, stmt.comment
        )
        self._save_catalogs()
        return _status(f"catalog {stmt.name} created: live, reads share {stmt.share} at query time")

    def _do_drop_catalog(self, stmt: RecipientStatement) -> pd.DataFrame:
        if stmt.name.lower() not in self._catalogs:
            if stmt.if_exists:
                return _status(f"no catalog {stmt.name}: nothing to do")
            self._catalog(stmt.name)  # raises NotFoundError
        dropped = self._catalogs.pop(stmt.name.lower())
        still = {(c.provider.lower(), c.share.lower()) for c in self._catalogs.values()}
        for cache in (self._latest, self._pinned):
            for key in [k for k in cache if (k[0], k[1]) not in still]:
                self._unregister(cache.pop(key).view)  # type: ignore[arg-type]
        self._save_catalogs()
        return _status(f"catalog {dropped.name} dropped (the provider's share is untouched)")

    def _do_show_catalogs(self, _: RecipientStatement) -> pd.DataFrame:
        rows = [
            {
                "catalog": c.name,
                "type": "live shared catalog",
                "provider": c.provider,
                "share": c.share,
            }
            for c in self._catalogs.values()
        ]
        for name, path in self.con.execute(
            "SELECT database_name, path FROM duckdb_databases() WHERE NOT internal"
        ).fetchall():
            kind = "snapshot copy (mount)" if is_mount(path) else "DuckDB database"
            rows.append({"catalog": name, "type": kind, "provider": "", "share": ""})
        return pd.DataFrame(rows, columns=["catalog", "type", "provider", "share"])

    def _do_describe_catalog(self, stmt: RecipientStatement) -> pd.DataFrame:
        c = self._catalog(stmt.name)
        info = [
            ("Catalog Name", c.name),
            ("Catalog Type", "DELTASHARING"),
            ("Provider Name", c.provider),
            ("Share Name", c.share),
            ("Endpoint", self._provider(c.provider).endpoint),
            ("Reads", "live: version checked at each query"),
            ("Comment", c.comment),
        ]
        return pd.DataFrame(info, columns=["info_name", "info_value"])

    def _do_show_schemas(self, stmt: RecipientStatement) -> pd.DataFrame:
        c = self._catalog(stmt.name)
        names = self._client(c.provider).schemas(c.share)
        return pd.DataFrame({"schema_name": names})

    def _do_show_tables(self, stmt: RecipientStatement) -> pd.DataFrame:
        c = self._catalog(stmt.name)
        client = self._client(c.provider)
        try:
            names = client.tables(c.share, stmt.schema)
        except ShareAccessError as exc:
            raise self._explain_404(exc, c, stmt.schema, None) from None
        return pd.DataFrame({"schema": stmt.schema, "table": names}, columns=["schema", "table"])

    def _do_describe_table(self, stmt: RecipientStatement) -> pd.DataFrame:
        c = self._catalog(stmt.name)
        try:
            version, meta = self._client(c.provider).metadata(c.share, stmt.schema, stmt.table)
        except ShareAccessError as exc:
            raise self._explain_404(exc, c, stmt.schema, stmt.table) from None
        fields = json.loads(meta.get("schemaString") or '{"fields": []}').get("fields", [])
        partitions = set(meta.get("partitionColumns") or [])
        rows = [
            {
                "col_name": f["name"],
                "data_type": f["type"] if isinstance(f["type"], str) else json.dumps(f["type"]),
                "nullable": bool(f.get("nullable", True)),
                "partition": f["name"] in partitions,
            }
            for f in fields
        ]
        frame = pd.DataFrame(rows, columns=["col_name", "data_type", "nullable", "partition"])
        frame.attrs["version"] = version
        return frame

    def _explain_404(
        self, exc: ShareAccessError, c: SharedCatalog, schema: str, table: str | None
    ) -> Exception:
        """A 404 on a schema or table: unknown name (NotFoundError) or the whole share gone (as is)."""
        if exc.status != 404 or not self._client(c.provider).has_share(c.share):
            return exc
        if table is None:
            return NotFoundError(
                f"catalog {c.name} has no schema {schema!r}; SHOW SCHEMAS IN {c.name} lists them"
            )
        return NotFoundError(
            f"catalog {c.name} has no table {schema}.{table}; SHOW TABLES IN {c.name}.{schema} "
            "lists the tables of a schema"
        )

    # ------------------------------------------------------------------ queries
    def _query(self, statement: str) -> pd.DataFrame:
        import duckdb

        refs = find_shared_refs(statement, self._catalogs)
        text, names, reads = statement, {}, []
        for ref in sorted(refs, key=lambda r: r.start, reverse=True):
            cached, how = self._resolve(ref)
            names[cached.view] = f"{ref.catalog}.{ref.schema}.{ref.table}"
            text = text[: ref.start] + cached.view + text[ref.end :]
            reads.append(
                [ref.catalog, ref.schema, ref.table, cached.version, how, cached.data.num_rows]
            )
        self.reads = pd.DataFrame(reversed(reads), columns=READ_COLUMNS).drop_duplicates(
            ignore_index=True
        )
        try:
            relation = self.con.sql(text)
        except duckdb.Error as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            for view, name in names.items():
                message = message.replace(view, name)
            if message.startswith("Catalog Error"):
                known = ", ".join(c.name for c in self._catalogs.values()) or "none"
                message += f" (live shared catalogs: {known}; SHOW CATALOGS lists every catalog)"
            raise InvalidArgumentError(f"DuckDB: {message}") from None
        return relation.df() if relation is not None else _status("OK")

    def _resolve(self, ref: SharedRef) -> tuple[_Cached, str]:
        """The Arrow copy a reference reads (the version checked first), and ``fetched`` or ``cached``."""
        c = self._catalog(ref.catalog)
        client = self._client(c.provider)
        base = (c.provider.lower(), c.share.lower(), ref.schema.lower(), ref.table.lower())
        try:
            if ref.version is not None:
                pinned = self._pinned.get((*base, ref.version))
                if pinned is not None:
                    return pinned, "cached"
                data = self._load(client.provider, c.share, ref, ref.version)
                fresh = self._register(ref.version, data)
                self._pinned[(*base, ref.version)] = fresh
                return fresh, "fetched"
            version = client.version(c.share, ref.schema, ref.table)
            latest = self._latest.get(base)
            if latest is not None and latest.version == version:
                return latest, "cached"
            for _ in range(3):  # a commit between /version and /query: read again
                data = self._load(client.provider, c.share, ref, None)
                after = client.version(c.share, ref.schema, ref.table)
                if after == version:
                    break
                version = after
        except ShareAccessError as exc:
            raise self._explain_404(exc, c, ref.schema, ref.table) from None
        fresh = self._register(version, data)
        if latest is not None:
            self._unregister(latest.view)
        self._latest[base] = fresh
        return fresh, "fetched"

    def _load(
        self, provider: Provider, share: str, ref: SharedRef, version: int | None
    ) -> pa.Table:
        url = provider.url(share, ref.schema, ref.table)
        what = f"table {share}.{ref.schema}.{ref.table}" + (
            f" VERSION AS OF {version}" if version is not None else ""
        )
        try:
            if self.loader == "fast":
                return fast_load_arrow(url, version=version)
            import delta_sharing

            frame = delta_sharing.load_as_pandas(url, version=version)
            return pa.Table.from_pandas(frame, preserve_index=False)
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            message = str(exc).split(": ", 1)[-1]
            raise refusal(provider, status, message, what) from None
        except requests.ConnectionError as exc:
            raise ServerError(
                f"provider {provider.name} does not answer at {provider.endpoint}: is its server running?"
            ) from exc

    def _register(self, version: int, data: pa.Table) -> _Cached:
        self._views += 1
        view = f"__shared_{self._views}"
        self.con.register(view, data)
        return _Cached(version, data, view)

    def _unregister(self, view: str) -> None:
        try:
            self.con.unregister(view)
        except Exception:  # noqa: BLE001 - a closed connection has nothing left to unregister
            pass


def _status(message: str) -> pd.DataFrame:
    return pd.DataFrame({"status": [message]})
