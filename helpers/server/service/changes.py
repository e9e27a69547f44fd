"""The change data feed (``/changes``) and the per-commit action streams it shares with ``/query``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from starlette.requests import Request

from helpers.catalog import Recipient, SharedTable
from helpers.server.audit import AuditInfo
from helpers.server.dv import with_signed_dv
from helpers.server.errors import bad_request
from helpers.server.limits import PAGE_TOKEN_TTL_SECONDS
from helpers.server.params import Params, bool_param, choose_format, int_param, partition_predicate
from helpers.server.pinned import object_store_log
from helpers.server.protocol import (
    EndStreamAction,
    FileLineTemplate,
    MetadataLine,
    ProtocolLine,
    ndjson,
)
from helpers.server.service.core import ServiceCore
from helpers.server.signing import params_checksum
from helpers.storage.delta_log import DeltaLog, Snapshot, parse_timestamp

__all__ = ["Action", "ChangesService", "visible_size"]

Action = tuple[str, int, int, dict[str, Any]]
"""(kind, version, commit timestamp, raw action) of one line of a per-commit stream."""


def _check_cdf_arguments(params: Params) -> None:
    """Exactly one start (version or timestamp) and at most one end."""
    sv, st = params.get("startingVersion"), params.get("startingTimestamp")
    ev, et = params.get("endingVersion"), params.get("endingTimestamp")
    if sv is None and st is None:
        raise bad_request("No startingVersion or startingTimestamp provided for CDF read.")
    if sv is not None and st is not None:
        raise bad_request(
            "Multiple starting arguments provided for CDF read. Please provide only one of "
            "startingVersion or startingTimestamp."
        )
    if ev is not None and et is not None:
        raise bad_request(
            "Multiple ending arguments provided for CDF read. Please provide only one of "
            "endingVersion or endingTimestamp."
        )


def _cdf_disabled_at(log_: DeltaLog, start_snapshot: Snapshot, start: int, end: int) -> int | None:
    """The first version in [start, end] that did not record change data, or None."""
    if not start_snapshot.cdf_enabled:
        return start
    for v in range(start + 1, end + 1):
        md = log_.commit(v).metadata
        if (
            md is not None
            and str((md.get("configuration") or {}).get("delta.enableChangeDataFeed", "")).lower()
            != "true"
        ):
            return v
    return None


def visible_size(
    snapshot: Snapshot, allowed: Callable[[dict[str, Any]], bool] | None
) -> tuple[int, int] | None:
    """(bytes, files) of the snapshot's files a partition filter lets through (None: no filter)."""
    if allowed is None:
        return None
    kept = [add for add in snapshot.files if allowed(add)]
    return sum(int(add.get("size") or 0) for add in kept), len(kept)


class ChangesService(ServiceCore):
    """``/changes`` and the add/remove/cdf line streams of a version range."""

    def changes(
        self,
        request: Request,
        recipient: Recipient,
        names: tuple[str, str, str],
        params: Params,
        caps: dict[str, list[str]],
        info: AuditInfo,
    ) -> tuple[dict[str, str], Iterator[str]]:
        table = self.shared_table(recipient, *names)
        log_ = self.table_log(table)
        full = f"{table.share}.{table.schema}.{table.name}"
        if not table.history:
            raise bad_request(
                f"cdf is not enabled on table {full}; the provider must share it WITH HISTORY"
            )
        _check_cdf_arguments(params)
        include_md = bool_param(
            params.get("includeHistoricalMetadata"), "includeHistoricalMetadata"
        )
        include_proto = bool_param(
            params.get("includeHistoricalProtocol"), "includeHistoricalProtocol"
        )
        max_files = int_param(params.get("maxFiles"), "maxFiles")
        if max_files is not None and max_files <= 0:
            raise bad_request(f"maxFiles must be > 0, got {max_files}")
        start, end, latest = self._cdf_range(table, log_, params)
        start_snapshot = log_.snapshot(start)
        disabled = _cdf_disabled_at(log_, start_snapshot, start, end)
        if disabled is not None:
            raise bad_request(
                f"Error getting change data for range [{start}, {end}] as change data was not recorded "
                f"for version [{disabled}]. The provider must enable the change data feed "
                "(delta.enableChangeDataFeed = true) on the table."
            )
        fmt = choose_format(caps, start_snapshot)
        head_snapshot = start_snapshot if (include_md or fmt == "delta") else log_.snapshot(latest)
        fh = params.get("_fileidhash")
        extra = {"fileidhash": fh} if fh else None
        end_stream = "true" in caps.get("includeendstreamaction", []) or max_files is not None
        checksum = params_checksum(
            {"s": start, "e": end, "m": include_md, "f": caps.get("responseformat"), "x": max_files}
        )
        actions = self.commit_actions(
            log_,
            start,
            end,
            cdf=True,
            metadata_lines=include_md,
            fmt=fmt,
            protocol_lines=include_proto and fmt == "delta",
        )
        info.start_version, info.end_version = start, end
        return self.emit_actions(
            table,
            head_snapshot,
            fmt,
            info,
            self.base_url(request),
            actions,
            start,
            end,
            max_files,
            params.get("pageToken"),
            checksum,
            end_stream,
            extra,
            partition_predicate(table, recipient),
            recipient,
            self.url_identity(request, recipient, table),
        )

    def _cdf_range(
        self, table: SharedTable, log_: DeltaLog, params: Params
    ) -> tuple[int, int, int]:
        """(start, end, latest version) of a CDF read, checked against the log and the share."""
        sv, st = params.get("startingVersion"), params.get("startingTimestamp")
        ev, et = params.get("endingVersion"), params.get("endingTimestamp")
        latest = log_.latest_version()
        if sv is not None:
            start = int_param(sv, "startingVersion")
            if start is None or start < 0:
                raise bad_request(f"startingVersion must be >= 0, got {sv}")
        else:
            assert st is not None  # _check_cdf_arguments: one of them is given
            start = log_.version_at_or_after(
                parse_timestamp(st, "startingTimestamp"), before_first_ok=False, text=st
            )
        if ev is not None:
            end = int_param(ev, "endingVersion")
            if end is None or end < 0:
                raise bad_request(f"endingVersion must be >= 0, got {ev}")
        elif et is not None:
            end = log_.version_at_or_before(
                parse_timestamp(et, "endingTimestamp"), after_last_ok=True, text=et
            )
        else:
            end = latest
        if start > latest:
            raise bad_request(
                f"Provided Start version({start}) for reading change data is invalid. Start version "
                f"cannot be greater than the latest version of the table({latest})."
            )
        end = min(end, latest)
        if end < start:
            raise bad_request(
                f"CDF range from start {start} to end {end} was invalid. End cannot be before start."
            )
        if table.start_version is not None and start < table.start_version:
            raise bad_request(
                f"You can only query table changes since version {table.start_version}."
            )
        if start < log_.earliest_commit():
            raise bad_request(
                f"Change data for version {start} is no longer available (the log was cleaned up); "
                f"start at version {log_.earliest_commit()} or later"
            )
        return start, end, latest

    def commit_actions(
        self,
        log_: DeltaLog,
        start: int,
        end: int,
        *,
        cdf: bool,
        metadata_lines: bool,
        fmt: str,
        protocol_lines: bool = False,
    ) -> list[Action]:
        """(kind, version, timestamp, action) for each commit in [start, end]."""
        out: list[Action] = []
        for v in range(start, end + 1):
            commit = log_.commit(v)
            ts = log_.commit_timestamp(v)
            if v > start and protocol_lines and commit.protocol is not None:
                out.append(("protocol", v, ts, commit.protocol))
            if v > start and metadata_lines and commit.metadata is not None:
                out.append(("metaData", v, ts, commit.metadata))
            if cdf and commit.cdcs:
                out.extend(("cdf", v, ts, a) for a in commit.cdcs)
                continue
            if cdf and commit.is_empty_merge():
                continue
            out.extend(("add", v, ts, a) for a in commit.adds if a.get("dataChange", True))
            out.extend(("remove", v, ts, a) for a in commit.removes if a.get("dataChange", True))
        return out

    def emit_actions(
        self,
        table: SharedTable,
        head_snapshot: Snapshot,
        fmt: str,
        info: AuditInfo,
        base: str,
        actions: list[Action],
        start: int,
        end: int,
        max_files: int | None,
        page_token: str | None,
        checksum: str,
        end_stream: bool,
        extra: dict[str, str] | None,
        allowed: Callable[[dict[str, Any]], bool] | None,
        recipient: Recipient | None = None,
        identity: str | None = None,
    ) -> tuple[dict[str, str], Iterator[str]]:
        """Stream the protocol + metaData lines and the (filtered, paged) per-commit actions.

        :param identity: what URLs and page tokens carry (:meth:`ServiceCore.url_identity`); default the
            recipient's name.
        """
        if identity is None:
            identity = recipient.name if recipient is not None else ""
        if allowed is not None:
            actions = [a for a in actions if a[0] in ("metaData", "protocol") or allowed(a[3])]
        offset = 0
        if page_token:
            offset = int(self.read_page_token(table, page_token, checksum, identity)["o"])
        next_token = None
        if max_files is not None:
            if offset + max_files < len(actions):
                next_token = self.signer.make_token(
                    "page",
                    {"t": table.id, "c": checksum, "o": offset + max_files, "a": identity},
                    PAGE_TOKEN_TTL_SECONDS,
                )
            actions = actions[offset : offset + max_files]
        info.response_format = fmt
        info.start_version, info.end_version = start, end
        info.num_files = sum(1 for a in actions if a[0] not in ("metaData", "protocol"))
        exp = self.expiry_ms()
        presign: Callable[[str], str] | None = None
        store_log = object_store_log(self.table_log(table))
        if store_log is not None:
            exp, presign = self.presigner(store_log)
        head = self.head_lines(
            table,
            head_snapshot,
            fmt,
            head_snapshot.version,
            visible=visible_size(head_snapshot, allowed),
        )
        rname = identity

        def lines() -> Iterator[str]:
            yield from head
            for what, v, ts, action in actions:
                if what == "metaData":
                    yield ndjson(
                        MetadataLine(
                            fmt, action, self.table_config(table, head_snapshot), version=v
                        ).to_json()
                    )
                elif what == "protocol":
                    yield ndjson(ProtocolLine(fmt, action).to_json())
                else:
                    if fmt == "delta" and presign is None and action.get("deletionVector"):
                        action = with_signed_dv(
                            action, self.dv_signer(table, v, base, exp, identity)
                        )
                    tmpl = FileLineTemplate.build(what, fmt, action, version=v, timestamp=ts)
                    if presign is not None:
                        yield tmpl.render(presign(action["path"]), exp)
                        continue
                    token = self.file_token(table, v, action["path"])
                    yield tmpl.render(self.file_url(base, token, exp, rname), exp)
            if end_stream:
                yield ndjson(
                    EndStreamAction(
                        next_page_token=next_token,
                        min_url_expiration_timestamp=exp if actions else None,
                    ).to_json()
                )

        return self.response_headers(start, fmt, end_stream, extra), lines()
