"""Each lab run three ways (solution, untouched exercise, planted wrong answers), plus build and grading."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from helpers.exceptions import InvalidArgumentError
from helpers.labs.build import build, strip_solutions
from helpers.labs.core import FAILED, LAB_FILES, NOT_ATTEMPTED, PASSED, results_from_notebook
from helpers.labs.grade import expected_tasks

REPO = Path(__file__).resolve().parents[2]
LABS = REPO / "labs"

pytestmark = pytest.mark.notebooks

#: lab -> {task: (source replacing the task's ____, text the failure message must contain)}
WRONG: dict[str, dict[str, tuple[str, str]]] = {
    "provider": {
        "p1": ("(1, 1)", "not the number of products"),
        "p2": ("'Atlantis'", "not the region with the most stores"),
        "p3": (  # the trap: a share without a comment; the solution cell after it must get out of it
            "CREATE SHARE store_inventory",
            "give it one with COMMENT ON SHARE store_inventory",
        ),
        "p4": (
            "ALTER SHARE store_inventory ADD TABLE retail.sales.products",
            "is not in the share yet",
        ),
        "p5": (
            "CREATE RECIPIENT IF NOT EXISTS regional_stores COMMENT 'typo in the name'",
            "no recipient named regional_store",
        ),
        "p6": ("SHOW GRANTS ON SHARE store_inventory", "has no grant on store_inventory"),
        "p7": (  # an unfiltered count: head_office read the share too
            "int(lab.provider.sql(\"SELECT count(*) FROM system.access.audit WHERE action = 'queryTable'\").iloc[0, 0])",
            "other recipients read the share too",
        ),
        "p8": (  # the table exists (with a comment) but holds no rows and is not shared
            "CREATE CATALOG IF NOT EXISTS store_ops; CREATE SCHEMA IF NOT EXISTS store_ops.planning; "
            "CREATE OR REPLACE TABLE store_ops.planning.restock_plan (store_id INT, product_id INT, "
            "quantity INT) COMMENT 'plan'",
            "needs at least 3 rows",
        ),
    },
    "recipient": {
        "r1": ("1", "is not the number of tables"),
        "r2": ("'not a connection'", "answer with the DuckDB connection"),
        "r3": ("0.5", "not the sum of total_price"),
        "r4": ("('XXX', 'YYY')", "is not the busiest route"),
        "r5": ("-3", "not the number of bookings on CANCELLED flights"),
        "r6": ("['sales_domain', 'operations_domain']", "look again at what your profile lists"),
    },
    "cdf": {
        "c1": ("-1", "not the table's current version"),
        "c2": ("copied = '/nonexistent/copy'", "is not a Delta table yet"),
        "c3": (
            "delta_sharing.load_table_changes_as_pandas(url, starting_version=0)",
            "which your copy holds already",
        ),
        "c4": ("synced = local_path", "your copy has no commit since task c2"),
        "c5": (
            "delta_sharing.load_as_pandas(url, version=start_version).assign("
            "valid_from=start_version, valid_to=None, is_current=True)",
            "spans differ from the feed's history",
        ),
    },
    "capstone": {
        "k1": (  # a lower-case region, and partner_east missing
            "CREATE RECIPIENT IF NOT EXISTS partner_west PROPERTIES ('region' = 'west', 'tier' = 'gold')",
            "differ from the task's",
        ),
        "k2": (  # the regions written into the view instead of current_recipient('region')
            "CREATE OR REPLACE VIEW retail.partners.partner_customers AS SELECT customer_id, segment, "
            "home_region, home_city, CASE WHEN current_recipient('tier') = 'gold' THEN email "
            "ELSE '***' END AS email FROM retail.partners.contacts WHERE home_region IN ('West', 'East')",
            "not by region names written in the view",
        ),
        "k3": (  # the entries are right, the grants are missing
            "CREATE SHARE IF NOT EXISTS partner_share COMMENT 'partners';\n"
            "ALTER SHARE partner_share ADD VIEW retail.partners.partner_customers AS crm.customers;\n"
            "ALTER SHARE partner_share ADD TABLE retail.partners.regional_prices PARTITION "
            "(region = CURRENT_RECIPIENT().region) AS pricing.prices WITH HISTORY",
            "both partners need SELECT",
        ),
        "k4": (  # every request of partner_east, the allowed ones included
            (
                "ALTER RECIPIENT partner_east SET IP ACCESS LIST ('192.0.2.0/24')",
                'int(lab.provider.sql("SELECT count(*) FROM system.access.audit '
                "WHERE recipient = 'partner_east'\").iloc[0, 0])",
            ),
            "filter on the recipient and on status_code = 403",
        ),
        "k5": (
            "scd2_path\nwrite_deltalake(scd2_path, delta_sharing.load_as_pandas(url), mode='overwrite')",
            "your history needs the columns",
        ),
        "k6": ("scd2_path", "your history has no commit since task k5"),
        "k7": ("('no such category', -1)", "is not the category with the highest average price"),
    },
    "mesh": {
        "m1": (
            'mesh.register_domain("sale", owner="sales-data-team", if_not_exists=True)',
            "no domain named sales",
        ),
        "m2": (
            'mesh.create_product(PRODUCT, domain="sales", share=SHARE, description="Customers", if_not_exists=True)',
            "is not the target the task asks for",
        ),
        "m3": ('"documented"', "is not a policy that blocks publishing"),
        "m4": (
            'None\nmesh.update_product(PRODUCT, optional_columns={"sales.bookings": ["cancellation_date"]})\n'
            "published = mesh.publish(PRODUCT)",
            "the task asks for the marketing domain only",
        ),
        "m5": (  # the policy that refuses for the domain, not for the pii column
            '"access-policy"\nmesh.tag_column(CUSTOMERS, "email", tag="pii")',
            "because of its consumer domain",
        ),
        "m6": (
            'mesh.subscribe(PRODUCT, "marketing_analytics", consumer_domain="marketing")',
            "no refused subscription of ops_analytics",
        ),
    },
}


#: right answers in another form or written another way, each checked after the solution cell: the
#: Databricks-shaped audit query for p7, the capstone's answer as a one-row DataFrame.
RIGHT_ALTERNATIVES: dict[str, dict[str, tuple[str, ...]]] = {
    "provider": {
        "p7": (
            'int(lab.provider.sql("SELECT count(*) FROM system.access.audit WHERE action_name = '
            "'deltaSharingQueryTable' AND request_params['recipient_name'] = 'regional_store'\")"
            ".iloc[0, 0])",
        ),
    },
    "capstone": {
        "k4": (
            "",
            'lab.provider.sql("SELECT count(*) AS n FROM system.access.audit WHERE '
            "request_params['recipient_name'] = 'partner_east' AND response.status_code = 403\")",
        ),
        "k7": ("pd.DataFrame({'category': [answer_k7[0]], 'reachable': [answer_k7[1]]})",),
    },
}


def _execute(
    path: Path, out: Path, home: Path, parameters: dict | None = None
) -> nbformat.NotebookNode:
    import papermill as pm

    pm.execute_notebook(
        str(path),
        str(out),
        parameters={"home": str(home), **(parameters or {})},
        progress_bar=False,
        cwd=str(LABS),
        kernel_name="python3",
    )
    return nbformat.read(out, as_version=4)


def _statuses(nb: nbformat.NotebookNode) -> dict[str, dict[str, str]]:
    return {r["task"]: r for r in results_from_notebook(nb)}


@pytest.fixture(autouse=True)
def _stop_servers(lab_home: Path):
    yield
    from helpers import server

    for home in lab_home.parent.glob("home-*"):
        server.stop(home)


def test_exercises_match_their_solutions() -> None:
    assert build(check=True) == [], "run 'sharelab labs build' and commit the exercises"


def test_strip_solutions_blanks_marked_regions() -> None:
    source = "x = (\n    # BEGIN SOLUTION\n    42\n    # END SOLUTION\n)\nsql = '''\n-- BEGIN SOLUTION\nSELECT 1\n-- END SOLUTION\n'''"
    assert strip_solutions(source) == "x = (\n    ____\n)\nsql = '''\n____\n'''"
    with pytest.raises(InvalidArgumentError, match="never closed"):
        strip_solutions("# BEGIN SOLUTION\n1")
    with pytest.raises(InvalidArgumentError, match="without"):
        strip_solutions("1\n# END SOLUTION")


@pytest.mark.parametrize("lab", list(LAB_FILES))
def test_solution_passes_every_check(lab: str, lab_home: Path, tmp_path: Path) -> None:
    stem = LAB_FILES[lab]
    nb = _execute(
        LABS / "solutions" / f"{stem}.ipynb", tmp_path / "out.ipynb", tmp_path / "home-solution"
    )
    statuses = _statuses(nb)
    tasks = expected_tasks(nb)
    assert tasks and set(statuses) == set(tasks)
    assert {t: r["status"] for t, r in statuses.items()} == dict.fromkeys(tasks, PASSED)
    # the instructor-only checks pass on the state the solution left, and fail once it is spoiled
    from helpers.labs.hidden import run_hidden

    home = tmp_path / "home-solution"
    assert {r["task"]: r["status"] for r in run_hidden(lab, home)} == {
        f"hidden:{c.name}": PASSED for c in _hidden_of(lab)
    }
    if lab in SPOIL:
        message = SPOIL[lab](home)
        failed = [r for r in run_hidden(lab, home) if r["status"] == FAILED]
        assert failed and message in failed[0]["message"], failed


def _hidden_of(lab: str) -> list:
    from helpers.labs.hidden import CHECKS

    return [c for c in CHECKS if c.lab == lab]


def _spoil_recipient(home: Path) -> str:
    """Ask for a share the profile does not list (refused by the server)."""
    import delta_sharing
    import requests

    profile = home / "profiles" / "lab2_sales_analyst.share"
    with pytest.raises(requests.HTTPError):
        delta_sharing.load_as_pandas(f"{profile}#operations_data_share.operations_domain.flights")
    return "a recipient reads what its profile lists"


def _spoil_cdf(home: Path) -> str:
    """Remove the learner's copy: no table of the learner's own is left."""
    import shutil

    shutil.rmtree(home / "recipient-copies")
    return "the copy must be yours"


def _spoil_capstone(home: Path) -> str:
    """Share the table behind the view."""
    from helpers.provider import Provider

    Provider(home).sql("ALTER SHARE partner_share ADD TABLE retail.partners.contacts AS crm.raw")
    return "share the view, never the table behind it"


#: lab -> a change that spoils what a hidden check verifies (returns the failure message expected).
SPOIL = {"recipient": _spoil_recipient, "cdf": _spoil_cdf, "capstone": _spoil_capstone}


@pytest.mark.parametrize("lab", list(LAB_FILES))
def test_untouched_exercise_reports_not_attempted(lab: str, lab_home: Path, tmp_path: Path) -> None:
    stem = LAB_FILES[lab]
    nb = _execute(LABS / f"{stem}.ipynb", tmp_path / "out.ipynb", tmp_path / "home-untouched")
    statuses = _statuses(nb)
    assert statuses and {t: r["status"] for t, r in statuses.items()} == dict.fromkeys(
        expected_tasks(nb), NOT_ATTEMPTED
    )
    # one verdict line per task cell, no CheckResult repr, and the Hint/Solution buttons under it
    for cell in nb.cells:
        if any(t.startswith("task:") for t in cell.get("metadata", {}).get("tags", [])):
            kinds = [k for out in cell.outputs for k in out.get("data", {})]
            texts = [str(out.get("data", {}).get("text/plain", "")) for out in cell.outputs]
            assert not any("CheckResult(" in t for t in texts), texts
            assert "application/vnd.jupyter.widget-view+json" in kinds, (cell.metadata, kinds)


def _fill(source: str, answers: str | tuple[str, ...]) -> str:
    """``source`` with its ``____`` placeholders replaced, in order, by ``answers`` (one or several)."""
    for answer in (answers,) if isinstance(answers, str) else answers:
        source = source.replace("____", answer, 1)
    return source


def _plant(
    exercise: Path,
    wrong: dict[str, tuple[str | tuple[str, ...], str]],
    solution: Path,
    right: dict[str, tuple[str, ...]] | None = None,
) -> nbformat.NotebookNode:
    """The solution notebook with, before each task cell named in ``wrong``, the exercise's cell holding
    the wrong answer. The solution cell after it repairs the state, so each wrong answer is judged on an
    otherwise correct lab (the first verdict per task is the planted one). After the solution cell of
    each task in ``right``, the exercise's cell holding that right alternative (its verdict is the last)."""
    ex = nbformat.read(exercise, as_version=4)
    nb = nbformat.read(solution, as_version=4)
    cells = []
    for ex_cell, sol_cell in zip(ex.cells, nb.cells, strict=True):
        tags = [t for t in sol_cell.get("metadata", {}).get("tags", []) if t.startswith("task:")]
        task = tags[0][5:] if tags else None
        if task in wrong:
            planted = nbformat.from_dict(ex_cell)
            planted.source = _fill(planted.source, wrong[task][0])
            planted.metadata["tags"] = ["planted"]
            planted.id = f"planted-{len(cells)}"  # cell ids must stay unique
            cells.append(planted)
        cells.append(sol_cell)
        if right and task in right:
            alternative = nbformat.from_dict(ex_cell)
            # an empty part keeps the solution's text for that placeholder
            parts = right[task]
            sol_parts = _solution_parts(sol_cell.source)
            filled = tuple(p or sol_parts[i] for i, p in enumerate(parts))
            alternative.source = _fill(alternative.source, filled)
            alternative.metadata["tags"] = ["alternative"]
            alternative.id = f"alternative-{len(cells)}"
            cells.append(alternative)
    nb.cells = cells
    return nb


def _solution_parts(source: str) -> list[str]:
    """The text of each BEGIN/END SOLUTION region of a solution cell."""
    from helpers.labs.core import BEGIN, END, marker

    parts: list[str] = []
    current: list[str] | None = None
    for line in source.splitlines():
        kind = marker(line)
        if kind == BEGIN:
            current = []
        elif kind == END and current is not None:
            parts.append("\n".join(current))
            current = None
        elif current is not None:
            current.append(line)
    return parts


def _first_statuses(nb: nbformat.NotebookNode) -> dict[str, dict[str, str]]:
    first: dict[str, dict[str, str]] = {}
    for r in results_from_notebook(nb):
        first.setdefault(r["task"], r)
    return first


@pytest.mark.parametrize("lab", list(LAB_FILES))
def test_planted_wrong_answers_are_caught(lab: str, lab_home: Path, tmp_path: Path) -> None:
    stem = LAB_FILES[lab]
    planted = _plant(
        LABS / f"{stem}.ipynb",
        WRONG[lab],
        LABS / "solutions" / f"{stem}.ipynb",
        RIGHT_ALTERNATIVES.get(lab),
    )
    path = tmp_path / "planted.ipynb"
    nbformat.write(planted, path)
    nb = _execute(path, tmp_path / "out.ipynb", tmp_path / "home-wrong")
    statuses = _first_statuses(nb)
    for task, (_, message) in WRONG[lab].items():
        assert statuses[task]["status"] == FAILED, (task, statuses[task])
        assert message in statuses[task]["message"], (task, statuses[task]["message"])
    # the solution cell after each planted answer gets out of the state the wrong answer left (p3's
    # trap, p4's half-added tables and m2's product without an SLA included), and every right
    # alternative passes too
    last = {r["task"]: r["status"] for r in results_from_notebook(nb)}
    tasks = expected_tasks(nb)
    assert {t: last[t] for t in tasks} == dict.fromkeys(tasks, PASSED), last
    counts = {t: sum(r["task"] == t for r in results_from_notebook(nb)) for t in tasks}
    for task in RIGHT_ALTERNATIVES.get(lab, {}):
        assert counts[task] == 3, (task, counts[task])  # planted, solution, alternative


def test_grade_prints_a_table_per_learner(lab_home: Path, tmp_path: Path) -> None:
    learners = tmp_path / "learners"
    learners.mkdir()
    stem = LAB_FILES["recipient"]
    (learners / "ada.ipynb").write_text((LABS / "solutions" / f"{stem}.ipynb").read_text())
    (learners / "bob.ipynb").write_text((LABS / f"{stem}.ipynb").read_text())
    carol = nbformat.read(LABS / f"{stem}.ipynb", as_version=4)
    for cell in carol.cells:
        if "task:r1" in cell.get("metadata", {}).get("tags", []):
            cell.source = cell.source.replace("____", WRONG["recipient"]["r1"][0], 1)
    nbformat.write(carol, learners / "carol.ipynb")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "helpers",
            "labs",
            "grade",
            str(learners),
            "--csv",
            str(tmp_path / "grades.csv"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr
    import pandas as pd

    grades = pd.read_csv(tmp_path / "grades.csv").set_index("learner")
    assert grades.loc["ada", "passed"] == "7/7"  # 6 tasks and the hidden check
    assert grades.loc["ada", "points"] == grades.loc["ada", "max_points"] == 7
    assert grades.loc["ada", "hidden:h1"] == PASSED
    assert grades.loc["carol", "r1 points"] == 0 and grades.loc["carol", "points"] == 1
    report = (learners / "feedback" / "carol.html").read_text()
    assert "is not the number of tables" in report and "1 / 7 points" in report
    assert (grades.loc["bob", [f"r{i}" for i in range(1, 7)]] == NOT_ATTEMPTED).all()
    assert grades.loc["carol", "r1"] == FAILED
    assert "ada" in result.stdout and "carol" in result.stdout


def test_grade_of_an_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "helpers", "labs", "grade", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 1
    assert "no .ipynb files" in result.stderr


def test_solutions_are_committed_with_a_reference_run() -> None:
    for stem in LAB_FILES.values():
        path = LABS / "solutions" / f"{stem}.ipynb"
        if not path.exists():
            continue
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert "parameters" in code[0].metadata.get("tags", []), path.name
        assert all(c.execution_count for c in code), f"{path.name}: run the reference execution"
        verdicts = {r["task"]: r["status"] for r in results_from_notebook(nb)}
        assert verdicts and set(verdicts.values()) == {PASSED}, (path.name, verdicts)


def test_solutions_reproduce_their_committed_outputs_under_nbval(tmp_path: Path, run_nbval) -> None:
    """The task cells (tagged nbval-check-output) must give the committed verdicts again."""
    proc = run_nbval(
        sorted((LABS / "solutions").glob("*.ipynb")), tmp_path / "home-nbval", cwd=LABS
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]


#: lab 3's wrong methods for c4: each must fail although it may leave plausible rows.
WRONG_METHODS_C4: dict[str, tuple[str, str]] = {
    "first change per key": (
        "first = changes[changes['_change_type'] != 'update_preimage'].sort_values('_commit_version')"
        ".groupby('customer_id').head(1)\n"
        "cols = [c for c in first.columns if not c.startswith('_')]\n"
        "src = first[cols].assign(deleted=first['_change_type'].eq('delete'))\n"
        "(DeltaTable(local_path).merge(src, 'target.customer_id = source.customer_id', "
        "source_alias='source', target_alias='target')"
        ".when_matched_delete('source.deleted')"
        ".when_matched_update({c: f'source.{c}' for c in cols}, 'NOT source.deleted')"
        ".when_not_matched_insert({c: f'source.{c}' for c in cols}, 'NOT source.deleted').execute())\n"
        "synced = local_path",
        "keep the last change",
    ),
    "full reload without the feed": (
        "write_deltalake(local_path, delta_sharing.load_as_pandas(url), mode='overwrite')\n"
        "synced = local_path",
        "reloaded in full",
    ),
}


def test_lab3_wrong_methods_fail_and_the_way_back_works(lab_home: Path, tmp_path: Path) -> None:
    """A merge that keeps the first change per key and a full reload fail c4 with their messages; after
    each, redoing c2 (as the message says) and the right merge passes."""
    stem = LAB_FILES["cdf"]
    nb = nbformat.read(LABS / "solutions" / f"{stem}.ipynb", as_version=4)
    tagged = {
        t[5:]: c
        for c in nb.cells
        for t in c.get("metadata", {}).get("tags", [])
        if t.startswith("task:")
    }
    cells = []
    for cell in nb.cells:
        if cell is tagged["c4"]:
            for n, (source, _) in enumerate(WRONG_METHODS_C4.values()):
                cells.append(nbformat.v4.new_code_cell(source + "\nlab.c4.check(synced)"))
                redo = nbformat.from_dict(tagged["c2"])
                redo.id = f"redo-c2-{n}"
                cells.append(redo)
        cells.append(cell)
    nb.cells = cells
    path = tmp_path / "methods.ipynb"
    nbformat.write(nb, path)
    out = _execute(path, tmp_path / "out.ipynb", tmp_path / "home-methods")
    verdicts = [r for r in results_from_notebook(out) if r["task"] == "c4"]
    assert len(verdicts) == 3, verdicts
    for verdict, (name, (_, message)) in zip(verdicts, WRONG_METHODS_C4.items(), strict=False):
        assert verdict["status"] == FAILED, (name, verdict)
        assert message in verdict["message"], (name, verdict["message"])
    assert verdicts[-1]["status"] == PASSED, verdicts[-1]


def test_hidden_checks_are_not_in_learner_notebooks() -> None:
    from helpers.labs.hidden import CHECKS

    assert {c.lab for c in CHECKS} == set(LAB_FILES), "every lab has instructor-only checks"
    assert (LABS / "lab5_capstone.ipynb").exists() and (
        LABS / "solutions" / "lab5_capstone.ipynb"
    ).exists()
    for path in [*LABS.glob("*.ipynb"), *(LABS / "solutions").glob("*.ipynb")]:
        text = path.read_text()
        assert "labs.hidden" not in text and "run_hidden" not in text, path.name
        for check in CHECKS:
            assert check.title not in text, (path.name, check.title)


def test_grade_runs_hidden_checks_and_reports_points_and_hints(
    lab_home: Path, tmp_path: Path
) -> None:
    """Two provider learners graded in parallel: one right, one who asked for hint 2 of p1, answered it
    half right and gave the share a placeholder comment (a hidden check catches it)."""
    from helpers.labs.grade import grade

    learners = tmp_path / "learners"
    learners.mkdir()
    stem = LAB_FILES["provider"]
    (learners / "ada.ipynb").write_text((LABS / "solutions" / f"{stem}.ipynb").read_text())
    dora = nbformat.read(LABS / "solutions" / f"{stem}.ipynb", as_version=4)
    for cell in dora.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "task:p1" in tags:
            cell.source = "lab.p1.hint(2)\nlab.p1.check((int(lab.provider.sql('SELECT count(*) FROM retail.sales.products').iloc[0, 0]), -1))"
        if "task:p3" in tags:
            cell.source = cell.source.replace(
                "'Product catalogue and inventory for regional stores'", "'...'"
            )
    nbformat.write(dora, learners / "dora.ipynb")
    frame = grade(learners, workers=2, reports=tmp_path / "reports")
    assert frame.loc["ada", "points"] == frame.loc["ada", "max_points"] == 12  # 10 + 2 hidden
    assert frame.loc["ada", "hidden:h1"] == frame.loc["ada", "hidden:h2"] == PASSED
    assert frame.loc["dora", "p1"] == FAILED and frame.loc["dora", "p1 points"] == 0.5
    assert frame.loc["dora", "hidden:h2"] == FAILED
    report = (tmp_path / "reports" / "dora.html").read_text()
    assert "hint 2" in report and "tells a recipient nothing" in report


def _tagged(nb: nbformat.NotebookNode) -> dict[str, nbformat.NotebookNode]:
    return {
        t[5:]: c
        for c in nb.cells
        for t in c.get("metadata", {}).get("tags", [])
        if t.startswith("task:")
    }


#: the capstone's wrong methods: each gives plausible rows and must fail with its message.
WRONG_METHODS_K2 = {
    "mask decided by the region": (
        "CREATE OR REPLACE VIEW retail.partners.partner_customers AS SELECT customer_id, segment, "
        "home_region, home_city, CASE WHEN current_recipient('region') = 'West' THEN email ELSE '***' "
        "END AS email FROM retail.partners.contacts WHERE home_region = current_recipient('region')",
        "decided by current_recipient('tier')",
    ),
}
WRONG_METHODS_K6 = {
    "type 1 in place (no history kept)": (
        "scd2_path\n"
        "feed = delta_sharing.load_table_changes_as_pandas(url, starting_version=int("
        "DeltaTable(scd2_path).to_pandas()['valid_from'].max()) + 1)\n"
        "latest = feed[feed['_change_type'] != 'update_preimage'].sort_values('_commit_version')"
        ".groupby('product_id').tail(1)\n"
        "(DeltaTable(scd2_path).merge(latest[['product_id', 'price']], 'target.product_id = "
        "source.product_id', source_alias='source', target_alias='target')"
        ".when_matched_update({'price': 'source.price'}).execute())",
        "differ from the feed's history",
    ),
    "the right history, overwritten": (
        "scd2_path\n"
        "from helpers.labs.cdf_lab import scd2\n"
        "start = int(DeltaTable(scd2_path).to_pandas()['valid_from'].min())\n"
        "right = scd2(delta_sharing.load_as_pandas(url, version=start), "
        "delta_sharing.load_table_changes_as_pandas(url, starting_version=start + 1), start, "
        "key='product_id')\n"
        "write_deltalake(scd2_path, right, mode='overwrite', schema_mode='overwrite')",
        "was overwritten instead of kept",
    ),
}


def test_capstone_wrong_methods_fail_and_the_way_back_works(lab_home: Path, tmp_path: Path) -> None:
    """A mask on the wrong property (half credit) and two wrong ways of keeping the type 2 history fail
    with their messages; after each history method, the way back the message names (restart k5, the
    provider changes again, apply the feed) passes. The right k6 cell run twice changes nothing."""
    stem = LAB_FILES["capstone"]
    nb = nbformat.read(LABS / "solutions" / f"{stem}.ipynb", as_version=4)
    ex = nbformat.read(LABS / f"{stem}.ipynb", as_version=4)
    tagged, ex_tagged = _tagged(nb), _tagged(ex)
    provider_cell = next(c for c in nb.cells if "lab.provider_changes()" in c.source)
    cells = []
    for cell in nb.cells:
        if cell is tagged["k2"]:
            for source, _ in WRONG_METHODS_K2.values():
                cells.append(nbformat.v4.new_code_cell(_fill(ex_tagged["k2"].source, source)))
        if cell is tagged["k6"]:
            for n, (source, _) in enumerate(WRONG_METHODS_K6.values()):
                cells.append(nbformat.v4.new_code_cell(_fill(ex_tagged["k6"].source, source)))
                for again in (tagged["k5"], provider_cell):
                    redo = nbformat.from_dict(again)
                    redo.id = f"redo-{n}-{len(cells)}"
                    cells.append(redo)
        cells.append(cell)
        if cell is tagged["k6"]:
            twice = nbformat.from_dict(cell)
            twice.id = "k6-again"
            cells.append(twice)
    nb.cells = cells
    path = tmp_path / "methods.ipynb"
    nbformat.write(nb, path)
    out = _execute(path, tmp_path / "out.ipynb", tmp_path / "home-methods")
    results = results_from_notebook(out)
    k2 = [r for r in results if r["task"] == "k2"]
    ((_, message),) = WRONG_METHODS_K2.values()
    assert k2[0]["status"] == FAILED and message in k2[0]["message"], k2[0]
    assert k2[0]["points"] == 1.0 and k2[-1]["status"] == PASSED  # the rows were right
    k6 = [r for r in results if r["task"] == "k6"]
    assert len(k6) == 4, k6
    for verdict, (name, (_, message)) in zip(k6, WRONG_METHODS_K6.items(), strict=False):
        assert verdict["status"] == FAILED, (name, verdict)
        assert message in verdict["message"], (name, verdict["message"])
    assert k6[2]["status"] == k6[3]["status"] == PASSED, k6[2:]


def test_grade_a_capstone_class(lab_home: Path, tmp_path: Path) -> None:
    """Lab 5 graded end to end: the solution gets every point, the untouched exercise none (its hidden
    checks fail: nothing was shared), a wrong cross-share answer loses that task's points only."""
    learners = tmp_path / "learners"
    learners.mkdir()
    stem = LAB_FILES["capstone"]
    (learners / "ada.ipynb").write_text((LABS / "solutions" / f"{stem}.ipynb").read_text())
    (learners / "bob.ipynb").write_text((LABS / f"{stem}.ipynb").read_text())
    eve = nbformat.read(LABS / "solutions" / f"{stem}.ipynb", as_version=4)
    k7 = _tagged(eve)["k7"]
    k7.source = "lab.k7.hint(1)\n" + k7.source.replace(
        "(mount(profile))",
        "(mount(profile))[:1] + (2000,)",  # every customer, not the reachable ones
    )
    nbformat.write(eve, learners / "eve.ipynb")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "helpers",
            "labs",
            "grade",
            str(learners),
            "--csv",
            str(tmp_path / "g.csv"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr
    import pandas as pd

    grades = pd.read_csv(tmp_path / "g.csv").set_index("learner")
    tasks = [f"k{i}" for i in range(1, 8)]
    assert grades.loc["ada", "passed"] == "9/9"  # 7 tasks and 2 hidden checks
    assert grades.loc["ada", "points"] == grades.loc["ada", "max_points"] == 17
    assert (grades.loc["bob", tasks] == NOT_ATTEMPTED).all() and grades.loc["bob", "points"] == 0
    assert grades.loc["bob", "hidden:h2"] == FAILED
    assert (
        grades.loc["eve", "k7"] == FAILED and grades.loc["eve", "k7 points"] == 1.0
    )  # half: the category
    assert grades.loc["eve", "points"] == 16
    report = (learners / "feedback" / "eve.html").read_text()
    assert "is not the number of customers you can e-mail" in report and "hint 1" in report


def test_a_kernel_that_dies_at_start_up_is_started_once_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loaded machine can lose a kernel before its first cell: grading starts it again (the learner's
    code never ran), but a learner's own error is never re-run."""
    import papermill as pm

    from helpers.labs import grade

    calls: list[str] = []

    def flaky(src: str, out: str, **_kw: object) -> None:
        calls.append(src)
        if len(calls) == 1:
            raise RuntimeError("Kernel died before replying to kernel_info")
        Path(out).write_text(Path(src).read_text())

    nb = tmp_path / "lab.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")]), nb)
    monkeypatch.setattr(pm, "execute_notebook", flaky)
    assert grade._execute(nb, tmp_path / "out.ipynb", None, 60) == ""
    assert len(calls) == 2

    def learner_error(src: str, out: str, **_kw: object) -> None:
        calls.append(src)
        raise RuntimeError("NameError: name 'x' is not defined")

    calls.clear()
    monkeypatch.setattr(pm, "execute_notebook", learner_error)
    assert "NameError" in grade._execute(nb, tmp_path / "out.ipynb", None, 60)
    assert len(calls) == 1
