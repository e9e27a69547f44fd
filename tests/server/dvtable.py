"""A Delta table with a deletion vector on disk, written by hand (deltalake writes none).

:func:`delete_with_dv` commits a version that keeps a data file but marks rows of it deleted through a
deletion vector file ``deletion_vector_<uuid>.bin`` (storage type ``u``: relative to the table), and
upgrades the protocol to reader 3 / writer 7 with the ``deletionVectors`` feature, as Delta Spark does.
The file format is Delta's: a version byte, then per vector a big-endian size, the magic number and a
portable 64-bit RoaringBitmap array (array containers), and a big-endian CRC-32.
"""

from __future__ import annotations

import json
import struct
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

__all__ = ["delete_with_dv", "z85_encode"]

_Z85 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
_MAGIC = 1681511377


def z85_encode(data: bytes) -> str:
    out = []
    for i in range(0, len(data), 4):
        (value,) = struct.unpack(">I", data[i : i + 4])
        chunk = []
        for _ in range(5):
            value, rem = divmod(value, 85)
            chunk.append(_Z85[rem])
        out.append("".join(reversed(chunk)))
    return "".join(out)


def _roaring32(values: list[int]) -> bytes:
    """A 32-bit portable RoaringBitmap of ``values`` (< 65536 each, one array container)."""
    vals = sorted(set(values))
    assert vals and vals[-1] < 65536 and len(vals) <= 4096
    header = struct.pack("<II", 12346, 1) + struct.pack("<HH", 0, len(vals) - 1)
    offset = len(header) + 4
    return header + struct.pack("<I", offset) + b"".join(struct.pack("<H", v) for v in vals)


def _dv_file(rows: list[int]) -> tuple[bytes, int, int]:
    """(file bytes, offset of the vector, sizeInBytes) of a DV file holding one vector."""
    data = (
        struct.pack("<I", _MAGIC) + struct.pack("<Q", 1) + struct.pack("<I", 0) + _roaring32(rows)
    )
    body = struct.pack(">I", len(data)) + data + struct.pack(">I", zlib.crc32(data) & 0xFFFFFFFF)
    return b"\x01" + body, 1, len(data)


def _log_entries(path: Path) -> list[Path]:
    return sorted((path / "_delta_log").glob("*.json"))


def _actions(entry: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in entry.read_text().splitlines() if line.strip()]


def delete_with_dv(path: Path, rows: list[int]) -> dict[str, Any]:
    """Commit the next version of the table at ``path``: ``rows`` (0-based positions) of its first
    active data file are deleted through a deletion vector. Returns the new add action."""
    entries = _log_entries(path)
    version = len(entries)
    active: dict[str, dict[str, Any]] = {}
    metadata: dict[str, Any] = {}
    for entry in entries:
        for action in _actions(entry):
            if "add" in action:
                active[action["add"]["path"]] = action["add"]
            elif "remove" in action:
                active.pop(action["remove"]["path"], None)
            elif "metaData" in action:
                metadata = action["metaData"]
    add = next(iter(active.values()))
    dv_id = uuid.uuid4()
    blob, offset, size = _dv_file(rows)
    (path / f"deletion_vector_{dv_id}.bin").write_bytes(blob)
    now = int(time.time() * 1000)
    new_add = dict(add)
    new_add["deletionVector"] = {
        "storageType": "u",
        "pathOrInlineDv": z85_encode(dv_id.bytes),
        "offset": offset,
        "sizeInBytes": size,
        "cardinality": len(set(rows)),
    }
    new_add["modificationTime"] = now
    new_add["dataChange"] = True
    remove = {
        "path": add["path"],
        "deletionTimestamp": now,
        "dataChange": True,
        "extendedFileMetadata": True,
        "partitionValues": add.get("partitionValues", {}),
        "size": add.get("size", 0),
    }
    md = dict(metadata)
    md["configuration"] = {**(md.get("configuration") or {}), "delta.enableDeletionVectors": "true"}
    lines = [
        {"commitInfo": {"timestamp": now, "operation": "DELETE", "operationParameters": {}}},
        {
            "protocol": {
                "minReaderVersion": 3,
                "minWriterVersion": 7,
                "readerFeatures": ["deletionVectors"],
                "writerFeatures": ["deletionVectors"],
            }
        },
        {"metaData": md},
        {"remove": remove},
        {"add": new_add},
    ]
    target = path / "_delta_log" / f"{version:020d}.json"
    target.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return new_add
