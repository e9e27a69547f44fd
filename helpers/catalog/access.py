"""Access checks the sharing server makes at *use* time: who owns a token, and the access stamp.

- :meth:`AccessMixin.token_status`: the recipient and state (live, expired, revoked) of any token the
  catalog issued, so a refused request can still be audited under its recipient;
- :meth:`AccessMixin.access_stamp`: a short digest of everything that lets one token read one shared
  table (the token is live, the grant, the table entry and its id, its partition filter and the
  recipient property values the filter uses, history, start and pinned version). The server binds
  signed file URLs, page tokens and refresh tokens to the stamp at the time they are minted and checks it
  again when they are used: revoking the tokens or the grant, removing the table from the share or
  changing its partition filter (or the recipient's filtering property) changes the stamp, so every
  URL and token minted before stops working at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING

from helpers.catalog import clock
from helpers.catalog.db import Database
from helpers.catalog.models import Recipient, SharedTable
from helpers.catalog.names import name_key
from helpers.catalog.rows import find_row
from helpers.catalog.tokens import TOKEN_PREFIX_CHARS, hash_token

__all__ = ["AccessMixin", "TokenStatus"]


@dataclass(frozen=True)
class TokenStatus:
    """A token the catalog knows: its id, its recipient, and ``live``, ``expired`` or ``revoked``."""

    token_id: str
    recipient: Recipient
    state: str


class AccessMixin:
    """Token ownership and access stamps of :class:`~helpers.catalog.Catalog`."""

    db: Database
    if TYPE_CHECKING:  # provided by SharesMixin

        def _shared_tables(self, conn: sqlite3.Connection, share: str) -> list[SharedTable]: ...

    def token_status(self, token: str | None) -> TokenStatus | None:
        """The owner and state of ``token`` (None when the catalog never issued it).

        One statement: the token's candidates by prefix joined with their recipient.
        """
        if not token or not isinstance(token, str) or len(token) > 512:
            return None
        digest = hash_token(token)

        def body(conn: sqlite3.Connection) -> TokenStatus | None:
            for cand in conn.execute(
                "SELECT t.id AS tok_id, t.token_hash AS tok_hash, t.expires_at AS tok_expires, "
                "t.revoked_at AS tok_revoked, r.* FROM tokens t "
                "JOIN recipients r ON r.id = t.recipient_id WHERE t.prefix = ?",
                (token[:TOKEN_PREFIX_CHARS],),
            ):
                if not hmac.compare_digest(cand["tok_hash"], digest):
                    continue
                if cand["tok_revoked"] is not None:
                    state = "revoked"
                elif not cand["tok_expires"] > clock.now():
                    state = "expired"
                else:
                    state = "live"
                return TokenStatus(cand["tok_id"], Recipient.from_row(cand), state)
            return None

        return self.db.read_one(body)  # one statement

    def access_stamp(
        self,
        token_id: str,
        share: str,
        schema: str,
        table: str,
        known: SharedTable | None = None,
    ) -> str | None:
        """The digest of what lets token ``token_id`` read ``share.schema.table`` now, or None when it
        may not (token not live, no grant). A name that is no table of the share (a view, or a table
        removed since) is stamped with the token and the grant only, so it never equals a table's stamp.

        :param known: the shared table of that name as the caller read it in this request (a table of
            the share, never a view): its entry is not read again (one statement in all, instead of
            eight on PostgreSQL); the digest is the same as without it.
        """

        def body(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT t.expires_at AS tok_expires, t.revoked_at AS tok_revoked, "
                "s.id AS s_id, s.name AS s_name, g.share_id AS g_share, g.granted_at AS g_at, r.* "
                "FROM tokens t JOIN recipients r ON r.id = t.recipient_id "
                "LEFT JOIN shares s ON s.name = ? "
                "LEFT JOIN grants g ON g.recipient_id = t.recipient_id AND g.share_id = s.id "
                "WHERE t.id = ?",
                (share, token_id),
            ).fetchone()
            if (
                row is None
                or row["tok_revoked"] is not None
                or not row["tok_expires"] > clock.now()
            ):
                return None
            recipient = Recipient.from_row(row)
            share_name, grant = row["s_name"], (row["g_share"], row["g_at"])
            if row["s_id"] is None:  # not the exact spelling: the catalog's name rule (name_key)
                srow = find_row(conn, "shares", share)
                found_grant = (
                    None
                    if srow is None
                    else conn.execute(
                        "SELECT share_id, granted_at FROM grants WHERE recipient_id = ? AND share_id = ?",
                        (recipient.id, srow["id"]),
                    ).fetchone()
                )
                if srow is None or found_grant is None:
                    return None
                share_name, grant = srow["name"], (found_grant[0], found_grant[1])
            if grant[0] is None:
                return None
            want = (name_key(schema), name_key(table))
            found = (
                [known]
                if known is not None and (name_key(known.schema), name_key(known.name)) == want
                else [
                    t
                    for t in self._shared_tables(conn, share_name)
                    if (name_key(t.schema), name_key(t.name)) == want
                ]
            )
            return _stamp(token_id, recipient, grant, found[0] if found else None)

        return self.db.read(body)


def _stamp(
    token_id: str, recipient: Recipient, grant: tuple[object, object], t: SharedTable | None
) -> str:
    facts: list[object] = [token_id, recipient.id, grant[0], grant[1]]
    if t is not None:  # else not a table of the share (a shared view): the token and grant alone
        facts += [
            t.id,
            str(t.location),
            t.history,
            t.start_version,
            t.pinned_version,
            [[c.column, c.value, c.is_property, c.resolve(recipient)] for c in t.partition_filter],
        ]
    blob = json.dumps(facts, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:24]
