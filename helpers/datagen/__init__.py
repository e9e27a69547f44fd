"""Synthetic datasets for the lab: ``airline`` (seed 000's multi-domain scenario) and ``retail``
(seed 003's store data), deterministic, coherent and written as Delta tables.

From Python (notebooks)::

    from helpers.datagen import generate
    summary = generate("airline", scale="small", seed=42)   # Delta tables + catalog registration
    print(summary)                                          # row counts per table

From the shell: ``sharelab generate airline --scale small`` (see :mod:`helpers.datagen.cli`).

Tables land in ``<lab home>/data/<dataset>/<schema>/<table>`` and are registered in the provider
catalog as ``<dataset>.<schema>.<table>``. A generation is all or nothing: everything is written into
a staging directory next to the dataset, which then replaces the previous dataset in two renames; a
failed or interrupted run leaves the previous dataset exactly as it was.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from helpers.datagen import common as _common
from helpers.datagen.common import (
    DatasetSummary,
    Params,
    ProgressFactory,
    TableCount,
    TableSpec,
    dataset_lock,
    make_progress,
    recover,
    staged,
    wrap_failure,
)
from helpers.exceptions import DatasetError, InvalidArgumentError, NotFoundError, SharelabError

if TYPE_CHECKING:
    from helpers.home import LabHome

__all__ = [
    "DATASETS",
    "DatasetSummary",
    "TableCount",
    "TableSpec",
    "dataset_tables",
    "export",
    "generate",
    "resolve_params",
]

#: Dataset name -> module path of its generator.
DATASETS: dict[str, str] = {
    "airline": "helpers.datagen.airline",
    "retail": "helpers.datagen.retail",
}
#: Upper bound on ``days`` (keeps a typo from generating decades of data).
MAX_DAYS = 3_660
EXPORT_FORMATS = ("parquet", "csv")


def _module(dataset: str) -> ModuleType:
    import importlib

    if not isinstance(dataset, str) or dataset.lower() not in DATASETS:
        raise NotFoundError(
            f"unknown dataset {dataset!r}; choose one of: {', '.join(sorted(DATASETS))}"
        )
    return importlib.import_module(DATASETS[dataset.lower()])


def dataset_tables(dataset: str) -> tuple[TableSpec, ...]:
    """The tables a dataset writes (schema, name, partitioning, CDF), in write order."""
    return tuple(_module(dataset).TABLES)


def resolve_params(
    dataset: str,
    *,
    scale: str = "small",
    seed: int = 42,
    days: int | None = None,
    start_date: date | str | None = None,
) -> Params:
    """Validate the generation parameters and fill in the dataset's defaults.

    :raises NotFoundError: unknown dataset.
    :raises InvalidArgumentError: unknown scale, ``days`` < 1 (or absurdly large), malformed start date,
        negative seed.
    """
    mod = _module(dataset)
    if not isinstance(scale, str) or scale.lower() not in mod.SCALES:
        raise InvalidArgumentError(
            f"unknown scale {scale!r} for dataset {mod.NAME!r}; choose one of: "
            f"{', '.join(mod.SCALES)}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidArgumentError(f"seed must be a non-negative integer, got {seed!r}")
    if days is None:
        days = mod.DEFAULT_DAYS
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise InvalidArgumentError(
            f"days must be an integer between 1 and {MAX_DAYS}, got {days!r}"
        )
    if start_date is None:
        start = mod.DEFAULT_START
    elif isinstance(start_date, date):
        start = start_date if type(start_date) is date else start_date.date()  # type: ignore[attr-defined]
    elif isinstance(start_date, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", start_date.strip()):
        try:
            start = date.fromisoformat(start_date.strip())
        except ValueError as exc:
            raise InvalidArgumentError(
                f"start date {start_date!r} is not a valid calendar date ({exc}); use YYYY-MM-DD"
            ) from None
    else:
        raise InvalidArgumentError(
            f"malformed start date {start_date!r}; use YYYY-MM-DD, e.g. 2025-01-01"
        )
    if not 1971 <= start.year <= 2200:
        raise InvalidArgumentError(
            f"start date {start} is out of range; use a year between 1971 and 2200"
        )
    return Params(scale=scale.lower(), seed=seed, days=days, start_date=start)


def _register(home: LabHome, dataset: str, counts: list[TableCount]) -> tuple[str, ...]:
    """Register every table in the provider catalog as ``<dataset>.<schema>.<table>``."""
    # the one call from the datasets into the catalog: imported here, at run time, so that importing
    # helpers.datagen never loads the catalog (the generators themselves know nothing of it)
    from helpers.catalog import open_catalog

    catalog = open_catalog(home)
    names = []
    for t in counts:
        name = f"{dataset}.{t.schema}.{t.table}"
        assert t.location is not None  # generate() sets it for every table it writes
        catalog.register_table(name, t.location, replace=True)
        names.append(name)
    # lineage of the derived tables (generators that declare DERIVATIONS): sources and SQL
    registered = {n.lower() for n in names}
    for target, (sources, sql) in getattr(_module(dataset), "DERIVATIONS", {}).items():
        full = f"{dataset}.{target}"
        if full.lower() in registered:
            catalog.record_derivation(
                full,
                [f"{dataset}.{s}" for s in sources],
                sql=sql.replace("{catalog}", dataset),
                kind="generator",
            )
    return tuple(names)


def generate(
    dataset: str,
    home: str | os.PathLike[str] | None = None,
    *,
    scale: str = "small",
    seed: int = 42,
    days: int | None = None,
    start_date: date | str | None = None,
    overwrite: bool = True,
    progress: bool = True,
    register: bool = True,
) -> DatasetSummary:
    """Generate ``dataset`` as Delta tables in the lab home and register them in the catalog.

    :param dataset: ``"airline"`` or ``"retail"``.
    :param home: lab home (default: ``$SHARELAB_HOME``, else ``~/.sharelab``).
    :param scale: ``small`` / ``medium`` / ``large`` (airline also ``xlarge``).
    :param seed: seed of every random stream; same parameters give identical table contents.
    :param days: length of the time window (default: airline 90, retail 14).
    :param start_date: first day of the window, ``date`` or ``"YYYY-MM-DD"`` (fixed default per dataset).
    :param overwrite: replace an existing dataset (False: refuse with :class:`DatasetError`).
    :param progress: show one tqdm bar per table on stderr.
    :param register: register the tables in the provider catalog.
    :returns: the row counts per table.
    :raises NotFoundError, InvalidArgumentError: bad parameters (nothing is touched).
    :raises DatasetError: ``overwrite=False`` on an existing dataset, or a failure while generating
        (the previous dataset is left exactly as it was).
    """
    from helpers.home import LabHome

    params = resolve_params(dataset, scale=scale, seed=seed, days=days, start_date=start_date)
    mod = _module(dataset)
    lab = LabHome.resolve(home)
    parent = lab.data_dir
    started = time.perf_counter()
    bars = make_progress(progress, mod.NAME)
    counts: list[TableCount] = []
    with dataset_lock(parent, mod.NAME):
        recover(parent, mod.NAME)
        target = parent / mod.NAME
        if target.exists() and not overwrite:
            raise DatasetError(
                f"dataset {mod.NAME!r} already exists at {target}; drop --no-overwrite "
                "(overwrite=False) to replace it"
            )
        try:
            with staged(parent, mod.NAME) as stage:
                counts = _write_tables(mod, params, stage, target, bars)
        except SharelabError:
            raise
        except Exception as exc:
            raise wrap_failure(mod.NAME, exc) from exc
    registered: tuple[str, ...] = ()
    if register:
        registered = _register(lab, mod.NAME, counts)
    return DatasetSummary(
        dataset=mod.NAME,
        scale=params.scale,
        seed=params.seed,
        days=params.days,
        start_date=params.start_date,
        location=target,
        tables=tuple(counts),
        seconds=time.perf_counter() - started,
        registered=registered,
    )


def _write_tables(
    mod: ModuleType, params: Params, stage: Path, target: Path, bars: ProgressFactory
) -> list[TableCount]:
    """Build and write every table of ``mod`` into ``stage``; their counts name ``target`` paths."""
    counts: list[TableCount] = []
    mark = time.perf_counter()
    for gen in mod.build(params):
        rel = Path(gen.spec.schema) / gen.spec.name
        (stage / gen.spec.schema).mkdir(exist_ok=True)
        bar = bars(gen.spec, gen.expected_rows())
        try:
            rows = _common.write_delta_table(stage / rel, gen, bar)
        finally:
            bar.close()
        now = time.perf_counter()
        counts.append(
            TableCount(gen.spec.schema, gen.spec.name, rows, str(target / rel), now - mark)
        )
        del gen  # release the table before building the next one
        _common.release_memory()
        mark = time.perf_counter()
    return counts


def export(
    dataset: str,
    out: str | os.PathLike[str],
    fmt: str = "parquet",
    *,
    scale: str = "small",
    seed: int = 42,
    days: int | None = None,
    start_date: date | str | None = None,
    overwrite: bool = True,
    progress: bool = True,
) -> DatasetSummary:
    """Write ``dataset`` as plain files instead of Delta tables: ``<out>/<schema>/<table>.<fmt>``.

    Same data as :func:`generate` for the same parameters. The files are written into a staging
    directory inside ``out`` and moved into place at the end, so a failure leaves ``out`` unchanged.

    :param fmt: ``"parquet"`` or ``"csv"``.
    :raises InvalidArgumentError: unknown format or bad parameters.
    :raises DatasetError: ``overwrite=False`` and a file exists, or a failure while generating.
    """
    if not isinstance(fmt, str) or fmt.lower() not in EXPORT_FORMATS:
        raise InvalidArgumentError(f"unknown export format {fmt!r}; choose parquet or csv")
    fmt = fmt.lower()
    params = resolve_params(dataset, scale=scale, seed=seed, days=days, start_date=start_date)
    mod = _module(dataset)
    root = Path(out).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise InvalidArgumentError(f"export target {root} is not a directory; pass --out DIR")
    root.mkdir(parents=True, exist_ok=True)
    targets = [root / t.schema / f"{t.name}.{fmt}" for t in mod.TABLES]
    existing = [p for p in targets if p.exists()]
    if existing and not overwrite:
        raise DatasetError(
            f"{existing[0]} already exists; drop --no-overwrite (overwrite=False) to replace the files"
        )
    started = time.perf_counter()
    bars = make_progress(progress, mod.NAME)
    counts: list[TableCount] = []
    stage = Path(tempfile.mkdtemp(prefix=f".{mod.NAME}.export-", dir=root))
    try:
        mark = time.perf_counter()
        for gen in mod.build(params):
            rel = Path(gen.spec.schema) / f"{gen.spec.name}.{fmt}"
            (stage / gen.spec.schema).mkdir(exist_ok=True)
            bar = bars(gen.spec, gen.expected_rows())
            try:
                rows = _common.write_file_table(stage / rel, gen, fmt, bar)
            finally:
                bar.close()
            now = time.perf_counter()
            counts.append(
                TableCount(gen.spec.schema, gen.spec.name, rows, str(root / rel), now - mark)
            )
            mark = now
            del gen
        for t in counts:  # all files exist now: move them into place
            dest = Path(t.location or "")
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(stage / t.schema / dest.name, dest)
    except SharelabError:
        raise
    except Exception as exc:
        raise DatasetError(
            f"exporting dataset {mod.NAME!r} failed ({type(exc).__name__}: {exc}); fix the cause and retry"
        ) from exc
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return DatasetSummary(
        dataset=mod.NAME,
        scale=params.scale,
        seed=params.seed,
        days=params.days,
        start_date=params.start_date,
        location=root,
        tables=tuple(counts),
        seconds=time.perf_counter() - started,
    )
