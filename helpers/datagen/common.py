"""Shared machinery of the dataset generators: parameters, seeded randomness, vectorised helpers,
Delta writing and the stage-then-swap that makes a generation all or nothing.

A dataset module (``airline``, ``retail``) exposes ``NAME``, ``SCALES``, ``DEFAULT_DAYS``,
``DEFAULT_START``, ``TABLES`` (the :class:`TableSpec` of every table, in write order) and
``build(params) -> Iterator[GeneratedTable]``, which yields the tables one by one so each can be
written (and its memory released) before the next one is built.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from helpers.exceptions import DatasetError

#: Every timestamp the generators write: tz-aware UTC microseconds. The official delta-sharing
#: client cannot read ``timestamp_ntz``, which is what a naive timestamp would become.
TS = pa.timestamp("us", tz="UTC")
#: Table property that turns on the change data feed (the CDF lesson reads the changes).
CDF_CONFIG = {"delta.enableChangeDataFeed": "true"}
EPOCH = date(1970, 1, 1)
SECONDS_PER_DAY = 86_400


# ---------------------------------------------------------------------------------------------
# Parameters, table descriptions, results
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Params:
    """Validated generation parameters.

    :param scale: name of a scale preset of the dataset.
    :param seed: non-negative integer seeding every random stream.
    :param days: length of the time window in days (>= 1).
    :param start_date: first day of the window (UTC).
    """

    scale: str
    seed: int
    days: int
    start_date: date

    @property
    def start_day(self) -> int:
        """First day of the window as days since 1970-01-01."""
        return (self.start_date - EPOCH).days

    @property
    def end_day(self) -> int:
        """Last day of the window (inclusive) as days since 1970-01-01."""
        return self.start_day + self.days - 1


@dataclass(frozen=True)
class TableSpec:
    """How one table is stored.

    :param schema: schema of the table inside the dataset's catalog.
    :param name: table name.
    :param partition_by: partition columns (empty: not partitioned).
    :param cdf: whether the change data feed is enabled.
    :param derived: whether the table is materialised from other tables of the dataset.
    """

    schema: str
    name: str
    partition_by: tuple[str, ...] = ()
    cdf: bool = False
    derived: bool = False

    @property
    def qualified(self) -> str:
        """``schema.table``."""
        return f"{self.schema}.{self.name}"


@dataclass
class GeneratedTable:
    """A table produced by a generator: either a whole Arrow table or a stream of record batches.

    :param spec: where and how it is stored.
    :param table: the whole table (small and medium tables).
    :param schema: the schema of ``batches`` (streamed tables).
    :param batches: record batches, produced lazily so a huge table never sits in memory at once.
    :param num_rows: expected row count of a streamed table (for the progress bar).
    """

    spec: TableSpec
    table: pa.Table | None = None
    schema: pa.Schema | None = None
    batches: Iterable[pa.RecordBatch] | None = None
    num_rows: int | None = None

    def expected_rows(self) -> int | None:
        return self.table.num_rows if self.table is not None else self.num_rows

    def iter_batches(self) -> Iterator[pa.RecordBatch]:
        if self.table is not None:
            yield from self.table.to_batches()
        else:
            assert self.batches is not None
            yield from self.batches

    def arrow_schema(self) -> pa.Schema:
        if self.table is not None:
            return self.table.schema
        assert self.schema is not None
        return self.schema


@dataclass(frozen=True)
class TableCount:
    """Rows written for one table."""

    schema: str
    table: str
    rows: int
    location: str | None = None
    seconds: float = 0.0  # build + write time of this table

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.table}"


@dataclass(frozen=True)
class DatasetSummary:
    """What a generation (or export) wrote.

    :param dataset: ``airline`` or ``retail``.
    :param location: directory of the dataset (Delta tables or exported files).
    :param tables: one :class:`TableCount` per table, in write order.
    :param seconds: wall time of the run (the only volatile field).
    """

    dataset: str
    scale: str
    seed: int
    days: int
    start_date: date
    location: Path
    tables: tuple[TableCount, ...] = field(default_factory=tuple)
    seconds: float = 0.0
    registered: tuple[str, ...] = ()

    @property
    def total_rows(self) -> int:
        return sum(t.rows for t in self.tables)

    def rows(self) -> dict[str, int]:
        """Row count by ``schema.table``."""
        return {t.name: t.rows for t in self.tables}

    def to_frame(self) -> Any:
        """The table counts as a pandas DataFrame (``schema``, ``table``, ``rows``, ``location``)."""
        import pandas as pd

        return pd.DataFrame(
            [(t.schema, t.table, t.rows, t.location) for t in self.tables],
            columns=["schema", "table", "rows", "location"],
        )

    def format(self) -> str:
        """A human-readable summary: parameters, then one line per table."""
        width = max((len(t.name) for t in self.tables), default=10)
        lines = [
            f"{self.dataset}: scale={self.scale} seed={self.seed} days={self.days} "
            f"start_date={self.start_date.isoformat()} -> {self.location}"
        ]
        lines += [f"  {t.name:<{width}}  {t.rows:>12,}" for t in self.tables]
        lines.append(f"  {'total':<{width}}  {self.total_rows:>12,}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


# ---------------------------------------------------------------------------------------------
# Randomness and vectorised helpers
# ---------------------------------------------------------------------------------------------


def rng_for(seed: int, *keys: str | int) -> np.random.Generator:
    """An independent PCG64 stream for ``(seed, *keys)``.

    One stream per table (and per day for streamed tables) keeps each table's content independent of
    how many numbers other tables drew, so adding a column to one table does not reshuffle the rest.
    ``zlib.crc32`` (not ``hash``) keeps the key stable across interpreter runs.
    """
    entropy = [int(seed)] + [k if isinstance(k, int) else zlib.crc32(k.encode()) for k in keys]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))


def ts_array(seconds: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    """UTC timestamps from epoch seconds (``mask`` True = null)."""
    micros = np.asarray(seconds, dtype=np.int64) * 1_000_000
    return pa.array(micros, type=pa.int64(), mask=mask).cast(TS)


def date_array(days: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    """Dates from days since 1970-01-01 (``mask`` True = null)."""
    return pa.array(np.asarray(days, dtype=np.int32), type=pa.int32(), mask=mask).cast(pa.date32())


def money(cents: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    """Amounts in currency units (float64) from integer cents, so sums recompute exactly to the cent."""
    return pa.array(np.asarray(cents, dtype=np.int64) / 100.0, type=pa.float64(), mask=mask)


def take_str(values: Sequence[str], idx: np.ndarray) -> pa.Array:
    """``values[idx]`` as an Arrow string array (dictionary lookup, no Python loop over rows)."""
    return pa.array(list(values), type=pa.string()).take(pa.array(np.asarray(idx, dtype=np.int64)))


def id_strings(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """``prefix`` + zero-padded ``numbers`` (e.g. ``BK00000042``), vectorised."""
    digits = pc.utf8_lpad(
        pa.array(np.asarray(numbers, dtype=np.int64)).cast(pa.string()), width, "0"
    )
    return pc.binary_join_element_wise(prefix, digits, "")


def concat(*parts: pa.Array | str, sep: str = "") -> pa.Array:
    """Element-wise string concatenation of arrays and scalars."""
    return pc.binary_join_element_wise(*parts, sep)


_ALPHABET = np.frombuffer(b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789", dtype="S1")  # 32 symbols, no 0/O/1/I


def unique_codes(rng: np.random.Generator, n: int, length: int = 8) -> pa.Array:
    """``n`` distinct random-looking codes of ``length`` symbols.

    Uniqueness by construction: an affine map ``i -> (a*i + b) mod 32**length`` with ``a`` odd is a
    bijection, so distinct ``i`` give distinct codes (the seed's random SKUs could collide).
    """
    modulus = 32**length
    a = int(rng.integers(1, modulus // 2)) * 2 + 1
    b = int(rng.integers(0, modulus))
    x = (np.arange(n, dtype=object) * a + b) % modulus  # object ints: 32**8 * a overflows int64
    x = x.astype(np.int64)
    symbols = np.empty((n, length), dtype="S1")
    for pos in range(length - 1, -1, -1):  # loop over the code's symbols, not over rows
        symbols[:, pos] = _ALPHABET[x % 32]
        x //= 32
    return pa.array(symbols.view(f"S{length}").ravel().astype(str), type=pa.string())


def weighted_choice(
    rng: np.random.Generator, weights: np.ndarray, size: int, *, shuffle: bool = True
) -> np.ndarray:
    """``size`` independent indices drawn with probability proportional to ``weights``.

    For large weight vectors the uniforms are sorted before the binary search (random queries into
    a big CDF are cache-hostile, sorted ones stream) and the result is shuffled back into random
    order; ``shuffle=False`` returns the draws sorted, for callers that reorder rows anyway.
    """
    cdf = np.cumsum(np.asarray(weights, dtype=np.float64))
    cdf /= cdf[-1]
    u = rng.random(size)
    if len(cdf) <= 256:
        return np.searchsorted(cdf, u, side="right").clip(0, len(cdf) - 1)
    u.sort()
    idx = np.searchsorted(cdf, u, side="right").clip(0, len(cdf) - 1)
    return idx[rng.permutation(size)] if shuffle else idx


def haversine_km(
    lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray
) -> np.ndarray:
    """Great-circle distance in km (mean Earth radius 6371.0088 km)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dlmb = np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2) ** 2
    return 2 * 6371.0088 * np.arcsin(np.sqrt(a))


def group_starts(counts: np.ndarray) -> np.ndarray:
    """Offsets of each group in a flat array built with ``np.repeat(..., counts)``."""
    starts = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    return starts


def position_in_group(counts: np.ndarray) -> np.ndarray:
    """0, 1, .. k-1 within each group of a ``np.repeat(..., counts)`` layout."""
    total = int(counts.sum())
    return np.arange(total, dtype=np.int64) - np.repeat(group_starts(counts), counts)


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------

ProgressFactory = Callable[[TableSpec, int | None], Any]


class _NullBar:
    def update(self, n: int = 1) -> None:  # noqa: D401 - tqdm protocol
        pass

    def close(self) -> None:
        pass


def make_progress(enabled: bool, label: str) -> ProgressFactory:
    """A factory of one tqdm bar per table (or no-op bars when disabled)."""

    def factory(spec: TableSpec, total: int | None) -> Any:
        if not enabled:
            return _NullBar()
        from tqdm import tqdm

        return tqdm(
            total=total,
            desc=f"{label}.{spec.qualified}",
            unit=" rows",
            unit_scale=total is None or total >= 10_000,
            leave=True,
            dynamic_ncols=True,
        )

    return factory


class _LockedIterator:
    """An iterator safe to pull from several threads.

    deltalake's writer pulls the Arrow stream from more than one thread; a Python generator entered
    twice raises "generator already executing", so every ``next`` is serialised by a lock.
    """

    def __init__(self, iterable: Iterable[pa.RecordBatch]) -> None:
        self._it = iter(iterable)
        self._lock = threading.Lock()

    def __iter__(self) -> _LockedIterator:
        return self

    def __next__(self) -> pa.RecordBatch:
        with self._lock:
            return next(self._it)


def _counting(
    batches: Iterable[pa.RecordBatch], bar: Any, counter: list[int]
) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        counter[0] += batch.num_rows
        bar.update(batch.num_rows)
        yield batch


#: Rows per commit of a streamed table: deltalake's writer keeps a whole write in memory, so a huge
#: streamed table (retail ``large`` inventory: 14 M rows) is appended in commits of about this size.
STREAM_COMMIT_ROWS = 3_000_000


def _chunks(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[list[pa.RecordBatch]]:
    chunk: list[pa.RecordBatch] = []
    size = 0
    for batch in batches:
        chunk.append(batch)
        size += batch.num_rows
        if size >= rows:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def write_delta_table(path: Path, gen: GeneratedTable, bar: Any) -> int:
    """Write one generated table as a new Delta table at ``path``; returns the row count.

    A whole table is written in a single commit (version 0); a streamed table in commits of about
    :data:`STREAM_COMMIT_ROWS` rows (one commit at small scales), which bounds the writer's memory.
    Column statistics are kept (deltalake's default; the server uses min/max values to skip files),
    with the spec's partition columns and the change data feed when the spec asks for it.
    """
    from deltalake import write_deltalake

    counter = [0]
    schema = gen.arrow_schema()
    options: dict[str, Any] = {
        "partition_by": list(gen.spec.partition_by) or None,
        "configuration": CDF_CONFIG if gen.spec.cdf else None,
        "name": gen.spec.name,
    }
    if gen.table is not None:
        parts: Iterable[Iterable[pa.RecordBatch]] = [gen.table.to_batches()]
    else:
        parts = _chunks(gen.iter_batches(), STREAM_COMMIT_ROWS)
    mode: Literal["error", "append"] = "error"
    for part in parts:
        reader = pa.RecordBatchReader.from_batches(
            schema, _LockedIterator(_counting(part, bar, counter))
        )
        write_deltalake(str(path), reader, mode=mode, **options)
        mode = "append"
    if mode == "error":  # an empty stream still makes an (empty) table
        write_deltalake(str(path), schema.empty_table(), mode="error", **options)
    return counter[0]


def write_file_table(path: Path, gen: GeneratedTable, fmt: str, bar: Any) -> int:
    """Write one generated table as a single parquet or CSV file at ``path``; returns the row count."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    rows = 0
    schema = gen.arrow_schema()
    if fmt == "parquet":
        writer: Any = pq.ParquetWriter(str(path), schema)
    else:
        writer = pacsv.CSVWriter(str(path), schema)
    try:
        for batch in gen.iter_batches():
            writer.write_batch(batch)
            rows += batch.num_rows
            bar.update(batch.num_rows)
    finally:
        writer.close()
    return rows


# ---------------------------------------------------------------------------------------------
# All or nothing: stage, then swap
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def dataset_lock(parent: Path, name: str) -> Iterator[None]:
    """Serialise generations of one dataset in one lab home (a second run waits for the first)."""
    parent.mkdir(parents=True, exist_ok=True)
    with open(parent / f".{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def recover(parent: Path, name: str) -> None:
    """Undo what a killed run left behind (call while holding :func:`dataset_lock`).

    A run killed between its two renames leaves the old dataset in ``.<name>.old-*`` and no target:
    put it back. Stale staging and backup directories are deleted.
    """
    target = parent / name
    backups = sorted(parent.glob(f".{name}.old-*"))
    if not target.exists() and backups:
        os.replace(backups[-1], target)
        backups = backups[:-1]
    for stale in [*backups, *parent.glob(f".{name}.staging-*")]:
        shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def staged(parent: Path, name: str) -> Iterator[Path]:
    """Yield an empty staging directory next to ``parent/name``; on success, swap it into place.

    On any failure (including KeyboardInterrupt) the staging directory is removed and the previous
    dataset is untouched. The swap is two renames on one file system: old -> backup, staged -> target;
    the backup is then deleted. If the second rename fails the backup is renamed back.
    """
    target = parent / name
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.staging-", dir=parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes 0700; the dataset should look like any directory
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    backup: Path | None = None
    try:
        if target.exists():
            backup = Path(tempfile.mkdtemp(prefix=f".{name}.old-", dir=parent))
            os.replace(target, backup)  # replaces the empty placeholder directory
        os.replace(staging, target)
    except BaseException:
        if backup is not None and not target.exists():
            os.replace(backup, target)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def wrap_failure(dataset: str, exc: Exception) -> DatasetError:
    """A DatasetError naming the dataset and saying that nothing changed."""
    return DatasetError(
        f"generating dataset '{dataset}' failed ({type(exc).__name__}: {exc}); "
        "the previous data (if any) is unchanged; fix the cause and run generate again"
    )


def group_reduce(
    ufunc: np.ufunc, keys: np.ndarray, values: np.ndarray, n: int, fill: Any
) -> np.ndarray:
    """``ufunc``-reduce ``values`` by integer group ``keys`` in ``[0, n)``; empty groups get ``fill``."""
    out = np.full(n, fill, dtype=np.asarray(values).dtype)
    ufunc.at(out, keys, values)
    return out


def month_strings(days: np.ndarray) -> pa.Array:
    """``YYYY-MM`` of each day (days since 1970-01-01), via the few distinct months."""
    months = np.asarray(days, dtype="int64").astype("datetime64[D]").astype("datetime64[M]")
    uniq, inverse = np.unique(months, return_inverse=True)
    return take_str([str(u) for u in uniq], inverse)


def ratio_half_up(num: np.ndarray, den: np.ndarray, decimals: int) -> np.ndarray:
    """``round(num / den, decimals)`` for integer inputs, ties away from zero (SQL ``round``).

    Integer arithmetic, so a recipient's ``round(sum(x) / count(*), 2)`` gives the same value
    (numpy's ``round`` sends ties to even). ``den`` must be positive; ``num`` non-negative.
    """
    scale = 10**decimals
    num = np.asarray(num, dtype=np.int64)
    den = np.maximum(np.asarray(den, dtype=np.int64), 1)
    return ((2 * num * scale + den) // (2 * den)) / scale


def release_memory() -> None:
    """Hand freed memory back to the OS between tables.

    glibc keeps freed numpy buffers in its heap (its mmap threshold grows after large frees) and
    Arrow's allocator keeps its pages, so without this the peak RSS of a run is the sum of the
    largest tables rather than the largest one.
    """
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    with contextlib.suppress(Exception):
        pa.default_memory_pool().release_unused()
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
