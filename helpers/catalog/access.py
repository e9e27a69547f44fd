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

Both, and the reads the server makes on every request (a recipient's shares, a share's tables, an IP
access list), are remembered per catalog object while the catalog's access generation (:mod:`.generation`,
a counter every access-changing write bumps in its own transaction) is unchanged
(:meth:`AccessMixin.remembered`): a check is then one one-row read (none more in a read transaction that
read it already) instead of the joins, and as current as the catalog (a revocation through any process
or replica bumps the counter). Token expiry is time-based and checked locally against the remembered
``expires_at``. Nothing is remembered from inside a write transaction: it may still roll back.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from helpers.catalog import clock
from helpers.catalog.db import Database
from helpers.catalog.generation import GenerationCache, current_generation, read_generation
from helpers.catalog.models import Recipient, SharedTable
from helpers.catalog.names import name_key
from helpers.catalog.rows import find_row
from helpers.catalog.tokens import TOKEN_PREFIX_CHARS, hash_token
from helpers.catalog.watch import watched_generation

__all__ = ["AccessFacts", "AccessMixin", "TokenStatus"]

_T = TypeVar("_T")


@dataclass(frozen=True)
class TokenStatus:
    """A token the catalog knows: its id, its recipient, and ``live``, ``expired`` or ``revoked``."""

    token_id: str
    recipient: Recipient
    state: str


class AccessFacts(NamedTuple):
    """What :meth:`AccessMixin.access_facts` found: the stamp, the token's expiry (epoch seconds) and
    the access generation it was read at."""

    stamp: str
    expires_at: float
    generation: int | None


@dataclass(frozen=True)
class _KnownToken:
    token_id: str
    recipient: Recipient
    expires_at: float
    revoked: bool

    def status(self) -> TokenStatus:
        if self.revoked:
            state = "revoked"
        elif not self.expires_at > clock.now():
            state = "expired"
        else:
            state = "live"
        return TokenStatus(self.token_id, self.recipient, state)


class AccessMixin:
    """Token ownership and access stamps of :class:`~helpers.catalog.Catalog`, and the per-process memory
    of reads that only access-changing writes change (:meth:`remembered`)."""

    db: Database
    if TYPE_CHECKING:  # provided by SharesMixin

        def shared_tables(self, share: str) -> list[SharedTable]: ...

    def access_generation(self) -> int | None:
        """The catalog's access generation now: one one-row statement, read once per read transaction
        (its snapshot fixes it); inside a write transaction it includes that transaction's own changes.
        None only for a snapshot older than the counter."""
        if self.db.transaction_kind() == "write":  # its own changes included: the counter itself
            return self.db.read_one(read_generation)
        memo = self.db.read_memo()
        if memo is not None and "access_generation" in memo:
            found: int | None = memo["access_generation"]
            return found
        # a watching server process (PostgreSQL) knows it without a round trip (see .watch); a read
        # transaction's snapshot begins after that, so what it reads is at least that new
        generation = watched_generation(self.db)
        if generation is None:
            # in a read transaction, of its snapshot; outside one, now (on SQLite often no statement)
            generation = current_generation(self.db)
        if memo is not None:
            memo["access_generation"] = generation
        return generation

    def access_generation_is_local(self) -> bool:
        """Whether reading the access generation costs no network round trip now (a SQLite file, or a
        PostgreSQL catalog this process watches): then it may be read on an event loop."""
        return self.db.backend == "sqlite" or watched_generation(self.db) is not None

    def remembered(self, kind: str, key: Hashable, read: Callable[[sqlite3.Connection], _T]) -> _T:
        """``read(conn)`` in a read transaction, remembered per ``(kind, key)`` in this catalog object
        while the access generation holds: a repeat costs the generation's one-row read (none more
        inside a read transaction that read it already). ``read`` must only depend on tables the
        generation watches (:mod:`.generation`) and return an immutable value.

        Inside a write transaction nothing is looked up or remembered: it may still roll back.
        """
        if self.db.transaction_kind() == "write":
            return self.db.read(read)
        caches: dict[str, GenerationCache] = self.__dict__.setdefault("_generation_caches", {})
        cache = caches.get(kind) or caches.setdefault(kind, GenerationCache())
        generation = self.access_generation()
        if generation is not None:
            hit: tuple[_T] | None = cache.get(key, generation)
            if hit is not None:
                return hit[0]

        def body(conn: sqlite3.Connection) -> tuple[int | None, _T]:
            # one snapshot: the value is of that generation
            return self.access_generation(), read(conn)

        seen, value = self.db.read(body)
        if seen is not None:
            cache.put(key, (value,), seen)
        return value

    def token_status(self, token: str | None) -> TokenStatus | None:
        """The owner and state of ``token`` (None when the catalog never issued it).

        Remembered by digest while the access generation holds (:meth:`remembered`); else one statement:
        the token's candidates by prefix joined with their recipient. Expiry is checked now, locally.
        """
        if not token or not isinstance(token, str) or len(token) > 512:
            return None
        digest = hash_token(token)
        found = self.remembered("token", digest, lambda conn: _find_token(conn, token, digest))
        return None if found is None else found.status()

    def access_stamp(self, token_id: str, share: str, schema: str, table: str) -> str | None:
        """The digest of what lets token ``token_id`` read ``share.schema.table`` now, or None when it
        may not (token not live, no grant). A name that is no table of the share (a view, or a table
        removed since) is stamped with the token and the grant only, so it never equals a table's stamp.
        """
        facts = self.access_facts(token_id, share, schema, table)
        return None if facts is None else facts.stamp

    def access_facts(
        self, token_id: str, share: str, schema: str, table: str
    ) -> AccessFacts | None:
        """:meth:`access_stamp` with the token's expiry and the generation it holds at (None: no access).

        Remembered while the access generation holds (:meth:`remembered`); expiry is checked now.
        """
        hit = self.remembered(
            "facts",
            (token_id, share, schema, table),
            lambda conn: self._read_facts(conn, token_id, share, schema, table),
        )
        return None if hit is None or not hit.expires_at > clock.now() else hit

    def _read_facts(
        self, conn: sqlite3.Connection, token_id: str, share: str, schema: str, table: str
    ) -> AccessFacts | None:
        generation = self.access_generation()  # the snapshot's own (read once in it)
        row = conn.execute(
            "SELECT t.expires_at AS tok_expires, t.revoked_at AS tok_revoked, "
            "s.id AS s_id, s.name AS s_name, g.share_id AS g_share, g.granted_at AS g_at, r.* "
            "FROM tokens t JOIN recipients r ON r.id = t.recipient_id "
            "LEFT JOIN shares s ON s.name = ? "
            "LEFT JOIN grants g ON g.recipient_id = t.recipient_id AND g.share_id = s.id "
            "WHERE t.id = ?",
            (share, token_id),
        ).fetchone()
        if row is None or row["tok_revoked"] is not None or not row["tok_expires"] > clock.now():
            return None
        recipient = Recipient.from_row(row)
        share_name, grant = row["s_name"], (row["g_share"], row["g_at"])
        if row["s_id"] is None:  # not the exact spelling: the catalog's name rule (name_key)
            found_share = _grant_by_name(conn, share, recipient.id)
            if found_share is None:
                return None
            share_name, grant = found_share
        if grant[0] is None:
            return None
        want = (name_key(schema), name_key(table))
        # the share's tables as remembered at this snapshot's generation (no statements when known)
        found = [
            t
            for t in self.shared_tables(share_name)
            if (name_key(t.schema), name_key(t.name)) == want
        ]
        stamp = _stamp(token_id, recipient, grant, found[0] if found else None)
        return AccessFacts(stamp, float(row["tok_expires"]), generation)


def _find_token(conn: sqlite3.Connection, token: str, digest: str) -> _KnownToken | None:
    """The token of this digest among the candidates of its prefix (one statement), or None."""
    for cand in conn.execute(
        "SELECT t.id AS tok_id, t.token_hash AS tok_hash, t.expires_at AS tok_expires, "
        "t.revoked_at AS tok_revoked, r.* FROM tokens t "
        "JOIN recipients r ON r.id = t.recipient_id WHERE t.prefix = ?",
        (token[:TOKEN_PREFIX_CHARS],),
    ):
        if hmac.compare_digest(cand["tok_hash"], digest):
            return _KnownToken(
                cand["tok_id"],
                Recipient.from_row(cand),
                float(cand["tok_expires"]),
                cand["tok_revoked"] is not None,
            )
    return None


def _grant_by_name(
    conn: sqlite3.Connection, share: str, recipient_id: str
) -> tuple[str, tuple[Any, Any]] | None:
    """(the share's own name, its grant to the recipient) of a share spelled otherwise, or None."""
    srow = find_row(conn, "shares", share)
    if srow is None:
        return None
    found = conn.execute(
        "SELECT share_id, granted_at FROM grants WHERE recipient_id = ? AND share_id = ?",
        (recipient_id, srow["id"]),
    ).fetchone()
    if found is None:
        return None
    return srow["name"], (found[0], found[1])


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
