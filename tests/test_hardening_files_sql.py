"""catalog.db and its -wal/-shm are 0600 (new and older files); the SQL front end answers malformed
statements (NUL byte, a LOCATION path component over 255 bytes, deep nesting) with one line."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from helpers.catalog import Catalog
from tests.support import sharelab


def _modes(home: Path) -> dict[str, int]:
    return {
        p.name: stat.S_IMODE(p.stat().st_mode)
        for p in home.iterdir()
        if p.name.startswith("catalog.db")
    }


def test_catalog_files_are_private(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "catalog.db")
    cat.create_share("s")
    modes = _modes(tmp_path)
    assert {"catalog.db", "catalog.db-wal", "catalog.db-shm"} <= set(modes)
    assert set(modes.values()) == {0o600}, modes
    for name in modes:  # an older sharelab left them readable by everyone (cat keeps -wal/-shm)
        os.chmod(tmp_path / name, 0o644)
    other = Catalog(tmp_path / "catalog.db")
    other.list_shares()
    assert set(_modes(tmp_path).values()) == {0o600}
    other.close()
    cat.close()


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TABLE lab.s.t LOCATION '/tmp/x\x00y'",
        "CREATE TABLE lab.s.t LOCATION '/tmp/" + "a" * 300 + "/x'",
        "CREATE TABLE lab.s.t LOCATION '/tmp/" + "/".join(["b" * 200] * 30) + "'",
        "SELECT " + "(" * 3000 + "1" + ")" * 3000,
        "SELECT 1 WHERE " + "NOT " * 5000 + "1 = 1",
        "CREATE SHARE s; ALTER SHARE s ADD TABLE delta.`/tmp/" + "c" * 300 + "` AS a.b",
    ],
    ids=["nul", "long-component", "long-path", "nested-parens", "nested-not", "long-delta-path"],
)
def test_sql_errors_are_one_line(tmp_path: Path, statement: str) -> None:
    from helpers.exceptions import SharelabError
    from helpers.provider import Provider

    home = tmp_path / "home"
    home.mkdir()
    provider = Provider(home)
    with pytest.raises(SharelabError) as info:
        provider.sql(statement)
    assert "\n" not in str(info.value) and len(str(info.value)) < 600
    assert [s.name for s in Catalog(home / "catalog.db").list_shares()] in ([], ["s"])
    if "\x00" not in statement:  # argv cannot carry a NUL; the rest also through the CLI
        done = sharelab(home, "sql", statement)
        assert done.returncode != 0
        assert "Traceback" not in done.stderr and done.stderr.strip().count("\n") == 0, done.stderr
