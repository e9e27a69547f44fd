"""Workshop hub route under load: N attendees run notebook 03 (and, with ``--lessons``, lab 2) (issue 19).

Builds a lab home (airline ``small`` + seed 000's shares), starts the provider over TLS and the hub,
provisions N attendees (OS users ``sl-bw<i>``), starts all their servers through the hub's REST API, then in
every attendee's kernel runs ``papermill`` on the attendee's own notebook 03 (pointed at their profile by
the provisioning) and, with ``--lessons``, their lab 2 with every answer filled in (then the board must
show 6 tasks passed for each). Each run costs two kernels (the driver and papermill's), so the runs are
admitted ``--concurrency`` at a time (default 2 x cores; a room of 30 on 2 cores once lost a kernel with
60 of them alive) and arrive ``--stagger`` seconds apart, as a room does; ``--concurrency 0`` starts them
all at the same moment. Prints: the load average, errors, servers-up time, time to the last one done, and
p50/p99 per attendee (its run, and its wait for a slot). Needs root (OS users), the npm proxy and
``.hub-venv`` (``./run-demo.sh workshop``).

    .venv/bin/python benchmarks/bench_workshop.py --attendees 30
    .venv/bin/python benchmarks/bench_workshop.py --attendees 10 --lessons
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers.datagen import generate  # noqa: E402
from helpers.home import LabHome  # noqa: E402
from helpers.procs import free_port  # noqa: E402
from helpers.provider import Provider  # noqa: E402
from helpers.server.lifecycle import start as start_provider  # noqa: E402
from helpers.server.lifecycle import stop as stop_provider  # noqa: E402
from helpers.workshop import hub  # noqa: E402
from tests.support import SEED_000_SQL  # noqa: E402
from tests.workshop import lessons  # noqa: E402
from tests.workshop.hubclient import Hub  # noqa: E402

RUN = """
import os, time
import papermill as pm
t0 = time.perf_counter()
home = os.path.expanduser('~')
try:
    for rel in {notebooks!r}:
        path = os.path.join(home, rel)
        pm.execute_notebook(path, path, cwd=os.path.dirname(path), progress_bar=False,
                            kernel_name='python3', start_timeout=300,
                            kernel_manager_class='helpers.kernels.IpcKernelManager')
    print(0, round(time.perf_counter() - t0, 2))
except Exception as exc:
    print(1, round(time.perf_counter() - t0, 2)); print(repr(exc)[-2000:])
"""


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--attendees", type=int, default=30)
    ap.add_argument("--keep", action="store_true", help="keep the lab home and the OS users")
    ap.add_argument("--lessons", action="store_true", help="notebook 03 and lab 2 (all answered)")
    ap.add_argument("--concurrency", type=int, default=2 * (os.cpu_count() or 1))
    ap.add_argument("--stagger", type=float, default=0.5, help="seconds between arrivals")
    args = ap.parse_args()
    n = args.attendees
    print(
        f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)"
    )
    home = LabHome.resolve(Path(tempfile.mkdtemp(prefix="bench-workshop-")) / "home")
    generate("airline", home.path, scale="small", progress=False)
    Provider(home.path).sql(SEED_000_SQL)
    start_provider(home, port=free_port(), tls=True)
    joins: list[tuple[str, str, str]] = []
    try:
        t0 = time.perf_counter()
        joins = hub.provision(home, [f"bw{i}" for i in range(n)])
        provisioned = time.perf_counter() - t0
        state = hub.start(home, host="127.0.0.1", port=free_port(), timeout=180)
        h = Hub(state["url"], hub.api_token(home), str(home.path / "tls" / "ca.pem"))
        users = [u for _n, u, _c in joins]
        h.api("POST", "/users", json={"usernames": users})
        t0 = time.perf_counter()
        with ThreadPoolExecutor(n) as pool:
            list(pool.map(lambda u: h.start_server(u, timeout=600), users))
        servers_up = time.perf_counter() - t0
        notebooks = [lessons.NB03] + ([lessons.LAB2] if args.lessons else [])
        if args.lessons:
            for user in users:
                lessons.do_lab2(user, set(lessons.TASKS), set())
        code = RUN.format(notebooks=tuple(notebooks))
        slots = threading.BoundedSemaphore(args.concurrency or n)
        waits: list[float] = []
        t0 = time.perf_counter()

        def attend(i_user: tuple[int, str]) -> dict:
            i, user = i_user
            time.sleep(i * args.stagger if args.concurrency else 0)
            arrived = time.perf_counter()
            with slots:
                waits.append(time.perf_counter() - arrived)
                return h.run(user, code, timeout=1800)

        with ThreadPoolExecutor(n) as pool:
            outs = list(pool.map(attend, enumerate(users)))
        last_done = time.perf_counter() - t0
        load = os.getloadavg()
        per, errors = [], []
        for user, out in zip(users, outs, strict=True):
            first = (out["stdout"].split("\n") or [""])[0].split()
            if out["error"] or len(first) != 2 or first[0] != "0":
                errors.append((user, out["error"] or out["stdout"][-500:]))
            else:
                per.append(float(first[1]))
        if args.lessons:
            from helpers.catalog import open_catalog
            from helpers.catalog.workshop import WorkshopStore

            time.sleep(3)  # the audit and progress writes land
            board = WorkshopStore(open_catalog(home)).board()
            wrong = [
                r.name
                for r in board
                if r.progress.get("recipient", {}) != lessons.expected(set(lessons.TASKS), set())
            ]
            errors += [(name, "the board does not show its 6 tasks passed") for name in wrong]
        print(
            f"| attendees | {n} |\n| provisioning (OS users, profiles, notebooks) | {provisioned:.1f} s |"
        )
        print(f"| all servers up through the REST API | {servers_up:.1f} s |")
        what = "notebook 03 + lab 2" if args.lessons else "notebook 03"
        how = (
            f"{args.concurrency} at a time, arriving {args.stagger:g} s apart"
            if args.concurrency
            else "all started together"
        )
        print(f"| {what} ({how}): last one done | {last_done:.1f} s |")
        if per:
            print(
                f"| per attendee run p50 / p99 | {statistics.median(per):.1f} s / {_pct(per, 0.99):.1f} s |"
            )
            print(
                f"| per attendee wait for a slot p50 / p99 | {statistics.median(waits):.1f} s / {_pct(waits, 0.99):.1f} s |"
            )
        print(
            f"| load average after the runs (1/5/15 min) | {' '.join(f'{x:.2f}' for x in load)} |"
        )
        print(f"| errors | {len(errors)} |")
        for user, err in errors[:3]:
            print(f"  {user}: {err}")
        return 1 if errors else 0
    finally:
        if not args.keep:
            st = hub.status(home)
            if st:
                h = Hub(st["url"], hub.api_token(home), str(home.path / "tls" / "ca.pem"))
                for _n, user, _c in joins:
                    h.api("DELETE", f"/users/{user}/server")
                time.sleep(3)
            hub.stop(home)
            stop_provider(home)
            for _n, user, _c in joins:
                ps = subprocess.run(
                    ["ps", "-u", user, "-o", "pid="], capture_output=True, text=True
                )
                for pid in ps.stdout.split():
                    try:
                        os.kill(int(pid), 15)
                    except ProcessLookupError:
                        pass
                subprocess.run(["userdel", "-r", user], capture_output=True)


if __name__ == "__main__":
    sys.exit(main())
