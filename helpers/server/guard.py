"""Request guards around every route: failure throttling, the body size limit, durable audit rows.

- :func:`check_throttle` answers 429 ``Retry-After`` to a client address that failed to authenticate
  (or to redeem an activation code) too often (:class:`~helpers.server.throttle.FailureThrottle`);
- :func:`read_body` reads a request body of at most :attr:`ServerLimits.max_body_bytes` (413 beyond,
  decided from ``Content-Length`` before anything is read, else while reading);
- :func:`record` commits a request's audit row before the response is returned (failures from a
  repeating address are counted instead, see :mod:`helpers.server.audit`).
"""

from __future__ import annotations

from starlette.requests import Request

from helpers.server.audit import AuditInfo, AuditWriter, audit_event
from helpers.server.errors import ApiError
from helpers.server.throttle import FailureThrottle

__all__ = ["FAILURE_STATUSES", "check_throttle", "client_address", "read_body", "record"]

FAILURE_STATUSES = {401, 403, 429}
"""Statuses counted as failures in the audit's per-address aggregation (plus refused activations)."""


def client_address(request: Request) -> str:
    client = request.client
    return client.host if client else ""


def check_throttle(throttle: FailureThrottle, request: Request) -> None:
    """A 429 with ``Retry-After`` when this client address is throttled."""
    wait = throttle.retry_after(client_address(request))
    if wait:
        raise ApiError(
            429,
            "RESOURCE_EXHAUSTED",
            f"Too many failed attempts from this address; retry in {wait} s with a valid token "
            "or activation link",
            headers={"Retry-After": str(wait)},
        )


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        "REQUEST_TOO_LARGE",
        f"The request body is larger than {limit} bytes; send a smaller body (query options only)",
        headers={"Connection": "close"},  # the rest of the body is never read: end the connection
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or a 413 :class:`ApiError` when it is larger than ``limit`` bytes."""
    declared = request.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        parts.append(chunk)
    return b"".join(parts)


async def record(
    audit: AuditWriter,
    request: Request,
    info: AuditInfo,
    status: int,
    started: float,
    *,
    failure: bool = False,
) -> None:
    """Commit the audit row of a request (wait for its group commit) before answering."""
    event = audit_event(request, info, status, started)
    await audit.record(event, failure=failure or status in FAILURE_STATUSES)
