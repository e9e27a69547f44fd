"""Workshop hub route under load: N attendees run notebook 03 at the same moment (issue 19).

Builds a lab home (airline ``small`` + seed 000's shares), starts the provider over TLS and the hub,
provisions N attendees (OS users ``sl-bw<i>``), starts all their servers through the hub's REST API, then in
every attendee's kernel runs ``papermill notebooks/03_recipient_open_client.ipynb`` with the attendee's own
profile, all started together. Prints: errors, servers-up time, time to the last notebook done, and p50/p99
per attendee. Needs root (OS users), the npm proxy and ``.hub-venv`` (``./run-demo.sh workshop``).

    .venv/bin/python benchmarks/bench_workshop.py --attendees 30
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
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
from tests.workshop.hubclient import Hub  # noqa: E402

RUN_03 = """
import os, subprocess, sys, time
t0 = time.perf_counter()
home = os.path.expanduser('~')
done = subprocess.run([os.path.join(os.path.dirname(sys.executable), 'papermill'),
    home + '/notebooks/03_recipient_open_client.ipynb', home + '/out-03.ipynb',
    '-p', 'profile_path', home + '/me.share', '--no-progress-bar', '--start-timeout', '300'], capture_output=True, text=True)
print(done.returncode, round(time.perf_counter() - t0, 2))
if done.returncode: print(done.stderr[-2000:])
"""


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--attendees", type=int, default=30)
    ap.add_argument("--keep", action="store_true", help="keep the lab home and the OS users")
    args = ap.parse_args()
    n = args.attendees
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
        t0 = time.perf_counter()
        with ThreadPoolExecutor(n) as pool:
            outs = list(pool.map(lambda u: h.run(u, RUN_03, timeout=900), users))
        last_done = time.perf_counter() - t0
        per, errors = [], []
        for user, out in zip(users, outs, strict=True):
            first = (out["stdout"].split("\n") or [""])[0].split()
            if out["error"] or len(first) != 2 or first[0] != "0":
                errors.append((user, out["error"] or out["stdout"][-500:]))
            else:
                per.append(float(first[1]))
        print(
            f"| attendees | {n} |\n| provisioning (OS users, profiles, notebooks) | {provisioned:.1f} s |"
        )
        print(f"| all servers up through the REST API | {servers_up:.1f} s |")
        print(f"| notebook 03, started together: last one done | {last_done:.1f} s |")
        if per:
            print(
                f"| per attendee p50 / p99 | {statistics.median(per):.1f} s / {_pct(per, 0.99):.1f} s |"
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
