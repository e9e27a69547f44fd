"""Deletion vectors on disk, served like data files: through signed URLs (storage type ``p``).

A Delta ``add`` may point at a deletion vector (DV) file: storage type ``u`` (a path relative to the
table, ``<prefix><z85 of a UUID>`` -> ``<prefix>/deletion_vector_<uuid>.bin``) or ``p`` (an absolute
path). A recipient cannot reach either, so in delta format the server rewrites the descriptor to
``storageType: "p"`` with a signed URL of the DV file as ``pathOrInlineDv`` (offset, size and
cardinality unchanged), like the reference server. Inline vectors (``i``) pass through. The download
route serves a DV file to a URL signed for it when the table version's files reference it.
Parquet format cannot express deletion vectors: such tables are refused there (400
``UNSUPPORTED_OPERATION``, :func:`helpers.server.params.choose_format`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import Any

from helpers.z85 import z85_decode

__all__ = ["dv_file", "dv_paths", "has_dv_files", "with_signed_dv"]


def dv_file(dv: object) -> str | None:
    """The log-relative (``u``) or absolute (``p``) path of a DV's file; None for inline or malformed."""
    if not isinstance(dv, dict):
        return None
    kind, ref = dv.get("storageType"), dv.get("pathOrInlineDv")
    if not isinstance(ref, str) or not ref:
        return None
    if kind == "p":
        return ref
    if kind != "u" or len(ref) < 20:
        return None
    try:
        uid = uuid.UUID(bytes=z85_decode(ref[-20:]))
    except (ValueError, KeyError):
        return None
    name = f"deletion_vector_{uid}.bin"
    prefix = ref[:-20]
    return f"{prefix}/{name}" if prefix else name


def dv_paths(actions: Iterable[dict[str, Any]]) -> set[str]:
    """The DV file paths the actions reference."""
    found = (dv_file(a.get("deletionVector")) for a in actions)
    return {p for p in found if p}


def has_dv_files(actions: Iterable[dict[str, Any]]) -> bool:
    return any(dv_file(a.get("deletionVector")) for a in actions)


def with_signed_dv(action: dict[str, Any], sign: Callable[[str], str]) -> dict[str, Any]:
    """A copy of ``action`` whose on-disk DV points at ``sign(dv path)`` (``storageType: "p"``)."""
    dv = action.get("deletionVector")
    path = dv_file(dv)
    if path is None or not isinstance(dv, dict):
        return action
    rewritten = {k: v for k, v in dv.items() if k != "pathOrInlineDv"}
    rewritten["storageType"] = "p"
    rewritten["pathOrInlineDv"] = sign(path)
    return {**action, "deletionVector": rewritten}
