"""What the server's limits cost (issue 13): ``/query`` throughput with and without them, in one run.

Not a test: it prints a table and exits 0 whatever the figures are (``--strict`` exits 1 when the cost
is 5% or more). Two servers run on the same temporary lab home and tables, on free loopback ports:

- **limits**: as ``sharelab serve`` runs: the request-head timeout and connection cap protocol
  (:mod:`helpers.server.connections`), the body size limit, the failure throttle, and the durable audit
  (each response waits for the group commit of its audit row);
- **bare**: plain uvicorn httptools (the same parser), the body read unbounded, and audit rows queued without waiting
  (the server before issue 13).

The limits server's failure throttle is the one ``sharelab serve`` uses with several workers (its default
on 2+ cores): shared through the catalog (``--throttle memory``: the one-worker, in-memory one). Both
servers are single processes, so their CPU per request can be read (psutil).

Each measure runs ``--rounds`` interleaved A/B rounds of ``--seconds`` seconds, the order swapped every
round (bare, limits; limits, bare; ...), so drift and other load hit both alike. Reported per measure:

- the median requests/s of each, and the **cost**: 1 - the median of the rounds' paired
  limits/bare throughput ratios (``--strict`` judges this one), with the cost between the best rounds
  beside it;
- the server's CPU microseconds per request of each (user + system time of the server process / its
  requests: much less disturbed by other load than throughput) and the median paired CPU ratio;
- the CPU the limits add to one request, timed in this process, as a share of the bare CPU per request;
- the load average at the start and the end.

Measures:

1. one client, keep-alive, ``POST /query`` of a 100-file table (whole response read);
2. 8 concurrent clients, the same;
3. one client, ``POST /query`` of a 2,000-file table.

Run: ``.venv/bin/python benchmarks/bench_limits.py [--rounds 6] [--seconds 3] [--throttle shared|memory]
[--strict]`` (about 2 minutes with the defaults).
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
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
        http: Any = "httptools"  # the same parser as the limited server, without its limits
    else:
        http = limited_protocol(limits)
    app = create_app(home, limits=limits)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        http=http,
        loop="asyncio",
        access_log=False,
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


def _start(mode: str, home: Path, workers: str) -> tuple[subprocess.Popen[bytes], str]:
    """One server process of ``mode``; ``workers`` is what its throttle is chosen for
    (``$SHARELAB_WORKERS``: > 1 shares it through the catalog, see ``helpers.server.cluster``)."""
    from helpers.procs import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", mode, str(home), str(port)],
        cwd=REPO,
        env=dict(os.environ, SHARELAB_HOME=str(home), SHARELAB_WORKERS=workers),
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if requests.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except requests.RequestException:
            time.sleep(0.1)
    raise SystemExit(f"the {mode} server did not start")


@dataclass
class Round:
    """One timed round against one server."""

    requests: int
    seconds: float
    cpu_seconds: float
    """The server process's CPU time (user + system) during the round."""

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_us(self) -> float:
        """Server CPU microseconds per request (little disturbed by other load on the machine)."""
        return self.cpu_seconds / max(1, self.requests) * 1e6


def _round(url: str, pid: int, token: str, table: str, clients: int, seconds: float) -> Round:
    """``clients`` keep-alive clients posting ``/query`` for ``seconds``; the server's CPU alongside."""
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

    server = psutil.Process(pid)
    threads = [threading.Thread(target=run, args=(n,)) for n in range(clients)]
    cpu0 = sum(server.cpu_times()[:2])
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    return Round(sum(done), elapsed, sum(server.cpu_times()[:2]) - cpu0)


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} cores)"


def _per_request_cpu(home: Path) -> tuple[float, float]:
    """Microseconds of CPU the limits add to one successful request, measured in this process: the audit
    journal append, the request-head timer's arm and disarm, and the throttle check, in memory (one
    worker) and shared through the catalog (several workers: the shared-memory marks skip the read)."""
    import asyncio

    from helpers.catalog import AuditEvent, Catalog
    from helpers.server.audit_journal import AuditJournal
    from helpers.server.cluster import CatalogThrottle
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
    loop = asyncio.new_event_loop()
    n = 20_000
    figures = []
    shared = CatalogThrottle(cat.db, 30, 0.5)
    shared.failed("192.0.2.1")  # another address failed lately: its slot only is read through
    for throttle in (FailureThrottle(30, 0.5), shared):
        started = time.perf_counter()
        for _ in range(n):
            journal.append("event", event, lambda seq: None)
            throttle.retry_after("127.0.0.1")
            loop.call_later(10.0, lambda: None).cancel()
        figures.append((time.perf_counter() - started) / n * 1e6)
    journal.committed(2 * n)
    journal.close()
    loop.close()
    cat.close()
    return figures[0], figures[1]


@dataclass
class Measure:
    label: str
    table: str
    clients: int
    rounds: dict[str, list[Round]] = field(default_factory=lambda: {"bare": [], "limits": []})

    def paired_cost(self) -> float:
        """1 - the median of the rounds' limits/bare throughput ratios, in percent."""
        ratios = [
            lim.rate / bare.rate
            for lim, bare in zip(self.rounds["limits"], self.rounds["bare"], strict=True)
        ]
        return (1 - statistics.median(ratios)) * 100

    def best_cost(self) -> float:
        """Between the best round of each (the least disturbed), in percent."""
        best = {m: max(r.rate for r in rs) for m, rs in self.rounds.items()}
        return (1 - best["limits"] / best["bare"]) * 100

    def rate(self, mode: str) -> float:
        return statistics.median(r.rate for r in self.rounds[mode])

    def cpu_us(self, mode: str) -> float:
        return statistics.median(r.cpu_us for r in self.rounds[mode])

    def cpu_cost(self) -> float:
        """The median of the rounds' limits/bare server-CPU-per-request ratios - 1, in percent."""
        ratios = [
            lim.cpu_us / bare.cpu_us
            for lim, bare in zip(self.rounds["limits"], self.rounds["bare"], strict=True)
        ]
        return (statistics.median(ratios) - 1) * 100


def _measure(
    m: Measure, servers: dict[str, tuple[str, int]], token: str, rounds: int, seconds: float
) -> None:
    for url, pid in servers.values():  # warm-up
        _round(url, pid, token, m.table, m.clients, 0.5)
    for i in range(rounds):
        # interleaved A/B rounds, the order swapped every round (ABBA): drift hits both alike
        for mode in ("bare", "limits") if i % 2 == 0 else ("limits", "bare"):
            url, pid = servers[mode]
            m.rounds[mode].append(_round(url, pid, token, m.table, m.clients, seconds))


def _report(measures: list[Measure], cpu: tuple[float, float]) -> float:
    """Print the table; returns the worst paired throughput cost."""
    print(
        f"\n{'measure':30} {'bare req/s':>10} {'limits req/s':>12} {'cost (median':>13}"
        f" {'best':>6}  target {'':6} {'server CPU us/req':>17} {'CPU cost':>9}"
    )
    print(f"{'':30} {'(median)':>10} {'(median)':>12} {'of pairs)':>13} {'round)':>6}")
    worst = 0.0
    for m in measures:
        cost = m.paired_cost()
        worst = max(worst, cost)
        ok = "ok" if cost < 5 else "MISSED"
        print(
            f"{m.label:30} {m.rate('bare'):10.1f} {m.rate('limits'):12.1f} {cost:12.1f}% "
            f"{m.best_cost():5.1f}%  < 5%   {ok:6} "
            f"{m.cpu_us('bare'):8.0f} -> {m.cpu_us('limits'):5.0f} {m.cpu_cost():8.1f}%"
        )
    memory, shared = cpu
    print(
        "\nCPU the limits add per request, measured in this process (journal append, head timer, "
        f"throttle check): {memory:.1f} us (1 worker), {shared:.1f} us (shared throttle)"
    )
    for m in measures:
        per = m.cpu_us("bare")
        print(
            f"  = {shared / per * 100:5.2f}% of the bare server's CPU per {m.label} ({per:.0f} us)"
        )
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6, help="interleaved A/B rounds per measure")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one round")
    parser.add_argument(
        "--throttle",
        choices=("shared", "memory"),
        default="shared",
        help="the limits server's failure throttle: shared through the catalog (as with several "
        "workers, the default of sharelab serve on 2+ cores) or in memory (one worker)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when a median paired cost is >= 5%%"
    )
    parser.add_argument(
        "--serve", nargs=3, metavar=("MODE", "HOME", "PORT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.serve:
        _serve(args.serve[0], args.serve[1], int(args.serve[2]))
        return 0
    print(f"start: {_load()}", flush=True)
    home = Path(tempfile.mkdtemp(prefix="sharelab-bench-limits-"))
    procs = []
    try:
        token = _build(home)
        servers = {}
        for mode in ("limits", "bare"):
            workers = "2" if mode == "limits" and args.throttle == "shared" else "1"
            proc, url = _start(mode, home, workers)
            procs.append(proc)
            servers[mode] = (url, proc.pid)
        measures = [
            Measure("/query 100 files, 1 client", "t100", 1),
            Measure("/query 100 files, 8 clients", "t100", 8),
            Measure("/query 2,000 files, 1 client", "t2000", 1),
        ]
        for m in measures:
            _measure(m, servers, token, args.rounds, args.seconds)
        worst = _report(measures, _per_request_cpu(home))
        print(f"\nend: {_load()}; throttle of the limits server: {args.throttle}")
        if os.getloadavg()[0] > 0.5 * (os.cpu_count() or 1):
            print("the machine was busy: compare the CPU columns, and run again on a quiet machine")
        return 1 if args.strict and worst >= 5 else 0
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
