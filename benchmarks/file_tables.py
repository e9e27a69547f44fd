"""Tables of 1, 8 and 64 files with the same rows, for the loader benchmarks (bench_loader, bench_scale)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd
from deltalake import write_deltalake

__all__ = ["write_file_tables"]


def write_file_tables(
    root: Path, rows: int, files: Iterable[int] = (1, 8, 64)
) -> tuple[dict[int, Path], list[str]]:
    """A Delta table of ``rows`` rows in ``n`` files under ``root/t<n>`` for each ``n``; their paths and
    the provider SQL that registers them as ``b.sch.t<n>`` and adds them to share ``s`` (made by the
    caller)."""
    tables: dict[int, Path] = {}
    sql: list[str] = []
    for n in files:
        path = root / f"t{n}"
        per = rows // n
        for i in range(n):
            frame = pd.DataFrame(
                {
                    "id": range(i * per, (i + 1) * per),
                    "amount": [float(x % 997) for x in range(per)],
                    "city": [f"city_{x % 50}" for x in range(per)],
                }
            )
            write_deltalake(str(path), frame, mode="append")
        tables[n] = path
        sql += [f"CREATE TABLE b.sch.t{n} LOCATION '{path}'", f"ALTER SHARE s ADD TABLE b.sch.t{n}"]
    return tables, sql
