"""The catalog's recipients, their tokens and activation codes, and the grants of shares to them."""

from __future__ import annotations

import hmac
import json
import sqlite3
import uuid
from collections.abc import Callable, Hashable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from helpers.catalog import clock
from helpers.catalog.checks import check_comment, coerce_properties
from helpers.catalog.db import Database
from helpers.catalog.governance import check_grant
from helpers.catalog.models import Grant, IssuedToken, Recipient, Share, TokenInfo
from helpers.catalog.names import validate_name
from helpers.catalog.rows import (
    GRANT_SELECT,
    TOKEN_SELECT,
    colliding_row,
    find_row,
    recipient_row,
    share_row,
)
from helpers.catalog.tokens import (
    MAX_LIVE_TOKENS,
    TOKEN_PREFIX_CHARS,
    hash_token,
    new_activation_code,
    new_token,
    resolve_lifetime,
)
from helpers.exceptions import AlreadyExistsError, InvalidArgumentError, TokenError

if TYPE_CHECKING:
    from helpers.catalog.access import TokenStatus

__all__ = ["RecipientsMixin"]

_T = TypeVar("_T")


class RecipientsMixin:
    """Recipients, tokens, activation codes and grants of :class:`~helpers.catalog.Catalog`."""

    db: Database
    if TYPE_CHECKING:  # provided by AccessMixin

        def token_status(self, token: str | None) -> TokenStatus | None: ...

        def remembered(
            self, kind: str, key: Hashable, read: Callable[[sqlite3.Connection], _T]
        ) -> _T: ...

    # -- recipients ------------------------------------------------------------------------------

    def create_recipient(
        self,
        name: str,
        comment: str | None = None,
        properties: Mapping[str, Any] | None = None,
        *,
        if_not_exists: bool = False,
    ) -> Recipient:
        """Create a recipient (no token yet: see :meth:`create_activation` and :meth:`issue_token`).

        :raises AlreadyExistsError: when it exists and ``if_not_exists`` is False.
        """
        validate_name(name, "recipient")
        check_comment(comment)
        props = coerce_properties(properties)

        def body(conn: sqlite3.Connection) -> Recipient:
            row = colliding_row(conn, "recipients", name)  # the same name under the name rule
            if row is not None:
                if if_not_exists:
                    return Recipient.from_row(row)
                raise AlreadyExistsError(
                    f"recipient {row['name']!r} already exists (names match case-insensitively, Unicode "
                    "included); use CREATE RECIPIENT IF NOT EXISTS or another name"
                )
            conn.execute(
                "INSERT INTO recipients (id, name, comment, properties, created_at) VALUES (?, ?, ?, ?, ?)",
                (str(uuid.uuid4()), name, comment, json.dumps(props), clock.now()),
            )
            return Recipient.from_row(recipient_row(conn, name))

        return self.db.write(body)

    def set_recipient_properties(self, name: str, properties: Mapping[str, Any]) -> Recipient:
        """Set (add or overwrite) properties of a recipient; other properties are kept.

        Keys match case-insensitively: setting ``Region`` replaces ``region``. A value of None removes the key.
        """
        validate_name(name, "recipient")
        if not isinstance(properties, Mapping):
            raise InvalidArgumentError("recipient properties must be a mapping of names to values")
        updates = {str(k): v for k, v in properties.items()}
        coerce_properties({k: v for k, v in updates.items() if v is not None})

        def body(conn: sqlite3.Connection) -> Recipient:
            row = recipient_row(conn, name)
            current: dict[str, str] = json.loads(row["properties"] or "{}")
            for key, value in updates.items():
                for old in [k for k in current if k.lower() == key.lower()]:
                    del current[old]
                if value is not None:
                    current[key] = str(value)
            conn.execute(
                "UPDATE recipients SET properties = ? WHERE id = ?",
                (json.dumps(current), row["id"]),
            )
            return Recipient.from_row(recipient_row(conn, name))

        return self.db.write(body)

    def drop_recipient(self, name: str, *, if_exists: bool = False) -> bool:
        """Drop a recipient with its tokens, activation codes and grants (audit rows stay)."""
        validate_name(name, "recipient")

        def body(conn: sqlite3.Connection) -> bool:
            row = find_row(conn, "recipients", name)
            if row is None:
                if if_exists:
                    return False
                row = recipient_row(conn, name)  # raises NotFoundError
            for tbl in ("tokens", "activations", "grants"):
                conn.execute(f"DELETE FROM {tbl} WHERE recipient_id = ?", (row["id"],))
            conn.execute("DELETE FROM recipients WHERE id = ?", (row["id"],))
            return True

        return self.db.write(body)

    def get_recipient(self, name: str) -> Recipient:
        """The recipient ``name`` (case-insensitive). :raises NotFoundError:"""
        validate_name(name, "recipient")
        return self.db.read(lambda conn: Recipient.from_row(recipient_row(conn, name)))

    def list_recipients(self) -> list[Recipient]:
        """Every recipient, sorted by name."""
        return self.db.read(
            lambda conn: [
                Recipient.from_row(r)
                for r in conn.execute("SELECT * FROM recipients ORDER BY name COLLATE NOCASE")
            ]
        )

    # -- tokens ----------------------------------------------------------------------------------

    def _insert_token(
        self,
        conn: sqlite3.Connection,
        recipient_row: sqlite3.Row,
        lifetime: float,
        keep_old_until: float | None,
    ) -> IssuedToken:
        """Issue a token; older live tokens: keep the newest one (until ``keep_old_until`` if given), expire the rest."""
        now = clock.now()
        live = conn.execute(
            "SELECT id, expires_at FROM tokens WHERE recipient_id = ? AND revoked_at IS NULL "
            "AND expires_at > ? ORDER BY created_at DESC, rowid DESC",
            (recipient_row["id"], now),
        ).fetchall()
        keep = MAX_LIVE_TOKENS - 1
        for i, tok in enumerate(live):
            if i >= keep:
                new_exp = now
            elif keep_old_until is not None:
                new_exp = min(tok["expires_at"], keep_old_until)
            else:
                continue
            conn.execute("UPDATE tokens SET expires_at = ? WHERE id = ?", (new_exp, tok["id"]))
        clear = new_token()
        token_id = str(uuid.uuid4())
        conn.execute(
            "INSERT INTO tokens (id, recipient_id, prefix, token_hash, created_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                token_id,
                recipient_row["id"],
                clear[:TOKEN_PREFIX_CHARS],
                hash_token(clear),
                now,
                now + lifetime,
            ),
        )
        info = TokenInfo.from_row(
            conn.execute(TOKEN_SELECT + " WHERE t.id = ?", (token_id,)).fetchone()
        )
        return IssuedToken(token=clear, info=info)

    def issue_token(self, recipient: str, lifetime_seconds: float | None = None) -> IssuedToken:
        """Issue a new token for ``recipient`` (the clear token is only in the result).

        At most :data:`MAX_LIVE_TOKENS` are live: when two are live already, the oldest expires now.

        :param lifetime_seconds: default :func:`default_token_lifetime` (30 days or the env override).
        """
        validate_name(recipient, "recipient")
        lifetime = resolve_lifetime(lifetime_seconds)
        return self.db.write(
            lambda conn: self._insert_token(conn, recipient_row(conn, recipient), lifetime, None)
        )

    def rotate_token(
        self,
        recipient: str,
        expire_existing_in_seconds: float = 0,
        *,
        lifetime_seconds: float | None = None,
    ) -> IssuedToken:
        """Issue a new token and make the old live one expire in ``expire_existing_in_seconds`` (0 = now).

        Like Databricks' ``ALTER RECIPIENT ... ROTATE TOKEN``: the old token keeps working for the overlap so
        recipients can switch. If two tokens are live already, the oldest expires immediately.
        """
        validate_name(recipient, "recipient")
        if (
            isinstance(expire_existing_in_seconds, bool)
            or not isinstance(expire_existing_in_seconds, int | float)
            or expire_existing_in_seconds < 0
        ):
            raise InvalidArgumentError(
                f"expire-existing time must be a non-negative number of seconds, got {expire_existing_in_seconds!r}"
            )
        lifetime = resolve_lifetime(lifetime_seconds)

        def body(conn: sqlite3.Connection) -> IssuedToken:
            row = recipient_row(conn, recipient)
            return self._insert_token(conn, row, lifetime, clock.now() + expire_existing_in_seconds)

        return self.db.write(body)

    def revoke_tokens(self, recipient: str) -> int:
        """Revoke every live token of ``recipient`` at once; returns how many were revoked.

        Expired tokens keep the status ``expired`` (they cannot come back: expiry is never extended).
        """
        validate_name(recipient, "recipient")

        def body(conn: sqlite3.Connection) -> int:
            row = recipient_row(conn, recipient)
            now = clock.now()
            cur = conn.execute(
                "UPDATE tokens SET revoked_at = ? WHERE recipient_id = ? AND revoked_at IS NULL "
                "AND expires_at > ?",
                (now, row["id"], now),
            )
            return cur.rowcount

        return self.db.write(body)

    def list_tokens(self, recipient: str) -> list[TokenInfo]:
        """Every token of ``recipient`` (live, expired and revoked), oldest first."""
        validate_name(recipient, "recipient")

        def body(conn: sqlite3.Connection) -> list[TokenInfo]:
            row = recipient_row(conn, recipient)
            return [
                TokenInfo.from_row(r)
                for r in conn.execute(
                    TOKEN_SELECT + " WHERE t.recipient_id = ? ORDER BY t.created_at, t.rowid",
                    (row["id"],),
                )
            ]

        return self.db.read(body)

    def authenticate(self, token: str | None) -> Recipient | None:
        """The recipient owning the live token ``token``, or None (unknown, expired, revoked or malformed).

        :meth:`token_status`: remembered while the catalog's access generation holds (one one-row read).
        """
        found = self.token_status(token)
        return found.recipient if found is not None and found.state == "live" else None

    # -- activation ------------------------------------------------------------------------------

    def create_activation(self, recipient: str) -> str:
        """A new one-time activation code for ``recipient`` (earlier unredeemed codes stop working).

        Only its hash is stored; the sharing server serves ``/delta-sharing/activation/<code>``.
        """
        validate_name(recipient, "recipient")
        code = new_activation_code()

        def body(conn: sqlite3.Connection) -> str:
            row = recipient_row(conn, recipient)
            conn.execute(
                "DELETE FROM activations WHERE recipient_id = ? AND redeemed_at IS NULL",
                (row["id"],),
            )
            conn.execute(
                "INSERT INTO activations (code_hash, recipient_id, created_at) VALUES (?, ?, ?)",
                (hash_token(code), row["id"], clock.now()),
            )
            return code

        return self.db.write(body)

    def rotate_activation(
        self, recipient: str, *, expire_existing_in_seconds: float | None = None
    ) -> str:
        """In one transaction: cap live tokens' expiry at now + n seconds (when n is given), replace any
        pending activation with a new one, and return the new activation code.

        ``ALTER RECIPIENT name ROTATE TOKEN [EXPIRE EXISTING IN n SECONDS]`` (the new token comes with the
        redeemed activation). :raises NotFoundError: unknown recipient.
        """
        validate_name(recipient, "recipient")
        n = expire_existing_in_seconds
        if n is not None and (isinstance(n, bool) or not isinstance(n, int | float) or n < 0):
            raise InvalidArgumentError(
                f"expire-existing time must be a non-negative number of seconds, got {n!r}"
            )
        code = new_activation_code()

        def body(conn: sqlite3.Connection) -> str:
            row = recipient_row(conn, recipient)
            now = clock.now()
            if n is not None:
                conn.execute(
                    "UPDATE tokens SET expires_at = MIN(expires_at, ?) WHERE recipient_id = ? "
                    "AND revoked_at IS NULL AND expires_at > ?",
                    (now + n, row["id"], now),
                )
            conn.execute(
                "DELETE FROM activations WHERE recipient_id = ? AND redeemed_at IS NULL",
                (row["id"],),
            )
            conn.execute(
                "INSERT INTO activations (code_hash, recipient_id, created_at) VALUES (?, ?, ?)",
                (hash_token(code), row["id"], now),
            )
            return code

        return self.db.write(body)

    def activation_pending(self, recipient: str) -> bool:
        """Whether ``recipient`` has an activation code that was not redeemed yet."""
        validate_name(recipient, "recipient")

        def body(conn: sqlite3.Connection) -> bool:
            row = recipient_row(conn, recipient)
            return (
                conn.execute(
                    "SELECT 1 FROM activations WHERE recipient_id = ? AND redeemed_at IS NULL",
                    (row["id"],),
                ).fetchone()
                is not None
            )

        return self.db.read(body)

    def redeem_activation(
        self, code: str, lifetime_seconds: float | None = None
    ) -> tuple[Recipient, IssuedToken]:
        """Exchange an activation code for a new token, exactly once.

        :raises TokenError: unknown or already used code.
        """
        used = TokenError(
            "this activation link is unknown or was already used; ask the provider for a new one "
            "(DESCRIBE RECIPIENT shows it)"
        )
        if not code or not isinstance(code, str) or len(code) > 512:
            raise used
        lifetime = resolve_lifetime(lifetime_seconds)
        digest = hash_token(code)

        def body(conn: sqlite3.Connection) -> tuple[Recipient, IssuedToken]:
            row = conn.execute(
                "SELECT * FROM activations WHERE code_hash = ? AND redeemed_at IS NULL", (digest,)
            ).fetchone()
            if row is None or not hmac.compare_digest(row["code_hash"], digest):
                raise used
            conn.execute(
                "UPDATE activations SET redeemed_at = ? WHERE code_hash = ?", (clock.now(), digest)
            )
            rrow = conn.execute(
                "SELECT * FROM recipients WHERE id = ?", (row["recipient_id"],)
            ).fetchone()
            issued = self._insert_token(conn, rrow, lifetime, None)
            return Recipient.from_row(rrow), issued

        return self.db.write(body)

    # -- grants ----------------------------------------------------------------------------------

    def grant(self, share: str, recipient: str) -> Grant:
        """``GRANT SELECT ON SHARE share TO RECIPIENT recipient`` (idempotent).

        :raises NotFoundError: unknown share or recipient.
        :raises GrantRefusedError: a grant condition of the share (e.g. the access policy of the data
            product it backs, see :mod:`helpers.catalog.governance`) refuses the recipient.
        """
        validate_name(share, "share")
        validate_name(recipient, "recipient")

        def body(conn: sqlite3.Connection) -> Grant:
            s = share_row(conn, share)
            r = recipient_row(conn, recipient)
            check_grant(conn, s, r)  # every path (SQL, API, CLI, mesh) passes here
            conn.execute(
                "INSERT OR IGNORE INTO grants (share_id, recipient_id, granted_at) VALUES (?, ?, ?)",
                (s["id"], r["id"], clock.now()),
            )
            return Grant.from_row(
                conn.execute(
                    GRANT_SELECT + " WHERE g.share_id = ? AND g.recipient_id = ?",
                    (s["id"], r["id"]),
                ).fetchone()
            )

        return self.db.write(body)

    def revoke(self, share: str, recipient: str) -> bool:
        """``REVOKE SELECT ON SHARE share FROM RECIPIENT recipient``; True when a grant was removed.

        :raises NotFoundError: unknown share or recipient.
        """
        validate_name(share, "share")
        validate_name(recipient, "recipient")

        def body(conn: sqlite3.Connection) -> bool:
            s = share_row(conn, share)
            r = recipient_row(conn, recipient)
            cur = conn.execute(
                "DELETE FROM grants WHERE share_id = ? AND recipient_id = ?", (s["id"], r["id"])
            )
            return cur.rowcount > 0

        return self.db.write(body)

    def grants_on_share(self, share: str) -> list[Grant]:
        """Grants on ``share``, sorted by recipient. :raises NotFoundError:"""
        validate_name(share, "share")

        def body(conn: sqlite3.Connection) -> list[Grant]:
            s = share_row(conn, share)
            return [
                Grant.from_row(r)
                for r in conn.execute(
                    GRANT_SELECT + " WHERE g.share_id = ? ORDER BY r.name COLLATE NOCASE",
                    (s["id"],),
                )
            ]

        return self.db.read(body)

    def grants_to_recipient(self, recipient: str) -> list[Grant]:
        """Grants to ``recipient``, sorted by share. :raises NotFoundError:"""
        validate_name(recipient, "recipient")

        def body(conn: sqlite3.Connection) -> list[Grant]:
            r = recipient_row(conn, recipient)
            return [
                Grant.from_row(row)
                for row in conn.execute(
                    GRANT_SELECT + " WHERE g.recipient_id = ? ORDER BY s.name COLLATE NOCASE",
                    (r["id"],),
                )
            ]

        return self.db.read(body)

    def recipient_shares(self, recipient: str) -> list[Share]:
        """The shares granted to ``recipient``, sorted by name. :raises NotFoundError:"""
        validate_name(recipient, "recipient")

        def body(conn: sqlite3.Connection) -> list[Share]:
            # one statement when the name is spelled as stored (the server's case: it comes from a row)
            found = [
                Share.from_row(row)
                for row in conn.execute(
                    "SELECT s.* FROM shares s JOIN grants g ON g.share_id = s.id "
                    "JOIN recipients r ON r.id = g.recipient_id "
                    "WHERE r.name = ? ORDER BY s.name COLLATE NOCASE",
                    (recipient,),
                )
            ]
            if found:
                return found
            r = recipient_row(conn, recipient)  # unknown (NotFoundError), another spelling, or none
            return [
                Share.from_row(row)
                for row in conn.execute(
                    "SELECT s.* FROM shares s JOIN grants g ON g.share_id = s.id "
                    "WHERE g.recipient_id = ? ORDER BY s.name COLLATE NOCASE",
                    (r["id"],),
                )
            ]

        # remembered while the access generation holds (shares, grants and recipients are watched)
        return list(self.remembered("recipient_shares", recipient, lambda c: tuple(body(c))))

    def has_grant(self, share: str, recipient: str) -> bool:
        """Whether ``recipient`` may read ``share`` (False for unknown names, never raises NotFoundError)."""
        if not isinstance(share, str) or not isinstance(recipient, str):
            return False
        return self.db.read(
            lambda conn: (
                conn.execute(
                    "SELECT 1 FROM grants g JOIN shares s ON s.id = g.share_id "
                    "JOIN recipients r ON r.id = g.recipient_id WHERE s.name = ? AND r.name = ?",
                    (share, recipient),
                ).fetchone()
                is not None
            )
        )
