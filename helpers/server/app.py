"""The Starlette application: one route function per protocol endpoint, around :class:`SharingService`.

Every route is wrapped by :func:`_endpoint`: bearer authentication (protocol routes), errors turned into the
protocol's JSON (:mod:`helpers.server.errors`) and one audit row per request, written when the response
(a stream included) is finished.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from helpers import __version__
from helpers.catalog import Recipient
from helpers.home import LabHome
from helpers.server.audit import AuditInfo, audit_event
from helpers.server.direct import DirectFiles
from helpers.server.errors import ApiError, error_response, not_found, to_api_error
from helpers.server.fastpath import FilesFastPath
from helpers.server.files import download
from helpers.server.guard import check_throttle, client_address, read_body, record
from helpers.server.limits import DEFAULT_PREFIX, DEFAULT_URL_TTL_SECONDS, ServerLimits
from helpers.server.ndjson import NDJSON, Body, ndjson_response, prefetch
from helpers.server.pages import CA_ROUTE, activation_page, ca_response, wants_html
from helpers.server.params import (
    check_fileidhash,
    echo_capabilities,
    parse_capabilities,
    parse_json_body,
)
from helpers.server.service import SharingService
from helpers.server.workshop import BOARD_ROUTE, PROGRESS_ROUTE, board_page, report_progress
from helpers.tls import TlsFiles

__all__ = ["create_app"]

Endpoint = Callable[[Request], Awaitable[Response]]
RecipientRoute = Callable[[SharingService, Request, AuditInfo, Recipient], Awaitable[Response]]
"""A protocol route: called with the authenticated recipient."""
OpenRoute = Callable[[SharingService, Request, AuditInfo], Awaitable[Response]]
"""A self-authorising route (signed download, activation link)."""


# ======================================================================================== wrapping
def _endpoint(
    svc: SharingService, action: str, run: Callable[[Request, AuditInfo], Awaitable[Response]]
) -> Endpoint:
    """Wrap ``run(request, info) -> Response`` with errors and auditing."""

    async def endpoint(request: Request) -> Response:
        started = time.perf_counter()
        pp = request.path_params
        info = AuditInfo(
            action, share=pp.get("share"), schema=pp.get("schema"), table=pp.get("table")
        )
        head = request.method == "HEAD"
        try:
            response = await run(request, info)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON error
            err = to_api_error(exc)
            # the row is committed before the answer (group commit): a client never holds an unaudited one
            await record(svc.audit, request, info, err.status, started, failure=info.failed)
            return error_response(err, head=head)
        if isinstance(response, StreamingResponse):
            _audit_when_streamed(svc, request, info, response, started)
        else:
            await record(svc.audit, request, info, response.status_code, started)
        return response

    return endpoint


def _audit_when_streamed(
    svc: SharingService,
    request: Request,
    info: AuditInfo,
    response: StreamingResponse,
    started: float,
) -> None:
    """Audit a streamed response when its body has been produced, before the stream ends (the last,
    empty chunk of the response is sent after the row is committed; status 500 when the stream fails)."""
    inner = response.body_iterator

    async def audited() -> AsyncIterator[Any]:
        status = response.status_code
        # the row is queued as the stream starts (its commit overlaps with the body) and waited for
        # before the stream ends; a stream that fails gets a second row with status 500
        committed = svc.audit.submit(audit_event(request, info, status, started))
        try:
            async for chunk in inner:
                yield chunk
        except BaseException:
            status = 500
            raise
        finally:
            await svc.audit.wait(committed)
            if status != response.status_code:
                await record(svc.audit, request, info, status, started)

    response.body_iterator = audited()


def _recipient_endpoint(svc: SharingService, action: str, fn: RecipientRoute) -> Endpoint:
    """A protocol route: ``Authorization: Bearer <token>`` is checked first."""

    async def run(request: Request, info: AuditInfo) -> Response:
        try:
            recipient = await run_in_threadpool(_admit, svc, request, info)
        except ApiError as exc:
            if exc.status == 401:
                await run_in_threadpool(svc.throttle.failed, client_address(request))
            raise
        return await fn(svc, request, info, recipient)

    return _endpoint(svc, action, run)


def _admit(svc: SharingService, request: Request, info: AuditInfo) -> Recipient:
    """Throttle (429), bearer token (401) and IP access list (403) in one thread hop and one catalog
    read transaction (on PostgreSQL: three statements and one commit instead of seven round trips)."""

    svc.view_store  # noqa: B018 - made (its schema ensured: a write) before the read transaction

    def body(_conn: object) -> Recipient:
        check_throttle(svc.throttle, request)
        recipient = svc.authenticate(request, info)
        info.recipient = recipient.name
        svc.check_address(request, recipient)
        return recipient

    return svc.catalog.db.read(body)


def _open_endpoint(svc: SharingService, action: str, fn: OpenRoute) -> Endpoint:
    """A route that authorises itself (no bearer token)."""

    async def run(request: Request, info: AuditInfo) -> Response:
        return await fn(svc, request, info)

    return _endpoint(svc, action, run)


def _names(request: Request) -> tuple[str, str, str]:
    pp = request.path_params
    return pp["share"], pp["schema"], pp["table"]


def _json_response(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, media_type="application/json; charset=utf-8")


# ======================================================================================== routes
async def health(request: Request) -> Response:
    return _json_response({"status": "ok", "version": __version__})


async def list_shares(
    svc: SharingService, request: Request, info: AuditInfo, r: Recipient
) -> Response:
    return _json_response(await run_in_threadpool(svc.list_shares, r, request.query_params))


async def get_share(
    svc: SharingService, request: Request, info: AuditInfo, r: Recipient
) -> Response:
    return _json_response(await run_in_threadpool(svc.get_share, r, request.path_params["share"]))


async def list_schemas(
    svc: SharingService, request: Request, info: AuditInfo, r: Recipient
) -> Response:
    return _json_response(
        await run_in_threadpool(
            svc.list_schemas, r, request.path_params["share"], request.query_params
        )
    )


async def list_tables(
    svc: SharingService, request: Request, info: AuditInfo, r: Recipient
) -> Response:
    pp = request.path_params
    return _json_response(
        await run_in_threadpool(svc.list_tables, r, pp["share"], pp["schema"], request.query_params)
    )


async def list_all_tables(
    svc: SharingService, request: Request, info: AuditInfo, r: Recipient
) -> Response:
    return _json_response(
        await run_in_threadpool(
            svc.list_tables, r, request.path_params["share"], None, request.query_params
        )
    )


async def table_version(
    svc: SharingService, request: Request, info: AuditInfo, r: Recipient
) -> Response:
    version = await run_in_threadpool(
        svc.table_version, r, _names(request), request.query_params, info
    )
    return Response(status_code=200, headers={"Delta-Table-Version": str(version)})


async def metadata(
    svc: SharingService, request: Request, info: AuditInfo, r: Recipient
) -> Response:
    caps = parse_capabilities(request.headers.get("delta-sharing-capabilities"))
    fh = check_fileidhash(request)
    headers, lines = await run_in_threadpool(
        svc.metadata, r, _names(request), request.query_params, caps, info
    )
    if fh:
        headers["fileidhash"] = fh
    return Response("".join(lines), media_type=NDJSON, headers=headers)


def _prefetched(
    fn: Callable[..., tuple[dict[str, str], Iterator[str]]], *args: Any
) -> tuple[dict[str, str], Body]:
    """``fn(*args)`` and its lines rendered up to the second chunk, in one thread hop: a small answer
    needs no more hops, and an error while rendering it is a JSON error, not a broken stream."""
    headers, lines = fn(*args)
    return headers, prefetch(lines)


async def query(svc: SharingService, request: Request, info: AuditInfo, r: Recipient) -> Response:
    body = parse_json_body(await read_body(request, svc.limits.max_body_bytes))
    caps = parse_capabilities(request.headers.get("delta-sharing-capabilities"))
    fh = check_fileidhash(request)
    if fh:
        body["_fileidhash"] = fh
    headers, out = await run_in_threadpool(
        _prefetched, svc.query, request, r, _names(request), body, caps, info
    )
    return ndjson_response(echo_capabilities(headers, caps), out)


async def changes(svc: SharingService, request: Request, info: AuditInfo, r: Recipient) -> Response:
    caps = parse_capabilities(request.headers.get("delta-sharing-capabilities"))
    fh = check_fileidhash(request)
    params = dict(request.query_params)
    if fh:
        params["_fileidhash"] = fh
    headers, out = await run_in_threadpool(
        _prefetched, svc.changes, request, r, _names(request), params, caps, info
    )
    return ndjson_response(echo_capabilities(headers, caps), out)


async def activation(svc: SharingService, request: Request, info: AuditInfo) -> Response:
    if wants_html(request) and request.query_params.get("download") != "1":
        # a browser: a page that explains (and does not burn the one-time link)
        link = str(request.url.replace(query=""))
        return activation_page(link, getattr(request.app.state, "tls", None))
    # the shared throttle reads and writes the catalog: off the event loop, like the bearer path
    await run_in_threadpool(check_throttle, svc.throttle, request)
    try:
        body = await run_in_threadpool(svc.activate, request, request.path_params["code"], info)
    except ApiError:
        # an unknown or used code: a guess, maybe
        await run_in_threadpool(svc.throttle.failed, client_address(request))
        info.failed = True
        raise
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


async def lab_ca(request: Request) -> Response:
    return ca_response(getattr(request.app.state, "tls", None))


def _routes(svc: SharingService, download_endpoint: Endpoint) -> list[Route]:
    p = svc.prefix
    t = p + "/shares/{share}/schemas/{schema}/tables/{table}"

    def protocol(action: str, fn: RecipientRoute) -> Endpoint:
        return _recipient_endpoint(svc, action, fn)

    version_endpoint = protocol("getTableVersion", table_version)
    return [
        Route("/health", health, methods=["GET", "HEAD"]),
        Route(CA_ROUTE, lab_ca, methods=["GET"]),
        Route(PROGRESS_ROUTE, protocol("reportProgress", report_progress), methods=["POST"]),
        Route(BOARD_ROUTE, board_page, methods=["GET"]),
        Route(BOARD_ROUTE + ".json", board_page, methods=["GET"]),
        Route(p + "/shares", protocol("listShares", list_shares), methods=["GET"]),
        Route(p + "/shares/{share}", protocol("getShare", get_share), methods=["GET"]),
        Route(
            p + "/shares/{share}/schemas", protocol("listSchemas", list_schemas), methods=["GET"]
        ),
        Route(
            p + "/shares/{share}/schemas/{schema}/tables",
            protocol("listTables", list_tables),
            methods=["GET"],
        ),
        Route(
            p + "/shares/{share}/all-tables",
            protocol("listAllTables", list_all_tables),
            methods=["GET"],
        ),
        Route(t, version_endpoint, methods=["HEAD"]),
        Route(t + "/version", version_endpoint, methods=["GET"]),
        Route(t + "/metadata", protocol("getTableMetadata", metadata), methods=["GET"]),
        Route(t + "/query", protocol("queryTable", query), methods=["POST"]),
        Route(t + "/changes", protocol("queryTableChanges", changes), methods=["GET"]),
        Route(p + "/files/{token}", download_endpoint, methods=["GET", "HEAD"]),
        Route(
            p + "/activation/{code}",
            _open_endpoint(svc, "activate", activation),
            methods=["GET"],
        ),
    ]


# ======================================================================================== app
async def _on_404(request: Request, exc: Exception) -> Response:
    return error_response(not_found(f"No such endpoint: {request.method} {request.url.path}"))


async def _on_405(request: Request, exc: Exception) -> Response:
    return JSONResponse(
        {
            "errorCode": "INVALID_PARAMETER_VALUE",
            "message": f"Method {request.method} is not allowed here",
        },
        status_code=405,
    )


def _lifespan(
    svc: SharingService,
) -> Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        import anyio.to_thread

        # sync generators and SQLite calls run on worker threads: allow many concurrent clients
        anyio.to_thread.current_default_thread_limiter().total_tokens = 128
        svc.start_background()
        try:
            yield
        finally:
            svc.shutdown()

    return lifespan


def create_app(
    home: LabHome | str | os.PathLike[str] | None = None,
    public_url: str | None = None,
    prefix: str = DEFAULT_PREFIX,
    url_ttl_seconds: int = DEFAULT_URL_TTL_SECONDS,
    tls: TlsFiles | None = None,
    limits: ServerLimits | None = None,
) -> Starlette:
    """The Starlette application serving the lab home's catalog.

    :param home: lab home (path or :class:`~helpers.home.LabHome`; default: resolved as usual).
    :param public_url: base URL recipients use (``http://host:port``); default: the request's own.
    :param prefix: the protocol prefix.
    :param url_ttl_seconds: lifetime of signed file URLs.
    :param tls: the certificate the server serves with (its CA is served at ``/lab-ca.pem`` and shown on
        the activation page); None for plain HTTP.
    :param limits: body size, throttling and audit retention (default: :class:`ServerLimits`'s defaults;
        the connection limits are the ASGI server's, see :mod:`helpers.server.connections`).
    """
    svc = SharingService(home, public_url, prefix, url_ttl_seconds, limits)
    # the route's and the fast path's
    download_endpoint = _open_endpoint(svc, "downloadFile", download)
    fast = Middleware(
        FilesFastPath, files_prefix=svc.prefix + "/files/", endpoint=download_endpoint
    )
    app = Starlette(
        routes=_routes(svc, download_endpoint), lifespan=_lifespan(svc), middleware=[fast]
    )
    app.add_exception_handler(404, _on_404)
    app.add_exception_handler(405, _on_405)
    app.state.service = svc
    app.state.direct_files = DirectFiles(
        svc, svc.prefix + "/files/"
    )  # for the protocol (lifecycle)
    app.state.tls = tls
    return app
