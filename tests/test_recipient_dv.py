"""The lean loader reads tables with deletion vectors (delta response format) as the official client does.

A real server shares a Delta table of three files whose first file has rows deleted through a deletion
vector file (written as Delta Spark writes it: :mod:`tests.server.dvtable`); the loader's rows are
compared with the official client's (which reads the delta format through delta-kernel). The vector
decoder is checked against pyroaring, an independent RoaringBitmap, on array, bitmap and run containers.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import delta_sharing
import pandas as pd
import pytest
from deltalake import write_deltalake

from helpers.recipient import fast_load
from helpers.recipient.deletion_vectors import MAGIC, bitmap_rows, framed_vector
from helpers.z85 import z85_decode
from tests.server.dvtable import delete_with_dv, z85_encode
from tests.support import share_tables, start_server, stop_server, write_profile

pyroaring = pytest.importorskip("pyroaring")

DELETED = [0, 3, 7, 40, 41, 42, 99]  # positions in the first file (100 rows)


@pytest.fixture(scope="module")
def profile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("dv")
    table = root / "orders"
    for n in range(3):
        frame = pd.DataFrame({"id": range(n * 100, (n + 1) * 100), "amount": [1.5] * 100})
        write_deltalake(str(table), frame, mode="append")
    delete_with_dv(table, DELETED)
    home = root / "home"
    token = share_tables(home, {"shop.sales.orders": table})
    server = start_server(home)
    try:
        yield write_profile(root / "r.share", server.endpoint, token)
    finally:
        stop_server(server)


def test_fast_load_drops_the_rows_a_deletion_vector_marks(profile: Path) -> None:
    url = f"{profile}#s.sales.orders"
    fast = fast_load(url).sort_values("id", ignore_index=True)
    official = delta_sharing.load_as_pandas(url).sort_values("id", ignore_index=True)
    assert len(fast) == 300 - len(DELETED)
    pd.testing.assert_frame_equal(fast, official[fast.columns.tolist()], check_dtype=False)
    # which file was first is the log's order: the deleted ids are DELETED of one file's 100
    missing = sorted(set(range(300)) - set(fast["id"]))
    assert len(missing) == len(DELETED) and {m % 100 for m in missing} == set(DELETED)


def test_a_limit_counts_the_rows_left_after_deletions(profile: Path) -> None:
    url = f"{profile}#s.sales.orders"
    assert len(fast_load(url, limit=95)) == 95
    assert len(fast_load(url, limit=1000)) == 300 - len(DELETED)


def _array(buckets: list[tuple[int, object]]) -> bytes:
    out = struct.pack("<IQ", MAGIC, len(buckets))
    for high, bitmap in buckets:
        out += struct.pack("<I", high) + bitmap.serialize()  # type: ignore[attr-defined]
    return out


def _runs(values: range | list[int]) -> object:
    bitmap = pyroaring.BitMap(values)
    bitmap.run_optimize()
    return bitmap


@pytest.mark.parametrize(
    "buckets",
    [
        [],
        [(0, pyroaring.BitMap([1, 5, 7]))],
        [(0, pyroaring.BitMap(random.Random(1).sample(range(300_000), 40_000)))],  # bitmaps
        [(0, _runs(range(1_000, 90_000)))],  # run containers, fewer than 4 (no offsets)
        [(0, _runs(range(0, 400_000)))],  # 7 run containers (with offsets)
        [(0, _runs([*range(0, 70_000, 3), *range(100_000, 160_000)])), (2, pyroaring.BitMap([9]))],
        [(0, pyroaring.BitMap(random.Random(2).sample(range(1 << 20), 50)))],  # 16 containers
    ],
)
def test_the_decoder_agrees_with_pyroaring(buckets: list[tuple[int, object]]) -> None:
    want = sorted((high << 32) | v for high, bitmap in buckets for v in bitmap)  # type: ignore[attr-defined]
    assert bitmap_rows(_array(buckets)).tolist() == want


def test_damaged_vectors_are_clear_errors() -> None:
    vector = _array([(0, pyroaring.BitMap([2, 4]))])
    framed = struct.pack(">I", len(vector)) + vector + struct.pack(">I", zlib.crc32(vector))
    assert framed_vector(framed, len(vector)) == vector
    with pytest.raises(ValueError, match="checksum"):
        framed_vector(framed[:-1] + bytes([framed[-1] ^ 1]), len(vector))
    with pytest.raises(ValueError, match="descriptor says"):
        framed_vector(framed + b"\0", len(vector) + 1)
    with pytest.raises(ValueError, match="magic number"):
        bitmap_rows(b"\0" * 16)
    with pytest.raises(ValueError, match="truncated"):
        bitmap_rows(vector[:-3])
    padded = vector + b"\0" * (-len(vector) % 4)  # inline vectors are Z85 text, padded to 4 bytes
    assert bitmap_rows(z85_decode(z85_encode(padded))).tolist() == [2, 4]
    with pytest.raises(ValueError, match="Z85"):
        z85_decode("abc~~")
