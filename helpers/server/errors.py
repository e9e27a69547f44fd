"""The protocol's errors: :class:`ApiError` and its JSON body ``{"errorCode": ..., "message": ...}``.

Every failure of a request becomes an :class:`ApiError` (:func:`to_api_error` maps the lab's own
exceptions); anything unexpected is logged and answered as a 500 that reveals nothing.
"""

from __future__ import annotations

import logging

from starlette.responses import JSONResponse, Response

from helpers.exceptions import (
    InvalidArgumentError,
    InvalidNameError,
    NotADeltaTableError,
    NotFoundError,
    SharelabError,
    TokenError,
)
from helpers.storage.delta_log import DeltaLogError

__all__ = ["ApiError", "bad_request", "error_response", "not_found", "to_api_error"]

log = logging.getLogger("sharelab.server")


class ApiError(Exception):
    """An error answered as ``{"errorCode": code, "message": message}`` with ``status``."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def bad_request(message: str, code: str = "INVALID_PARAMETER_VALUE") -> ApiError:
    return ApiError(400, code, message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "RESOURCE_DOES_NOT_EXIST", message)


def to_api_error(exc: BaseException) -> ApiError:
    """The :class:`ApiError` answering ``exc`` (unexpected exceptions are logged, answered 500)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, NotADeltaTableError):
        return ApiError(400, "RESOURCE_DOES_NOT_EXIST", str(exc))
    if isinstance(exc, NotFoundError | InvalidNameError):
        return not_found(str(exc))
    if isinstance(exc, DeltaLogError | InvalidArgumentError):
        return bad_request(str(exc))
    if isinstance(exc, TokenError):
        return ApiError(401, "UNAUTHENTICATED", str(exc))
    if isinstance(exc, SharelabError):
        return bad_request(str(exc))
    if isinstance(exc, RecursionError):  # only nested input recurses that deep
        return bad_request("The request nests too deeply", "MALFORMED_REQUEST")
    log.exception("internal error", exc_info=exc)
    return ApiError(500, "INTERNAL_ERROR", "Internal server error; the server log has the details")


def error_response(err: ApiError, head: bool = False) -> Response:
    if head:
        return Response(status_code=err.status, headers=err.headers)
    return JSONResponse(
        {"errorCode": err.code, "message": err.message},
        status_code=err.status,
        media_type="application/json; charset=utf-8",
        headers=err.headers,
    )
