"""The signed download route ahead of Starlette's router: the request the official client repeats most.

The official client makes about 11 requests per file (HEADs, footer ranges, GETs it abandons), so a
download's fixed cost matters more than anything else the server does. Starlette would match it against
every route's pattern in turn and run it through its exception middleware first; this ASGI middleware
hands ``GET``/``HEAD <prefix>/files/<token>`` straight to the same endpoint the route has (the same
errors and audit row, :func:`helpers.server.app` builds both), and everything else to Starlette.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["FilesFastPath"]


class FilesFastPath:
    """ASGI middleware: ``GET``/``HEAD {files_prefix}<token>`` to ``endpoint``, the rest to ``app``.

    :param files_prefix: the download route's path up to the token (``/delta-sharing/files/``).
    :param endpoint: what the route calls (``request.path_params["token"]`` is the token).
    """

    def __init__(
        self,
        app: ASGIApp,
        files_prefix: str,
        endpoint: Callable[[Request], Awaitable[Response]],
    ) -> None:
        self.app = app
        self.files_prefix = files_prefix
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            path: str = scope["path"]
            if path.startswith(self.files_prefix):
                token = path[len(self.files_prefix) :]
                if token and "/" not in token:  # what the route's ``{token}`` matches
                    scope["path_params"] = {"token": token}
                    response = await self.endpoint(Request(scope, receive))
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)
