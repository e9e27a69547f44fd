"""The access generation (helpers.catalog.generation) and what is remembered under it, on both backends.

The server remembers a signed URL's grant and a token's owner while the catalog's access generation holds
(helpers.server.grantcache, Catalog.token_status / access_facts). Each kind of access change made by
*another* process (here: the test process, the server being a subprocess) must refuse a URL the server
has already answered, at the very next request; and the catalog-level caches must be used (a repeated
check reads no facts) and dropped by a change made through another Catalog object.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import requests
from deltalake import write_deltalake

from helpers.catalog import Catalog, PartitionClause, clock, open_catalog
from helpers.catalog.generation import WATCHED_TABLES
from helpers.catalog.views import view_store
from tests.support import RunningServer, count_generation_reads, start_server, stop_server

BACKENDS = pytest.mark.parametrize(
    "catalog_backend", ["sqlite", "postgresql"], indirect=True, scope="module"
)
pytestmark = BACKENDS


def _table(path: Path) -> None:
    data = pa.table({"id": list(range(40)), "region": ["emea", "amer"] * 20})
    write_deltalake(str(path), data, partition_by=["region"])
    write_deltalake(str(path), data, partition_by=["region"], mode="append")


@pytest.fixture(scope="module")
def served(
    catalog_backend: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, RunningServer]]:
    root = tmp_path_factory.mktemp(f"gen-{catalog_backend}")
    home = root / "home"
    _table(root / "sales")
    cat = open_catalog(home)
    cat.register_table("lab.sch.sales", str(root / "sales"))
    cat.close()
    server = start_server(home, env={"SHARELAB_WORKERS": "1"})
    try:
        yield home, server
    finally:
        stop_server(server)


def _setup(home: Path) -> tuple[str, str, str]:
    """A new share of the sales table filtered by the recipient's region, its recipient and token."""
    name = "g" + uuid.uuid4().hex[:8]
    cat = open_catalog(home)
    cat.create_share(name)
    clause = PartitionClause("region", "region", True)
    cat.add_table_to_share(name, "lab.sch.sales", alias="sch.sales", partition=(clause,))
    cat.create_recipient(name, properties={"region": "emea"})
    cat.grant(name, name)
    token = cat.issue_token(name).token
    cat.close()
    return name, name, token


def _urls(server: RunningServer, share: str, token: str) -> list[str]:
    resp = requests.post(
        f"{server.endpoint}shares/{share}/schemas/sch/tables/sales/query",
        json={},
        headers={"Authorization": f"Bearer {token}"},
        timeout=20,
    )
    resp.raise_for_status()
    lines = [json.loads(line) for line in resp.text.splitlines()]
    return [line["file"]["url"] for line in lines if "file" in line]


def _refilter(cat: Catalog, share: str, who: str) -> None:
    cat.remove_table_from_share(share, "sch.sales")
    cat.add_table_to_share(
        share, "lab.sch.sales", alias="sch.sales", partition=(("region", "emea", False),)
    )


CHANGES: dict[str, Callable[[Catalog, str, str], Any]] = {
    "tokens revoked": lambda cat, share, who: cat.revoke_tokens(who),
    "token rotated (old one expired)": lambda cat, share, who: cat.rotate_token(who, 0),
    "grant revoked": lambda cat, share, who: cat.revoke(share, who),
    "table removed": lambda cat, share, who: cat.remove_table_from_share(share, "sch.sales"),
    "partition filter changed": _refilter,
    "filter property changed": lambda cat, share, who: cat.set_recipient_properties(
        who, {"region": "amer"}
    ),
    "IP access list set": lambda cat, share, who: view_store(cat).set_ip_access_list(
        who, ["10.1.2.0/24"]
    ),
    "version pinned": lambda cat, share, who: cat.pin_table_version(
        share, "sch.sales", 0, set_by="test"
    ),
    "recipient dropped": lambda cat, share, who: cat.drop_recipient(who),
    "share dropped": lambda cat, share, who: cat.drop_share(share),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_remembered_grant_is_refused_right_after_the_change(
    served: tuple[Path, RunningServer], change: str
) -> None:
    home, server = served
    share, who, token = _setup(home)
    urls = _urls(server, share, token)
    assert urls
    for url in urls:  # answered twice: the second from the remembered grant
        assert requests.head(url, timeout=10).status_code == 200
        assert requests.get(url, headers={"Range": "bytes=0-3"}, timeout=10).status_code == 206
    other = open_catalog(
        home
    )  # another process's catalog: the server learns it from the catalog only
    try:
        CHANGES[change](other, share, who)
    finally:
        other.close()
    for url in urls:
        assert requests.head(url, timeout=10).status_code == 403, change
        assert requests.get(url, headers={"Range": "bytes=0-3"}, timeout=10).status_code == 403
    headers = {"Authorization": f"Bearer {token}"}
    listed = requests.get(f"{server.endpoint}shares", headers=headers, timeout=10)
    if change in ("tokens revoked", "token rotated (old one expired)", "recipient dropped"):
        assert listed.status_code == 401, change


def test_the_catalog_remembers_access_until_another_catalog_changes_it(
    served: tuple[Path, RunningServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    home, _server = served
    share, who, token = _setup(home)
    cat, other = open_catalog(home), open_catalog(home)
    try:
        status = cat.token_status(token)
        assert status is not None and status.state == "live"
        facts = cat.access_facts(status.token_id, share, "sch", "sales")
        assert facts is not None
        reads: list[str] = []
        original = Catalog._read_facts

        def counted(self: Catalog, *args: Any) -> Any:
            reads.append("facts")
            return original(self, *args)

        monkeypatch.setattr(Catalog, "_read_facts", counted)
        assert cat.access_facts(status.token_id, share, "sch", "sales") == facts
        assert reads == []  # remembered: no facts read
        generation = cat.access_generation()
        other.set_recipient_properties(who, {"region": "amer"})
        assert cat.access_generation() != generation
        changed = cat.access_facts(status.token_id, share, "sch", "sales")
        assert reads == ["facts"] and changed is not None and changed.stamp != facts.stamp
        other.revoke_tokens(who)
        revoked = cat.token_status(token)
        assert revoked is not None and revoked.state == "revoked"
        assert cat.authenticate(token) is None
        assert cat.access_facts(status.token_id, share, "sch", "sales") is None
    finally:
        cat.close()
        other.close()


def test_token_expiry_is_checked_on_the_remembered_facts(
    served: tuple[Path, RunningServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    home, _server = served
    share, who, _token = _setup(home)
    cat = open_catalog(home)
    try:
        token = cat.issue_token(who, lifetime_seconds=60).token
        status = cat.token_status(token)
        assert status is not None and status.state == "live"
        assert cat.authenticate(token) is not None
        assert cat.access_facts(status.token_id, share, "sch", "sales") is not None
        later = clock.now() + 120
        monkeypatch.setattr(clock, "now", lambda: later)  # no write: only time passed
        expired = cat.token_status(token)
        assert expired is not None and expired.state == "expired"
        assert cat.authenticate(token) is None
        assert cat.access_facts(status.token_id, share, "sch", "sales") is None
    finally:
        cat.close()


def _drop_tokens_triggers(cat: Catalog) -> None:
    def body(conn: Any) -> None:
        if cat.db.backend == "sqlite":
            for op in ("insert", "update", "delete"):
                conn.execute(f"DROP TRIGGER access_generation_bump_tokens_{op}")
        else:
            conn.execute("SELECT 1")
            conn.raw.execute("DROP TRIGGER access_generation_bump_tokens ON tokens")

    cat.db.write(body)


def test_missing_triggers_are_put_back_and_every_watched_table_bumps(
    served: tuple[Path, RunningServer],
) -> None:
    home, _server = served
    share, who, _token = _setup(home)
    cat = open_catalog(home)
    try:
        cat.access_generation()
        _drop_tokens_triggers(cat)
        before = cat.access_generation()
        cat.revoke_tokens(who)
        assert cat.access_generation() == before  # the trigger is gone: nothing bumps
    finally:
        cat.close()
    fresh = open_catalog(home)  # a new process's catalog checks the triggers and puts them back
    try:
        before = fresh.access_generation()
        assert before is not None
        fresh.issue_token(who)
        assert fresh.access_generation() != before
        present = fresh.db.read(
            lambda conn: {
                r[0]
                for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                    if fresh.db.backend == "sqlite"
                    else "SELECT tablename FROM pg_catalog.pg_tables "
                    "WHERE schemaname = current_schema()"
                )
            }
        )
        assert set(WATCHED_TABLES) <= {str(name).lower() for name in present}
    finally:
        fresh.close()


def test_server_reads_are_remembered_and_follow_another_catalog(
    served: tuple[Path, RunningServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A recipient's shares, a share's tables and an IP list: read once, then remembered until a change
    through another Catalog object (another process or replica) bumps the generation."""
    home, _server = served
    share, who, _token = _setup(home)
    rid = open_catalog(home).get_recipient(who).id
    cat, other = open_catalog(home), open_catalog(home)
    store = view_store(cat)
    try:
        assert [s.name for s in cat.recipient_shares(who)] == [share]
        assert [t.name for t in cat.shared_tables(share)] == ["sales"]
        assert store.ip_access_list(rid) is None
        reads: list[str] = []
        original = Catalog._shared_tables

        def counted(self: Catalog, *args: Any) -> Any:
            reads.append("tables")
            return original(self, *args)

        monkeypatch.setattr(Catalog, "_shared_tables", counted)
        for _ in range(3):
            assert [t.name for t in cat.shared_tables(share)] == ["sales"]
        assert reads == []  # remembered
        other.add_table_to_share(share, "lab.sch.sales", alias="sch.again")
        assert [t.name for t in cat.shared_tables(share)] == ["again", "sales"]
        assert reads == ["tables"]
        second = "h" + uuid.uuid4().hex[:8]
        other.create_share(second)
        other.grant(second, who)
        assert sorted(s.name for s in cat.recipient_shares(who)) == sorted([share, second])
        view_store(other).set_ip_access_list(who, ["10.1.2.0/24"])
        assert store.ip_access_list(rid) == ("10.1.2.0/24",)
    finally:
        cat.close()
        other.close()


def test_nothing_is_remembered_from_a_write_transaction_that_rolls_back(
    served: tuple[Path, RunningServer],
) -> None:
    """Inside a write transaction a read sees its own changes but is not remembered: after a rollback,
    a later change that brings the generation to the same number must not bring the undone state back."""
    home, _server = served
    share, who, token = _setup(home)
    cat, other = open_catalog(home), open_catalog(home)
    try:
        assert [s.name for s in cat.recipient_shares(who)] == [share]
        inside: list[int | None] = []
        with pytest.raises(RuntimeError, match="undone"):
            with cat.db.transaction():
                cat.revoke(share, who)
                cat.revoke_tokens(who)
                assert cat.recipient_shares(who) == []  # its own change, seen inside
                status = cat.token_status(token)
                assert status is not None and status.state == "revoked"
                inside.append(cat.access_generation())
                raise RuntimeError("undone")
        for _ in range(100):  # harmless committed writes up to the number the undone ones reached
            generation = cat.access_generation()
            assert generation is not None and inside[0] is not None
            if generation >= inside[0]:
                break
            other.set_recipient_properties(who, {"region": "emea"})
        assert cat.access_generation() == inside[0]
        assert [s.name for s in cat.recipient_shares(who)] == [share]
        status = cat.token_status(token)
        assert status is not None and status.state == "live"
    finally:
        cat.close()
        other.close()


def test_a_read_transaction_reads_the_generation_once(
    served: tuple[Path, RunningServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    home, _server = served
    share, who, token = _setup(home)
    cat = open_catalog(home)
    try:
        cat.authenticate(token)
        cat.recipient_shares(who)
        cat.shared_tables(share)
        reads = count_generation_reads(monkeypatch)

        def body(_conn: object) -> None:
            assert cat.authenticate(token) is not None
            assert [s.name for s in cat.recipient_shares(who)] == [share]
            assert [t.name for t in cat.shared_tables(share)] == ["sales"]

        cat.db.read(body)
        assert reads == [1]  # one snapshot, one generation: every remembered read answered by it
        cat.recipient_shares(who)
        if (
            cat.db.backend == "sqlite"
        ):  # the WAL-index header first: a statement only after a commit
            assert reads in ([1], [1, 1])  # (tests/test_walindex.py)
        else:
            assert reads == [1, 1]  # outside a transaction: read each time
    finally:
        cat.close()
