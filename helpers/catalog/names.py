"""Names and locations: the Delta Sharing naming rules, dotted names, ``delta.`/path``` sources, table paths.

Names follow the Delta Sharing naming rules (at most 255 characters, no space, ``/``, control character or
DEL; schema and table names contain no ``.``). The catalog matches them with one Unicode-aware rule,
:func:`name_key` (NFKC + case folding), for lookups, grant checks and collisions alike.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

from helpers.exceptions import InvalidArgumentError, InvalidNameError, NotADeltaTableError

__all__ = [
    "MAX_NAME_LENGTH",
    "name_key",
    "normalize_location",
    "parse_delta_path",
    "partition_columns",
    "require_delta",
    "split_name",
    "validate_endpoint",
    "validate_name",
]

#: Longest name the Delta Sharing protocol allows.
MAX_NAME_LENGTH = 255

_BAD_NAME_CHARS = re.compile(r"[\x00-\x1f\x7f /]")
_DELTA_PATH = re.compile(r"^\s*delta\s*\.\s*`(?P<path>[^`]+)`\s*$", re.IGNORECASE)


def name_key(name: str) -> str:
    """The one matching rule for names: Unicode NFKC, case-folded (NFKC again after folding).

    Shares, schemas, tables and recipients are the same name when their keys are equal: ``DONNÉES``
    and ``données``, ``K`` and the Kelvin sign ``\u212a``, a composed and a decomposed ``é``. Lookups and
    grant checks compare keys, and a name whose key collides with an existing one is refused.
    """
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


def validate_name(name: object, kind: str = "name", *, allow_dot: bool = True) -> str:
    """Check ``name`` against the Delta Sharing naming rules and return it unchanged.

    :param kind: what the name is ("share", "recipient", "schema", ...), used in the message.
    :param allow_dot: False for schema and table names, which may not contain ``.``.
    :raises InvalidNameError: naming the rule that was broken.
    """
    if not isinstance(name, str):
        raise InvalidNameError(f"{kind} name must be a string, got {type(name).__name__}")
    if not name:
        raise InvalidNameError(
            f"{kind} name is empty; give a name of 1 to {MAX_NAME_LENGTH} characters"
        )
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidNameError(
            f"{kind} name {name[:40]!r}... is {len(name)} characters long; "
            f"Delta Sharing names have at most {MAX_NAME_LENGTH}"
        )
    bad = _BAD_NAME_CHARS.search(name)
    if bad:
        what = {" ": "a space", "/": "'/'"}.get(bad.group(), f"control character {bad.group()!r}")
        raise InvalidNameError(
            f"{kind} name {name!r} contains {what}; Delta Sharing names may not contain spaces, "
            "'/', control characters or DEL (use '_' instead)"
        )
    if not allow_dot and "." in name:
        raise InvalidNameError(
            f"{kind} name {name!r} contains '.'; schema and table names may not contain dots"
        )
    return name


def split_name(name: object, parts: int, kind: str, example: str) -> list[str]:
    """The ``parts`` dot-separated pieces of ``name``, each checked. :raises InvalidNameError:"""
    if not isinstance(name, str):
        raise InvalidNameError(
            f"{kind} name must be a string like {example}, got {type(name).__name__}"
        )
    pieces = name.split(".")
    if len(pieces) != parts:
        raise InvalidNameError(
            f"{kind} name {name[:300]!r} must have {parts} dot-separated parts, like {example}"
        )
    labels = (
        ("catalog", "schema", "table")[-parts:] if parts < 3 else ("catalog", "schema", "table")
    )
    for piece, label in zip(pieces, labels, strict=True):
        validate_name(piece, f"{label} part of {kind}", allow_dot=False)
    return pieces


def parse_delta_path(source: str) -> str | None:
    """The path of a ``delta.`/path``` source, or None when ``source`` is not of that form."""
    match = _DELTA_PATH.match(source) if isinstance(source, str) else None
    return match.group("path") if match else None


def normalize_location(location: str | os.PathLike[str]) -> Path:
    """A local table location as an absolute path (``file://`` and ``~`` resolved)."""
    text = os.fspath(location)
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgumentError("table location is empty; give the directory of a Delta table")
    if "\x00" in text:
        raise InvalidArgumentError(
            "table location holds a NUL byte; give the directory of a Delta table"
        )
    if text.startswith("file://"):
        text = text[len("file://") :]
    long = [part for part in text.split("/") if len(part.encode("utf-8", "surrogatepass")) > 255]
    if long:
        raise InvalidArgumentError(
            f"table location has a path component of {len(long[0])} characters ({long[0][:20]}...); "
            "file names are at most 255 bytes: give the directory of a Delta table"
        )
    try:
        return Path(text).expanduser().resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, an unreadable component...
        raise InvalidArgumentError(f"table location {text[:200]!r} cannot be used: {exc}") from None


def require_delta(location: str | os.PathLike[str]) -> Path:
    """:func:`normalize_location`, checked to hold a ``_delta_log``. :raises NotADeltaTableError:"""
    path = normalize_location(location)
    try:
        is_table = (path / "_delta_log").is_dir()
    except OSError as exc:  # a path too long for the file system, a permission problem
        raise NotADeltaTableError(
            f"{str(path)[:200]} cannot be read ({exc.strerror}); give the directory of a Delta table"
        ) from None
    if not is_table:
        raise NotADeltaTableError(
            f"{path} is not a Delta table (no _delta_log directory); "
            "give the directory of an existing Delta table"
        )
    return path


def partition_columns(location: str) -> list[str]:
    """The partition columns of the Delta table at ``location``. :raises NotADeltaTableError:"""
    from deltalake import DeltaTable

    try:
        return list(DeltaTable(location).metadata().partition_columns)
    except Exception as exc:  # deltalake raises several types; report them uniformly
        raise NotADeltaTableError(f"cannot read the Delta table at {location}: {exc}") from exc


def validate_endpoint(endpoint: object) -> str:
    """Return ``endpoint`` when it is an http(s) URL without spaces.

    :raises InvalidArgumentError: otherwise.
    """
    if not isinstance(endpoint, str) or not re.fullmatch(r"https?://[^\s/]+(/\S*)?", endpoint):
        raise InvalidArgumentError(
            f"endpoint {endpoint!r} is not an http(s) URL; give e.g. http://127.0.0.1:8080/delta-sharing/"
        )
    return endpoint
