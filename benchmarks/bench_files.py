"""Benchmark of the file path (issue 20, items 5 and 7): sharelab vs nginx serving the same files, one run.

Not a test: it prints figures and ratios side by side and exits 0. It builds Delta tables in a temporary
directory, starts a sharelab server (1 worker) and an nginx from Debian's packages on loopback ports, and
removes everything at the end. The load average is printed with the figures (clients and servers share
the cores).

The static side: nginx serves the tables' parquet files with ``sendfile`` from ``/static/``; the
protocol requests go to sharelab through nginx (``proxy_pass``) except ``/query``, which nginx answers
from a file holding sharelab's own ``/query`` response with every URL rewritten to the static file. So the
official client makes the same requests in both runs; only who serves the files differs.

1. per-request cost of a HEAD and of a 64 KiB Range GET on a signed URL (one keep-alive connection,
   http.client): median latency and server CPU per request, sharelab vs nginx, and vs the least a Python
   server costs here (``floor_server.py``: asyncio + httptools, the same files from memory, no checks);
2. the official client's ``load_as_pandas`` of tables of 1, 8 and 64 files: sharelab vs the static
   server (ratio; target <= 1.05x), requests per file, server CPU per load, bytes the server read
   (``rchar``) vs the table's size;
3. one file downloaded with curl (a non-Python client): sharelab vs nginx (target >= 0.9x), server CPU
   seconds per GB; and sharelab behind nginx with the ``X-Accel-Redirect`` hand-off: the replica's CPU per
   download (target: near zero); the official client's own download rate, as the client's figure;
4. the official client through nginx in front of sharelab with links nginx checks itself
   (``SHARELAB_SECURE_LINK_PREFIX``: no download reaches the replica) vs the static server (<= 1.05x),
   and the replica's CPU per load (its ``/query`` and metadata requests only).

Measures 1-3 also show a second sharelab server whose every request goes through ASGI
(``SHARELAB_DIRECT_DOWNLOADS=0``: no direct answers, :mod:`helpers.server.direct`), on a second lab home
sharing the same tables, interleaved with the others: the direct answers' gain in the same run.

Run: ``.venv/bin/python benchmarks/bench_files.py [--quick]``.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import numpy as np
import pandas as pd
import psutil
import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from deltalake import DeltaTable, write_deltalake  # noqa: E402

from helpers.catalog import open_catalog  # noqa: E402
from helpers.procs import free_port  # noqa: E402
from helpers.provider import Provider  # noqa: E402
from helpers.server.securelink import write_conf  # noqa: E402
from tests.nginx import NGINX, start_nginx  # noqa: E402
from tests.support import RunningServer, start_server, stop_server  # noqa: E402

ROWS = 200_000


# ----------------------------------------------------------------------------------------- set-up
def make_tables(root: Path, home: Path, big_mb: int) -> dict[str, Path]:
    rng = np.random.default_rng(42)
    tables: dict[str, Path] = {}
    for n in (1, 8, 64):
        path = root / "data" / "linked" / f"t{n}"  # under the link root of measure 4
        per = ROWS // n
        for i in range(n):
            frame = pd.DataFrame(
                {
                    "id": np.arange(i * per, (i + 1) * per),
                    "amount": rng.random(per),
                    "city": [f"city_{x % 50}" for x in range(per)],
                }
            )
            write_deltalake(str(path), frame, mode="append")
        tables[f"t{n}"] = path
    big = root / "data" / "big"  # one large file of incompressible bytes for the stream
    rows = big_mb * 4
    write_deltalake(
        str(big),
        pd.DataFrame({"id": range(rows), "blob": [os.urandom(256 * 1024) for _ in range(rows)]}),
    )
    tables["big"] = big
    register(home, tables)
    return tables


def register(home: Path, tables: dict[str, Path]) -> None:
    """Share ``tables`` from the lab home ``home`` as ``s.sch.<name>`` to recipient ``r``."""
    sql = ["CREATE SHARE s"]
    for name, path in tables.items():
        sql += [
            f"CREATE TABLE b.sch.{name} LOCATION '{path}'",
            f"ALTER SHARE s ADD TABLE b.sch.{name}",
        ]
    sql += ["CREATE RECIPIENT r", "GRANT SELECT ON SHARE s TO RECIPIENT r"]
    Provider(home).sql(";".join(sql))


def nginx_conf(
    prefix: Path,
    listen: int,
    upstream: int,
    root: Path,
    responses: Path,
    versions: dict[str, str],
    proxy_listen: int,
    link_conf: Path,
    floor: tuple[int, Path],
) -> Path:
    """Port ``listen``: the static side (files and /query answers from disk, the rest proxied); port
    ``proxy_listen``: sharelab behind nginx as docker/nginx/ has it (X-Accel and secure_link locations);
    ``floor``: (port, answers) of the same static side whose /query answers name the bare Python server."""
    user = "user root;" if os.geteuid() == 0 else ""

    def answered(responses: Path) -> str:
        return "\n".join(
            f"""        location = /delta-sharing/shares/s/schemas/sch/tables/{name}/query {{
            root {responses};
            default_type application/x-ndjson;
            add_header Delta-Table-Version {version} always;
            error_page 405 =200 $uri;  # the static module refuses POST: serve the file anyway
        }}"""
            for name, version in versions.items()
            if (responses / f"delta-sharing/shares/s/schemas/sch/tables/{name}/query").exists()
        )

    proxied = """        location / {
            proxy_pass http://sharelab;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_buffering off;
        }"""
    text = f"""
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
{user}
events {{ worker_connections 1024; }}
http {{
    log_format counted '$request_method $uri $status';
    access_log {prefix}/access.log counted;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    default_type application/octet-stream;
    upstream sharelab {{ server 127.0.0.1:{upstream}; keepalive 32; }}  # as docker/nginx/ has it
    server {{
        listen 127.0.0.1:{listen};
        location /static/ {{ alias {root}/; }}
{answered(responses)}
{proxied}
    }}
    server {{
        listen 127.0.0.1:{floor[0]};
{answered(floor[1])}
{proxied}
    }}
    server {{
        listen 127.0.0.1:{proxy_listen};
        location / {{
            proxy_pass http://sharelab;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_buffering off;
        }}
        location /_sharelab_files/ {{ internal; alias /; }}
        location /_sharelab_link/ {{
            include {link_conf};
            secure_link $arg_md5,$arg_expires;
            secure_link_md5 "$secure_link_expires$uri $sharelab_link_secret";
            if ($secure_link = "") {{ return 403; }}
            if ($secure_link = "0") {{ return 403; }}
            alias {root}/linked/;
        }}
    }}
}}
"""
    conf = prefix / "nginx.conf"
    conf.write_text(text)
    return conf


def query_lines(
    endpoint: str, token: str, table: str, versions: dict[str, str] | None = None
) -> list[str]:
    resp = requests.post(
        f"{endpoint}shares/s/schemas/sch/tables/{table}/query",
        json={},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    resp.raise_for_status()
    if versions is not None:
        versions[table] = resp.headers["Delta-Table-Version"]
    return resp.text.splitlines()


def static_response(lines: list[str], table: Path, data_root: Path, static_base: str) -> str:
    """sharelab's /query response with every file URL pointing at nginx's static copy of the file
    (the file's path is the second half of the URL's token, base64url; see helpers.server.signing)."""
    out = []
    for line in lines:
        obj = json.loads(line)
        if "file" in obj:
            token = urlsplit(obj["file"]["url"]).path.rpartition("/")[2]
            part = token.partition(".")[2]
            rel = unquote(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)).decode())
            obj["file"]["url"] = static_base + quote(str((table / rel).relative_to(data_root)))
        out.append(json.dumps(obj))
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------------------- measures
def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its children: the scheduler's nanoseconds on a CPU of every thread
    (``/proc/<pid>/task/*/schedstat``); ``cpu_times`` counts 10 ms ticks, too coarse for a request."""
    proc = psutil.Process(pid)
    total = 0.0
    for p in (proc, *proc.children(recursive=True)):
        try:
            total += _schedstat(p.pid)
        except OSError:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
    return total


def _schedstat(pid: int) -> float:
    tasks = list(Path(f"/proc/{pid}/task").iterdir())
    if not tasks:
        raise OSError(f"no tasks of {pid}")
    total = 0
    for task in tasks:
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            pass  # a thread that ended meanwhile
    return total / 1e9


def tree_rchar(pid: int) -> int:
    proc = psutil.Process(pid)
    total = 0
    for p in (proc, *proc.children(recursive=True)):
        try:
            total += p.io_counters().read_chars
        except psutil.Error:
            pass
    return total


def median_of(fn: Callable[[], Any], reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def per_request(
    url: str, method: str, headers: dict[str, str], n: int, pid: int
) -> tuple[float, float]:
    """(median latency ms, server CPU ms per request) of ``n`` requests on one keep-alive connection."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    times = []
    for i in range(n + 20):
        if i == 20:
            cpu0 = tree_cpu(pid)
        t = time.perf_counter()
        conn.request(method, target, headers=headers)
        resp = conn.getresponse()
        resp.read()
        assert resp.status in (200, 206), resp.status
        if i >= 20:
            times.append(time.perf_counter() - t)
    cpu = tree_cpu(pid) - cpu0
    conn.close()
    return statistics.median(times) * 1e3, cpu / n * 1e3


def rotated(order: list[str], r: int) -> list[str]:
    """``order`` started ``r`` places on: round ``r``'s order of the sides, so each goes first in turn."""
    k = r % len(order)
    return order[k:] + order[:k]


def interleaved_per_request(
    sides: dict[str, tuple[str, int]], method: str, headers: dict[str, str], n: int, rounds: int
) -> dict[str, tuple[float, float]]:
    """Per side, (median latency ms, median server CPU ms per request) over ``rounds`` rounds of
    :func:`per_request`, the order rotated every round: drift and other load hit every side alike."""
    got: dict[str, list[tuple[float, float]]] = {side: [] for side in sides}
    order = list(sides)
    for r in range(rounds):
        for side in rotated(order, r):
            url, pid = sides[side]
            got[side].append(per_request(url, method, headers, n, pid))
    return {
        side: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v))
        for side, v in got.items()
    }


def start_floor(root: Path) -> tuple[subprocess.Popen[str], str]:
    """benchmarks/floor_server.py serving the files under ``root`` on a free port: (its process, the
    URL its paths start with)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("floor_server.py")), str(port), str(root)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc, f"http://127.0.0.1:{port}/static/"


def head_rchar(url: str, pid: int, n: int) -> float:
    """Bytes the server reads per HEAD of a signed URL (the catalog's SQLite pages: no file bytes)."""
    session = requests.Session()
    session.head(url, timeout=10)
    before = tree_rchar(pid)
    for _ in range(n):
        session.head(url, timeout=10)
    return (tree_rchar(pid) - before) / n


def curl_rate(url: str, reps: int, warm: bool = True) -> float:
    """Median MB/s of ``curl -o /dev/null`` (curl's own timing, no Python in the way); ``warm``: one
    more download first, not counted."""
    rates = []
    for _ in range(reps + 1 if warm else 1):
        out = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{size_download} %{time_total}", url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        rates.append(float(out[0]) / float(out[1]) / 1e6)
    return statistics.median(rates[1:] if warm else rates)


def audit_downloads(home: Path) -> int:
    time.sleep(0.6)  # the group commit of the last rows
    cat = open_catalog(home)
    return int(
        cat.db.read(
            lambda c: c.execute(
                "SELECT COUNT(*) FROM audit WHERE action = 'downloadFile'"
            ).fetchone()[0]
        )
    )


def nginx_requests(prefix: Path, location: str) -> int:
    """Requests nginx answered under ``location`` (``/static/``...) so far (its access log)."""
    log = prefix / "access.log"
    return (
        sum(f" {location}" in line for line in log.read_text().splitlines()) if log.exists() else 0
    )


def behind_nginx(
    client: Any, via: Path, static: Path, prefix: Path, replica: int, reps: int
) -> None:
    """4. the official client through nginx in front of sharelab with links nginx checks itself
    (``SHARELAB_SECURE_LINK_PREFIX``) vs the same client against nginx's static files, interleaved
    load by load (the order swapped every round) so drift and other load hit both alike."""
    print(
        "\n4. behind nginx, links nginx checks (secure_link) vs nginx static files: official client"
        " load_as_pandas (median s of interleaved rounds; ratio: median of the rounds' ratios)"
    )
    print(
        f"{'files':>5} {'links':>8} {'static':>8} {'ratio':>6} {'link req/file':>13} "
        f"{'replica CPU/load':>16}"
    )
    rounds = max(9, 3 * reps)
    for n in (1, 8, 64):
        name = f"t{n}"
        client.load_as_pandas(f"{via}#s.sch.{name}")  # warm-up, both sides
        client.load_as_pandas(f"{static}#s.sch.{name}")
        c0, r0 = tree_cpu(replica), nginx_requests(prefix, "/_sharelab_link/")
        times: dict[str, list[float]] = {"via": [], "static": []}
        for r in range(rounds):
            order = [("via", via), ("static", static)]
            for side, profile in order if r % 2 == 0 else order[::-1]:
                t0 = time.perf_counter()
                client.load_as_pandas(f"{profile}#s.sch.{name}")
                times[side].append(time.perf_counter() - t0)
        time.sleep(0.3)
        cpu = (tree_cpu(replica) - c0) / rounds  # the static side's metadata requests included
        per_file = (nginx_requests(prefix, "/_sharelab_link/") - r0) / rounds / n
        ratio = statistics.median(a / b for a, b in zip(times["via"], times["static"], strict=True))
        print(
            f"{n:>5} {statistics.median(times['via']):>8.3f} {statistics.median(times['static']):>8.3f} "
            f"{ratio:>5.2f}x {per_file:>13.1f} {cpu * 1e3:>13.1f} ms"
        )


# ----------------------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, few repetitions")
    a = ap.parse_args()
    reps, n_req, big_mb = (2, 200, 32) if a.quick else (5, 1000, 128)
    if NGINX is None:
        print("nginx not found: install Debian's nginx-light (./run-demo.sh test does it as root)")
        return 1
    import delta_sharing

    root = Path(tempfile.mkdtemp(prefix="sharelab-bench-files-"))
    os.environ.pop("SHARELAB_CATALOG_URL", None)
    print(
        f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}, cores {os.cpu_count()}"
    )
    servers: list[RunningServer] = []
    nginxes: list[subprocess.Popen[bytes]] = []
    floors: list[subprocess.Popen[str]] = []
    try:
        home = root / "home"
        tables = make_tables(root, home, big_mb)
        sl = start_server(home, extra=["--workers", "1"], env={"SHARELAB_WORKERS": "1"})
        servers.append(sl)
        token = open_catalog(home).issue_token("r").token
        # the same tables from a second lab home, every request through ASGI (no direct answers)
        register(root / "home-asgi", tables)
        asgi = start_server(
            root / "home-asgi",
            extra=["--workers", "1"],
            env={"SHARELAB_WORKERS": "1", "SHARELAB_DIRECT_DOWNLOADS": "0"},
        )
        servers.append(asgi)
        asgi_token = open_catalog(root / "home-asgi").issue_token("r").token
        ng_port, px_port = free_port(), free_port()
        prefix = root / "nginx"
        responses = root / "responses"
        prefix.mkdir()
        link_conf = write_conf((home / "server" / "secret.key").read_bytes(), prefix / "link.conf")
        # the bare Python server holds the files of t1, t8 and t64 (under data/linked)
        floor, floor_base = start_floor(root / "data" / "linked")
        floors.append(floor)
        fl_port, fl_responses = free_port(), root / "responses-floor"
        versions: dict[str, str] = {}
        for name, path in tables.items():
            lines = query_lines(sl.endpoint, token, name, versions)
            answering = [(responses, root / "data", f"http://127.0.0.1:{ng_port}/static/")]
            if name != "big":
                answering.append((fl_responses, root / "data" / "linked", floor_base))
            for answers, data_root, base in answering:
                target = answers / "delta-sharing/shares/s/schemas/sch/tables" / name / "query"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(static_response(lines, path, data_root, base))
        ng = start_nginx(
            prefix,
            nginx_conf(
                prefix,
                ng_port,
                sl.port,
                root / "data",
                responses,
                versions,
                px_port,
                link_conf,
                (fl_port, fl_responses),
            ),
            f"http://127.0.0.1:{ng_port}",
        )
        nginxes.append(ng)
        sl_profile, ng_profile = root / "sl.share", root / "ng.share"
        asgi_profile, fl_profile = root / "asgi.share", root / "floor.share"
        for path, endpoint, bearer in (
            (sl_profile, sl.endpoint, token),
            (ng_profile, f"http://127.0.0.1:{ng_port}/delta-sharing/", token),
            (asgi_profile, asgi.endpoint, asgi_token),
            (fl_profile, f"http://127.0.0.1:{fl_port}/delta-sharing/", token),
        ):
            path.write_text(
                json.dumps(
                    {"shareCredentialsVersion": 1, "endpoint": endpoint, "bearerToken": bearer}
                )
            )

        # 1. per-request cost
        t1 = json.loads(query_lines(sl.endpoint, token, "t1")[-1])["file"]
        static_t1 = json.loads(
            (responses / "delta-sharing/shares/s/schemas/sch/tables/t1/query")
            .read_text()
            .splitlines()[-1]
        )["file"]["url"]
        pid_sl, pid_ng = sl.process.pid, ng.pid
        asgi_t1 = json.loads(query_lines(asgi.endpoint, asgi_token, "t1")[-1])["file"]["url"]
        floor_t1 = json.loads(
            (fl_responses / "delta-sharing/shares/s/schemas/sch/tables/t1/query")
            .read_text()
            .splitlines()[-1]
        )["file"]["url"]
        print(
            "\n1. per-request cost on one keep-alive connection (median latency ms / server CPU ms per request"
            f" of {n_req}-request rounds, the sides interleaved; ASGI only: SHARELAB_DIRECT_DOWNLOADS=0; bare"
            " Python: benchmarks/floor_server.py, asyncio + httptools answering from memory with no checks)"
        )
        print(
            f"{'request':<18} {'sharelab':>16} {'ASGI only':>16} {'nginx':>16} {'bare Python':>16} "
            f"{'CPU vs nginx':>12} {'vs bare':>8}"
        )
        sides = {
            "sl": (t1["url"], pid_sl),
            "as": (asgi_t1, asgi.process.pid),
            "ng": (static_t1, pid_ng),
            "fl": (floor_t1, floor.pid),
        }
        for label, method, hdr in (
            ("HEAD", "HEAD", {}),
            ("64 KiB Range GET", "GET", {"Range": "bytes=0-65535"}),
        ):
            got = interleaved_per_request(sides, method, hdr, n_req, max(3, reps))
            cells = " ".join(f"{lat:>6.2f} / {cpu:>5.2f} ms" for lat, cpu in got.values())
            sl_cpu, ng_cpu, fl_cpu = got["sl"][1], got["ng"][1], got["fl"][1]
            print(f"{label:<18} {cells} {sl_cpu / ng_cpu:>11.2f}x {sl_cpu / fl_cpu:>7.2f}x")

        # 2. the official client, sharelab vs static
        print(
            "\n2. official client load_as_pandas, 200,000 rows (median s of interleaved rounds; ratio: median"
            " of the rounds' ratios); sharelab vs nginx static files; bare Python: the same static side"
            " with the files from benchmarks/floor_server.py"
        )
        print(
            f"{'files':>5} {'sharelab':>9} {'static':>8} {'ratio':>6} {'ASGI only':>9} {'bare Python':>11} "
            f"{'req/file':>9} "
            f"{'static req/file':>15} {'srv CPU/load':>12} {'read/size':>9} {'files only':>9}"
        )
        files_of = {
            name: json.loads(query_lines(sl.endpoint, token, name)[-1])["file"]["url"]
            for name in ("t1", "t8", "t64")
        }
        for n in (1, 8, 64):
            name = f"t{n}"
            size = sum(
                os.path.getsize(u.replace("file://", ""))
                for u in DeltaTable(str(tables[name])).file_uris()
            )
            load = {
                "sl": lambda n=name: delta_sharing.load_as_pandas(f"{sl_profile}#s.sch.{n}"),
                "ng": lambda n=name: delta_sharing.load_as_pandas(f"{ng_profile}#s.sch.{n}"),
                "as": lambda n=name: delta_sharing.load_as_pandas(f"{asgi_profile}#s.sch.{n}"),
                "fl": lambda n=name: delta_sharing.load_as_pandas(f"{fl_profile}#s.sch.{n}"),
            }
            for warm in load.values():
                warm()
            # interleaved, the order rotated every round; the server's counters read around its loads
            times: dict[str, list[float]] = {"sl": [], "ng": [], "as": [], "fl": []}
            d = c = r = 0.0
            s0 = nginx_requests(prefix, "/static/")
            loads = max(5, 2 * reps)
            for rnd in range(loads):
                for side in rotated(["sl", "ng", "as", "fl"], rnd):
                    d0, c0, r0 = audit_downloads(home), tree_cpu(pid_sl), tree_rchar(pid_sl)
                    t0 = time.perf_counter()
                    load[side]()
                    times[side].append(time.perf_counter() - t0)
                    if side == "sl":
                        d += audit_downloads(home) - d0
                        c += tree_cpu(pid_sl) - c0
                        r += tree_rchar(pid_sl) - r0
            time.sleep(0.3)
            t_sl, t_ng = statistics.median(times["sl"]), statistics.median(times["ng"])
            paired = statistics.median(a / b for a, b in zip(times["sl"], times["ng"], strict=True))
            as_paired, fl_paired = (
                statistics.median(a / b for a, b in zip(times[k], times["ng"], strict=True))
                for k in ("as", "fl")
            )
            reqs, cpu, read = d / loads / n, c / loads, r / loads / size
            ng_reqs = (nginx_requests(prefix, "/static/") - s0) / loads / n
            # rchar counts the catalog's SQLite page reads too: take off what a HEAD (no file bytes)
            # costs, per request, to estimate the file bytes alone
            catalog_read = head_rchar(files_of[name], pid_sl, 40) * reqs * n
            net = max(0.0, read - catalog_read / size)
            print(
                f"{n:>5} {t_sl:>9.3f} {t_ng:>8.3f} {paired:>5.2f}x {as_paired:>8.2f}x "
                f"{fl_paired:>10.2f}x {reqs:>9.1f} "
                f"{ng_reqs:>15.1f} "
                f"{cpu:>11.3f}s {read:>8.2f}x {net:>8.2f}x"
            )

        # 3. one stream with curl, CPU per GB, and the X-Accel hand-off
        big = json.loads(query_lines(sl.endpoint, token, "big")[-1])["file"]
        static_big = json.loads(
            (responses / "delta-sharing/shares/s/schemas/sch/tables/big/query")
            .read_text()
            .splitlines()[-1]
        )["file"]["url"]
        gb = big["size"] / 1e9
        print(
            f"\n3. one {big['size'] / 1e6:.0f} MB file with curl (median MB/s; server CPU s per GB served)"
        )
        # interleaved, the order swapped every round: drift and other load hit both alike
        asgi_big = json.loads(query_lines(asgi.endpoint, asgi_token, "big")[-1])["file"]["url"]
        rates: dict[str, list[float]] = {"sl": [], "ng": [], "as": []}
        cpu: dict[str, float] = {"sl": 0.0, "ng": 0.0, "as": 0.0}
        sides = {
            "sl": (big["url"], pid_sl),
            "ng": (static_big, pid_ng),
            "as": (asgi_big, asgi.process.pid),
        }
        rounds = max(5, 2 * reps)
        for r in range(rounds + 1):
            for side in rotated(["sl", "ng", "as"], r):
                url, pid = sides[side]
                c0 = tree_cpu(pid)
                rate = curl_rate(url, 0, warm=False)
                if r:  # the first round warms both up
                    rates[side].append(rate)
                    cpu[side] += tree_cpu(pid) - c0
        sl_rate, ng_rate = statistics.median(rates["sl"]), statistics.median(rates["ng"])
        sl_cpu_gb, ng_cpu_gb = cpu["sl"] / (rounds * gb), cpu["ng"] / (rounds * gb)
        paired = statistics.median(a / b for a, b in zip(rates["sl"], rates["ng"], strict=True))
        print(f"   sharelab {sl_rate:8.0f} MB/s  CPU {sl_cpu_gb:.3f} s/GB")
        as_rate, as_cpu_gb = statistics.median(rates["as"]), cpu["as"] / (rounds * gb)
        print(
            f"   ASGI only {as_rate:7.0f} MB/s  CPU {as_cpu_gb:.3f} s/GB (SHARELAB_DIRECT_DOWNLOADS=0)"
        )
        print(
            f"   nginx    {ng_rate:8.0f} MB/s  CPU {ng_cpu_gb:.3f} s/GB   ratio {sl_rate / ng_rate:.2f}x, "
            f"median of the rounds' ratios {paired:.2f}x (target >= 0.9x)"
        )
        # sharelab behind nginx, the file handed off with X-Accel-Redirect
        stop_server(sl)
        servers.remove(sl)
        ng.terminate()
        ng.wait()
        nginxes.remove(ng)
        px = f"http://127.0.0.1:{px_port}"
        accel = start_server(
            home,
            port=sl.port,
            extra=["--workers", "1", "--public-url", px],
            env={
                "SHARELAB_WORKERS": "1",
                "SHARELAB_ACCEL_REDIRECT": "/_sharelab_files",
                # t1, t8 and t64 (measure 4) lie under the link root; "big" does not: X-Accel
                "SHARELAB_SECURE_LINK_PREFIX": "/_sharelab_link",
                "SHARELAB_SECURE_LINK_ROOT": str(root / "data" / "linked"),
            },
        )
        servers.append(accel)
        ng = start_nginx(prefix, prefix / "nginx.conf", f"http://127.0.0.1:{ng_port}")
        nginxes.append(ng)
        via = json.loads(query_lines(f"{px}/delta-sharing/", token, "big")[-1])["file"]
        assert "/files/" in via["url"], via["url"]  # checked by the replica, streamed by nginx
        c_sl, c_ng = tree_cpu(accel.process.pid), tree_cpu(ng.pid)
        acc_rate = curl_rate(via["url"], reps)
        downloads = reps + 1
        rep_cpu = (tree_cpu(accel.process.pid) - c_sl) / downloads * 1e3
        ng_acc = (tree_cpu(ng.pid) - c_ng) / (downloads * gb)
        print(
            f"   X-Accel  {acc_rate:8.0f} MB/s  replica CPU {rep_cpu:.1f} ms per download, "
            f"nginx CPU {ng_acc:.3f} s/GB"
        )
        via_profile = root / "via.share"
        via_profile.write_text(
            json.dumps(
                {
                    "shareCredentialsVersion": 1,
                    "endpoint": f"{px}/delta-sharing/",
                    "bearerToken": token,
                }
            )
        )
        t_client = median_of(
            lambda: delta_sharing.load_as_pandas(f"{via_profile}#s.sch.big"), max(1, reps - 1)
        )
        print(
            f"   the official client's own rate on that table: {big['size'] / 1e6 / t_client:.0f} MB/s (client figure)"
        )
        behind_nginx(delta_sharing, via_profile, ng_profile, prefix, accel.process.pid, reps)
        print(f"\nload average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        stopping: list[subprocess.Popen[Any]] = [*nginxes, *floors]
        for proc in stopping:
            proc.terminate()
            proc.wait()
        for s in servers:
            stop_server(s)
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
