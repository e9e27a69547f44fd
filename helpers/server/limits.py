"""The server's defaults and protocol limits (one place for the numbers every server module shares).

:class:`ServerLimits` holds the resource limits of one server process. Each has a default and an
environment variable (read when the server starts, see :meth:`ServerLimits.from_env`):

============================  ===============================================  =========
variable                      limit                                            default
============================  ===============================================  =========
SHARELAB_MAX_BODY_BYTES       largest request body; more is a 413              2 MiB
SHARELAB_HEADER_TIMEOUT       seconds a client has to send a request's headers 10
SHARELAB_MAX_CONNECTIONS      open connections; more are closed at once        512
SHARELAB_MAX_HEADER_BYTES     largest request head; more is a 431              16 KiB
SHARELAB_AUTH_FAILURE_BURST   failed authentications / activations allowed     30
                              from one client address before a 429
SHARELAB_AUTH_FAILURE_RATE    how many more are allowed per second after that  0.5
SHARELAB_AUDIT_RETENTION_DAYS audit rows older than this are deleted (0: keep) 90
============================  ===============================================  =========

``SHARELAB_URL_TTL_SECONDS`` (:func:`url_ttl_from_env`, default 3600) is how long a signed file URL lives.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from helpers.exceptions import InvalidArgumentError

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_PREFIX",
    "DEFAULT_URL_TTL_SECONDS",
    "URL_TTL_ENV",
    "MAX_FILES_PER_PAGE",
    "MAX_LIST_RESULTS",
    "PAGE_TOKEN_TTL_SECONDS",
    "REFRESH_TOKEN_TTL_SECONDS",
    "ServerLimits",
    "url_ttl_from_env",
]

DEFAULT_PREFIX = "/delta-sharing"
DEFAULT_PORT = 8080
DEFAULT_URL_TTL_SECONDS = 3600
URL_TTL_ENV = "SHARELAB_URL_TTL_SECONDS"
_MAX_URL_TTL_SECONDS = 7 * 24 * 3600
MAX_LIST_RESULTS = 500
MAX_FILES_PER_PAGE = 10_000
PAGE_TOKEN_TTL_SECONDS = 3 * 24 * 3600
REFRESH_TOKEN_TTL_SECONDS = 3600

_ENV = {
    "max_body_bytes": "SHARELAB_MAX_BODY_BYTES",
    "header_timeout_seconds": "SHARELAB_HEADER_TIMEOUT",
    "max_connections": "SHARELAB_MAX_CONNECTIONS",
    "max_header_bytes": "SHARELAB_MAX_HEADER_BYTES",
    "auth_failure_burst": "SHARELAB_AUTH_FAILURE_BURST",
    "auth_failure_rate": "SHARELAB_AUTH_FAILURE_RATE",
    "audit_retention_days": "SHARELAB_AUDIT_RETENTION_DAYS",
}


@dataclass(frozen=True)
class ServerLimits:
    """The resource limits of one server (see the module's table).

    :param max_body_bytes: largest request body (``/query``); a larger one is answered 413.
    :param header_timeout_seconds: time a client has to send a complete request head, from its
        first byte (or from the connection / the previous response); then the connection is closed.
    :param max_connections: open connections at once; a connection beyond is closed when accepted.
    :param max_header_bytes: largest request line + headers (answered 431; 400 by h11 where httptools
        is missing).
    :param auth_failure_burst: failed authentications (or activation attempts) one client address may
        make before it gets 429 with ``Retry-After``.
    :param auth_failure_rate: failures per second allowed after the burst (the bucket refills).
    :param audit_retention_days: audit rows older than this many days are deleted (0 keeps them all).
    """

    max_body_bytes: int = 2 * 1024 * 1024
    header_timeout_seconds: float = 10.0
    max_connections: int = 512
    max_header_bytes: int = 16 * 1024
    auth_failure_burst: int = 30
    auth_failure_rate: float = 0.5
    audit_retention_days: float = 90.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise InvalidArgumentError(
                    f"server limit {f.name} must be a non-negative number, got {value!r}"
                )
        if self.max_body_bytes < 1024 or self.max_connections < 1 or self.auth_failure_rate <= 0:
            raise InvalidArgumentError(
                "server limits: max_body_bytes must be >= 1024, max_connections >= 1 and "
                "auth_failure_rate > 0"
            )

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ServerLimits:
        """The defaults, overridden by the ``SHARELAB_*`` variables that are set (see the table).

        :raises InvalidArgumentError: a variable that is not a non-negative number.
        """
        env = os.environ if environ is None else environ
        values: dict[str, float | int] = {}
        for f in fields(cls):
            raw = env.get(_ENV[f.name], "").strip()
            if not raw:
                continue
            try:
                number = float(raw)
            except ValueError:
                raise InvalidArgumentError(
                    f"{_ENV[f.name]}={raw!r} is not a number; set it to a number or unset it"
                ) from None
            values[f.name] = int(number) if f.type in (int, "int") else number
        return cls(**values)  # type: ignore[arg-type]


def url_ttl_from_env(environ: dict[str, str] | None = None) -> int:
    """Seconds a signed file URL lives: ``$SHARELAB_URL_TTL_SECONDS``, else the default (one hour).

    :raises InvalidArgumentError: not a whole number of seconds from 1 to 7 days.
    """
    raw = (os.environ if environ is None else environ).get(URL_TTL_ENV, "").strip()
    if not raw:
        return DEFAULT_URL_TTL_SECONDS
    if not raw.isdigit() or not 1 <= int(raw) <= _MAX_URL_TTL_SECONDS:
        raise InvalidArgumentError(
            f"{URL_TTL_ENV}={raw!r} must be a whole number of seconds from 1 to "
            f"{_MAX_URL_TTL_SECONDS} (7 days); set it so or unset it (default {DEFAULT_URL_TTL_SECONDS})"
        )
    return int(raw)
