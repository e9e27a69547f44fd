"""``sharelab profile`` and ``sharelab token ...``: issue, rotate, revoke and list recipient tokens.

Profiles are version-1 Delta Sharing profile files written with mode 0600. The clear token is written to the
profile only and never printed. Token lifetime defaults to 30 days
(:data:`helpers.catalog.DEFAULT_TOKEN_LIFETIME_SECONDS`, or ``$SHARELAB_TOKEN_LIFETIME_SECONDS``).
Issuing goes through :func:`helpers.profiles.issue_profile`. The endpoint defaults to the running server's (``server/server.json`` of the lab home), else
:data:`DEFAULT_ENDPOINT`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from helpers.catalog import IssuedToken, open_catalog, validate_endpoint
from helpers.exceptions import InvalidArgumentError
from helpers.home import LabHome
from helpers.profiles import issue_profile, profile_dict, write_profile

#: Endpoint written into profiles when no server is running and ``--endpoint`` is not given.
DEFAULT_ENDPOINT = "http://127.0.0.1:8080/delta-sharing/"


def default_endpoint(home: LabHome) -> str:
    """The running server's profile endpoint, else :data:`DEFAULT_ENDPOINT`."""
    state = home.server_state()
    if state:
        if state.get("endpoint"):
            return str(state["endpoint"])
        if state.get("public_url"):
            return str(state["public_url"]).rstrip("/") + "/delta-sharing/"
    return DEFAULT_ENDPOINT


def _seconds(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative; give a number of seconds >= 0")
    return value


def _out_path(home: LabHome, recipient: str, out: str | None) -> Path:
    if out:
        return Path(out)
    # the default directory holds every recipient's secret: readable by the owner only
    home.profiles_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return home.profiles_dir / f"{recipient}.share"


def _write(home: LabHome, issued: IssuedToken, out: Path, endpoint: str | None) -> Path:
    """A rotated token's profile (a rotation is not an issue: :func:`issue_profile` does not apply)."""
    profile = profile_dict(endpoint or default_endpoint(home), issued)
    return write_profile(out, profile)


def _cmd_profile(args: argparse.Namespace) -> int:
    home = LabHome.resolve(args.home)
    if args.lifetime is not None and args.lifetime <= 0:
        raise InvalidArgumentError("--lifetime must be at least 1 second")
    catalog = open_catalog(home)
    recipient = catalog.get_recipient(args.recipient)  # clear NotFoundError before any token exists
    out = _out_path(home, recipient.name, args.out)
    if out.is_dir():
        raise InvalidArgumentError(
            f"--out {out} is a directory; give a file name such as {out}/{recipient.name}.share"
        )
    # issue_profile validates the endpoint before issuing, so a bad URL leaves no orphan token behind
    endpoint = args.endpoint or default_endpoint(home)
    result = issue_profile(
        catalog, recipient.name, endpoint, out=out, lifetime_seconds=args.lifetime
    )
    issued, path = result.token, result.path
    print(
        f"wrote profile for {recipient.name} to {path} (token {issued.info.prefix}..., "
        f"expires {issued.info.expires_at:%Y-%m-%d %H:%M:%S} UTC, endpoint {endpoint})"
    )
    return 0


def _cmd_rotate(args: argparse.Namespace) -> int:
    home = LabHome.resolve(args.home)
    catalog = open_catalog(home)
    recipient = catalog.get_recipient(args.recipient)
    out = _out_path(home, recipient.name, args.out)
    if out.is_dir():
        raise InvalidArgumentError(f"--out {out} is a directory; give a file name")
    endpoint = args.endpoint or default_endpoint(home)
    validate_endpoint(endpoint)
    issued = catalog.rotate_token(recipient.name, args.expire_in, lifetime_seconds=args.lifetime)
    path = _write(home, issued, out, endpoint)
    when = "now" if args.expire_in == 0 else f"in {args.expire_in} s"
    print(
        f"rotated the token of {recipient.name}: new profile {path} (token {issued.info.prefix}...); "
        f"older tokens expire {when}"
    )
    return 0


def _cmd_revoke(args: argparse.Namespace) -> int:
    catalog = open_catalog(args.home)
    recipient = catalog.get_recipient(args.recipient)
    count = catalog.revoke_tokens(recipient.name)
    print(f"revoked {count} token(s) of {recipient.name}; its profiles stop working now")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    catalog = open_catalog(args.home)
    recipient = catalog.get_recipient(args.recipient)
    tokens = catalog.list_tokens(recipient.name)
    if not tokens:
        print(
            f"{recipient.name} has no tokens; issue one with: sharelab profile {recipient.name} --out FILE"
        )
        return 0
    header = (
        f"{'prefix':<12} {'status':<8} {'created (UTC)':<20} {'expires (UTC)':<20} revoked (UTC)"
    )
    print(header)
    fmt = "%Y-%m-%d %H:%M:%S"
    for tok in tokens:
        revoked = tok.revoked_at.strftime(fmt) if tok.revoked_at else "-"
        print(
            f"{tok.prefix + '...':<12} {tok.status:<8} {tok.created_at.strftime(fmt):<20} "
            f"{tok.expires_at.strftime(fmt):<20} {revoked}"
        )
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``profile`` and ``token {rotate,revoke,list}`` to the ``sharelab`` command line."""
    p = subparsers.add_parser(
        "profile",
        help="issue a token for a recipient and write a version-1 profile file (mode 0600)",
        description="Issue a new bearer token for RECIPIENT and write it into a version-1 Delta Sharing "
        "profile file with mode 0600. The token is never printed. A recipient keeps at most two live "
        "tokens: issuing a third expires the oldest.",
    )
    p.add_argument("recipient", metavar="RECIPIENT", help="recipient name (CREATE RECIPIENT first)")
    p.add_argument(
        "--out",
        metavar="FILE",
        help="profile file to write (default: <home>/profiles/RECIPIENT.share)",
    )
    p.add_argument(
        "--endpoint",
        metavar="URL",
        help=f"sharing endpoint in the profile (default: the running server's, else {DEFAULT_ENDPOINT})",
    )
    p.add_argument(
        "--lifetime",
        metavar="SECONDS",
        type=_seconds,
        help="token lifetime in seconds (default: $SHARELAB_TOKEN_LIFETIME_SECONDS, else 30 days)",
    )
    p.set_defaults(func=_cmd_profile)

    t = subparsers.add_parser(
        "token",
        help="rotate, revoke or list a recipient's tokens",
        description="Manage a recipient's bearer tokens (only their hashes and 8-character prefixes are stored).",
    )
    tsub = t.add_subparsers(dest="token_command", metavar="ACTION")
    t.set_defaults(func=lambda _args: (t.print_help(), 2)[1])

    rot = tsub.add_parser(
        "rotate",
        help="issue a new token; older tokens expire after an overlap",
        description="Issue a new token for RECIPIENT, write it into a profile (mode 0600), and make the "
        "older live token expire in --expire-in seconds (0 = now), like Databricks' ROTATE TOKEN.",
    )
    rot.add_argument("recipient", metavar="RECIPIENT", help="recipient name")
    rot.add_argument(
        "--expire-in",
        metavar="SECONDS",
        type=_seconds,
        default=0,
        help="seconds the old token keeps working (default: 0, it stops at once)",
    )
    rot.add_argument(
        "--out",
        metavar="FILE",
        help="profile file for the new token (default: <home>/profiles/RECIPIENT.share)",
    )
    rot.add_argument(
        "--endpoint",
        metavar="URL",
        help="sharing endpoint in the profile (default: as for profile)",
    )
    rot.add_argument(
        "--lifetime", metavar="SECONDS", type=_seconds, help="lifetime of the new token in seconds"
    )
    rot.set_defaults(func=_cmd_rotate)

    rev = tsub.add_parser(
        "revoke",
        help="revoke every token of a recipient at once",
        description="Revoke every token of RECIPIENT immediately; its profile files stop working.",
    )
    rev.add_argument("recipient", metavar="RECIPIENT", help="recipient name")
    rev.set_defaults(func=_cmd_revoke)

    lst = tsub.add_parser(
        "list",
        help="list a recipient's tokens (prefix, status, times)",
        description="List the tokens of RECIPIENT: prefix, status (active/expired/revoked), created, expires.",
    )
    lst.add_argument("recipient", metavar="RECIPIENT", help="recipient name")
    lst.set_defaults(func=_cmd_list)
