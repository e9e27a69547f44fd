"""Small helpers the lab's notebooks share: environment check, lab home and server, key figures, plot style.

Notebooks find everything from the environment so that JupyterLab, ``sharelab batch`` and the test suite run
the same notebook unchanged:

- the lab home from ``$SHARELAB_HOME`` (see :mod:`helpers.home`);
- the provider server from the lab home's ``server/server.json``; when none runs, :func:`ensure_server`
  starts one on ``$SHARELAB_PORT`` (default 8080);
- the recipients' profiles from ``<lab home>/profiles/<recipient>.share``.

:func:`key_figures` records a notebook's headline results as JSON in a cell output (mime type
:data:`KEY_FIGURES_MIME`); ``sharelab batch`` collects them into its summary.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from helpers.exceptions import ServerError

if TYPE_CHECKING:
    from helpers.home import LabHome
    from helpers.provider import Provider

#: Mime type of the key-figures output that ``sharelab batch`` collects.
KEY_FIGURES_MIME = "application/vnd.sharelab.key-figures+json"
#: Environment variable with the port the provider server is started on when none runs.
PORT_ENV = "SHARELAB_PORT"
DEFAULT_PORT = 8080
#: Root of the repository (``notebooks/``, ``labs/``).
REPO_ROOT = Path(__file__).resolve().parent.parent

#: Packages the lab needs, with the minimum versions the notebooks were written for.
REQUIRED_PACKAGES: dict[str, str] = {
    "delta-sharing": "1.4.2",
    "deltalake": "1.6",
    "pandas": "2.2",
    "pyarrow": "18",
    "duckdb": "1.3",
    "seaborn": "0.13",
    "matplotlib": "3.9",
    "papermill": "2.6",
    "jupyterlab": "4.3",
    "ipywidgets": "8.1",
}

#: The learning path: every notebook (00-12) and, where it fits, each lab (its exercises check what the
#: notebooks before it taught): step, title, side (provider, recipient or both) and what it teaches.
LAB_MAP: tuple[tuple[str, str, str, str], ...] = (
    ("00", "Start here", "both", "environment check, lab home, the provider server, this map"),
    (
        "01",
        "Generate data",
        "provider",
        "airline and retail datasets as Delta tables, SQL, your own table (CREATE CATALOG/SCHEMA/TABLE)",
    ),
    (
        "02",
        "Create shares",
        "provider",
        "shares, recipients, grants as literal SQL, activation links, a shared table cannot be dropped",
    ),
    (
        "lab 1",
        "Provider lab",
        "provider",
        "a share of the retail data, a recipient, a grant, audit",
    ),
    (
        "03",
        "Open client (D2O)",
        "recipient",
        "profile, list, load into pandas, verify, segment revenue, data quality, a dashboard",
    ),
    (
        "04",
        "Shared catalog (D2D)",
        "recipient",
        "a mount by hand, a snapshot copy vs a live CREATE CATALOG … USING SHARE, SHOW PROVIDERS",
    ),
    ("lab 2", "Recipient lab", "recipient", "mount the shares, answer questions with queries"),
    (
        "05",
        "Change data feed",
        "provider",
        "CDF: INSERT/UPDATE/DELETE/MERGE, the files of each commit, OPTIMIZE, RESTORE, VACUUM",
    ),
    ("06", "Consume changes", "recipient", "changes since a remembered version, SCD type 1 and 2"),
    ("lab 3", "Change data feed lab", "recipient", "keep a local copy in sync from the feed"),
    ("07", "Security and audit", "both", "token expiry, rotation, revocation, filters, audit log"),
    ("08", "Data mesh", "both", "domains, products with SLAs, policies, subscriptions, lineage"),
    ("09", "Schema evolution", "both", "schema contracts, minor vs major versions"),
    (
        "lab 4",
        "Data mesh lab",
        "both",
        "a domain, a product with an SLA, governance, subscriptions",
    ),
    (
        "10",
        "Views and IP lists",
        "both",
        "shared views with row filters and masks, IP access lists",
    ),
    (
        "11",
        "Protocol X-ray",
        "both",
        "raw HTTP and NDJSON, signed URL expiry, predicate hints, VACUUM vs time travel",
    ),
    (
        "lab 5",
        "Capstone",
        "both",
        "a partner data product, from both sides: provider, recipient, changes, checks",
    ),
    (
        "12",
        "Teardown",
        "both",
        "REMOVE TABLE, REVOKE, DROP RECIPIENT, DROP SHARE, each seen by the recipient",
    ),
)


# ----------------------------------------------------------------------------- environment


def check_environment(required: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Installed versions of the packages the lab needs, one row per package with an ``ok`` column.

    Shaped after DS-python-data-analysis' ``check_environment.py``: a missing or too old package is
    a ``FAIL`` row naming what to install, never an exception, so the learner sees every problem at once.
    """
    from packaging.version import Version

    rows = [
        {
            "package": "python",
            "version": platform.python_version(),
            "required": "3.11",
            "ok": sys.version_info >= (3, 11),
        }
    ]
    for name, minimum in (required or REQUIRED_PACKAGES).items():
        try:
            version = importlib.metadata.version(name)
            ok = Version(version) >= Version(minimum)
        except importlib.metadata.PackageNotFoundError:
            version, ok = "missing", False
        rows.append({"package": name, "version": version, "required": f">= {minimum}", "ok": ok})
    frame = pd.DataFrame(rows)
    frame["status"] = frame["ok"].map({True: "[ OK ]", False: "[FAIL]"})
    return frame[["status", "package", "version", "required", "ok"]]


def lab_home() -> LabHome:
    """The lab home (:class:`helpers.home.LabHome`) from ``$SHARELAB_HOME``."""
    from helpers.home import LabHome

    return LabHome.resolve()


def server_port(port: int | None = None) -> int:
    """The port to start the provider server on: the server's one rule (:func:`helpers.server.server_port`:
    ``port``, else ``$SHARELAB_PORT``, else 8080, else a free port)."""
    from helpers.server import server_port as port_rule

    return port_rule(port)


def server_state() -> dict[str, Any] | None:
    """The running provider server of this lab home (``server/server.json``), or None."""
    return lab_home().server_state()


def ensure_server(port: int | None = None, host: str = "127.0.0.1") -> dict[str, Any]:
    """The running provider server of this lab home (:func:`helpers.server.ensure_server`: started when
    none runs, on ``port``, else ``$SHARELAB_PORT``, else 8080, else a free port)."""
    from helpers.server.lifecycle import ensure_server as ensure

    return ensure(lab_home(), port=port, host=host)


def server_url() -> str:
    """The running server's public URL (raises when none runs)."""
    state = server_state()
    if not state:
        raise ServerError("the provider server is not running; run notebook 00 or `sharelab start`")
    if state.get("public_url"):
        return str(state["public_url"]).rstrip("/")
    if state.get("endpoint"):
        return str(state["endpoint"]).rstrip("/").removesuffix("/delta-sharing")
    host = state.get("host") or "127.0.0.1"
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{state['port']}"


def profile_path(recipient: str) -> Path:
    """Where the lab keeps a recipient's profile: ``<lab home>/profiles/<recipient>.share``."""
    return lab_home().profiles_dir / f"{recipient}.share"


# ----------------------------------------------------------------------------- outputs


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        value = value.item()
    if isinstance(value, float):
        return round(value, 2)
    if isinstance(value, int | str | bool) or value is None:
        return value
    return str(value)


def key_figures(figures: Mapping[str, Any]) -> None:
    """Record a notebook's headline results (row counts, totals...) for ``sharelab batch``.

    Displays the figures as a small table and as JSON under :data:`KEY_FIGURES_MIME`; the batch runner
    reads the latter from the executed notebook. Floats are rounded to 2 decimals so that outputs compare.

    Returns None so the cell shows the figures once.
    """
    from IPython.display import display

    data = _jsonable(figures)
    text = "\n".join(f"{k}: {v}" for k, v in data.items())
    display({KEY_FIGURES_MIME: data, "text/plain": text}, raw=True)


def collect_key_figures(nb: Mapping[str, Any]) -> dict[str, Any]:
    """Merge every key-figures output of an executed notebook (a ``nbformat`` node)."""
    figures: dict[str, Any] = {}
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []) or []:
            data = (output.get("data") or {}).get(KEY_FIGURES_MIME)
            if isinstance(data, str):
                data = json.loads(data)
            if isinstance(data, Mapping):
                figures.update(data)
    return figures


def lab_map() -> pd.DataFrame:
    """The learning path: notebooks 00-12 in order, each lab after the notebooks it checks.

    Columns ``step`` (``03`` or ``lab 1``), ``file`` (relative to the workspace), ``title``, ``side``,
    ``teaches``. Show it whole with :func:`show_table` (pandas would cut the long ``teaches`` column).
    """
    files = {p.name[:2]: f"notebooks/{p.name}" for p in (REPO_ROOT / "notebooks").glob("*.ipynb")}
    files.update(
        {f"lab {p.name[3]}": f"labs/{p.name}" for p in (REPO_ROOT / "labs").glob("lab*.ipynb")}
    )
    rows = [
        {"step": n, "file": files.get(n, "(missing)"), "title": t, "side": r, "teaches": w}
        for n, t, r, w in LAB_MAP
    ]
    return pd.DataFrame(rows)


def show_table(frame: pd.DataFrame) -> None:
    """Display ``frame`` whole: every row, every column, no cell text cut off with ``...``."""
    from IPython.display import display

    with pd.option_context(
        "display.max_colwidth",
        None,
        "display.max_rows",
        None,
        "display.max_columns",
        None,
        "display.width",
        250,
    ):
        display(frame)


def use_style() -> None:
    """The lab's plot style: seaborn whitegrid, colour-blind palette, readable sizes.

    In a Jupyter kernel it also makes sure plots show: a non-interactive backend inherited from the
    environment (``MPLBACKEND=Agg``) would draw nothing, so the kernel switches to the inline backend.
    """
    import matplotlib as mpl
    import seaborn as sns

    _inline_plots_in_kernels()

    sns.set_theme(style="whitegrid", palette="colorblind", context="notebook")
    mpl.rcParams.update(
        {
            "figure.figsize": (10, 5),
            "figure.dpi": 80,
            "axes.titleweight": "bold",
            "savefig.bbox": "tight",
        }
    )


def _inline_plots_in_kernels() -> None:
    """Switch a Jupyter kernel running a non-GUI, non-inline backend (Agg...) to the inline backend."""
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    shell = get_ipython() if get_ipython is not None else None
    if shell is None or "ipykernel" not in sys.modules:
        return  # a plain script: Agg is right there
    import matplotlib as mpl

    if mpl.get_backend().lower() in ("agg", "pdf", "svg", "ps", "cairo", "template"):
        shell.run_line_magic("matplotlib", "inline")  # = %matplotlib inline


# ----------------------------------------------------------------------------- provider steps


def ensure_dataset(
    dataset: str, *, scale: str = "small", seed: int = 42, regenerate: bool = False
) -> tuple[bool, pd.DataFrame]:
    """Generate ``dataset`` unless it exists already with the same scale and seed.

    Regenerating replaces the tables (their versions restart at 0), which would surprise recipients that
    follow a change data feed, so notebook re-runs keep the data unless the parameters changed. The
    parameters of the last generation are recorded in ``data/<dataset>.params.json``.

    :return: ``(generated, rows)``: whether it generated, and the row count per table
        (``schema``, ``table``, ``rows``).
    """
    from deltalake import DeltaTable

    from helpers.datagen import generate

    home = lab_home()
    marker = home.data_dir / f"{dataset}.params.json"
    want = {"scale": scale, "seed": int(seed)}
    try:
        have = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        have = None
    generated = False
    if regenerate or have != want or not (home.data_dir / dataset).is_dir():
        generate(dataset, home.path, scale=scale, seed=int(seed), progress=False)
        marker.write_text(json.dumps(want), encoding="utf-8")
        generated = True
    rows = []
    for schema_dir in sorted(p for p in (home.data_dir / dataset).iterdir() if p.is_dir()):
        for table_dir in sorted(p for p in schema_dir.iterdir() if (p / "_delta_log").is_dir()):
            rows.append(
                {
                    "schema": schema_dir.name,
                    "table": table_dir.name,
                    "rows": DeltaTable(str(table_dir)).count(),
                }
            )
    return generated, pd.DataFrame(rows, columns=["schema", "table", "rows"])


def require_profile(path: str | os.PathLike[str]) -> None:
    """Fail fast, saying what to do, when a profile file is missing or no longer works."""
    from helpers import recipient

    status = recipient.check_profile(path)  # raises NotFoundError for a missing file
    if status == "ok":
        return
    moved = _moved_server(recipient.load_profile(path).endpoint)
    if moved:
        raise ServerError(
            f"profile {Path(path).name} does not work ({status}) because it points at {moved[0]}, "
            f"but this lab's provider server now listens on port {moved[1]}: hand out fresh profiles "
            "(re-run notebook 02), or start the server on its old port again"
        )
    raise ServerError(
        f"profile {Path(path).name} does not work ({status}): start the provider server "
        "(notebook 00) and hand out fresh profiles (re-run notebook 02)"
    )


def _moved_server(endpoint: str) -> tuple[str, int] | None:
    """(endpoint's host:port, the running server's port) when a loopback profile points elsewhere."""
    from urllib.parse import urlsplit

    state = server_state()
    url = urlsplit(endpoint)
    if not state or url.hostname not in ("127.0.0.1", "localhost") or not url.port:
        return None
    running = int(state.get("port") or 0)
    return (f"{url.hostname}:{url.port}", running) if running and running != url.port else None


def hand_out_profile(
    provider: Provider, recipient_name: str, link: str | None = None, *, reissue: bool = False
) -> tuple[Path, str]:
    """Give a recipient a working profile in ``<lab home>/profiles/`` through an activation link.

    Keeps a profile that still works (unless ``reissue``); otherwise redeems ``link`` (the one
    ``CREATE RECIPIENT`` showed) or, when there is none, makes a fresh one with ``ROTATE TOKEN``.

    :return: the profile path and what happened (``kept``, ``activated``).
    """
    from helpers import recipient

    path = profile_path(recipient_name)
    if path.exists() and not reissue and recipient.check_profile(path) == "ok":
        return path, "kept"
    if link is None:
        link = provider.sql(f"ALTER RECIPIENT {recipient_name} ROTATE TOKEN")[
            "activation_link"
        ].item()
    recipient.activate(link, path, overwrite=True)
    return path, "activated"


#: A code cell that draws: ``plt.subplots(...)``, ``plt.show()``, ``df.plot(...)``, ``ax.plot(...)``...
PLOT_CALL = re.compile(r"\bplt\.(?!close\b|rcParams\b)\w+\(|\.plot(?:\.\w+)?\(")


def cells_missing_plots(notebook: Any) -> list[int]:
    """Indices of the code cells that call a plotting function but carry no ``image/png`` output.

    An executed notebook should give an empty list: a plot cell without an image means the kernel ran with
    a non-interactive backend (e.g. ``MPLBACKEND=Agg``), which draws nothing a learner can see.
    """
    missing = []
    for i, cell in enumerate(notebook.cells):
        if cell.cell_type != "code" or not PLOT_CALL.search(cell.source):
            continue
        if not any("image/png" in out.get("data", {}) for out in cell.get("outputs", [])):
            missing.append(i)
    return missing
