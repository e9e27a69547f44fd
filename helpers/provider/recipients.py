"""The provider's recipients: creation, properties, tokens and one-time activation links."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import pandas as pd

from helpers.exceptions import InvalidArgumentError, NotFoundError
from helpers.provider.base import ProviderBase
from helpers.provider.frames import iso_z, rows_frame, status_frame, to_utc

#: Where activation links point when no sharing server runs on this lab home.
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8080"

# Activation codes are stored hashed, so DESCRIBE RECIPIENT can only show a link this process created.
# Keyed by (catalog path, recipient name lower-cased); shared by every Provider of the process.
_ACTIVATION_CODES: dict[tuple[str, str], str] = {}
_ACTIVATION_LOCK = threading.Lock()


def forget_activation_codes() -> None:
    """Forget every activation code this process remembers (as if DESCRIBE RECIPIENT ran elsewhere)."""
    with _ACTIVATION_LOCK:
        _ACTIVATION_CODES.clear()


class Recipients(ProviderBase):
    """Recipients, their tokens and activation links."""

    def public_url(self) -> str:
        """Base URL of the running sharing server (``server/server.json``), else :data:`DEFAULT_PUBLIC_URL`."""
        state = self.home.server_state() or {}
        url = state.get("public_url")
        if not url and state.get("port"):
            host = state.get("host") or "127.0.0.1"
            host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
            url = f"http://{host}:{state['port']}"
        return str(url or DEFAULT_PUBLIC_URL).rstrip("/")

    def activation_link(self, code: str) -> str:
        """The URL that hands out a recipient's profile once (served by the sharing server).

        Built from the running server's profile endpoint (``{public_url}/delta-sharing/``), else from
        :data:`DEFAULT_PUBLIC_URL`.
        """
        state = self.home.server_state() or {}
        endpoint = state.get("endpoint") or f"{self.public_url()}/delta-sharing/"
        return f"{str(endpoint).rstrip('/')}/activation/{code}"

    def _remember_code(self, recipient: str, code: str) -> None:
        with _ACTIVATION_LOCK:
            _ACTIVATION_CODES[(str(self.catalog.path), recipient.lower())] = code

    def _known_code(self, recipient: str) -> str | None:
        with _ACTIVATION_LOCK:
            return _ACTIVATION_CODES.get((str(self.catalog.path), recipient.lower()))

    def create_recipient(
        self,
        name: str,
        comment: str | None = None,
        properties: Mapping[str, Any] | None = None,
        *,
        if_not_exists: bool = False,
    ) -> pd.DataFrame:
        """``CREATE RECIPIENT [IF NOT EXISTS] name [COMMENT] [PROPERTIES (...)]``.

        Creates an open-sharing (token) recipient and a one-time activation link; the link yields the
        profile file (with a fresh token) exactly once. Only hashes of the code and token are stored.
        """
        existed = False
        if if_not_exists:
            try:
                self.catalog.get_recipient(name)
                existed = True
            except NotFoundError:
                pass
        recipient = self.catalog.create_recipient(
            name, comment, properties, if_not_exists=if_not_exists
        )
        if existed:
            frame = self.describe_recipient(recipient.name)
            return frame
        try:
            code = self.catalog.create_activation(recipient.name)
        except BaseException:  # keep the statement atomic: no recipient without its activation
            self.catalog.drop_recipient(recipient.name, if_exists=True)
            raise
        self._remember_code(recipient.name, code)
        return rows_frame(
            [
                {
                    "name": recipient.name,
                    "authentication_type": "TOKEN",
                    "activation_link": self.activation_link(code),
                    "created_at": to_utc(recipient.created_at),
                    "comment": recipient.comment,
                }
            ],
            ["name", "authentication_type", "activation_link", "created_at", "comment"],
        )

    def alter_recipient(self, name: str, properties: Mapping[str, Any]) -> pd.DataFrame:
        """``ALTER RECIPIENT name SET PROPERTIES ('k' = 'v', ...)`` (other properties are kept)."""
        recipient = self.catalog.set_recipient_properties(name, properties)
        shown = ", ".join(f"{k}={v}" for k, v in sorted(recipient.properties.items()))
        return status_frame(f"recipient {recipient.name} properties: {shown or '(none)'}")

    def rotate_token(self, name: str, *, expire_existing_in_seconds: int = 0) -> pd.DataFrame:
        """``ALTER RECIPIENT name ROTATE TOKEN [EXPIRE EXISTING IN n SECONDS]``.

        Like Databricks' rotate-token: live tokens expire in ``n`` seconds (0 = now) and a new activation
        link is created; its one-time profile carries the new token. Done in one catalog transaction.
        """
        if (
            isinstance(expire_existing_in_seconds, bool)
            or not isinstance(expire_existing_in_seconds, int)
            or expire_existing_in_seconds < 0
        ):
            raise InvalidArgumentError(
                "EXPIRE EXISTING IN needs a non-negative whole number of seconds, got "
                f"{expire_existing_in_seconds!r}"
            )
        recipient = self.catalog.get_recipient(name)
        code = self.catalog.rotate_activation(
            recipient.name, expire_existing_in_seconds=expire_existing_in_seconds
        )
        self._remember_code(recipient.name, code)
        return rows_frame(
            [
                {
                    "name": recipient.name,
                    "activation_link": self.activation_link(code),
                    "existing_tokens_expire_in_seconds": expire_existing_in_seconds,
                }
            ],
            ["name", "activation_link", "existing_tokens_expire_in_seconds"],
        )

    def revoke_tokens(self, name: str) -> pd.DataFrame:
        """``ALTER RECIPIENT name REVOKE TOKENS``: every token stops working now."""
        count = self.catalog.revoke_tokens(name)
        return status_frame(f"{count} token{'s' * (count != 1)} of recipient {name} revoked")

    def drop_recipient(self, name: str, *, if_exists: bool = False) -> pd.DataFrame:
        """``DROP RECIPIENT [IF EXISTS] name`` (its tokens, activation and grants go with it)."""
        if self.catalog.drop_recipient(name, if_exists=if_exists):
            with _ACTIVATION_LOCK:
                _ACTIVATION_CODES.pop((str(self.catalog.path), name.lower()), None)
            return status_frame(f"recipient {name} dropped")
        return status_frame(f"recipient {name} does not exist (IF EXISTS): nothing changed")

    def show_recipients(self) -> pd.DataFrame:
        """``SHOW RECIPIENTS``: name, created_at, comment, live tokens, whether activation is pending."""
        rows = []
        for r in self.catalog.list_recipients():
            tokens = self.catalog.list_tokens(r.name)
            rows.append(
                {
                    "name": r.name,
                    "created_at": to_utc(r.created_at),
                    "comment": r.comment,
                    "authentication_type": "TOKEN",
                    "active_tokens": sum(1 for t in tokens if t.status == "active"),
                    "activation_pending": self.catalog.activation_pending(r.name),
                }
            )
        return rows_frame(
            rows,
            [
                "name",
                "created_at",
                "comment",
                "authentication_type",
                "active_tokens",
                "activation_pending",
            ],
        )

    def describe_recipient(self, name: str) -> pd.DataFrame:
        """``DESCRIBE RECIPIENT name``: ``info_name`` / ``info_value`` rows like Databricks.

        Rows: name, id, authentication type, created, comment, each property, each token (prefix,
        created, expires, status) and the activation link while it is unused.
        """
        recipient = self.catalog.get_recipient(name)
        info: list[tuple[str, Any]] = [
            ("recipient_name", recipient.name),
            ("recipient_id", recipient.id),
            ("authentication_type", "TOKEN"),
            ("created_at", iso_z(recipient.created_at)),
            ("comment", recipient.comment),
        ]
        for key, value in sorted(recipient.properties.items()):
            info.append((f"property.{key}", value))
        for token in self.catalog.list_tokens(recipient.name):
            info.append(
                (
                    f"token.{token.prefix}",
                    f"created {iso_z(token.created_at)}, expires {iso_z(token.expires_at)}, "
                    f"{token.status}",
                )
            )
        from helpers.catalog.views import view_store
        from helpers.provider.views import ip_access_rows

        info += ip_access_rows(view_store(self.catalog), recipient.id)
        if self.catalog.activation_pending(recipient.name):
            code = self._known_code(recipient.name)
            if code is not None:
                info.append(("activation_link", self.activation_link(code)))
            else:
                info.append(
                    (
                        "activation_link",
                        "pending; the link was shown when it was created (only its hash is kept). "
                        f"ALTER RECIPIENT {recipient.name} ROTATE TOKEN makes a new one",
                    )
                )
        else:
            info.append(("activation_link", "used (or none); ROTATE TOKEN makes a new one"))
        return pd.DataFrame(info, columns=["info_name", "info_value"])
