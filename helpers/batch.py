"""``sharelab batch``: execute every notebook and lab solution in order with papermill.

The run goes into ``runs/<UTC timestamp>/`` (or ``--out DIR``): the executed notebooks under their relative
paths, ``summary.html`` (per notebook: status, duration, parameters, key figures, the error) and
``summary.json``. Parameters (``-p NAME VALUE``, ``-f params.yaml``) are passed only to notebooks whose
``parameters`` cell declares them. The provider server of the lab home is started when none runs and
stopped at the end if this run started it. The exit status is 1 when a notebook failed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fnmatch
import html
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from helpers.exceptions import InvalidArgumentError, NotFoundError, SharelabError
from helpers.notebook import REPO_ROOT, collect_key_figures, server_port

if TYPE_CHECKING:
    from helpers.home import LabHome


@dataclass
class NotebookRun:
    """The outcome of one notebook in a batch run."""

    notebook: str
    output: str
    status: str = "pending"  # ok | failed | skipped
    seconds: float = 0.0
    parameters: dict[str, Any] = field(default_factory=dict)
    key_figures: dict[str, Any] = field(default_factory=dict)
    error: str = ""


@dataclass
class BatchResult:
    """A whole batch run: where it was written and what happened to each notebook."""

    out_dir: Path
    runs: list[NotebookRun]
    started_at: str
    seconds: float
    server_started: bool

    @property
    def ok(self) -> bool:
        return all(r.status == "ok" for r in self.runs)


def discover(root: Path = REPO_ROOT, only: Sequence[str] = ()) -> list[Path]:
    """The notebooks of a batch run, in order: ``notebooks/*.ipynb`` then ``labs/solutions/**/*.ipynb``.

    :param only: glob patterns matched against the relative path and the file name; any match keeps a notebook.
    """
    found = sorted((root / "notebooks").glob("*.ipynb"))
    solutions = root / "labs" / "solutions"
    if solutions.is_dir():
        found += sorted(
            p for p in solutions.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts
        )
    if only:

        def keep(p: Path) -> bool:
            rel = p.relative_to(root).as_posix()
            return any(
                fnmatch.fnmatch(rel, pat) or fnmatch.fnmatch(p.name, pat) or pat in rel
                for pat in only
            )

        found = [p for p in found if keep(p)]
    return found


def parse_value(raw: str) -> Any:
    """A ``-p`` value typed like YAML: ``7`` is an int, ``true`` a bool, ``medium`` a string."""
    import yaml

    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    return raw if value is None and raw.strip() not in ("null", "~", "None") else value


def load_parameters(
    pairs: Sequence[Sequence[str]] = (), files: Sequence[str | os.PathLike[str]] = ()
) -> dict[str, Any]:
    """Merge ``-f`` YAML files (in order) and ``-p`` pairs (which win)."""
    import yaml

    params: dict[str, Any] = {}
    for f in files:
        path = Path(f)
        if not path.is_file():
            raise NotFoundError(f"parameter file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise InvalidArgumentError(f"parameter file {path} is not valid YAML: {exc}") from exc
        if not isinstance(data, Mapping):
            raise InvalidArgumentError(f"parameter file {path} must hold a mapping of NAME: VALUE")
        params.update({str(k): v for k, v in data.items()})
    for name, value in pairs:
        params[name] = parse_value(value)
    return params


def declared_parameters(path: Path) -> dict[str, Any]:
    """The parameters a notebook's ``parameters`` cell declares (papermill's ``inspect_notebook``)."""
    import papermill

    return dict(papermill.inspect_notebook(str(path)))


def _error_text(exc: BaseException) -> str:
    ename = getattr(exc, "ename", None)
    if ename:
        cell = getattr(exc, "exec_count", None)
        return f"{ename}: {getattr(exc, 'evalue', '')} (cell {cell})"
    return f"{exc.__class__.__name__}: {exc}"


@contextlib.contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """Point file descriptor 2 at ``path`` (appending) for the duration of the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def run_batch(
    parameters: Mapping[str, Any] | None = None,
    *,
    only: Sequence[str] = (),
    out: str | os.PathLike[str] | None = None,
    root: Path = REPO_ROOT,
    home: str | os.PathLike[str] | None = None,
    port: int | None = None,
    keep_going: bool = False,
    in_place: bool = False,
    timeout: int = 900,
    kernel_name: str | None = None,
    echo: bool = True,
) -> BatchResult:
    """Execute the batch's notebooks with papermill and write the summary.

    :param parameters: name → value, passed to the notebooks that declare the name.
    :param only: glob patterns selecting notebooks (see :func:`discover`).
    :param out: output directory (default ``<root>/runs/<UTC timestamp>``).
    :param home: lab home (default ``$SHARELAB_HOME``); exported to the kernels.
    :param port: port for the provider server if this run has to start it (default ``$SHARELAB_PORT`` or 8080).
    :param keep_going: run the remaining notebooks after a failure (they usually depend on the failed one,
        so by default they are marked ``skipped``).
    :param timeout: per-cell execution timeout in seconds.
    :param in_place: write the executed notebooks over their sources: the reference run whose outputs are
        committed (and compared by nbval). Parameters are refused, so the reference uses the defaults.
    """
    from helpers.home import LabHome

    parameters = dict(parameters or {})
    if in_place and parameters:
        raise InvalidArgumentError(
            "--in-place writes the reference outputs, which must come from the default parameters; "
            "drop -p/-f or write the run elsewhere with --out"
        )
    notebooks = discover(root, only)
    if not notebooks:
        raise NotFoundError(
            f"no notebook to run under {root}/notebooks or {root}/labs/solutions"
            + (f" matching {', '.join(only)}" if only else "")
        )
    started_at = dt.datetime.now(dt.UTC)
    stamp = started_at.strftime("%Y%m%dT%H%M%SZ")
    out_dir = Path(out) if out else root / "runs" / stamp
    out_dir.mkdir(parents=True, exist_ok=True)
    lab = LabHome.resolve(home)
    # Kernels inherit the environment: this is how every notebook finds the same lab home and port.
    os.environ["SHARELAB_HOME"] = str(lab.path)
    if port:
        os.environ["SHARELAB_PORT"] = str(port)

    server_started = _start_server_if_none(lab, port, echo)
    _trust_lab_ca(lab)

    runs = [
        NotebookRun(
            notebook=p.relative_to(root).as_posix(),
            output=p.as_posix() if in_place else (out_dir / p.relative_to(root)).as_posix(),
        )
        for p in notebooks
    ]
    t0 = time.monotonic()
    failed = False
    try:
        for i, (path, run) in enumerate(zip(notebooks, runs, strict=True), 1):
            if failed and not keep_going:
                run.status = "skipped"
                continue
            declared = declared_parameters(path)
            run.parameters = {k: v for k, v in parameters.items() if k in declared}
            Path(run.output).parent.mkdir(parents=True, exist_ok=True)
            if echo:
                print(f"[{i}/{len(runs)}] {run.notebook} ", end="", flush=True)
            _execute(path, run, out_dir / "kernels.log", timeout, kernel_name)
            failed = failed or run.status == "failed"
            if echo:
                print(
                    f"{run.status} ({run.seconds:.1f} s)" + (f": {run.error}" if run.error else "")
                )
    finally:
        if server_started:
            from helpers import server

            server.stop(lab.path)
    used = {name for run in runs for name in run.parameters}
    unused = sorted(set(parameters) - used)
    if unused and echo:  # most likely a typo: say so rather than silently running the defaults
        print(f"warning: no notebook declares parameter(s) {', '.join(unused)}", file=sys.stderr)
    result = BatchResult(
        out_dir=out_dir,
        runs=runs,
        started_at=started_at.isoformat(timespec="seconds"),
        seconds=round(time.monotonic() - t0, 1),
        server_started=server_started,
    )
    write_summary(result, parameters)
    return result


def _trust_lab_ca(lab: LabHome) -> None:
    """Over TLS (``--tls``), the kernels trust the lab's CA (certifi's roots + it) for the client's API
    calls and downloads, without turning verification off."""
    tls = (lab.server_state() or {}).get("tls") or {}
    if tls.get("ca"):
        from helpers.recipient.trust import trust_env

        os.environ.update(trust_env(str(tls["ca"])))


def _start_server_if_none(lab: LabHome, port: int | None, echo: bool) -> bool:
    """Start the lab home's provider server when none runs; whether this run started it."""
    if lab.server_state() is not None:
        return False
    from helpers import server

    state = server.start(lab.path, host="127.0.0.1", port=server_port(port))
    if echo:
        print(f"started the provider server: {state.get('endpoint') or state.get('port')}")
    return True


def _execute(
    path: Path, run: NotebookRun, kernel_log: Path, timeout: int, kernel_name: str | None
) -> None:
    """Execute one notebook with papermill; record its status, error, key figures and time in ``run``."""
    import papermill

    from helpers.kernels import KERNEL_MANAGER

    start = time.monotonic()
    try:
        # Kernels inherit fd 2; their start-up chatter goes to a log file, not the terminal.
        with _stderr_to(kernel_log):
            nb = papermill.execute_notebook(
                str(path),
                run.output,
                parameters=run.parameters,
                cwd=str(path.parent),
                progress_bar=False,
                execution_timeout=timeout,
                kernel_name=kernel_name,
                kernel_manager_class=KERNEL_MANAGER,
            )
        run.status = "ok"
        run.key_figures = collect_key_figures(nb)
    except Exception as exc:  # papermill raises PapermillExecutionError and friends
        run.status = "failed"
        run.error = _error_text(exc)
        try:
            import nbformat

            run.key_figures = collect_key_figures(nbformat.read(run.output, as_version=4))
        except Exception:
            pass
    run.seconds = round(time.monotonic() - start, 1)


def write_summary(result: BatchResult, parameters: Mapping[str, Any]) -> Path:
    """Write ``summary.json`` and ``summary.html`` into the run directory."""
    data = {
        "started_at": result.started_at,
        "seconds": result.seconds,
        "ok": result.ok,
        "parameters": dict(parameters),
        "notebooks": [asdict(r) for r in result.runs],
    }
    (result.out_dir / "summary.json").write_text(
        json.dumps(data, indent=2, default=str), encoding="utf-8"
    )
    esc = html.escape
    colour = {"ok": "#1a7f37", "failed": "#cf222e", "skipped": "#9a6700"}
    rows = []
    for r in result.runs:
        rel = os.path.relpath(r.output, result.out_dir)
        figures = "".join(
            f"<li><code>{esc(str(k))}</code>: {esc(str(v))}</li>" for k, v in r.key_figures.items()
        )
        params = ", ".join(f"{esc(k)}={esc(repr(v))}" for k, v in r.parameters.items())
        rows.append(
            f'<tr><td><a href="{esc(rel)}">{esc(r.notebook)}</a></td>'
            f'<td style="color:{colour.get(r.status, "#000")};font-weight:bold">{esc(r.status)}</td>'
            f'<td style="text-align:right">{r.seconds:.1f}</td><td>{params}</td>'
            f"<td><ul>{figures}</ul></td><td><pre>{esc(r.error)}</pre></td></tr>"
        )
    ok = sum(r.status == "ok" for r in result.runs)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sharelab batch run {esc(result.started_at)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top}}ul{{margin:0;padding-left:1.2em}}
pre{{white-space:pre-wrap;margin:0}}</style></head><body>
<h1>sharelab batch run</h1>
<p>Started {esc(result.started_at)} UTC; {ok} of {len(result.runs)} notebooks ok; {result.seconds:.1f} s in total.
Parameters: <code>{esc(json.dumps(dict(parameters), default=str))}</code></p>
<table><thead><tr><th>notebook</th><th>status</th><th>seconds</th><th>parameters</th><th>key figures</th>
<th>error</th></tr></thead><tbody>
{chr(10).join(rows)}
</tbody></table></body></html>
"""
    path = result.out_dir / "summary.html"
    path.write_text(page, encoding="utf-8")
    return path


def _cmd_batch(args: argparse.Namespace) -> int:
    params = load_parameters(args.param or (), args.param_file or ())
    result = run_batch(
        params,
        only=args.only or (),
        out=args.out,
        home=args.home,
        port=args.port,
        keep_going=args.keep_going,
        in_place=args.in_place,
        timeout=args.timeout,
        root=Path(args.root).resolve() if args.root else REPO_ROOT,
    )
    ok = sum(r.status == "ok" for r in result.runs)
    print(
        f"{ok}/{len(result.runs)} notebooks ok in {result.seconds:.1f} s; summary: "
        f"{result.out_dir / 'summary.html'}"
    )
    if not result.ok:
        failed = [r.notebook for r in result.runs if r.status == "failed"]
        print(
            f"error: failed: {', '.join(failed)} (open the executed notebook to see the cell)",
            file=sys.stderr,
        )
        return 1
    return 0


def register_cli(subparsers: Any) -> None:
    """Add ``sharelab batch``."""
    p = subparsers.add_parser(
        "batch",
        help="execute every notebook and lab solution with papermill; write runs/<timestamp>/summary.html",
        description="Execute notebooks/*.ipynb then labs/solutions/**/*.ipynb in order with papermill, "
        "write the executed notebooks and summary.html to runs/<UTC timestamp>/ and exit 1 on failure.",
    )
    p.add_argument(
        "-p",
        "--parameter",
        dest="param",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        help="parameter for the notebooks that declare it (repeatable), e.g. -p seed 7",
    )
    p.add_argument(
        "-f",
        "--parameters-file",
        dest="param_file",
        action="append",
        metavar="FILE",
        help="YAML file of NAME: VALUE parameters (repeatable; -p wins)",
    )
    p.add_argument(
        "--only",
        action="append",
        metavar="PATTERN",
        help="run only notebooks whose path matches this glob or substring (repeatable)",
    )
    p.add_argument("--out", metavar="DIR", help="output directory (default: runs/<UTC timestamp>)")
    p.add_argument(
        "--port",
        type=int,
        help="port for the provider server if none runs (default: $SHARELAB_PORT, else 8080)",
    )
    p.add_argument(
        "--keep-going", action="store_true", help="run the remaining notebooks after a failure"
    )
    p.add_argument(
        "--in-place",
        action="store_true",
        help="write the executed notebooks over the sources (refresh the committed reference outputs; "
        "default parameters only)",
    )
    p.add_argument(
        "--timeout", type=int, default=900, help="per-cell timeout in seconds (default 900)"
    )
    p.add_argument("--root", help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_batch)


__all__ = [
    "BatchResult",
    "NotebookRun",
    "discover",
    "load_parameters",
    "run_batch",
    "register_cli",
    "SharelabError",
]
