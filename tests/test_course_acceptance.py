"""The Databricks course, end to end: its provider lessons through ``sharelab sql``, its open recipient's notebook.

The provider SQL of the course (setup, 2.1 D2D, 2.3 D2O, 2.4 change data feed, the 2.2 lab setup and solution)
is in ``tests/fixtures/databricks_course/provider_lessons.sql``, pasted as written apart from workspace-only
parts (each marked there). The open recipient's notebook (``d2o_example.py``, its code cells as written) then
reads the shares through the lab's sharing server with the partner's profile, as the course's Docker demo does.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import delta_sharing
import requests

from helpers.provider import Provider
from tests.support import REPO, sharelab

FIXTURES = REPO / "tests" / "fixtures" / "databricks_course"


def _lessons() -> dict[str, str]:
    """The fixture's lessons by title (the text after ``-- @lesson``)."""
    text = (FIXTURES / "provider_lessons.sql").read_text()
    lessons = {}
    for chunk in text.split("\n-- @lesson ")[1:]:
        title = chunk.splitlines()[0]
        key = title.split(":")[0].split(" DEMO")[0].split(" LAB")[0].strip()
        lessons[key] = "-- @lesson " + chunk + "\n"
    return lessons


def _run_sql(home: Path, script: str) -> str:
    done = sharelab(home, "sql", "-", stdin=script, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _wait_for_audit(provider: Provider, query: str, want: int) -> list[tuple[object, ...]]:
    deadline = time.monotonic() + 15
    while True:  # the server writes audit rows in small batches
        rows = [tuple(r) for r in provider.sql(query).itertuples(index=False)]
        if len(rows) >= want or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def test_course_provider_lessons_then_open_recipient(
    lab_home: Path, server_factory, tmp_path: Path
) -> None:
    lessons = _lessons()
    assert list(lessons) == ["setup", "2.1", "2.3", "2.4", "lab setup", "2.2"]
    server = server_factory(lab_home)

    # setup + 2.1 + 2.3, as a learner pastes them into `sharelab sql`
    out = _run_sql(lab_home, lessons["setup"] + lessons["2.1"] + lessons["2.3"])
    links = re.findall(r"(http://\S+/delta-sharing/activation/[A-Za-z0-9_\-]+)", out)
    assert links and links[-1].startswith(server.url)  # DESCRIBE RECIPIENT partner_co, last in 2.3
    profile = requests.get(links[-1], timeout=10)
    assert profile.status_code == 200, profile.text
    config = tmp_path / "config.share"
    config.write_text(json.dumps(profile.json()))

    # the course's open-recipient notebook, its code as written, against the lab's server
    code = (FIXTURES / "d2o_example.py").read_text()
    assert code.count("'/tmp/config.share'") == 1
    script = tmp_path / "d2o_example.py"
    script.write_text(code.replace("'/tmp/config.share'", repr(str(config))))
    env = {**os.environ, "MPLBACKEND": "Agg", "MPLCONFIGDIR": str(tmp_path / "mpl")}
    run = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Found 1 share(s)" in run.stdout and "Share: external_retail" in run.stdout
    assert "Loaded 40 customer records" in run.stdout
    assert "Loaded 111 transaction records" in run.stdout
    assert "Total Revenue: $583,600.00" in run.stdout

    # the provider sees the reads in Databricks' audit shape
    provider = Provider(lab_home)
    rows = _wait_for_audit(
        provider,
        """SELECT request_params.table_full_name, request_params.recipient_name,
                  request_params.share_name, response.status_code
           FROM system.access.audit
           WHERE action_name = 'deltaSharingQueryTable' AND request_params.recipient_name = 'partner_co'
           ORDER BY 1""",
        2,
    )
    assert sorted(set(rows)) == [
        ("acme_corp.retail.customers", "partner_co", "external_retail", 200),
        ("acme_corp.retail.sales_transactions", "partner_co", "external_retail", 200),
    ]

    # 2.4 (change data feed) and the 2.2 lab, in a second `sharelab sql` run
    _run_sql(lab_home, lessons["2.4"] + lessons["lab setup"] + lessons["2.2"])
    summary = provider.sql(
        """SELECT CASE WHEN _change_type LIKE 'update%' THEN 'update' ELSE _change_type END as change_type,
                  COUNT(*) as change_count
           FROM table_changes('acme_corp.retail.customers', 3) GROUP BY change_type ORDER BY change_type"""
    )
    assert summary.values.tolist() == [["delete", 1], ["insert", 3], ["update", 2]]
    history = provider.sql("DESCRIBE HISTORY acme_corp.retail.customers")
    assert history["version"].tolist() == [5, 4, 3, 2, 1, 0]
    assert history["operation"].iloc[-1] == "CREATE TABLE"
    # the lab's answers (seed-systems.md 1.4): 10 products in 5 categories, 15 stock rows, 1 share of 2 tables
    assert (
        provider.sql("SELECT count(DISTINCT category) FROM techware_labs.inventory.products").iloc[
            0, 0
        ]
        == 5
    )
    assert len(provider.sql("SHOW ALL IN SHARE warehouse_inventory")) == 2
    joined = provider.sql(
        "SELECT count(*) FROM techware_labs.inventory.products p "
        "JOIN techware_labs.inventory.warehouse_stock w ON p.product_id = w.product_id"
    )
    assert joined.iloc[0, 0] == 15
    # the recipient now reads the changed customers (+3 -1)
    customers = delta_sharing.load_as_pandas(f"{config}#external_retail.retail.customers")
    assert len(customers) == 42 and 11 not in set(customers["customer_id"])
