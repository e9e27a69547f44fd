"""The server process: run it in the foreground, start/stop it in the background, report its state.

One server per lab home: ``serve`` holds an exclusive ``flock`` on ``server/server.lock`` for its whole
life and writes ``server/server.json`` (pid, host, port, endpoint) and ``server/server.pid``; both are
removed when it exits (SIGTERM included). ``start`` spawns ``python -m helpers serve`` and waits until
``/health`` answers; :func:`ensure_server` is the one way notebooks and labs get a running server.

With ``tls=True`` the server speaks HTTPS only (no plain-HTTP listener at all): the certificate comes from
:func:`helpers.tls.prepare_tls` (the lab home's CA, or a given ``cert``/``key``), ``server.json`` gains a
``tls`` object (CA path and SHA-256 fingerprint) and the endpoint and signed URLs are ``https://``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from helpers import __version__
from helpers.exceptions import InvalidArgumentError, ServerError
from helpers.home import LabHome
from helpers.procs import free_port, pid_alive, spawn_and_wait
from helpers.server.limits import DEFAULT_PORT, DEFAULT_PREFIX, url_ttl_from_env
from helpers.server.securelink import PREFIX_ENV as SECURE_LINK_PREFIX_ENV
from helpers.server.workers import WORKERS_ENV, default_workers, supervise, worker_count
from helpers.tls import TlsFiles, client_context, prepare_tls

__all__ = ["PORT_ENV", "ensure_server", "serve", "server_port", "start", "status", "stop"]

log = logging.getLogger("sharelab.server")

PORT_ENV = "SHARELAB_PORT"
STOP_GRACE_SECONDS = 8
"""How long a stopping server waits for its requests in flight before it cancels them."""
_REPO = (
    Path(__file__).resolve().parents[2]
)  # the spawned ``python -m helpers`` runs from the repository

HomeArg = LabHome | str | os.PathLike[str] | None
"""A lab home: resolved, a path, or None for ``$SHARELAB_HOME`` / the default."""


def _lab_home(home: HomeArg) -> LabHome:
    return home if isinstance(home, LabHome) else LabHome.resolve(home)


def _state_paths(lab: LabHome) -> tuple[Path, Path, Path, Path]:
    d = lab.server_dir
    return d / "server.json", d / "server.pid", d / "server.log", d / "server.lock"


def _normalize_public_url(public_url: str | None) -> str | None:
    if not public_url:
        return None
    url = public_url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise InvalidArgumentError(
            f"--public-url {public_url!r} must start with http:// or https:// (e.g. http://lab:8080)"
        )
    if url.endswith(DEFAULT_PREFIX):
        url = url[: -len(DEFAULT_PREFIX)]
    return url


# ======================================================================================== foreground
def _lock_home(lab: LabHome) -> int:
    """The fd holding this lab home's exclusive server lock, or a :class:`ServerError` naming the owner."""
    import fcntl

    _state_file, _pid_file, _log_file, lock_file = _state_paths(lab)
    lab.server_dir.mkdir(parents=True, exist_ok=True)
    lock_fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock_fd)
        running = lab.server_state() or {}
        raise ServerError(
            f"A sharing server is already running for lab home {lab.path} "
            f"(pid {running.get('pid', '?')}, {running.get('endpoint', 'unknown endpoint')}); "
            "stop it with `sharelab stop` or use another --home"
        ) from None
    return lock_fd


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (a :class:`ServerError` when the port is taken)."""
    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose proto is TCP;
    # with proto 0, Nagle + the client's delayed ACK add ~40 ms to every keep-alive response with a body.
    sock = socket.socket(
        socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP
    )
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServerError(
            f"Cannot listen on {host}:{port} ({exc.strerror}): stop whatever uses it, or pick "
            "another port (SHARELAB_PORT=8081 ./run-demo.sh, or sharelab start --port 8081)"
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _tls_names(host: str, public_url: str | None, extra: tuple[str, ...]) -> list[str]:
    """Names the server certificate must cover beyond the machine's own: bind host, public URL host."""
    import urllib.parse

    names = list(extra)
    if host not in ("0.0.0.0", "::", ""):
        names.append(host)
    if public_url:
        names.append(urllib.parse.urlsplit(public_url).hostname or "")
    return [n for n in names if n]


def serve(
    home: HomeArg = None,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    public_url: str | None = None,
    *,
    tls: bool = False,
    cert: str | os.PathLike[str] | None = None,
    key: str | os.PathLike[str] | None = None,
    tls_names: tuple[str, ...] = (),
    workers: int | None = None,
) -> None:
    """Run the server in the foreground until SIGINT/SIGTERM (one server per lab home).

    :param workers: server processes accepting on the one port (default
        :func:`~helpers.server.workers.default_workers`; see :mod:`helpers.server.workers`).

    :param tls: serve HTTPS only, with the lab CA's server certificate or ``cert``/``key``
        (``tls_names``: more names or addresses for the certificate).
    :raises ServerError: another server runs on this lab home, or the port is in use.
    """
    lab = _lab_home(home)
    public_url = _normalize_public_url(public_url)
    url_ttl_from_env()  # a bad $SHARELAB_URL_TTL_SECONDS says so before the port is taken
    if os.environ.get(SECURE_LINK_PREFIX_ENV, "").strip() and not public_url:
        raise InvalidArgumentError(
            f"${SECURE_LINK_PREFIX_ENV} makes /query hand out links that nginx serves: start the "
            "server with --public-url <nginx's URL> (docker/nginx/), or unset the variable"
        )
    n_workers = worker_count(workers) if workers is not None else default_workers()
    os.environ[WORKERS_ENV] = str(n_workers)  # the app's shared state follows it (server.cluster)
    tls = tls or cert is not None
    if tls and public_url and not public_url.startswith("https://"):
        raise InvalidArgumentError(
            f"--public-url {public_url} must start with https:// when the server serves TLS"
        )
    files = None
    if tls:
        names = _tls_names(host, public_url, tls_names)
        files = prepare_tls(lab.path, cert=cert, key=key, extra_names=names)
    lock_fd = _lock_home(lab)
    try:
        sock = _listen(host, port)
    except ServerError:
        os.close(lock_fd)
        raise
    actual_port = sock.getsockname()[1]
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    scheme = "https" if files else "http"
    base = public_url or f"{scheme}://{shown_host}:{actual_port}"
    state: dict[str, Any] = {
        "pid": os.getpid(),
        "host": host,
        "port": actual_port,
        "public_url": public_url,
        "endpoint": f"{base}{DEFAULT_PREFIX}/",
        "started_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "version": __version__,
        "tls": files.as_state() if files else None,
        "workers": n_workers,
    }
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        _run(lab, sock, state, public_url, base, files, n_workers)
    finally:
        sock.close()
        _cleanup_state(lab, os.getpid())
        os.close(lock_fd)


def _run(
    lab: LabHome,
    sock: socket.socket,
    state: dict[str, Any],
    public_url: str | None,
    base: str,
    files: TlsFiles | None = None,
    workers: int = 1,
) -> None:
    """Write the state files and serve on ``sock`` until shut down (in ``workers`` forked processes)."""
    import uvicorn

    from helpers.server.app import create_app
    from helpers.server.connections import limited_protocol
    from helpers.server.limits import ServerLimits

    state_file, pid_file, _log_file, _lock_file = _state_paths(lab)
    limits = ServerLimits.from_env()
    app = create_app(
        lab, public_url=public_url, tls=files, limits=limits, url_ttl_seconds=url_ttl_from_env()
    )
    _write_json(state_file, state)
    pid_file.write_text(f"{os.getpid()}\n")
    config = uvicorn.Config(
        app,
        # httptools (h11 without it) + a request-head timeout and size bound and a connection cap
        http=limited_protocol(limits, workers, direct=_direct_files(app)),
        h11_max_incomplete_event_size=limits.max_header_bytes,  # the head bound when h11 serves
        loop="asyncio",
        lifespan="on",
        timeout_keep_alive=30,
        # requests still running then are cancelled: the process ends by itself (its audit journal
        # closed) before ``sharelab stop`` would SIGKILL it at 15 s
        timeout_graceful_shutdown=STOP_GRACE_SECONDS,
        access_log=False,
        log_level="info",
        backlog=2048,
        ssl_certfile=str(files.cert) if files else None,
        ssl_keyfile=str(files.key) if files else None,
    )
    server = uvicorn.Server(config)
    # uvicorn re-raises a captured SIGTERM once it has shut down; with the default handler the process
    # would die before the ``finally`` of serve() removes server.json (stale state, pid reuse in containers)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    print(
        f"sharelab server for {lab.path} listening on {base} (endpoint {state['endpoint']})",
        flush=True,
    )
    if files is not None:
        print(tls_banner(files), flush=True)
    if workers > 1:
        supervise(workers, lambda: server.run(sockets=[sock]))
    else:
        server.run(sockets=[sock])


def _direct_files(app: Any) -> Any:
    """The app's direct download answers (:mod:`helpers.server.direct`), unless
    ``SHARELAB_DIRECT_DOWNLOADS=0`` sends every request through ASGI (a benchmark's baseline)."""
    if os.environ.get("SHARELAB_DIRECT_DOWNLOADS", "1").strip() == "0":
        return None
    return app.state.direct_files.answer


def tls_banner(files: TlsFiles) -> str:
    """What the instructor reads out: the CA fingerprint and the attendees' one step."""
    who = "lab CA" if files.ca else "certificate chain's root"
    return (
        f"TLS: {who} SHA-256 fingerprint {files.fingerprint}\n"
        "     attendees: helpers.recipient.activate_with_ca(LINK, 'me.share', '<fingerprint>')"
    )


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


# ======================================================================================== state files
def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _cleanup_state(lab: LabHome, pid: int | None) -> None:
    """Remove ``server.json``/``server.pid`` if they belong to ``pid`` (any owner when ``pid`` is None)."""
    state_file, pid_file, _, _ = _state_paths(lab)
    try:
        current = json.loads(state_file.read_text()).get("pid")
    except (OSError, ValueError):
        current = None
    if pid is None or current in (pid, None):
        for f in (state_file, pid_file):
            with contextlib.suppress(FileNotFoundError):
                f.unlink()


def _healthy(host: str, port: int, timeout: float = 1.0, tls: dict[str, Any] | None = None) -> bool:
    """Whether ``/health`` answers 200 (over verified HTTPS with the lab CA when ``tls`` is given)."""
    import ssl
    import urllib.request

    h = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    if ":" in h:
        h = f"[{h}]"
    ctx: ssl.SSLContext | None = None
    if tls:
        ctx = client_context(tls["ca"]) if tls.get("ca") else ssl.create_default_context()
        if tls.get("ca") is None:  # a given certificate: its chain may not reach a root we hold
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
    scheme = "https" if tls else "http"
    try:
        with urllib.request.urlopen(  # noqa: S310
            f"{scheme}://{h}:{port}/health", timeout=timeout, context=ctx
        ) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _running_state(lab: LabHome) -> dict[str, Any] | None:
    """``server.json`` of the server that holds the lock, or None (stale state files are removed)."""
    state = lab.server_state()
    if not lab.server_lock_held():
        if state is not None or (lab.server_dir / "server.json").exists():
            _cleanup_state(lab, None)
        return None
    return state


# ======================================================================================== background
def status(home: HomeArg = None) -> dict[str, Any] | None:
    """The running server's state (``server.json`` plus ``healthy``), or None when none runs."""
    lab = _lab_home(home)
    state = _running_state(lab)
    if state is None:
        return None
    state = dict(state)
    state["healthy"] = _healthy(
        str(state.get("host")), int(state.get("port", 0)), tls=state.get("tls")
    )
    return state


def _serve_command(
    lab: LabHome,
    host: str,
    port: int,
    public_url: str | None,
    tls_args: tuple[str, ...] = (),
) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "helpers",
        "--home",
        str(lab.path),
        "serve",
        "--host",
        host,
        "--port",
        str(port),
    ]
    if public_url:
        cmd += ["--public-url", public_url]
    return cmd + list(tls_args)


def start(
    home: HomeArg = None,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    public_url: str | None = None,
    timeout: float = 60.0,
    *,
    tls: bool = False,
    cert: str | os.PathLike[str] | None = None,
    key: str | os.PathLike[str] | None = None,
    tls_names: tuple[str, ...] = (),
    workers: int | None = None,
) -> dict[str, Any]:
    """Start the server in the background (idempotent) and wait until ``/health`` answers.

    ``tls``, ``cert``, ``key``, ``tls_names`` and ``workers`` as for :func:`serve`.

    :returns: the server state (``server/server.json``).
    :raises ServerError: it could not start (the message quotes the end of ``server/server.log``).
    """
    lab = _lab_home(home)
    public_url = _normalize_public_url(public_url)
    existing = status(lab)
    if existing is not None:
        if int(existing.get("port", -1)) != int(port) and port != 0:
            log.info("a server already runs for this home on port %s", existing.get("port"))
        existing["already_running"] = True
        return existing
    lab.server_dir.mkdir(parents=True, exist_ok=True)
    _, _, log_file, _ = _state_paths(lab)
    env = dict(os.environ, PYTHONUNBUFFERED="1", SHARELAB_HOME=str(lab.path))

    def ready() -> bool:
        state = lab.server_state()
        return state is not None and _healthy(
            host, int(state["port"]), timeout=0.5, tls=state.get("tls")
        )

    tls_args: list[str] = ["--tls"] if tls or cert else []
    if cert is not None and key is not None:
        tls_args += ["--cert", os.fspath(cert), "--key", os.fspath(key)]
    for name in tls_names:
        tls_args += ["--tls-name", name]
    if workers is not None:
        tls_args += ["--workers", str(worker_count(workers))]
    try:
        spawn_and_wait(
            _serve_command(lab, host, port, public_url, tuple(tls_args)),
            ready=ready,
            timeout=timeout,
            log=log_file,
            env=env,
            cwd=_REPO,
        )
    except ServerError as exc:
        raise ServerError(f"The sharing server could not start: {exc}") from None
    state = dict(lab.server_state() or {})
    state["healthy"] = True
    state["already_running"] = False
    return state


def stop(home: HomeArg = None, timeout: float = 15.0) -> bool:
    """Stop this lab home's background server; False when none was running."""
    lab = _lab_home(home)
    state = _running_state(lab)
    if state is None:  # nothing runs (a stale server.json naming a reused pid is never signalled)
        return False
    pid = int(state["pid"])
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        _cleanup_state(lab, pid)
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not lab.server_lock_held() and not pid_alive(pid):
            break
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _cleanup_state(lab, pid)
    return True


# ======================================================================================== ensure_server
def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def server_port(port: int | None = None, host: str = "127.0.0.1") -> int:
    """The one port rule: ``port``, else ``$SHARELAB_PORT``, else 8080, else (8080 taken) a free port.

    ``0`` (argument or environment) counts as not given.
    """
    if port:
        return int(port)
    raw = os.environ.get(PORT_ENV, "").strip()
    if raw and int(raw):
        return int(raw)
    return DEFAULT_PORT if _port_free(host, DEFAULT_PORT) else free_port(host)


def ensure_server(
    home: HomeArg = None, *, port: int | None = None, host: str = "127.0.0.1"
) -> dict[str, Any]:
    """The lab home's running server, started on :func:`server_port` when none runs."""
    state = status(home)
    if state:
        return state
    return start(home, host=host, port=server_port(port, host))
