"""The download fast path (helpers.server.fastpath) takes exactly what the files route would."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from helpers.server.fastpath import FilesFastPath


def _app(calls: list[str]) -> Starlette:
    async def endpoint(request: Request) -> Response:
        calls.append(f"fast {request.method} {request.path_params['token']}")
        return PlainTextResponse("fast")

    async def routed(request: Request) -> Response:
        calls.append(f"routed {request.method} {request.url.path}")
        return PlainTextResponse("routed")

    routes = [Route("/p/files/{token}", routed, methods=["GET", "HEAD", "POST"])]
    routes.append(Route("/p/shares", routed))
    fast = Middleware(FilesFastPath, files_prefix="/p/files/", endpoint=endpoint)
    return Starlette(routes=routes, middleware=[fast])


def _run(method: str, path: str) -> tuple[int, str, list[str]]:
    calls: list[str] = []

    async def go() -> Any:
        transport = httpx.ASGITransport(app=_app(calls))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.request(method, path)

    resp = asyncio.run(go())
    return resp.status_code, resp.text, calls


def test_get_and_head_of_a_token_take_the_fast_path() -> None:
    assert _run("GET", "/p/files/abc.def?exp=1")[2] == ["fast GET abc.def"]
    assert _run("HEAD", "/p/files/abc.def")[2] == ["fast HEAD abc.def"]


def test_everything_else_goes_to_the_router() -> None:
    assert _run("POST", "/p/files/abc")[2] == ["routed POST /p/files/abc"]
    assert _run("GET", "/p/shares")[2] == ["routed GET /p/shares"]
    status, _, calls = _run("GET", "/p/files/a/b")  # no token of the route: the router's 404
    assert status == 404 and calls == []
    status, _, calls = _run("GET", "/p/files/")
    assert status == 404 and calls == []
