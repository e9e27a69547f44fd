"""The lab's notebooks, executed for real: nbval against the committed outputs, papermill with other parameters.

Each test runs the whole curriculum in its own lab home with the provider server on a free loopback port
(``SHARELAB_HOME`` / ``SHARELAB_PORT`` reach the kernels through the environment) and stops the server after.

- ``test_nbval_committed_outputs`` re-executes the committed notebooks with ``--nbval-lax``: every cell must
  run, and the cells marked ``# NBVAL_CHECK_OUTPUT`` (row counts, totals, SHOW GRANTS tables...) must
  reproduce the committed reference outputs after ``sanitize.cfg`` masks times, tokens, ports and paths.
- ``test_papermill_other_seed`` runs the batch with ``seed=7`` and the delta response format and checks
  the results against each other and against the reference run, then re-runs 06, 05, 06, 02, 04 in the
  same lab home (re-runnable in any order after their prerequisites; the recipient catches up on changes).

Refresh the committed reference outputs (after a change to a notebook or to the data generators) with
``SHARELAB_HOME=$(mktemp -d) .venv/bin/python -m helpers batch --only 'notebooks/*' --in-place``.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from helpers import server
from helpers.batch import run_batch
from helpers.notebook import PLOT_CALL, cells_missing_plots, collect_key_figures
from helpers.notebook import REPO_ROOT as REPO
from tests.support import free_port

pytestmark = [pytest.mark.notebooks, pytest.mark.slow]

NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SANITIZE = Path(__file__).with_name("sanitize.cfg")


def _reference_figures(name_prefix: str) -> dict:
    path = next(p for p in NOTEBOOKS if p.name.startswith(name_prefix))
    return collect_key_figures(nbformat.read(path, as_version=4))


def test_notebooks_are_committed_with_outputs() -> None:
    """The committed notebooks carry a reference run: every code cell executed, no error output."""
    assert NOTEBOOKS, "no notebook under notebooks/"
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code[0].metadata.get("tags") == ["parameters"], (
            f"{path.name}: first code cell is not 'parameters'"
        )
        for line in code[0].source.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                assert "  # " in line, f"{path.name}: parameter without a trailing comment: {line}"
        assert all(c.execution_count for c in code), (
            f"{path.name}: not executed (run the reference batch)"
        )
        errors = [o for c in code for o in c.outputs if o.output_type == "error"]
        assert not errors, f"{path.name}: committed with an error output"


def test_nbval_committed_outputs(tmp_path: Path, run_nbval) -> None:
    proc = run_nbval(NOTEBOOKS, tmp_path / "lab-home")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]


def test_committed_plots_have_images() -> None:
    """Every plot-making cell of the committed reference run carries its image."""
    plots = 0
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        plots += sum(1 for c in nb.cells if c.cell_type == "code" and PLOT_CALL.search(c.source))
        assert cells_missing_plots(nb) == [], f"{path.name}: plot cells without an image"
    assert plots >= 5  # 03's dashboard, 05, 06, 07, 08


def test_papermill_other_seed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The environment of a headless machine or an image may say MPLBACKEND=Agg: kernels must still plot.
    monkeypatch.setenv("MPLBACKEND", "Agg")
    home = tmp_path / "lab-home"
    port = free_port()  # one port for the lab home: the profiles handed out point at it
    result = run_batch(
        {"seed": 7, "use_delta_format": True},
        only=["notebooks/*"],
        out=tmp_path / "run",
        home=home,
        port=port,
        echo=False,
    )
    assert server.status(home) is None, "the batch must stop the server it started"
    failed = {r.notebook: r.error for r in result.runs if r.status != "ok"}
    assert not failed, failed
    # Every plot-making cell of the executed notebooks carries an image (03's dashboard, 05-08's plots).
    no_image = {
        Path(r.notebook).name: cells_missing_plots(nbformat.read(r.output, as_version=4))
        for r in result.runs
    }
    assert not any(no_image.values()), f"plot cells without an image: {no_image}"
    figures = {Path(r.notebook).name[:2]: r.key_figures for r in result.runs}
    # Parameters reach only the notebooks that declare them.
    params = {Path(r.notebook).name[:2]: r.parameters for r in result.runs}
    assert (
        params["01"] == {"seed": 7}
        and params["03"] == {"use_delta_format": True}
        and params["00"] == {}
    )

    # Another seed gives other data of the same shape (small scale volumes are fixed).
    reference = _reference_figures("01")
    assert (
        figures["01"]["airline.sales_domain.bookings"]
        == reference["airline.sales_domain.bookings"]
        == 2000
    )
    assert figures["01"]["booking_revenue_usd"] != reference["booking_revenue_usd"]
    # The recipient (open protocol, delta format) sees exactly what the provider's SQL sees.
    assert figures["03"]["bookings"] == 2000
    assert figures["03"]["revenue_usd"] == figures["01"]["booking_revenue_usd"]
    assert figures["03"]["daily_revenue_verified"] is True
    assert figures["02"] == {
        "shares": 3,
        "recipients": 2,
        "grants": 4,
        "sales_team_tables": 10,
        "operations_team_tables": 10,
    }
    assert figures["04"]["shares_visible"] == 2 and figures["04"]["mounted_tables"] == 10
    # The live shared catalog sees a provider's commit at the next query; the snapshot copy does not.
    assert figures["04"]["live_sees_commit"] is True
    assert figures["04"]["snapshot_stale_until_remount"] is True
    assert figures["04"]["live_equals_snapshot"] is True
    assert figures["04"]["fast_equals_official"] is True
    # The provider's CDF run and the recipient's type-1 copy agree.
    assert figures["05"]["commits"] == 4
    assert figures["06"]["type1_equals_provider"] is True
    assert figures["06"]["type1_rows"] == figures["05"]["rows_after"]
    assert figures["06"]["table_version"] == figures["05"]["version_after"]
    # The SCD type 1 MERGE and type 2 close-then-insert written out by hand give the helpers' copies.
    assert figures["06"]["by_hand_matches_helpers"] is True and figures["06"]["by_hand_events"] > 0
    # The operations team's verification (Redshift scenario) from its profile equals the provider's figures.
    assert figures["08"]["ops_verified"] is True and figures["08"]["ops_sales_status"] == 404
    assert figures["08"]["derived_from_bookings"] == [
        "airline.operations_domain.daily_operations_metrics",
        "airline.sales_domain.customer_360",
        "airline.sales_domain.daily_revenue",
    ]
    # Protocol X-ray: NDJSON files, an expired signed URL, predicate hints (answer and audit agree), ids, VACUUM.
    x = figures["11"]
    assert x["shares_listed"] == ["xray_share"] and x["files_rows"] == figures["03"]["flights"]
    assert x["expired_url_status"] == 403 and x["removed_table_status"] == 404
    hinted = x["files_by_hints"]
    assert (
        hinted["jsonPredicateHints"] == hinted["predicateHints"] < hinted["no hints"] == x["files"]
    )
    assert x["audited_files"] == [
        hinted["no hints"],
        hinted["jsonPredicateHints"],
        hinted["predicateHints"],
    ]
    assert x["listing_id_changed"] is True and x["metadata_id_changed_on_recreate"] is True
    assert x["vacuum_time_travel_fails"] is True and 404 in x["vacuum_download_statuses"]
    # Teardown (demo scope): each step seen from the recipients' side; other notebooks keep working.
    t = figures["12"]
    assert t["scope"] == "demo" and t["share_left"] is False
    assert t["reader_statuses"] == [200, 200, 404, 401, 401]
    assert t["witness_statuses"] == [200, 200, 200, 200, 404]
    # Partition filters split the flights between the partners without loss or overlap.
    assert figures["07"]["partners_isolated"] is True
    assert sum(figures["07"]["partner_rows"].values()) == figures["03"]["flights"]
    # Shared views: each partner its region's rows and its masking; the IP access list refuses 127.0.0.1.
    assert params["10"] == {"use_delta_format": True}
    assert figures["10"]["partners_isolated"] is True and figures["10"]["masking_ok"] is True
    assert figures["10"]["ip_refused"] is True
    assert figures["10"]["view_versions_moved"] == {
        "partner_west_gold": False,
        "partner_east_silver": True,
        "partner_central_gold": False,
    }
    assert (tmp_path / "run" / "summary.html").is_file()

    # Re-runnable in any order after their prerequisites: the provider changes the table again, the
    # recipient catches up from its copies' version, and the type-1 copy still equals the provider's table.
    def rerun(pattern: str) -> dict:
        again = run_batch(
            only=[pattern],
            out=tmp_path / f"re-{pattern[10:12]}",
            home=home,
            port=port,
            echo=False,
        )
        assert again.ok, [(r.notebook, r.error) for r in again.runs]
        return again.runs[0].key_figures

    assert rerun("notebooks/06_*")["feed_rows"] == 0  # nothing new since the last run
    changed = rerun("notebooks/05_*")
    assert changed["version_before"] == figures["05"]["version_after"] and changed["commits"] == 4
    caught_up = rerun("notebooks/06_*")
    assert caught_up["type1_equals_provider"] is True and caught_up["feed_rows"] > 0
    assert caught_up["table_version"] == changed["version_after"]
    assert caught_up["type1_rows"] == changed["rows_after"]
    assert rerun("notebooks/02_*")["sales_team_tables"] == 10
    assert rerun("notebooks/04_*")["shares_visible"] == 2
    assert rerun("notebooks/10_*")["partners_isolated"] is True
