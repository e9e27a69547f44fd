"""What the server's limits cost (issue 13): ``/query`` throughput with and without them, in one run.

Not a test: it prints a table and exits 0 whatever the figures are (``--strict`` exits 1 when the cost
is 5% or more). Two servers run on the same temporary lab home and tables, on free loopback ports:

- **limits**: as ``sharelab serve`` runs: the request-head timeout and connection cap protocol
  (:mod:`helpers.server.connections`), the body size limit, the failure throttle, and the durable audit
  (each response waits for the group commit of its audit row);
- **bare**: plain uvicorn h11, the body read unbounded, and audit rows queued without waiting
  (the server before issue 13).

Each measure alternates the two servers for ``--rounds`` rounds of ``--seconds`` seconds (so a busy
machine slows both alike) and reports requests/s of the best round of each (the round least disturbed
by other load) and the cost in percent, with the cost between the medians beside it:

1. one client, keep-alive, ``POST /query`` of a 100-file table (whole response read);
2. 8 concurrent clients, the same;
3. one client, ``POST /query`` of a 2,000-file table.

Run: ``.venv/bin/python benchmarks/bench_limits.py [--rounds 5] [--seconds 3] [--strict]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _serve(mode: str, home: str, port: int) -> None:
    """The server process of one mode (``--serve``)."""
    import uvicorn

    from helpers.server.app import create_app
    from helpers.server.audit import AuditWriter
    from helpers.server.audit_journal import AuditJournal
    from helpers.server.connections import limited_protocol
    from helpers.server.limits import ServerLimits

    limits = ServerLimits()
    if mode == "bare":
        import asyncio

        def submit(self: AuditWriter, event: Any, *, failure: bool = False) -> Any:
            self.put(event)  # queued, never waited for (the old behaviour)
            done = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done

        AuditWriter.submit = submit  # type: ignore[method-assign]

        def append(self: AuditJournal, kind: str, obj: Any, then: Any) -> None:
            then(None)  # no journal line: the row waits in memory only (the old behaviour)

        AuditJournal.append = append  # type: ignore[method-assign]
        limits = ServerLimits(max_body_bytes=1 << 40, auth_failure_burst=1 << 30)
        http: object = "h11"
    else:
        http = limited_protocol(limits)
    app = create_app(home, limits=limits)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        http=http,
        loop="asyncio",
        access_log=False,  # type: ignore[arg-type]
        log_level="warning",
        timeout_keep_alive=30,
    )


def _table(path: Path, files: int) -> None:
    """``files`` small files: commits of 10 partitions (one file each)."""
    from deltalake import write_deltalake

    for c in range(files // 10):
        ids = [c * 100 + j for j in range(100)]
        write_deltalake(
            str(path),
            pa.table({"id": pa.array(ids, pa.int64()), "part": [i % 10 for i in ids]}),
            partition_by=["part"],
            mode="append",
        )


def _build(home: Path) -> str:
    from helpers.catalog import Catalog

    _table(home / "t100", 100)
    _table(home / "t2000", 2000)
    cat = Catalog(home / "catalog.db")
    cat.register_table("lab.b.t100", str(home / "t100"))
    cat.register_table("lab.b.t2000", str(home / "t2000"))
    cat.create_share("bench")
    cat.add_table_to_share("bench", "lab.b.t100", alias="s.t100")
    cat.add_table_to_share("bench", "lab.b.t2000", alias="s.t2000")
    cat.create_recipient("r")
    cat.grant("bench", "r")
    token = cat.issue_token("r").token
    cat.close()
    return token


def _start(mode: str, home: Path) -> tuple[subprocess.Popen[bytes], str]:
    from helpers.procs import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", mode, str(home), str(port)],
        cwd=REPO,
        env=dict(os.environ, SHARELAB_HOME=str(home)),
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if requests.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except requests.RequestException:
            time.sleep(0.1)
    raise SystemExit(f"the {mode} server did not start")


def _rate(url: str, token: str, table: str, clients: int, seconds: float) -> float:
    """Completed ``/query`` requests per second."""
    path = f"{url}/delta-sharing/shares/bench/schemas/s/tables/{table}/query"
    done = [0] * clients
    stop = time.monotonic() + seconds

    def run(n: int) -> None:
        session = requests.Session()
        headers = {"Authorization": f"Bearer {token}"}
        while time.monotonic() < stop:
            r = session.post(path, json={}, headers=headers, timeout=30)
            assert r.status_code == 200 and r.content
            done[n] += 1

    threads = [threading.Thread(target=run, args=(n,)) for n in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.monotonic() - started)


def _per_request_cpu(home: Path) -> float:
    """Microseconds of CPU the limits add to one request, measured in this process (insensitive to other
    load): the audit journal append, the throttle check and the request-head timer's arm and disarm."""
    import asyncio

    from helpers.catalog import AuditEvent, Catalog
    from helpers.server.audit_journal import AuditJournal
    from helpers.server.throttle import FailureThrottle

    cat = Catalog(home / "catalog.db")
    journal = AuditJournal(home / "cpu-bench", cat)
    event = AuditEvent(
        action="queryTable",
        recipient="r",
        share="bench",
        schema="s",
        table="t100",
        num_files=100,
        status_code=200,
        user_agent="python-requests/2",
        client_address="127.0.0.1",
        duration_ms=3.2,
        response_format="parquet",
    )
    throttle = FailureThrottle(30, 0.5)
    loop = asyncio.new_event_loop()
    n = 20_000
    started = time.perf_counter()
    for _ in range(n):
        journal.append("event", event, lambda seq: None)
        throttle.retry_after("127.0.0.1")
        loop.call_later(10.0, lambda: None).cancel()
    elapsed = (time.perf_counter() - started) / n * 1e6
    journal.committed(n)
    journal.close()
    loop.close()
    cat.close()
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per measure")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one round")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a cost is >= 5%%")
    parser.add_argument(
        "--serve", nargs=3, metavar=("MODE", "HOME", "PORT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.serve:
        _serve(args.serve[0], args.serve[1], int(args.serve[2]))
        return 0
    home = Path(tempfile.mkdtemp(prefix="sharelab-bench-limits-"))
    procs = []
    try:
        token = _build(home)
        servers = {}
        for mode in ("limits", "bare"):
            proc, url = _start(mode, home)
            procs.append(proc)
            servers[mode] = url
        measures = [
            ("/query 100 files, 1 client", "t100", 1),
            ("/query 100 files, 8 clients", "t100", 8),
            ("/query 2,000 files, 1 client", "t2000", 1),
        ]
        rows = []
        worst = 0.0
        for label, table, clients in measures:
            for url in servers.values():  # warm-up
                _rate(url, token, table, clients, 0.5)
            rates: dict[str, list[float]] = {"limits": [], "bare": []}
            for _ in range(args.rounds):
                for mode in ("bare", "limits"):
                    rates[mode].append(_rate(servers[mode], token, table, clients, args.seconds))
            # best round of each (the least disturbed by other load: what the code costs), and medians
            lim, bare = max(rates["limits"]), max(rates["bare"])
            med_lim, med_bare = statistics.median(rates["limits"]), statistics.median(rates["bare"])
            cost = (1 - lim / bare) * 100
            worst = max(worst, cost)
            rows.append((label, bare, lim, cost, (1 - med_lim / med_bare) * 100))
        print(
            f"\n{'measure':34} {'bare req/s':>11} {'limits req/s':>13} {'cost':>8}  target"
            f"  {'(median cost)':>14}"
        )
        for label, bare, lim, cost, med in rows:
            ok = "ok" if cost < 5 else "MISSED"
            print(f"{label:34} {bare:11.1f} {lim:13.1f} {cost:7.1f}%  < 5%  {ok:6} {med:7.1f}%")
        cpu = _per_request_cpu(home)
        print(
            f"\nCPU the limits add per request (journal append, throttle check, head timer): {cpu:.1f} us"
        )
        for label, bare, _lim, _cost, _med in rows:
            print(
                f"  = {cpu / (1e6 / bare) * 100:5.2f}% of one {label} at the bare rate ({1e6 / bare:.0f} us)"
            )
        return 1 if args.strict and worst >= 5 else 0
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
