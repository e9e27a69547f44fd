"""``/query``: the files of one table version (or the commits of a version range), filtered and paged."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from helpers.catalog import Recipient, SharedTable
from helpers.server.audit import AuditInfo
from helpers.server.dv import has_dv_files
from helpers.server.errors import bad_request
from helpers.server.limits import (
    MAX_FILES_PER_PAGE,
    PAGE_TOKEN_TTL_SECONDS,
    REFRESH_TOKEN_TTL_SECONDS,
)
from helpers.server.ndjson import (
    RENDER_BATCH,
    DvLineRenderer,
    Entry,
    EntrySet,
    LineRenderer,
    PresignedLineRenderer,
)
from helpers.server.params import bool_param, choose_format, int_param, partition_predicate
from helpers.server.pinned import object_store_log
from helpers.server.predicates import (
    apply_limit_hint,
    file_always_matches,
    file_matches,
    parse_json_predicate,
)
from helpers.server.protocol import EndStreamAction, ndjson
from helpers.server.service.changes import ChangesService, visible_size
from helpers.server.signing import params_checksum
from helpers.server.sql_hints import column_types, parse_sql_hint
from helpers.storage.delta_log import DeltaLog, Snapshot

__all__ = ["QueryService"]


@dataclass(frozen=True)
class _QueryOptions:
    """The validated options of a ``/query`` body."""

    hints: object
    limit: int | None
    max_files: int | None
    page_token: str | None
    include_refresh: bool
    refresh_token: str | None
    starting: object
    extra: dict[str, str] | None
    end_stream: bool
    checksum: str


def _query_options(
    body: dict[str, Any], caps: dict[str, list[str]], info: AuditInfo
) -> _QueryOptions:
    """Check the body's options and their combinations (a 400 for a bad one)."""
    hints = body.get("jsonPredicateHints")
    limit = int_param(body.get("limitHint"), "limitHint", minimum=0)
    info.has_predicate_hints = bool(hints) or bool(body.get("predicateHints"))
    info.has_limit_hint = limit is not None
    max_files = int_param(body.get("maxFiles"), "maxFiles")
    if max_files is not None and max_files <= 0:
        raise bad_request(f"maxFiles must be > 0, got {max_files}")
    if max_files is not None:
        max_files = min(max_files, MAX_FILES_PER_PAGE)
    page_token = body.get("pageToken")
    include_refresh = bool_param(body.get("includeRefreshToken"), "includeRefreshToken")
    refresh_token = body.get("refreshToken")
    starting = body.get("startingVersion")
    ending = body.get("endingVersion")
    chosen = [k for k in ("version", "timestamp", "startingVersion") if body.get(k) is not None]
    if len(chosen) > 1:
        raise bad_request(
            f"Please only provide one of: version, timestamp, startingVersion (got {', '.join(chosen)})"
        )
    if (include_refresh or refresh_token) and (chosen or page_token):
        raise bad_request(
            "includeRefreshToken and refreshToken cannot be combined with version, timestamp, "
            "startingVersion or pageToken"
        )
    if ending is not None and starting is None:
        raise bad_request("endingVersion can only be used together with startingVersion")
    fh = body.get("_fileidhash")
    end_stream = (
        "true" in caps.get("includeendstreamaction", [])
        or max_files is not None
        or include_refresh
        or bool(refresh_token)
    )
    checksum = params_checksum(
        {
            "h": hints,
            "p": body.get("predicateHints"),
            "l": limit,
            "s": starting,
            "e": ending,
            "v": body.get("version"),
            "t": body.get("timestamp"),
            "f": caps.get("responseformat"),
            "m": max_files,
        }
    )
    return _QueryOptions(
        hints=hints,
        limit=limit,
        max_files=max_files,
        page_token=page_token,
        include_refresh=include_refresh,
        refresh_token=refresh_token,
        starting=starting,
        extra={"fileidhash": fh} if fh else None,
        end_stream=end_stream,
        checksum=checksum,
    )


def _select(
    entries: list[Entry],
    allowed: Callable[[dict[str, Any]], bool] | None,
    hints: object,
    limit: int | None,
    sql_hints: object = None,
    schema_string: str = "",
) -> list[int] | range:
    """The indexes of the entries the partition filter, the predicate hints and the limit hint keep.

    Predicates first, then the limit (protocol §5.4): a file's rows count towards ``limitHint`` only
    when every row provably matches every hint; when a hint cannot be read (malformed JSON hint, SQL
    hint beyond :mod:`helpers.server.sql_hints`), the limit is not applied at all.
    """
    predicates = []
    unreadable = False
    if hints is not None and hints != "":
        json_predicate = parse_json_predicate(hints)
        unreadable = json_predicate is None
        if json_predicate is not None:
            predicates.append(json_predicate)
    if isinstance(sql_hints, list) and sql_hints:
        types = column_types(schema_string)
        for hint in sql_hints:
            sql_predicate = parse_sql_hint(hint, types)
            unreadable = unreadable or sql_predicate is None
            if sql_predicate is not None:
                predicates.append(sql_predicate)
    selected: list[int] | range
    if allowed is None and not predicates:
        selected = range(len(entries))
    else:
        selected = [
            i
            for i, (add, *_rest) in enumerate(entries)
            if (allowed is None or allowed(add)) and all(file_matches(p, add) for p in predicates)
        ]
    if limit is not None and not unreadable:
        by_id = {id(entries[i][0]): i for i in selected}

        def counts(add: dict[str, Any]) -> bool:
            return all(file_always_matches(p, add) for p in predicates)

        kept = apply_limit_hint(
            (entries[i][0] for i in selected), limit, counts if predicates else None
        )
        selected = [by_id[id(a)] for a in kept]
    return selected


class QueryService(ChangesService):
    """``/query``: a snapshot's files, or with ``startingVersion`` the add/remove lines of a range."""

    def query(
        self,
        request: Request,
        recipient: Recipient,
        names: tuple[str, str, str],
        body: dict[str, Any],
        caps: dict[str, list[str]],
        info: AuditInfo,
    ) -> tuple[dict[str, str], Iterator[str]]:
        table = self.shared_table(recipient, *names)
        log_ = self.table_log(table)
        opts = _query_options(body, caps, info)
        base = self.base_url(request)
        identity = self.url_identity(
            request, recipient, table
        )  # URLs and tokens die with the access
        if opts.starting is not None:
            return self._query_stream(
                table,
                log_,
                body,
                caps,
                info,
                base,
                opts.max_files,
                opts.page_token,
                opts.checksum,
                opts.end_stream,
                opts.extra,
                partition_predicate(table, recipient),
                recipient,
                identity,
            )
        version, travelled, offset = self._query_version(table, log_, body, opts, identity)
        snapshot = log_.snapshot(version)
        fmt = choose_format(caps, snapshot)
        entry_set = self.file_entries(table, snapshot, log_, fmt, travelled)
        entries = entry_set.entries
        allowed = partition_predicate(table, recipient)
        selected = _select(
            entries,
            allowed,
            opts.hints,
            opts.limit,
            body.get("predicateHints"),
            str(snapshot.metadata.get("schemaString") or ""),
        )
        selected, next_token = self._page_files(table, snapshot, selected, offset, opts, identity)
        info.version, info.response_format, info.num_files = snapshot.version, fmt, len(selected)
        refresh = None
        if opts.include_refresh or opts.refresh_token:
            refresh = self.signer.make_token(
                "refresh",
                {"t": table.id, "v": snapshot.version, "c": opts.checksum, "a": identity},
                REFRESH_TOKEN_TTL_SECONDS,
            )
        head = self.head_lines(
            table,
            snapshot,
            fmt,
            snapshot.version if travelled else None,
            visible=visible_size(snapshot, allowed),
        )
        exp, render, cache = self._renderer(
            table, log_, snapshot, entry_set, base, identity, self.direct_links(recipient)
        )
        if (
            fmt == "delta"
            and object_store_log(log_) is None
            and has_dv_files(entries[i][0] for i in selected)
        ):  # deletion vectors on disk: their files get signed URLs too
            render = DvLineRenderer(
                self.dv_signer(table, snapshot.version, base, exp, identity),
                exp,
                snapshot.version if travelled else None,
                snapshot.timestamp if travelled else None,
            )
        end_stream = opts.end_stream

        def lines() -> Iterator[str]:
            yield "".join(head)
            # whole batches of lines per yield: fewer generator round trips (the response chunks them)
            for lo in range(0, len(selected), RENDER_BATCH):
                yield render.batch(entries, cache, selected[lo : lo + RENDER_BATCH])
            if end_stream:
                yield ndjson(
                    EndStreamAction(
                        refresh_token=refresh,
                        next_page_token=next_token,
                        min_url_expiration_timestamp=exp if selected else None,
                    ).to_json()
                )

        return self.response_headers(snapshot.version, fmt, end_stream, opts.extra), lines()

    def _page_files(
        self,
        table: SharedTable,
        snapshot: Snapshot,
        selected: list[int] | range,
        offset: int,
        opts: _QueryOptions,
        identity: str = "",
    ) -> tuple[list[int] | range, str | None]:
        """The page of ``selected`` from ``offset`` (``maxFiles`` long) and the next page's token."""
        next_token = None
        if opts.max_files is not None:
            if offset + opts.max_files < len(selected):
                next_token = self.signer.make_token(
                    "page",
                    {
                        "t": table.id,
                        "v": snapshot.version,
                        "c": opts.checksum,
                        "o": offset + opts.max_files,
                        "a": identity,
                    },
                    PAGE_TOKEN_TTL_SECONDS,
                )
            selected = selected[offset : offset + opts.max_files]
        elif offset:
            selected = selected[offset:]
        return selected, next_token

    def _query_version(
        self,
        table: SharedTable,
        log_: DeltaLog,
        body: dict[str, Any],
        opts: _QueryOptions,
        identity: str = "",
    ) -> tuple[int | None, bool, int]:
        """(version or None = latest, time-travelled, offset) from the body and its tokens."""
        version, travelled = self.history_version(
            table, log_, body.get("version"), body.get("timestamp")
        )
        offset = 0
        if opts.refresh_token:
            payload = self.signer.read_token("refresh", opts.refresh_token, "refreshToken")
            if payload.get("t") != table.id or payload.get("c") != opts.checksum:
                raise bad_request(
                    "invalid 'refreshToken': it was issued for another table or query"
                )
            if str(payload.get("a", "")).partition("\n")[0] != identity.partition("\n")[0]:
                raise bad_request("invalid 'refreshToken': it was issued to another recipient")
            self.check_binding(payload, table, "refreshToken")
            version = self._replayable(table, log_, int(payload["v"]), "refreshToken")
        if opts.page_token:
            payload = self.read_page_token(table, opts.page_token, opts.checksum, identity)
            version = int(payload["v"])
            if not travelled:
                version = self._replayable(table, log_, version, "pageToken")
            offset = int(payload["o"])
        return version, travelled, offset

    @staticmethod
    def _replayable(table: SharedTable, log_: DeltaLog, version: int, what: str) -> int:
        """``version`` of a page/refresh token, when this table may still serve it: any version with
        history sharing, else only the latest (a token must not become time travel)."""
        if table.history or version == log_.latest_version():
            return version
        raise bad_request(
            f"invalid '{what}': the table has a newer version and is shared without history; "
            "query again without it"
        )

    def _renderer(
        self,
        table: SharedTable,
        log_: DeltaLog,
        snapshot: Snapshot,
        entry_set: EntrySet,
        base: str,
        rname: str,
        direct: bool = False,
    ) -> tuple[int, LineRenderer | PresignedLineRenderer | DvLineRenderer, list[str | None]]:
        """(URL expiry, line renderer, its line cache) for the files of one response; ``direct``: links
        nginx checks itself (:mod:`helpers.server.securelink`) where the scheme allows."""
        exp = self.expiry_ms()
        store = object_store_log(log_)
        if store is not None:
            exp, sign = self.presigner(store)
            return exp, PresignedLineRenderer(sign, exp), []
        header = self.signer.token_header(
            table.id, snapshot.version, table.share, table.schema, table.name
        )
        if direct and self.secure_links is not None:
            token_path = self.signer.token_path

            def checked(raw: str) -> str:  # a file outside the link root: the server checks it
                return self.file_url(base, f"{header}.{token_path(raw)}", exp, rname)

            link = self.secure_links.signer(base, exp, log_.file_path, checked)
            return exp, PresignedLineRenderer(link, exp), []
        cache = entry_set.rendered((base, exp, rname))
        render = LineRenderer(
            self.file_url_parts(base, header, exp, rname),
            self.signer.file_signer(header, exp, rname),
            str(exp),
        )
        return exp, render, cache

    def _query_stream(
        self,
        table: SharedTable,
        log_: DeltaLog,
        body: dict[str, Any],
        caps: dict[str, list[str]],
        info: AuditInfo,
        base: str,
        max_files: int | None,
        page_token: str | None,
        checksum: str,
        end_stream: bool,
        extra: dict[str, str] | None,
        allowed: Callable[[dict[str, Any]], bool] | None,
        recipient: Recipient,
        identity: str = "",
    ) -> tuple[dict[str, str], Iterator[str]]:
        """``/query`` with ``startingVersion``: add/remove lines of each commit in the range."""
        if not table.history:
            raise bad_request(
                "startingVersion needs history sharing; the provider must share this table WITH HISTORY"
            )
        start = int_param(body.get("startingVersion"), "startingVersion")
        end = int_param(body.get("endingVersion"), "endingVersion")
        if start is None or start < 0:
            raise bad_request(f"startingVersion must be >= 0, got {body.get('startingVersion')}")
        latest = log_.latest_version()
        if end is not None and end < start:
            raise bad_request(
                f"startingVersion({start}) must be smaller than or equal to endingVersion({end})"
            )
        if end is not None and end > latest:
            raise bad_request(
                f"endingVersion({end}) is greater than the latest version of the table({latest})"
            )
        if start > latest:
            raise bad_request(
                f"startingVersion({start}) is greater than the latest version of the table({latest})"
            )
        self.check_start_version(table, start)
        end = latest if end is None else end
        snapshot = log_.snapshot(start)
        fmt = choose_format(caps, snapshot)
        historical_protocol = fmt == "delta" and bool_param(
            body.get("includeHistoricalProtocol"), "includeHistoricalProtocol"
        )
        actions = self.commit_actions(
            log_,
            start,
            end,
            cdf=False,
            metadata_lines=True,
            fmt=fmt,
            protocol_lines=historical_protocol,
        )
        return self.emit_actions(
            table,
            snapshot,
            fmt,
            info,
            base,
            actions,
            start,
            end,
            max_files,
            page_token,
            checksum,
            end_stream,
            extra,
            allowed,
            recipient,
            identity,
        )
