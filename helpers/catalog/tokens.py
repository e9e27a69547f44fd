"""Bearer tokens and activation codes: how they look, how they are stored (hashed) and how long they live.

Tokens: ``dss_`` + ``secrets.token_urlsafe(32)`` (256 bits of entropy). Only the SHA-256 hex digest and the
first 8 characters are stored; the clear token exists only in the :class:`~helpers.catalog.IssuedToken`
returned once. The default lifetime is :data:`DEFAULT_TOKEN_LIFETIME_SECONDS` (30 days), overridable with the
environment variable ``SHARELAB_TOKEN_LIFETIME_SECONDS`` or per call. A recipient has at most two live tokens
so that a rotation can overlap: issuing or rotating while two are live expires the oldest at once.
"""

from __future__ import annotations

import hashlib
import os
import secrets

from helpers.exceptions import InvalidArgumentError

__all__ = [
    "DEFAULT_TOKEN_LIFETIME_SECONDS",
    "MAX_LIVE_TOKENS",
    "MAX_TOKEN_LIFETIME_SECONDS",
    "TOKEN_LIFETIME_ENV",
    "TOKEN_PREFIX",
    "TOKEN_PREFIX_CHARS",
    "check_lifetime",
    "default_token_lifetime",
    "hash_token",
    "new_activation_code",
    "new_token",
    "resolve_lifetime",
]

#: Default token lifetime: 30 days. Override with ``$SHARELAB_TOKEN_LIFETIME_SECONDS`` or per call.
DEFAULT_TOKEN_LIFETIME_SECONDS = 30 * 24 * 3600
#: Environment variable overriding :data:`DEFAULT_TOKEN_LIFETIME_SECONDS`.
TOKEN_LIFETIME_ENV = "SHARELAB_TOKEN_LIFETIME_SECONDS"
#: Live (unexpired, unrevoked) tokens a recipient may hold at once; two lets a rotation overlap.
MAX_LIVE_TOKENS = 2
#: Prefix of every clear token (so a leaked token is recognisable by secret scanners).
TOKEN_PREFIX = "dss_"
#: Stored characters of a clear token, shown in listings to tell tokens apart.
TOKEN_PREFIX_CHARS = 8
#: Longest token lifetime accepted (10 years); more is surely a typo.
MAX_TOKEN_LIFETIME_SECONDS = 10 * 365 * 24 * 3600


def hash_token(token: str) -> str:
    """SHA-256 hex digest of a token or activation code (what the catalog stores)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A new clear bearer token: :data:`TOKEN_PREFIX` + 256 random bits."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_activation_code() -> str:
    """A new clear one-time activation code (192 random bits)."""
    return secrets.token_urlsafe(24)


def default_token_lifetime() -> int:
    """The default token lifetime in seconds: ``$SHARELAB_TOKEN_LIFETIME_SECONDS`` or 30 days."""
    raw = os.environ.get(TOKEN_LIFETIME_ENV, "").strip()
    if not raw:
        return DEFAULT_TOKEN_LIFETIME_SECONDS
    try:
        value = int(raw)
    except ValueError:
        raise InvalidArgumentError(
            f"{TOKEN_LIFETIME_ENV}={raw!r} is not a whole number of seconds; set it to e.g. 86400 or unset it"
        ) from None
    check_lifetime(value, TOKEN_LIFETIME_ENV)
    return value


def check_lifetime(value: object, what: str = "token lifetime") -> float:
    """``value`` when it is a number of seconds in 1 .. 10 years. :raises InvalidArgumentError:"""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgumentError(f"{what} must be a number of seconds, got {value!r}")
    if not (0 < value <= MAX_TOKEN_LIFETIME_SECONDS):
        raise InvalidArgumentError(
            f"{what} must be between 1 and {MAX_TOKEN_LIFETIME_SECONDS} seconds, got {value!r}"
        )
    return value


def resolve_lifetime(lifetime_seconds: float | None) -> float:
    """``lifetime_seconds`` checked, or :func:`default_token_lifetime` when None."""
    return (
        default_token_lifetime() if lifetime_seconds is None else check_lifetime(lifetime_seconds)
    )
