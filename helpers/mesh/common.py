"""Constants and small conversions every mesh module shares: recipient properties, tags, audit actions,
the clock, ISO timestamps, name checks and table locations."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from helpers.catalog import clock
from helpers.exceptions import InvalidArgumentError

COMPATIBILITY_MODES = ("BACKWARD", "FORWARD", "FULL", "NONE")
ENFORCEMENTS = ("mandatory", "advisory")
#: Recipient property that marks a recipient outside the organisation (``external=true``).
EXTERNAL_PROPERTY = "external"
#: Recipient property holding the consumer's domain (set by :meth:`Mesh.subscribe`).
DOMAIN_PROPERTY = "domain"
#: Column tag that the default privacy policy looks for.
PII_TAG = "pii"
#: Audit actions that count as a recipient reading a table (the server's names, lower case): a snapshot
#: query or a change-data-feed query; file downloads are parts of those reads, not reads of their own.
READ_ACTIONS = ("querytable", "querytablechanges")
#: The author (``set_by``) of the grant conditions and version pins the mesh writes into the catalog.
SET_BY = "mesh"


class MeshPolicyWarning(UserWarning):
    """An advisory governance policy failed: publishing goes on, the warning names the evidence."""


def resolve_now(now: datetime | None = None) -> datetime:
    """``now`` as an aware UTC datetime (naive values are read as UTC); the catalog's clock when None."""
    if now is None:
        return clock.utcnow()
    if now.tzinfo is None:
        return now.replace(tzinfo=UTC)
    return now.astimezone(UTC)


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def parse_iso_required(text: str) -> datetime:
    """:func:`parse_iso` for a column that is never empty."""
    value = parse_iso(text)
    if value is None:
        raise ValueError(f"empty timestamp {text!r} in a mesh table")
    return value


_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]{0,127}$")


def check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidArgumentError(
            f"invalid {kind} name {name!r}: use 1-128 letters, digits, '_' or '-' (no spaces or dots)"
        )
    return name


def norm_location(location: str) -> str:
    """A comparable form of a table location (``file://`` URLs and relative paths resolved)."""
    text = str(location)
    if text.startswith("file://"):
        text = text[len("file://") :]
    if "://" in text:
        return text.rstrip("/")
    return str(Path(text).expanduser().resolve())


def fmt_value(value: float | None, unit: str = "") -> str:
    """A measured value as evidence text (``95.00%``, ``24 h``, ``true``, ``n/a``)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if unit == "bool":
        return "true" if value else "false"
    if isinstance(value, float) and not value.is_integer():
        text = f"{value:.2f}"
    else:
        text = f"{int(value)}"
    return f"{text}{'%' if unit == '%' else (' h' if unit == 'h' else '')}"


def as_list(value: Any) -> list[Any]:
    if isinstance(value, list | tuple | set):
        return list(value)
    return [value]
