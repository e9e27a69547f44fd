"""``sharelab generate`` and the all-or-nothing behaviour of generation and export."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from helpers.catalog import open_catalog
from helpers.cli import main as cli_main
from helpers.datagen import common, dataset_tables, export, generate
from helpers.exceptions import DatasetError, InvalidArgumentError, NotFoundError

REPO = Path(__file__).resolve().parent.parent


def sharelab(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, SHARELAB_HOME=str(home))
    return subprocess.run(
        [sys.executable, "-m", "helpers", "--home", str(home), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` with the SHA-256 of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_cli_generates_registers_and_summarises(lab_home: Path) -> None:
    result = sharelab(lab_home, "generate", "airline", "--days", "7", "--seed", "3")
    assert result.returncode == 0, result.stderr
    assert "shared_airline.flights" in result.stdout and "1,000" in result.stdout
    assert "registered 15 tables" in result.stdout
    assert "airline.shared_airline.flights" in result.stderr  # one progress bar per table
    catalog = open_catalog(lab_home)
    info = catalog.get_table("airline.shared_airline.flights")
    assert DeltaTable(info.location).to_pyarrow_table().num_rows == 1_000
    flights = DeltaTable(str(lab_home / "data/airline/shared_airline/flights")).to_pyarrow_table()
    days = {d for d in flights.column("flight_date").to_pylist()}
    assert len(days) <= 7

    result = sharelab(
        lab_home, "generate", "retail", "--quiet", "--days", "2", "--start-date", "2024-12-30"
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "start_date=2024-12-30" in result.stdout
    assert len(catalog.list_tables(catalog="retail")) == 7


@pytest.mark.parametrize(
    "args,message",
    [
        (["boats"], "unknown dataset 'boats'"),
        (["retail", "--scale", "xlarge"], "unknown scale 'xlarge'"),
        (["airline", "--scale", "huge"], "unknown scale 'huge'"),
        (["retail", "--days", "0"], "days must be an integer between 1"),
        (["airline", "--days", "-3"], "days must be an integer between 1"),
        (["retail", "--start-date", "2025-13-01"], "not a valid calendar date"),
        (["retail", "--start-date", "01/02/2025"], "malformed start date"),
        (["retail", "--format", "xml", "--out", "x"], "unknown export format"),
        (["retail", "--format", "csv"], "--format needs --out"),
    ],
)
def test_cli_bad_parameters_give_one_line_and_exit_1(
    lab_home: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # in-process (the subprocess path is covered above): same parser, same error handling
    code = cli_main(["--home", str(lab_home), "generate", *args])
    assert code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert not (lab_home / "data" / "retail").exists()
    assert not (lab_home / "data" / "airline").exists()


def test_api_bad_parameters_raise_typed_errors(lab_home: Path) -> None:
    with pytest.raises(NotFoundError, match="choose one of: airline, retail"):
        generate("cars", lab_home, progress=False)
    with pytest.raises(InvalidArgumentError, match="small, medium, large"):
        generate("retail", lab_home, scale="xlarge", progress=False)
    with pytest.raises(InvalidArgumentError, match="days"):
        generate("airline", lab_home, days=0, progress=False)
    with pytest.raises(InvalidArgumentError, match="YYYY-MM-DD"):
        generate("airline", lab_home, start_date="yesterday", progress=False)
    with pytest.raises(InvalidArgumentError, match="seed"):
        generate("airline", lab_home, seed=-1, progress=False)
    assert not (lab_home / "data" / "airline").exists()


def test_no_overwrite_refuses_and_keeps_data(lab_home: Path) -> None:
    generate("retail", lab_home, days=2, progress=False)
    before = snapshot(lab_home / "data" / "retail")
    result = sharelab(lab_home, "generate", "retail", "--no-overwrite", "--seed", "9")
    assert result.returncode == 1
    assert "already exists" in result.stderr and "--no-overwrite" in result.stderr
    with pytest.raises(DatasetError, match="already exists"):
        generate("retail", lab_home, seed=9, overwrite=False, progress=False)
    assert snapshot(lab_home / "data" / "retail") == before


@pytest.mark.parametrize("exc", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_interrupted_generation_leaves_previous_dataset_intact(
    lab_home: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException
) -> None:
    generate("airline", lab_home, days=5, progress=False)
    data = lab_home / "data"
    before = snapshot(data / "airline")
    catalog = open_catalog(lab_home)
    registered_before = {t.name: (t.location, t.registered_at) for t in catalog.list_tables()}

    real = common.write_delta_table
    written: list[str] = []

    def failing(path: Path, gen: common.GeneratedTable, bar: object) -> int:
        if len(written) == 6:  # mid-generation: some tables of the new run are already written
            raise exc
        written.append(gen.spec.name)
        return real(path, gen, bar)

    monkeypatch.setattr(common, "write_delta_table", failing)
    expected = DatasetError if isinstance(exc, Exception) else KeyboardInterrupt
    with pytest.raises(expected) as info:
        generate("airline", lab_home, seed=99, days=9, progress=False)
    if expected is DatasetError:
        assert "disk on fire" in str(info.value) and "unchanged" in str(info.value)
    assert len(written) == 6
    assert snapshot(data / "airline") == before  # byte-identical
    assert sorted(p.name for p in data.iterdir()) == [".airline.lock", "airline"]  # no staging left
    after = {t.name: (t.location, t.registered_at) for t in catalog.list_tables()}
    assert after == registered_before

    monkeypatch.setattr(common, "write_delta_table", real)
    summary = generate("airline", lab_home, seed=99, days=9, progress=False)
    assert summary.rows()["operations_domain.daily_operations_metrics"] == 9
    assert snapshot(data / "airline") != before


def test_sigkilled_cli_run_leaves_previous_dataset_intact(lab_home: Path) -> None:
    """A generation killed with SIGKILL mid-way (no cleanup code runs) changes nothing visible."""
    generate("retail", lab_home, days=1, progress=False)
    data = lab_home / "data"
    before = snapshot(data / "retail")
    proc = subprocess.Popen(
        [sys.executable, "-m", "helpers", "--home", str(lab_home), "generate", "retail"]
        + ["--scale", "large", "--quiet", "--seed", "5"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            # kill as soon as the new run has written a table into its staging directory
            if any(data.glob(".retail.staging-*/sales/products/_delta_log")):
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the generation finished before it could be killed"
        proc.kill()
    finally:
        proc.wait(timeout=30)
    assert snapshot(data / "retail") == before
    assert any(data.glob(".retail.staging-*"))  # the killed run's leftovers...
    with pytest.raises(DatasetError, match="already exists"):
        generate("retail", lab_home, overwrite=False, progress=False)
    assert sorted(p.name for p in data.iterdir()) == [".retail.lock", "retail"]  # ...are cleaned
    assert snapshot(data / "retail") == before


def test_killed_run_is_recovered_on_next_generation(lab_home: Path) -> None:
    """A run killed between its two renames leaves only the backup: the next run restores it first."""
    generate("retail", lab_home, days=1, progress=False)
    data = lab_home / "data"
    before = snapshot(data / "retail")
    os.replace(data / "retail", data / ".retail.old-crash")
    (data / ".retail.staging-crash").mkdir()
    with pytest.raises(DatasetError, match="already exists"):
        generate("retail", lab_home, overwrite=False, progress=False)
    assert snapshot(data / "retail") == before
    assert sorted(p.name for p in data.iterdir()) == [".retail.lock", "retail"]


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_export_writes_the_same_data_as_files(lab_home: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "export"
    result = sharelab(
        lab_home, "generate", "retail", "--quiet", "--days", "3", "--format", fmt, "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert not (lab_home / "data" / "retail").exists()  # export only writes files
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == sorted(f"{s.schema}/{s.name}.{fmt}" for s in dataset_tables("retail"))
    summary = generate("retail", lab_home, days=3, progress=False, register=False)
    for spec in dataset_tables("retail"):
        delta = DeltaTable(str(summary.location / spec.schema / spec.name)).to_pyarrow_table()
        path = out / spec.schema / f"{spec.name}.{fmt}"
        if fmt == "parquet":
            table = pq.read_table(path)
            cols = sorted(delta.column_names)
            key = [(c, "ascending") for c in cols]
            assert table.select(cols).sort_by(key).equals(delta.select(cols).sort_by(key))
        else:
            table = pacsv.read_csv(path)
            assert table.num_rows == delta.num_rows and table.column_names == delta.column_names
    with pytest.raises(DatasetError, match="already exists"):
        export("retail", out, fmt, days=3, overwrite=False, progress=False)


def test_failed_export_leaves_the_output_directory_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    export("retail", out, "parquet", days=1, progress=False)
    before = snapshot(out)
    real = common.write_file_table
    calls: list[str] = []

    def failing(path: Path, gen: common.GeneratedTable, fmt: str, bar: object) -> int:
        if len(calls) == 3:
            raise OSError("no space left on device")
        calls.append(gen.spec.name)
        return real(path, gen, fmt, bar)

    monkeypatch.setattr(common, "write_file_table", failing)
    with pytest.raises(DatasetError, match="no space left"):
        export("retail", out, "parquet", seed=1, days=2, progress=False)
    assert snapshot(out) == before
    assert sorted(p.name for p in out.iterdir()) == ["sales"]
