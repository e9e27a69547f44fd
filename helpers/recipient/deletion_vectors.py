"""Delta's deletion vectors as a recipient reads them: the framed vector in a DV file, the RoaringBitmap array.

A deletion vector (DV) marks rows of a data file deleted without rewriting it. Its descriptor
(``storageType``, ``pathOrInlineDv``, ``offset``, ``sizeInBytes``, ``cardinality``) points at the vector:
inline (``i``: Z85 text of the vector itself, :mod:`helpers.z85`) or in a DV file, where at ``offset`` a big-endian 4-byte size
precedes the vector and a big-endian CRC-32 of it follows. The vector is Delta's ``RoaringBitmapArray``: a
little-endian magic number, a 64-bit count of buckets, then per bucket its high 32 bits and a 32-bit
RoaringBitmap in the portable format (array, bitmap and run containers). The row indexes it holds are
positions in the data file.

Used by the lean loader (:mod:`helpers.recipient.fast`), which reads the vectors a ``/query`` in delta
format points at: a server sends each DV file behind a signed URL (``storageType: "p"``).
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

__all__ = ["MAGIC", "bitmap_rows", "framed_vector"]

MAGIC = 1681511377
"""The first four bytes (little-endian) of a serialized ``RoaringBitmapArray``."""
_COOKIE_NO_RUNS = 12346
_COOKIE_RUNS = 12347
_ARRAY_MAX = 4096  # a container of more values is a bitmap (8 KiB) unless it is a run container


def framed_vector(blob: bytes, size: int) -> bytes:
    """The vector of ``size`` bytes in ``blob`` (a DV file's bytes from the descriptor's offset: size,
    vector, CRC-32). :raises ValueError: a size or checksum that does not match."""
    if len(blob) < size + 8:
        raise ValueError(f"the deletion vector file holds {len(blob)} bytes, not {size + 8}")
    (stored,) = struct.unpack_from(">I", blob, 0)
    if stored != size:
        raise ValueError(f"the deletion vector is {stored} bytes, its descriptor says {size}")
    data = blob[4 : 4 + size]
    (crc,) = struct.unpack_from(">I", blob, 4 + size)
    if zlib.crc32(data) & 0xFFFFFFFF != crc:
        raise ValueError("the deletion vector's checksum does not match (a damaged file)")
    return data


def bitmap_rows(data: bytes) -> np.ndarray:
    """The row indexes (sorted ``uint64``) of a serialized ``RoaringBitmapArray``.

    :raises ValueError: not a RoaringBitmapArray (wrong magic number, truncated, unknown cookie).
    """
    if len(data) < 12 or struct.unpack_from("<I", data, 0)[0] != MAGIC:
        magic = struct.unpack_from("<I", data, 0)[0] if len(data) >= 4 else None
        raise ValueError(f"not a deletion vector (magic number {magic}, expected {MAGIC})")
    (buckets,) = struct.unpack_from("<Q", data, 4)
    pos, parts = 12, []
    try:
        for _ in range(buckets):
            (high,) = struct.unpack_from("<I", data, pos)
            low, pos = _roaring32(data, pos + 4)
            parts.append(low.astype(np.uint64) | (np.uint64(high) << np.uint64(32)))
    except (struct.error, ValueError) as exc:  # numpy's "buffer is smaller than requested size"
        raise ValueError(f"a truncated or damaged deletion vector ({exc})") from None
    if not parts:
        return np.empty(0, dtype=np.uint64)
    return np.sort(np.concatenate(parts))


def _roaring32(data: bytes, pos: int) -> tuple[np.ndarray, int]:
    """The values of the portable 32-bit RoaringBitmap at ``pos``, and the position after it."""
    (cookie,) = struct.unpack_from("<I", data, pos)
    pos += 4
    runs = b""
    if cookie & 0xFFFF == _COOKIE_RUNS:
        count = (cookie >> 16) + 1
        runs = data[pos : pos + (count + 7) // 8]
        pos += (count + 7) // 8
    elif cookie == _COOKIE_NO_RUNS:
        (count,) = struct.unpack_from("<I", data, pos)
        pos += 4
    else:
        raise ValueError(f"not a portable RoaringBitmap (cookie {cookie})")
    header = struct.unpack_from(f"<{2 * count}H", data, pos)
    pos += 4 * count
    if cookie == _COOKIE_NO_RUNS or count >= 4:
        pos += 4 * count  # the containers' offsets: they follow each other anyway
    values = []
    for i in range(count):
        key, cardinality = header[2 * i], header[2 * i + 1] + 1
        if runs and runs[i // 8] >> (i % 8) & 1:
            low, pos = _run_container(data, pos)
        elif cardinality > _ARRAY_MAX:
            bits = np.frombuffer(data, dtype=np.uint8, count=8192, offset=pos)
            low, pos = np.flatnonzero(np.unpackbits(bits, bitorder="little")), pos + 8192
        else:
            low = np.frombuffer(data, dtype="<u2", count=cardinality, offset=pos)
            pos += 2 * cardinality
        values.append(low.astype(np.uint32) | np.uint32(key << 16))
    return (np.concatenate(values) if values else np.empty(0, np.uint32)), pos


def _run_container(data: bytes, pos: int) -> tuple[np.ndarray, int]:
    (n,) = struct.unpack_from("<H", data, pos)
    if not n:
        return np.empty(0, np.int64), pos + 2
    pairs = np.frombuffer(data, dtype="<u2", count=2 * n, offset=pos + 2).astype(np.int64)
    ranges = (np.arange(s, s + k + 1) for s, k in zip(pairs[0::2], pairs[1::2], strict=True))
    return np.concatenate(list(ranges)), pos + 2 + 4 * n
