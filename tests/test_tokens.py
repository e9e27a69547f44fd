"""Tokens, activation codes, profiles and the ``sharelab profile`` / ``sharelab token`` commands."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from helpers import profiles as profiles_mod
from helpers.catalog import (
    DEFAULT_TOKEN_LIFETIME_SECONDS,
    MAX_LIVE_TOKENS,
    Catalog,
    hash_token,
)
from helpers.catalog import clock as clock_mod
from helpers.cli import main as cli_main
from helpers.exceptions import InvalidArgumentError, NotFoundError, TokenError
from helpers.profiles import issue_profile, profile_dict, write_profile

REPO = Path(__file__).resolve().parent.parent


class Clock:
    """A controllable replacement for ``helpers.catalog.clock.now``."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(clock_mod, "now", c)
    return c


@pytest.fixture
def cat(lab_home: Path) -> Catalog:
    c = Catalog(lab_home / "catalog.db")
    c.create_recipient("sales_team", properties={"region": "eu"})
    yield c
    c.close()


def catalog_bytes(cat: Catalog) -> bytes:
    """Everything SQLite wrote: the main file, the WAL and the shared-memory index (on PostgreSQL: every
    row of the catalog's schema)."""
    if cat.db.backend != "sqlite":
        from tests.pg import catalog_dump

        return "\n".join(catalog_dump(cat)).encode()
    return b"".join(p.read_bytes() for p in cat.path.parent.glob(cat.path.name + "*"))


# ---------------------------------------------------------------- storage


def test_only_the_hash_is_stored(cat: Catalog) -> None:
    issued = [cat.issue_token("sales_team") for _ in range(3)]
    code = cat.create_activation("sales_team")
    _, redeemed = cat.redeem_activation(code)
    blob = catalog_bytes(cat)
    cat.close()  # checkpoint the WAL into the main file, then look again
    blob += catalog_bytes(cat)
    for tok in [*issued, redeemed]:
        assert tok.token.startswith("dss_") and len(tok.token) >= 4 + 43  # 32 bytes, base64url
        assert tok.token.encode() not in blob
        assert tok.token[4:].encode() not in blob
        assert hash_token(tok.token).encode() in blob
        assert tok.info.prefix == tok.token[:8]
        assert "dss_" in repr(tok) and tok.token not in repr(tok)  # repr never shows the secret
    assert code.encode() not in blob and hash_token(code).encode() in blob
    assert len({t.token for t in issued}) == 3


# ---------------------------------------------------------------- expiry and lifetime


def test_default_lifetime_and_env_override(
    cat: Catalog, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    tok = cat.issue_token("sales_team")
    assert tok.info.expires_at.timestamp() == clock.t + DEFAULT_TOKEN_LIFETIME_SECONDS
    assert DEFAULT_TOKEN_LIFETIME_SECONDS == 30 * 24 * 3600
    monkeypatch.setenv("SHARELAB_TOKEN_LIFETIME_SECONDS", "60")
    short = cat.issue_token("sales_team")
    assert short.info.expires_at.timestamp() == clock.t + 60
    assert (
        cat.issue_token("sales_team", lifetime_seconds=5).info.expires_at.timestamp() == clock.t + 5
    )
    monkeypatch.setenv("SHARELAB_TOKEN_LIFETIME_SECONDS", "soon")
    with pytest.raises(InvalidArgumentError, match="SHARELAB_TOKEN_LIFETIME_SECONDS"):
        cat.issue_token("sales_team")
    for bad in (0, -5, True, "10", 10**12):
        with pytest.raises(InvalidArgumentError):
            cat.issue_token("sales_team", lifetime_seconds=bad)  # type: ignore[arg-type]


def test_expiry(cat: Catalog, clock: Clock) -> None:
    tok = cat.issue_token("sales_team", lifetime_seconds=10)
    assert cat.authenticate(tok.token).name == "sales_team"
    clock.advance(9.9)
    assert cat.authenticate(tok.token) is not None
    clock.advance(0.1)
    assert cat.authenticate(tok.token) is None  # expires_at is exclusive
    assert cat.list_tokens("sales_team")[0].status == "expired"


def test_expiry_with_the_real_clock(cat: Catalog) -> None:
    import time

    tok = cat.issue_token("sales_team", lifetime_seconds=1)
    assert cat.authenticate(tok.token) is not None
    time.sleep(1.05)
    assert cat.authenticate(tok.token) is None


def test_authenticate_rejects_garbage(cat: Catalog) -> None:
    tok = cat.issue_token("sales_team")
    for bad in (
        None,
        "",
        "dss_",
        tok.token[:-1],
        tok.token + "x",
        tok.token.upper(),
        "x" * 10_000,
        42,
    ):
        assert cat.authenticate(bad) is None  # type: ignore[arg-type]
    recipient = cat.authenticate(tok.token)
    assert recipient.properties == {"region": "eu"}


# ---------------------------------------------------------------- rotation, revocation, two live


def test_rotation_overlap(cat: Catalog, clock: Clock) -> None:
    old = cat.issue_token("sales_team")
    new = cat.rotate_token("sales_team", expire_existing_in_seconds=60)
    assert cat.authenticate(old.token) is not None and cat.authenticate(new.token) is not None
    clock.advance(59)
    assert cat.authenticate(old.token) is not None
    clock.advance(1)
    assert cat.authenticate(old.token) is None
    assert cat.authenticate(new.token) is not None
    assert [t.status for t in cat.list_tokens("sales_team")] == ["expired", "active"]


def test_rotation_with_zero_expires_at_once(cat: Catalog, clock: Clock) -> None:
    old = cat.issue_token("sales_team")
    new = cat.rotate_token("sales_team")  # default 0 = now
    assert cat.authenticate(old.token) is None
    assert cat.authenticate(new.token) is not None
    with pytest.raises(InvalidArgumentError):
        cat.rotate_token("sales_team", -1)


def test_rotation_never_extends_an_old_token(cat: Catalog, clock: Clock) -> None:
    old = cat.issue_token("sales_team", lifetime_seconds=10)
    cat.rotate_token("sales_team", expire_existing_in_seconds=3600)
    clock.advance(10)
    assert cat.authenticate(old.token) is None


def test_at_most_two_live_tokens(cat: Catalog, clock: Clock) -> None:
    a = cat.issue_token("sales_team")
    clock.advance(1)
    b = cat.issue_token("sales_team")
    clock.advance(1)
    c = cat.issue_token("sales_team")
    assert cat.authenticate(a.token) is None
    assert cat.authenticate(b.token) is not None and cat.authenticate(c.token) is not None
    clock.advance(1)
    d = cat.rotate_token(
        "sales_team", expire_existing_in_seconds=30
    )  # two live: oldest (b) goes now
    assert cat.authenticate(b.token) is None
    assert cat.authenticate(c.token) is not None and cat.authenticate(d.token) is not None
    live = [t for t in cat.list_tokens("sales_team") if t.status == "active"]
    assert len(live) == MAX_LIVE_TOKENS == 2
    clock.advance(30)
    assert cat.authenticate(c.token) is None and cat.authenticate(d.token) is not None


def test_revocation_is_immediate(cat: Catalog) -> None:
    cat.create_recipient("operations_team")
    other = cat.issue_token("operations_team")
    a = cat.issue_token("sales_team")
    b = cat.rotate_token("sales_team", 3600)
    assert cat.revoke_tokens("SALES_TEAM") == 2
    assert cat.authenticate(a.token) is None and cat.authenticate(b.token) is None
    assert cat.authenticate(other.token) is not None
    assert {t.status for t in cat.list_tokens("sales_team")} == {"revoked"}
    assert all(t.revoked_at is not None for t in cat.list_tokens("sales_team"))
    assert cat.revoke_tokens("sales_team") == 0
    fresh = cat.issue_token("sales_team")  # a new token after revocation works
    assert cat.authenticate(fresh.token) is not None
    with pytest.raises(NotFoundError):
        cat.revoke_tokens("nobody")
    with pytest.raises(NotFoundError):
        cat.issue_token("nobody")


# ---------------------------------------------------------------- activation


def test_activation_exactly_once(cat: Catalog) -> None:
    assert cat.activation_pending("sales_team") is False
    code = cat.create_activation("sales_team")
    assert cat.activation_pending("sales_team") is True
    recipient, issued = cat.redeem_activation(code, lifetime_seconds=120)
    assert recipient.name == "sales_team"
    assert cat.authenticate(issued.token) == recipient
    assert cat.activation_pending("sales_team") is False
    with pytest.raises(TokenError, match="already used"):
        cat.redeem_activation(code)
    for bad in ("", "nope", None):
        with pytest.raises(TokenError):
            cat.redeem_activation(bad)  # type: ignore[arg-type]


def test_new_activation_replaces_the_pending_one(cat: Catalog) -> None:
    first = cat.create_activation("sales_team")
    second = cat.create_activation("sales_team")
    with pytest.raises(TokenError):
        cat.redeem_activation(first)
    cat.redeem_activation(second)


def test_rotate_activation_caps_live_tokens_and_replaces_the_code(
    cat: Catalog, clock: Clock
) -> None:
    live = cat.issue_token("sales_team", lifetime_seconds=3600)
    short = cat.issue_token("sales_team", lifetime_seconds=10)
    first = cat.create_activation("sales_team")
    code = cat.rotate_activation("SALES_TEAM", expire_existing_in_seconds=60)
    assert code != first and cat.activation_pending("sales_team")
    with pytest.raises(TokenError):
        cat.redeem_activation(first)  # the pending code was replaced
    expiries = {t.id: t.expires_at.timestamp() for t in cat.list_tokens("sales_team")}
    assert expiries[live.info.id] == clock.t + 60  # capped at now + 60 s
    assert expiries[short.info.id] == clock.t + 10  # never extended
    clock.advance(61)
    assert cat.authenticate(live.token) is None
    _, issued = cat.redeem_activation(code)
    assert cat.authenticate(issued.token) is not None


def test_rotate_activation_without_expiry_keeps_tokens(cat: Catalog) -> None:
    token = cat.issue_token("sales_team")
    code = cat.rotate_activation("sales_team")
    assert cat.list_tokens("sales_team")[0].expires_at == token.info.expires_at
    assert cat.authenticate(token.token) is not None
    cat.redeem_activation(code)
    with pytest.raises(InvalidArgumentError):
        cat.rotate_activation("sales_team", expire_existing_in_seconds=-1)
    with pytest.raises(NotFoundError):
        cat.rotate_activation("nobody")


def test_concurrent_redeem_succeeds_once(cat: Catalog) -> None:
    code = cat.create_activation("sales_team")
    results: list[str] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        try:
            cat.redeem_activation(code)
            results.append("ok")
        except TokenError:
            results.append("used")

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["ok"] + ["used"] * 7
    assert len(cat.list_tokens("sales_team")) == 1


# ---------------------------------------------------------------- profiles


def test_profile_dict_is_version_1(cat: Catalog) -> None:
    issued = cat.issue_token("sales_team")
    profile = profile_dict("http://127.0.0.1:9999/delta-sharing/", issued)
    assert profile["shareCredentialsVersion"] == 1
    assert profile["bearerToken"] == issued.token
    assert profile["endpoint"] == "http://127.0.0.1:9999/delta-sharing/"
    expires = datetime.strptime(profile["expirationTime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs((expires - issued.info.expires_at).total_seconds()) < 1
    for bad in ("ftp://x", "localhost:8080", "", "http://a b"):
        with pytest.raises(InvalidArgumentError, match="http"):
            profile_dict(bad, issued)


def test_write_profile_mode_0600(cat: Catalog, tmp_path: Path) -> None:
    issued = cat.issue_token("sales_team")
    old_umask = os.umask(0)  # the most permissive umask must still give 0600
    try:
        target = tmp_path / "nested" / "sales.share"
        path = write_profile(target, profile_dict("http://127.0.0.1:1/delta-sharing/", issued))
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        existing = tmp_path / "old.share"
        existing.write_text("{}")
        existing.chmod(0o644)
        write_profile(existing, {"shareCredentialsVersion": 1})
        assert stat.S_IMODE(existing.stat().st_mode) == 0o600
    finally:
        os.umask(old_umask)
    assert json.loads(path.read_text())["bearerToken"] == issued.token
    assert sorted(p.name for p in (tmp_path / "nested").iterdir()) == [
        "sales.share"
    ]  # no temp files left
    with pytest.raises(InvalidArgumentError, match="directory"):
        write_profile(tmp_path, {})


def test_issue_profile_issues_and_writes_once(cat: Catalog, tmp_path: Path) -> None:
    endpoint = "http://127.0.0.1:8080/delta-sharing/"
    result = issue_profile(
        cat, "sales_team", endpoint, out=tmp_path / "p.share", lifetime_seconds=60
    )
    assert result.path == (tmp_path / "p.share").resolve()
    assert stat.S_IMODE(result.path.stat().st_mode) == 0o600
    assert (
        json.loads(result.path.read_text())
        == result.profile
        == profile_dict(endpoint, result.token)
    )
    assert cat.authenticate(result.token.token) is not None
    in_memory = issue_profile(cat, "sales_team", endpoint)
    assert in_memory.path is None and in_memory.profile["bearerToken"] == in_memory.token.token
    # a bad endpoint or a directory as out: checked before any token exists
    before = len(cat.list_tokens("sales_team"))
    with pytest.raises(InvalidArgumentError, match="endpoint"):
        issue_profile(cat, "sales_team", "ftp://nope")
    with pytest.raises(InvalidArgumentError, match="directory"):
        issue_profile(cat, "sales_team", endpoint, out=tmp_path)
    with pytest.raises(NotFoundError):
        issue_profile(cat, "nobody", endpoint)
    assert len(cat.list_tokens("sales_team")) == before


def test_write_profile_creates_file_with_0600(
    cat: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file is created 0600 by os.open itself, so it is never world-readable, not even briefly."""
    modes: list[int] = []
    real_open = os.open

    def spy(path: str, flags: int, mode: int = 0o777, *args: object, **kwargs: object) -> int:
        if flags & os.O_CREAT:
            modes.append(mode)
        return real_open(path, flags, mode, *args, **kwargs)

    monkeypatch.setattr(profiles_mod.os, "open", spy)
    write_profile(tmp_path / "x.share", {"a": 1})
    assert modes == [0o600]


# ---------------------------------------------------------------- CLI


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = cli_main(list(argv))
    except SystemExit as exc:  # argparse: --help (0) and usage errors (2)
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_profile_writes_0600_profile(
    lab_home: Path, cat: Catalog, capsys: pytest.CaptureFixture[str]
) -> None:
    out = lab_home / "p" / "sales.share"
    code, stdout, err = run_cli(
        capsys,
        "--home",
        str(lab_home),
        "profile",
        "SALES_TEAM",
        "--out",
        str(out),
        "--lifetime",
        "600",
    )
    assert code == 0, err
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    profile = json.loads(out.read_text())
    assert profile["shareCredentialsVersion"] == 1
    assert profile["endpoint"] == "http://127.0.0.1:8080/delta-sharing/"
    assert cat.authenticate(profile["bearerToken"]).name == "sales_team"
    assert profile["bearerToken"] not in stdout + err  # shown once: in the file only
    assert str(out.resolve()) in stdout
    tok = cat.list_tokens("sales_team")[-1]
    assert (tok.expires_at - tok.created_at).total_seconds() == 600

    code, _, _ = run_cli(capsys, "--home", str(lab_home), "profile", "sales_team")
    assert code == 0
    default = lab_home / "profiles" / "sales_team.share"
    assert stat.S_IMODE(default.stat().st_mode) == 0o600
    assert stat.S_IMODE(default.parent.stat().st_mode) == 0o700


def test_cli_profile_uses_running_server_endpoint(
    lab_home: Path, cat: Catalog, capsys: pytest.CaptureFixture[str]
) -> None:
    import fcntl

    (lab_home / "server").mkdir()
    state = {"pid": os.getpid(), "endpoint": "http://127.0.0.1:4242/delta-sharing/"}
    (lab_home / "server" / "server.json").write_text(json.dumps(state))
    # what a running server holds for its whole life: an exclusive lock on server.lock
    lock = open(lab_home / "server" / "server.lock", "w")  # noqa: SIM115 - closed at the end
    fcntl.flock(lock, fcntl.LOCK_EX)
    out = lab_home / "a.share"
    assert (
        run_cli(capsys, "--home", str(lab_home), "profile", "sales_team", "--out", str(out))[0] == 0
    )
    assert json.loads(out.read_text())["endpoint"] == "http://127.0.0.1:4242/delta-sharing/"
    explicit = "http://10.0.0.1:1/delta-sharing/"
    run_cli(
        capsys,
        "--home",
        str(lab_home),
        "profile",
        "sales_team",
        "--out",
        str(out),
        "--endpoint",
        explicit,
    )
    assert json.loads(out.read_text())["endpoint"] == explicit
    lock.close()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["profile", "nobody", "--out", "x.share"], "recipient 'nobody' does not exist"),
        (
            ["profile", "sales_team", "--out", "x.share", "--endpoint", "ftp://x"],
            "not an http(s) URL",
        ),
        (["profile", "bad name", "--out", "x.share"], "contains a space"),
        (["token", "revoke", "nobody"], "does not exist"),
        (["token", "list", "nobody"], "does not exist"),
        (["token", "rotate", "nobody", "--out", "x.share"], "does not exist"),
    ],
)
def test_cli_errors_are_one_line_exit_1(
    lab_home: Path, cat: Catalog, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    before = [t.id for t in cat.list_tokens("sales_team")]
    code, stdout, err = run_cli(capsys, "--home", str(lab_home), *argv)
    assert code == 1
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert [t.id for t in cat.list_tokens("sales_team")] == before  # no orphan token
    assert not (lab_home / "x.share").exists() and not Path("x.share").exists()


def test_cli_token_rotate_revoke_list(
    lab_home: Path, cat: Catalog, capsys: pytest.CaptureFixture[str]
) -> None:
    home = ["--home", str(lab_home)]
    first = lab_home / "first.share"
    second = lab_home / "second.share"
    assert run_cli(capsys, *home, "profile", "sales_team", "--out", str(first))[0] == 0
    code, stdout, _ = run_cli(
        capsys, *home, "token", "rotate", "sales_team", "--expire-in", "300", "--out", str(second)
    )
    assert code == 0 and "in 300 s" in stdout
    old = json.loads(first.read_text())["bearerToken"]
    new = json.loads(second.read_text())["bearerToken"]
    assert stat.S_IMODE(second.stat().st_mode) == 0o600
    assert cat.authenticate(old) is not None and cat.authenticate(new) is not None
    code, stdout, _ = run_cli(capsys, *home, "token", "list", "sales_team")
    assert code == 0 and stdout.count("active") == 2 and old[:8] in stdout and old not in stdout
    assert run_cli(capsys, *home, "token", "rotate", "sales_team", "--out", str(second))[0] == 0
    assert cat.authenticate(old) is None and cat.authenticate(new) is None
    code, stdout, _ = run_cli(capsys, *home, "token", "revoke", "sales_team")
    assert code == 0 and "revoked 1 token" in stdout
    assert cat.authenticate(json.loads(second.read_text())["bearerToken"]) is None
    code, stdout, _ = run_cli(capsys, *home, "token", "list", "sales_team")
    statuses = [line.split()[1] for line in stdout.splitlines()[1:]]
    assert statuses == ["expired", "expired", "revoked"]
    assert run_cli(capsys, *home, "token", "rotate", "sales_team", "--expire-in", "-1")[0] == 2


@pytest.mark.parametrize(
    "argv",
    [["profile"], ["token"], ["token", "rotate"], ["token", "revoke"], ["token", "list"]],
)
def test_cli_help(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, stdout, _ = run_cli(capsys, *argv, "--help")
    assert code == 0 and "usage: sharelab" in stdout


def test_cli_subprocess_profile(lab_home: Path, cat: Catalog) -> None:
    """The real console entry point, as a learner runs it."""
    out = lab_home / "sub.share"
    env = dict(os.environ, SHARELAB_HOME=str(lab_home))
    ok = subprocess.run(
        [sys.executable, "-m", "helpers", "profile", "sales_team", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    bad = subprocess.run(
        [sys.executable, "-m", "helpers", "profile", "ghost", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    assert bad.returncode == 1
    assert bad.stderr.count("\n") == 1 and "ghost" in bad.stderr and "Traceback" not in bad.stderr
