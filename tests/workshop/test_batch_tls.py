"""``sharelab batch`` against a lab home whose server runs with ``--tls``: the kernels trust the lab's CA
(no verification turned off), so a notebook reads a share over https in both formats."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from helpers.batch import run_batch
from helpers.catalog import open_catalog
from helpers.home import LabHome
from helpers.profiles import issue_profile
from helpers.server.lifecycle import start, stop
from tests.support import free_port
from tests.workshop import minilab

pytestmark = pytest.mark.slow

READ = f"""
import delta_sharing
url = profile_path + "#{minilab.TABLE}"
rows = (len(delta_sharing.load_as_pandas(url)), len(delta_sharing.load_as_pandas(url, use_delta_format=True)))
assert rows == ({minilab.ROWS}, {minilab.ROWS}), rows
print("read over", open(profile_path).read().split('"endpoint"')[1][:12])
"""


def _notebook(root: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile_path = ""  # the profile to read with')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(READ)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = root / "notebooks" / "00_read_over_tls.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(nb, path)
    return path


def test_batch_kernels_trust_the_lab_ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(var, raising=False)  # and restored after: run_batch exports them
    home = LabHome.resolve(tmp_path / "home")
    minilab.build(home.path)
    state = start(home, port=free_port(), tls=True)
    try:
        assert str(state["endpoint"]).startswith("https://")
        catalog = open_catalog(home)
        catalog.create_recipient("reader")
        catalog.grant("demo_share", "reader")
        profile = tmp_path / "r.share"
        issue_profile(catalog, "reader", str(state["endpoint"]), out=profile)
        root = tmp_path / "course"
        _notebook(root)
        result = run_batch(
            {"profile_path": str(profile)}, root=root, home=home.path, out=tmp_path / "run",
            echo=False, timeout=300,
        )  # fmt: skip
        assert [r.status for r in result.runs] == ["ok"], [r.error for r in result.runs]
        ran = nbformat.read(tmp_path / "run" / "notebooks" / "00_read_over_tls.ipynb", as_version=4)
        assert (
            "read over" in ran.cells[-1].outputs[0]["text"]
            and "https" in ran.cells[-1].outputs[0]["text"]
        )
    finally:
        stop(home)
