"""``sharelab sql``: run as a user would, in a subprocess, against a temporary lab home."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from helpers.cli import main as cli_main
from tests.support import REPO, SEED_000_SQL, sharelab

SEED_000 = SEED_000_SQL


def table_lines(output: str) -> list[list[str]]:
    """The data rows of a printed result (header and the '(n rows)' footer dropped)."""
    lines = [line.split() for line in output.strip().splitlines()]
    return lines[1:-1]


def test_seed_000_topology(lab_home: Path) -> None:
    tables = []
    for schema, table in [
        ("shared_airline", "airports"),
        ("sales_domain", "bookings"),
        ("operations_domain", "maintenance_events"),
    ]:
        location = lab_home / "data" / "airline" / schema / table
        write_deltalake(str(location), pa.table({"id": pa.array([1, 2], pa.int32())}))
        tables.append(f"CREATE TABLE airline.{schema}.{table} LOCATION '{location}';")
    setup = sharelab(lab_home, "sql", "\n".join(tables) + SEED_000)
    assert setup.returncode == 0, setup.stderr
    assert setup.stdout.count("activation/") == 2  # each new recipient's one-time link

    # running the script again is harmless (IF NOT EXISTS, grants are idempotent)... except ADD SCHEMA
    again = sharelab(lab_home, "sql", SEED_000.split("ALTER SHARE")[0])
    assert again.returncode == 0, again.stderr

    out = sharelab(
        lab_home,
        "sql",
        "SHOW SHARES; SHOW GRANTS ON SHARE airline_core_share; SHOW GRANTS ON SHARE sales_data_share;"
        "SHOW GRANTS ON SHARE operations_data_share; SHOW GRANTS TO RECIPIENT sales_team;"
        "SHOW ALL IN SHARE sales_data_share",
    )
    assert out.returncode == 0, out.stderr
    sections = [s for s in out.stdout.split("-- ") if s.strip()]
    assert len(sections) == 6
    results = [table_lines(s.split("\n", 1)[1]) for s in sections]
    assert sorted(row[0] for row in results[0]) == [
        "airline_core_share",
        "operations_data_share",
        "sales_data_share",
    ]
    grants = {
        (share, row[0])
        for share, rows in zip(
            ("airline_core_share", "sales_data_share", "operations_data_share"),
            results[1:4],
            strict=True,
        )
        for row in rows
    }
    assert grants == {
        ("airline_core_share", "operations_team"),
        ("airline_core_share", "sales_team"),
        ("operations_data_share", "operations_team"),
        ("sales_data_share", "sales_team"),
    }
    assert [row[:2] for row in results[4]] == [
        ["airline_core_share", "SELECT"],
        ["sales_data_share", "SELECT"],
    ]
    assert "sales_domain.bookings" in sections[5]
    assert "maintenance_events" not in sections[5]


def test_several_results_are_printed_in_order(lab_home: Path) -> None:
    out = sharelab(
        lab_home, "sql", "CREATE SHARE a; CREATE SHARE b COMMENT 'semi;colon'; SHOW SHARES"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.index("share a created") < out.stdout.index("share b created")
    assert "semi;colon" in out.stdout
    assert "(2 rows)" in out.stdout


def test_stdin_and_file_input(lab_home: Path, tmp_path: Path) -> None:
    out = sharelab(lab_home, "sql", "-", stdin="CREATE SHARE from_stdin;")
    assert out.returncode == 0 and "from_stdin" in out.stdout
    script = tmp_path / "script.sql"
    script.write_text("CREATE SHARE from_file; -- done\n", encoding="utf-8")
    out = sharelab(lab_home, "sql", "--file", str(script))
    assert out.returncode == 0, out.stderr
    assert "from_file" in sharelab(lab_home, "sql", "SHOW SHARES").stdout


def test_errors_are_one_line_with_exit_code_1(lab_home: Path) -> None:
    out = sharelab(lab_home, "sql", "SHOW SHARES;\nCREATE SHAR x")
    assert out.returncode == 1
    assert out.stderr == (
        "error: Syntax error at line 2, column 8: expected SHARE, RECIPIENT or TABLE, found 'SHAR'\n"
    )
    assert out.stdout == ""  # nothing ran


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("DROP SHARE nope", "error: share 'nope' does not exist"),
        (
            "CREATE SHARE ok; GRANT SELECT ON SHARE missing TO RECIPIENT r",
            "error: statement 2 of 2 failed (statement 1 stayed applied): share 'missing'",
        ),
        ("SELECT * FROM x.y.z", "error: table 'x.y.z' is not registered"),
        ("CREATE SHARE `a b`", "error: share name 'a b' contains a space"),
        ("", "error: no SQL given"),
    ],
)
def test_error_messages(
    lab_home: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    # in-process (same code path as the console script, without a second interpreter start-up)
    assert cli_main(["--home", str(lab_home), "sql", text]) == 1
    err = capsys.readouterr().err
    assert err.startswith(expected), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_results_before_a_failure_are_printed(
    lab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        cli_main(["--home", str(lab_home), "sql", "CREATE SHARE a; DROP SHARE zz; CREATE SHARE c"])
        == 1
    )
    captured = capsys.readouterr()
    assert "share a created" in captured.out and "share c" not in captured.out
    assert captured.err.startswith("error: statement 2 of 3 failed (statement 1 stayed applied)")


def test_help(lab_home: Path) -> None:
    out = sharelab(lab_home, "sql", "--help")
    assert out.returncode == 0
    assert "usage: sharelab sql" in out.stdout and "docs/sql.md" in out.stdout
    assert "--file" in out.stdout


def test_two_processes_issue_statements_at_once(lab_home: Path) -> None:
    env = dict(os.environ, SHARELAB_HOME=str(lab_home))
    scripts = [
        ";".join(
            f"CREATE SHARE {who}_{i}; CREATE RECIPIENT {who}_r{i}; "
            f"GRANT SELECT ON SHARE {who}_{i} TO RECIPIENT {who}_r{i}"
            for i in range(10)
        )
        for who in ("left", "right")
    ]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "helpers", "--home", str(lab_home), "sql", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
        for script in scripts
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "locked" not in err
    out = sharelab(lab_home, "sql", "SHOW SHARES; SHOW RECIPIENTS")
    assert out.stdout.count("(20 rows)") == 2, out.stdout
    from helpers.catalog import Catalog

    catalog = Catalog(lab_home / "catalog.db")
    assert all(len(catalog.grants_on_share(s.name)) == 1 for s in catalog.list_shares())
