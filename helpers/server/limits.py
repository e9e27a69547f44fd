"""The server's defaults and protocol limits (one place for the numbers every server module shares)."""

from __future__ import annotations

DEFAULT_PREFIX = "/delta-sharing"
DEFAULT_PORT = 8080
DEFAULT_URL_TTL_SECONDS = 3600
MAX_LIST_RESULTS = 500
MAX_FILES_PER_PAGE = 10_000
PAGE_TOKEN_TTL_SECONDS = 3 * 24 * 3600
REFRESH_TOKEN_TTL_SECONDS = 3600
