"""What the loader benchmarks (bench_loader, bench_scale) share: tables of 1, 8 and 64 files with the same
rows, and a server's CPU seconds."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import psutil
from deltalake import write_deltalake

__all__ = ["server_cpu", "write_file_tables"]


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


def server_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its children (a server's workers)."""
    proc = psutil.Process(pid)
    total = sum(proc.cpu_times()[:2])
    for child in proc.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.Error:
            pass
    return total
