"""``sharelab workshop add|board|grade``: the instructor's roster, board and grades.

- ``add NAME... | --csv FILE [--share S]... [--endpoint URL]``: one recipient per attendee, granted the
  shares (default: all), on the roster; prints one join link per attendee (and the CA fingerprint over TLS);
- ``board [--json]``: the board in the terminal, and the URL of the live page (with the instructor token);
- ``grade [NAME...] [--csv FILE] [--from-reports] [--timeout S] [--workers N]``: in the hub route, every attendee's
  lab notebooks graded where they are, as the attendee (:mod:`helpers.workshop.hub_grade`); otherwise (or
  with ``--from-reports``) the grade table from the progress reports;
- ``hub add NAME... | --csv FILE``, ``hub start [--port 8000] [--public-host ADDR]``, ``hub stop``,
  ``hub status``: the hub route (root only; see :mod:`helpers.workshop.hub`);
- ``hub lab [--stop] [--notebook-dir DIR]``: the instructor's JupyterLab on a root-only unix socket
  (:mod:`helpers.workshop.instructor_lab`), reached through SSH.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from helpers.catalog import open_catalog
from helpers.catalog.workshop import WorkshopStore
from helpers.home import LabHome
from helpers.server.workshop import BOARD_ROUTE, instructor_token
from helpers.workshop.grading import grade_frame, write_grades
from helpers.workshop.roster import add_attendees, read_roster_csv

__all__ = ["register_cli"]


def _cmd_add(a: argparse.Namespace) -> int:
    home = LabHome.resolve(a.home)
    names = list(a.names) + (read_roster_csv(a.csv) if a.csv else [])
    joins = add_attendees(
        open_catalog(home), home, names, shares=a.share or None, endpoint=a.endpoint
    )
    for j in joins:
        print(f"{j.name}\t{j.link}")
    state = home.server_state() or {}
    fp = (state.get("tls") or {}).get("ca_fingerprint")
    shares = ", ".join(joins[0].shares)
    print(f"# {len(joins)} attendee(s) granted {shares}; each link works once.")
    if fp:
        print(f"# lab CA SHA-256 fingerprint (read it out): {fp}")
    return 0


def _board_url(home: LabHome) -> str | None:
    state = home.server_state()
    if not state:
        return None
    token = instructor_token(home, create=True)
    base = str(state["endpoint"]).split("/delta-sharing")[0]
    return f"{base}{BOARD_ROUTE}?token={token}"


def _cmd_board(a: argparse.Namespace) -> int:
    home = LabHome.resolve(a.home)
    rows = WorkshopStore(open_catalog(home)).board()
    if a.json:
        print(json.dumps([r.to_json() for r in rows], indent=2))
        return 0
    print(f"{'attendee':<16} {'activated':<9} {'last request':<19} reqs tables 401 403 404 passed")
    for r in rows:
        last = r.last_request.strftime("%Y-%m-%d %H:%M:%S") if r.last_request else "never"
        e = r.errors
        print(
            f"{r.name:<16} {'yes' if r.activated else 'no':<9} {last:<19} {r.requests:>4} "
            f"{len(r.tables_read):>6} {e[401]:>3} {e[403]:>3} {e[404]:>3} {r.passed:>6}"
        )
    url = _board_url(home)
    print(f"live board: {url}" if url else "start the server to see the live board page")
    return 0


def _cmd_grade(a: argparse.Namespace) -> int:
    home = LabHome.resolve(a.home)
    if not a.from_reports and (home.path / "hub" / "joins.json").is_file():
        from helpers.workshop.hub_grade import grade_in_homes

        book = grade_in_homes(home, a.names or None, timeout=a.timeout, workers=a.workers)
        print(book.to_string())
        if a.csv:
            print(f"wrote {write_grades(book.reset_index(), a.csv)}")
        return 0
    frame = grade_frame(WorkshopStore(open_catalog(home)).board())
    print(frame.to_string(index=False) if len(frame) else "no attendee on the roster yet")
    if a.csv:
        print(f"wrote {write_grades(frame, a.csv)}")
    return 0


def _cmd_hub(a: argparse.Namespace) -> int:
    from helpers.workshop import hub

    home = LabHome.resolve(a.home)
    if a.hub_command == "add":
        names = list(a.names) + (read_roster_csv(a.csv) if a.csv else [])
        joins = hub.provision(home, names, shares=a.share or None)
        url = (hub.status(home) or {}).get("url", "https://<this machine>:<hub port>")
        for name, _user, code in joins:
            print(f"{name}\tjoin code {code}")
        print(f"# attendees sign in at {url}/hub/login with their name and join code")
        return 0
    if a.hub_command == "start":
        state = hub.start(
            home, host=a.host, port=a.port, public_host=a.public_host, cull_seconds=a.cull_seconds
        )
        print(f"hub running: pid {state['pid']}, {state['url']} (log {state['log']})")
        return 0
    if a.hub_command == "stop":
        print("hub stopped" if hub.stop(home) else "no hub was running")
        return 0
    if a.hub_command == "lab":
        return _cmd_lab(home, a)
    running = hub.status(home)
    print(f"hub running: pid {running['pid']}, {running['url']}" if running else "no hub running")
    return 0


def _cmd_lab(home: LabHome, a: argparse.Namespace) -> int:
    from helpers.workshop import instructor_lab

    if a.stop:
        print(
            "stopped"
            if instructor_lab.stop(home)
            else "the instructor's JupyterLab was not running"
        )
        return 0
    nb_dir = Path(a.notebook_dir).resolve() if a.notebook_dir else None
    state = instructor_lab.start(home, notebook_dir=nb_dir)
    print(f"the instructor's JupyterLab listens on {state['socket']} only (root's, no TCP port)")
    print(f"from your laptop: ssh -N -L 8888:{state['socket']} root@<this machine>")
    print(f"then open http://127.0.0.1:8888/lab?token={state['token']}")
    return 0


def _add_hub(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("hub", help="the hub route: JupyterHub, one OS user per attendee (root)")
    hs = p.add_subparsers(dest="hub_command", required=True, metavar="COMMAND")
    add = hs.add_parser("add", help="provision attendees: OS user, profile, notebooks, join code")
    add.add_argument("names", nargs="*", metavar="NAME")
    add.add_argument("--csv", default=None, metavar="FILE")
    add.add_argument("--share", action="append", default=[], metavar="SHARE")
    start = hs.add_parser("start", help="start JupyterHub over TLS in the background")
    start.add_argument("--host", default="0.0.0.0", help="interface (default 0.0.0.0)")
    start.add_argument(
        "--port", type=int, default=8000, help="port (default 8000; +1, +2 internal)"
    )
    start.add_argument("--public-host", default=None, metavar="ADDR", help="LAN address or name")
    start.add_argument("--cull-seconds", type=int, default=3600, help="stop idle servers after")
    lab = hs.add_parser("lab", help="the instructor's JupyterLab on a root-only unix socket")
    lab.add_argument("--stop", action="store_true", help="stop it")
    lab.add_argument("--notebook-dir", default=None, metavar="DIR", help="its root directory")
    hs.add_parser("stop", help="stop the hub")
    hs.add_parser("status", help="show the hub's state")
    p.set_defaults(func=_cmd_hub)


def register_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``workshop add|board|grade`` to the ``sharelab`` command."""
    p = subparsers.add_parser("workshop", help="the workshop roster, live board and grades")
    sub = p.add_subparsers(dest="workshop_command", required=True, metavar="COMMAND")
    add = sub.add_parser(
        "add", help="add attendees (recipients + grants) and print their join links"
    )
    add.add_argument("names", nargs="*", metavar="NAME", help="attendee names (recipient names)")
    add.add_argument("--csv", default=None, metavar="FILE", help="a roster CSV (a 'name' column)")
    add.add_argument(
        "--share",
        action="append",
        default=[],
        metavar="SHARE",
        help="share to grant (default: all)",
    )
    add.add_argument(
        "--endpoint", default=None, metavar="URL", help="default: the running server's"
    )
    add.set_defaults(func=_cmd_add)
    board = sub.add_parser("board", help="who activated, reads, fails, and progress per task")
    board.add_argument("--json", action="store_true", help="print the board as JSON")
    board.set_defaults(func=_cmd_board)
    grade = sub.add_parser(
        "grade",
        help="grade the attendees' lab notebooks in their homes (hub route), else from progress reports",
    )
    grade.add_argument("names", nargs="*", metavar="NAME", help="only these attendees (hub route)")
    grade.add_argument("--csv", default=None, metavar="FILE", help="also write it as CSV")
    grade.add_argument(
        "--from-reports", action="store_true", help="use the progress reports even in the hub route"
    )
    grade.add_argument("--timeout", type=int, default=600, help="seconds per notebook (hub route)")
    grade.add_argument(
        "--workers", type=int, default=2, help="attendees graded at once (hub route)"
    )
    grade.set_defaults(func=_cmd_grade)
    _add_hub(sub)
