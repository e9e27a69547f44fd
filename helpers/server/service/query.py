"""``/query``: the files of one table version (or the commits of a version range), filtered and paged."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from helpers.catalog import Recipient, SharedTable
from helpers.server.audit import AuditInfo
from helpers.server.errors import bad_request
from helpers.server.limits import (
    MAX_FILES_PER_PAGE,
    PAGE_TOKEN_TTL_SECONDS,
    REFRESH_TOKEN_TTL_SECONDS,
)
from helpers.server.ndjson import (
    RENDER_BATCH,
    Entry,
    EntrySet,
    LineRenderer,
    PresignedLineRenderer,
)
from helpers.server.params import bool_param, choose_format, int_param, partition_predicate
from helpers.server.predicates import apply_limit_hint, file_matches, parse_json_predicate
from helpers.server.protocol import EndStreamAction, ndjson
from helpers.server.service.changes import ChangesService
from helpers.server.signing import params_checksum
from helpers.storage.delta_log import DeltaLog, ObjectStoreDeltaLog, Snapshot

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
) -> list[int] | range:
    """The indexes of the entries the partition filter, the predicate hints and the limit hint keep."""
    predicate = parse_json_predicate(hints)
    selected: list[int] | range
    if allowed is None and predicate is None:
        selected = range(len(entries))
    else:
        selected = [
            i
            for i, (add, *_rest) in enumerate(entries)
            if (allowed is None or allowed(add)) and file_matches(predicate, add)
        ]
    if limit is not None:
        by_id = {id(entries[i][0]): i for i in selected}
        selected = [
            by_id[id(a)] for a in apply_limit_hint((entries[i][0] for i in selected), limit)
        ]
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
            )
        version, travelled, offset = self._query_version(table, log_, body, opts)
        snapshot = log_.snapshot(version)
        fmt = choose_format(caps, snapshot)
        entry_set = self.file_entries(table, snapshot, log_, fmt, travelled)
        entries = entry_set.entries
        selected = _select(entries, partition_predicate(table, recipient), opts.hints, opts.limit)
        selected, next_token = self._page_files(table, snapshot, selected, offset, opts)
        info.version, info.response_format, info.num_files = snapshot.version, fmt, len(selected)
        refresh = None
        if opts.include_refresh or opts.refresh_token:
            refresh = self.signer.make_token(
                "refresh",
                {"t": table.id, "v": snapshot.version, "c": opts.checksum},
                REFRESH_TOKEN_TTL_SECONDS,
            )
        head = self.head_lines(table, snapshot, fmt, snapshot.version if travelled else None)
        exp, render, cache = self._renderer(table, log_, snapshot, entry_set, base, recipient.name)
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
                    },
                    PAGE_TOKEN_TTL_SECONDS,
                )
            selected = selected[offset : offset + opts.max_files]
        elif offset:
            selected = selected[offset:]
        return selected, next_token

    def _query_version(
        self, table: SharedTable, log_: DeltaLog, body: dict[str, Any], opts: _QueryOptions
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
            version = int(payload["v"])
        if opts.page_token:
            payload = self.read_page_token(table, opts.page_token, opts.checksum)
            version = int(payload["v"])
            offset = int(payload["o"])
        return version, travelled, offset

    def _renderer(
        self,
        table: SharedTable,
        log_: DeltaLog,
        snapshot: Snapshot,
        entry_set: EntrySet,
        base: str,
        rname: str,
    ) -> tuple[int, LineRenderer | PresignedLineRenderer, list[str | None]]:
        """(URL expiry, line renderer, its line cache) for the files of one response."""
        exp = self.expiry_ms()
        if isinstance(log_, ObjectStoreDeltaLog):
            exp, sign = self.presigner(log_)
            return exp, PresignedLineRenderer(sign, exp), []
        cache = entry_set.rendered((base, exp, rname))
        header = self.signer.token_header(
            table.id, snapshot.version, table.share, table.schema, table.name
        )
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
        actions = self.commit_actions(log_, start, end, cdf=False, metadata_lines=True, fmt=fmt)
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
        )
