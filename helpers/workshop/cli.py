"""``sharelab workshop add|board|grade``: the instructor's roster, board and grades.

- ``add NAME... | --csv FILE [--share S]... [--endpoint URL]``: one recipient per attendee, granted the
  shares (default: all), on the roster; prints one join link per attendee (and the CA fingerprint over TLS);
- ``board [--json]``: the board in the terminal, and the URL of the live page (with the instructor token);
- ``grade [--csv FILE]``: the grade table from the progress reports;
- ``hub add NAME... | --csv FILE``, ``hub start [--port 8000] [--public-host ADDR]``, ``hub stop``,
  ``hub status``: the hub route (root only; see :mod:`helpers.workshop.hub`).
"""

from __future__ import annotations

import argparse
import json

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
    running = hub.status(home)
    print(f"hub running: pid {running['pid']}, {running['url']}" if running else "no hub running")
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
    grade = sub.add_parser("grade", help="the grade table from the attendees' progress reports")
    grade.add_argument("--csv", default=None, metavar="FILE", help="also write it as CSV")
    grade.set_defaults(func=_cmd_grade)
    _add_hub(sub)
