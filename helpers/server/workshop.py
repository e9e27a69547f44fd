"""The workshop routes, outside the protocol's paths: progress reports in, the instructor's board out.

- ``POST /workshop/progress`` (the attendee's own bearer token): ``{"lab": "lab2_recipient", "results":
  [{"task": "r1", "status": "passed", "message": ""}, ...]}``; the latest status of each task is kept
  (:class:`helpers.catalog.workshop.WorkshopStore`). Audited as ``reportProgress``.
- ``GET /workshop/board`` (HTML, refreshes itself) and ``GET /workshop/board.json``: per attendee, profile
  activated, last request, tables read, errors seen and progress per task, plus the room's progress. Only
  for the instructor: a request from the server's own loopback, or one carrying the instructor token
  (``<lab home>/workshop/instructor.token``, made by ``sharelab workshop board``) as ``Authorization:
  Bearer`` or ``?token=``. Anyone else gets 404, as if the board did not exist.
"""

from __future__ import annotations

import hmac
import html
import ipaddress
import json
import os
import secrets
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from helpers.catalog import Recipient
from helpers.catalog.workshop import BoardRow, WorkshopStore
from helpers.home import LabHome
from helpers.server.audit import AuditInfo
from helpers.server.errors import bad_request
from helpers.server.params import parse_json_body
from helpers.server.service import SharingService

__all__ = [
    "BOARD_ROUTE",
    "PROGRESS_ROUTE",
    "board_json",
    "board_page",
    "instructor_token",
    "report_progress",
]

PROGRESS_ROUTE = "/workshop/progress"
BOARD_ROUTE = "/workshop/board"
TOKEN_FILE = ("workshop", "instructor.token")


def instructor_token(home: LabHome, *, create: bool = False) -> str | None:
    """The instructor's board token (made, 0600, when ``create`` and missing)."""
    path = home.path.joinpath(*TOKEN_FILE)
    try:
        return path.read_text(encoding="ascii").strip() or None
    except OSError:
        if not create:
            return None
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    token = "swb_" + secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(token + "\n")
    return token


def _is_instructor(request: Request, home: LabHome) -> bool:
    client = request.client.host if request.client else ""
    try:
        if ipaddress.ip_address(client).is_loopback:
            return True
    except ValueError:
        pass
    expected = instructor_token(home)
    if not expected:
        return False
    auth = request.headers.get("authorization", "")
    given = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    given = given or request.query_params.get("token", "")
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


# ======================================================================================== progress
async def report_progress(
    svc: SharingService, request: Request, info: AuditInfo, recipient: Recipient
) -> Response:
    """A progress report from an attendee's lab checks (their own token says who they are)."""
    body = parse_json_body(await request.body())
    lab, results = body.get("lab"), body.get("results")
    if not isinstance(results, list):
        raise bad_request('the body must be {"lab": NAME, "results": [{task, status}, ...]}')
    store = WorkshopStore(svc.catalog)  # a malformed item: InvalidArgumentError, answered 400
    stored = await run_in_threadpool(
        store.record_progress, recipient.name, lab if isinstance(lab, str) else "", results
    )
    return JSONResponse({"stored": stored})


# ======================================================================================== board
def _board(svc: SharingService) -> list[BoardRow]:
    return WorkshopStore(svc.catalog).board()


def _tasks(rows: list[BoardRow]) -> list[tuple[str, str]]:
    return sorted(
        {(lab, task) for r in rows for lab, tasks in r.progress.items() for task in tasks}
    )


def board_json(rows: list[BoardRow]) -> dict[str, Any]:
    """The board as JSON: attendees and, per task, how many passed."""
    tasks = _tasks(rows)
    return {
        "attendees": [r.to_json() for r in rows],
        "tasks": [
            {
                "lab": lab,
                "task": task,
                "passed": sum(r.progress.get(lab, {}).get(task) == "passed" for r in rows),
            }
            for lab, task in tasks
        ],
        "activated": sum(r.activated for r in rows),
        "size": len(rows),
    }


_CELL = {"passed": ("✔", "#2da44e"), "failed": ("✘", "#cf222e"), "not attempted": ("…", "#9a6700")}


def _bar_chart(data: dict[str, Any]) -> str:
    """An inline SVG bar chart: per task, the share of the room that passed it."""
    tasks = data["tasks"]
    size = max(int(data["size"]), 1)
    if not tasks:
        return "<p>No progress reported yet.</p>"
    width, bar = 640, 22
    parts = [f'<svg width="{width}" height="{bar * len(tasks) + 10}" role="img">']
    for i, t in enumerate(tasks):
        frac = t["passed"] / size
        y = 5 + i * bar
        label = html.escape(f"{t['lab']} {t['task']}")
        parts.append(
            f'<text x="0" y="{y + 15}" font-size="13">{label}</text>'
            f'<rect x="220" y="{y + 3}" width="{int(360 * frac)}" height="{bar - 6}" fill="#2da44e"/>'
            f'<text x="{226 + int(360 * frac)}" y="{y + 15}" font-size="12">'
            f"{t['passed']}/{size}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _table(rows: list[BoardRow]) -> str:
    tasks = _tasks(rows)
    head = "".join(f"<th>{html.escape(lab)}<br>{html.escape(t)}</th>" for lab, t in tasks)
    lines = [
        "<table><tr><th>attendee</th><th>activated</th><th>last request (UTC)</th><th>requests</th>"
        f"<th>tables read</th><th>401</th><th>403</th><th>404</th>{head}</tr>"
    ]
    for r in rows:
        cells = []
        for lab, task in tasks:
            status = r.progress.get(lab, {}).get(task)
            mark, color = _CELL.get(status or "", ("", "#fff"))
            cells.append(
                f'<td style="color:{color}" title="{html.escape(status or "")}">{mark}</td>'
            )
        last = r.last_request.strftime("%H:%M:%S") if r.last_request else "never"
        lines.append(
            f"<tr><td>{html.escape(r.name)}</td><td>{'yes' if r.activated else 'no'}</td>"
            f"<td>{last}</td><td>{r.requests}</td><td>{len(r.tables_read)}</td>"
            + "".join(f"<td>{r.errors.get(c, 0) or ''}</td>" for c in (401, 403, 404))
            + "".join(cells)
            + "</tr>"
        )
    return "\n".join(lines) + "</table>"


async def board_page(request: Request) -> Response:
    """``GET /workshop/board[.json]`` for the instructor only."""
    svc: SharingService = request.app.state.service
    if not _is_instructor(request, svc.home):
        return JSONResponse(
            {"errorCode": "RESOURCE_DOES_NOT_EXIST", "message": "No such endpoint"}, status_code=404
        )
    rows = await run_in_threadpool(_board, svc)
    data = board_json(rows)
    if request.url.path.endswith(".json"):
        return JSONResponse(data, headers={"Cache-Control": "no-store"})
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="5"><title>sharelab: workshop board</title>
<style>body{{font-family:system-ui,sans-serif;margin:1.5rem}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ddd;padding:.25rem .5rem;text-align:center}}th{{background:#f6f8fa}}</style>
</head><body><h1>Workshop board</h1>
<p>{data["activated"]} of {data["size"]} attendees activated their profile. Refreshes every 5 s.</p>
<h2>Room progress</h2>{_bar_chart(data)}<h2>Attendees</h2>{_table(rows)}
<script type="application/json" id="board">{html.escape(json.dumps(data))}</script>
</body></html>"""
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


def token_path(home: LabHome) -> Path:
    """Where the instructor token lives."""
    return home.path.joinpath(*TOKEN_FILE)
