"""Governance hooks of the catalog that a layer above (the data mesh) configures and the catalog enforces
on every path (SQL ``GRANT``, the Python API, the CLI, the mesh itself):

- **grant conditions**: per share, named conditions on the recipient's properties (``domain`` must be one of
  ``marketing``, ``external`` must not be ``true``...). :meth:`Catalog.grant` refuses a grant that breaks
  one with :class:`~helpers.exceptions.GrantRefusedError` naming the policy; grants that existed before a
  condition changed are listed by :meth:`grant_violations`.
- **pinned table versions**: a share entry can be pinned to a Delta version; the sharing server then
  serves that version as the table's latest, and its history up to it (:class:`SharedTable.pinned_version`).

Both live in tables of the catalog's file under the component ``governance`` (own migrations, see
:data:`MIGRATIONS`), written and read in the catalog's transactions. The catalog knows nothing of who sets
them: a condition or a pin carries the ``set_by`` text of its author (``mesh``), for messages and cleanup.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from helpers.catalog import clock
from helpers.catalog.db import Database
from helpers.catalog.names import split_name, validate_name
from helpers.catalog.rows import recipient_row, share_row
from helpers.exceptions import GrantRefusedError, InvalidArgumentError, NotFoundError

__all__ = [
    "COMPONENT",
    "MIGRATIONS",
    "GovernanceMixin",
    "GrantCondition",
    "GrantViolation",
    "TablePin",
]

#: The component name of these tables in :meth:`Database.ensure_schema`.
COMPONENT = "governance"


def _create_v1(conn: sqlite3.Connection) -> None:
    conn.execute(
        """CREATE TABLE IF NOT EXISTS grant_conditions (
            share_id TEXT NOT NULL, policy TEXT NOT NULL COLLATE NOCASE,
            property TEXT NOT NULL COLLATE NOCASE, allowed TEXT NOT NULL, description TEXT NOT NULL,
            set_by TEXT NOT NULL, set_at REAL NOT NULL, PRIMARY KEY (share_id, policy, property))"""
    )
    conn.execute(
        """CREATE TABLE IF NOT EXISTS share_pins (
            share_id TEXT NOT NULL, alias TEXT NOT NULL COLLATE NOCASE, location TEXT NOT NULL,
            version INTEGER NOT NULL, set_by TEXT NOT NULL, pinned_at REAL NOT NULL,
            PRIMARY KEY (share_id, alias))"""
    )


#: ``MIGRATIONS[n]`` upgrades the governance tables from version n-1 to n.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _create_v1}

#: The value a missing recipient property is compared as.
UNSET = ""


@dataclass(frozen=True)
class GrantCondition:
    """A recipient of ``share`` must have property ``property`` set to one of ``allowed``
    (case-insensitive; a missing property counts as ``""``), else policy ``policy`` refuses the grant.

    :param description: what the condition means, for messages (``consumer domain in ['marketing']``).
    :param set_by: who set it (``mesh``).
    """

    share: str
    policy: str
    property: str
    allowed: tuple[str, ...]
    description: str = ""
    set_by: str = ""

    def value_of(self, properties: Mapping[str, Any]) -> str:
        for key, value in properties.items():
            if str(key).lower() == self.property.lower():
                return str(value)
        return UNSET

    def allows(self, properties: Mapping[str, Any]) -> bool:
        return self.value_of(properties).lower() in {a.lower() for a in self.allowed}

    def explain(self, properties: Mapping[str, Any]) -> str:
        """Why ``properties`` break this condition (one line)."""
        value = self.value_of(properties)
        shown = f"{self.property}={value}" if value != UNSET else f"no {self.property} property"
        wanted = [a for a in self.allowed if a != UNSET] or ["(unset)"]
        text = self.description or f"{self.property} in {wanted}"
        return f"{text}; the recipient has {shown}"


@dataclass(frozen=True)
class GrantViolation:
    """An existing grant that a grant condition of its share no longer allows."""

    share: str
    recipient: str
    policy: str
    reason: str


@dataclass(frozen=True)
class TablePin:
    """Share entry ``alias`` of ``share`` is served at Delta version ``version`` (while the share's table
    is still at ``location``)."""

    share: str
    alias: str
    location: str
    version: int
    set_by: str


def _conditions(conn: sqlite3.Connection, share: sqlite3.Row) -> list[GrantCondition]:
    return [
        GrantCondition(
            share["name"],
            r["policy"],
            r["property"],
            tuple(json.loads(r["allowed"])),
            r["description"],
            r["set_by"],
        )
        for r in conn.execute(
            "SELECT * FROM grant_conditions WHERE share_id = ? ORDER BY policy, property",
            (share["id"],),
        )
    ]


def refusal(
    conditions: Iterable[GrantCondition], properties: Mapping[str, Any]
) -> GrantCondition | None:
    """The first condition ``properties`` break, or None."""
    for cond in conditions:
        if not cond.allows(properties):
            return cond
    return None


def check_grant(conn: sqlite3.Connection, share: sqlite3.Row, recipient: sqlite3.Row) -> None:
    """Raise :class:`GrantRefusedError` when a grant condition of ``share`` refuses ``recipient``
    (called by :meth:`Catalog.grant` inside its transaction); the message names every refusing policy."""
    props = json.loads(recipient["properties"] or "{}")
    failed = [c for c in _conditions(conn, share) if not c.allows(props)]
    if not failed:
        return
    first = failed[0]
    by = f" (set by {first.set_by})" if first.set_by else ""
    also = "".join(f"; also policy {c.policy!r}: {c.explain(props)}" for c in failed[1:])
    raise GrantRefusedError(
        f"GRANT SELECT ON SHARE {share['name']} TO RECIPIENT {recipient['name']} refused by policy "
        f"{first.policy!r}{by}: {first.explain(props)}{also}; change the recipient's properties or "
        "the policy, or ask the share's owner",
        policy=first.policy,
        evidence=first.explain(props) + also,
    )


def pins_of(conn: sqlite3.Connection, share_id: str) -> dict[str, tuple[str, int]]:
    """``{alias lower: (location, version)}`` of a share's pins (used by ``shared_tables``)."""
    return {
        r["alias"].lower(): (r["location"], int(r["version"]))
        for r in conn.execute(
            "SELECT alias, location, version FROM share_pins WHERE share_id = ?", (share_id,)
        )
    }


def forget_share(conn: sqlite3.Connection, share_id: str, alias_prefix: str | None = None) -> None:
    """Delete the pins (and, for a whole share, the conditions) of a removed share or entry."""
    if alias_prefix is None:
        conn.execute("DELETE FROM share_pins WHERE share_id = ?", (share_id,))
        conn.execute("DELETE FROM grant_conditions WHERE share_id = ?", (share_id,))
    elif alias_prefix.endswith("."):
        conn.execute(
            "DELETE FROM share_pins WHERE share_id = ? AND lower(substr(alias, 1, ?)) = ?",
            (share_id, len(alias_prefix), alias_prefix.lower()),
        )
    else:
        conn.execute(
            "DELETE FROM share_pins WHERE share_id = ? AND alias = ?", (share_id, alias_prefix)
        )


def _coerce_condition(share: str, value: GrantCondition | Mapping[str, Any]) -> GrantCondition:
    if isinstance(value, GrantCondition):
        cond = value
    elif isinstance(value, Mapping):
        unknown = set(value) - {"policy", "property", "allowed", "description"}
        if unknown:
            raise InvalidArgumentError(
                f"unknown grant condition field(s) {sorted(unknown)}; use policy, property, "
                "allowed, description"
            )
        allowed = value.get("allowed", ())
        if isinstance(allowed, str):
            allowed = (allowed,)
        cond = GrantCondition(
            share,
            str(value.get("policy", "")),
            str(value.get("property", "")),
            tuple(str(a) for a in allowed),
            str(value.get("description", "")),
        )
    else:
        raise InvalidArgumentError(
            f"a grant condition is a GrantCondition or a mapping, got {type(value).__name__}"
        )
    if not cond.policy.strip() or not cond.property.strip():
        raise InvalidArgumentError("a grant condition needs a policy name and a property name")
    return cond


class GovernanceMixin:
    """Grant conditions and pinned table versions of :class:`~helpers.catalog.Catalog`."""

    db: Database

    # -- grant conditions ------------------------------------------------------------------------

    def set_grant_conditions(
        self,
        share: str,
        conditions: Iterable[GrantCondition | Mapping[str, Any]],
        *,
        set_by: str,
    ) -> list[GrantCondition]:
        """Replace the grant conditions ``set_by`` keeps on ``share`` (others' conditions stay).

        Existing grants are not revoked: :meth:`grant_violations` lists those the new conditions refuse.
        :raises NotFoundError: unknown share. :raises InvalidArgumentError: malformed condition.
        """
        validate_name(share, "share")
        if not set_by or not str(set_by).strip():
            raise InvalidArgumentError("set_grant_conditions needs set_by (who keeps them)")
        conds = [_coerce_condition(share, c) for c in conditions]

        def body(conn: sqlite3.Connection) -> list[GrantCondition]:
            s = share_row(conn, share)
            conn.execute(
                "DELETE FROM grant_conditions WHERE share_id = ? AND set_by = ?", (s["id"], set_by)
            )
            now = clock.now()
            for c in conds:
                conn.execute(
                    "INSERT INTO grant_conditions (share_id, policy, property, allowed, description, "
                    "set_by, set_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (share_id, policy, "
                    "property) DO UPDATE SET allowed = excluded.allowed, description = "
                    "excluded.description, set_by = excluded.set_by, set_at = excluded.set_at",
                    (
                        s["id"],
                        c.policy,
                        c.property,
                        json.dumps(list(c.allowed)),
                        c.description,
                        set_by,
                        now,
                    ),
                )
            return _conditions(conn, s)

        return self.db.write(body)

    def grant_conditions(self, share: str) -> list[GrantCondition]:
        """The grant conditions of ``share`` (every author). :raises NotFoundError:"""
        validate_name(share, "share")
        return self.db.read(lambda conn: _conditions(conn, share_row(conn, share)))

    def grant_refusal(self, share: str, recipient: str) -> str | None:
        """Why a grant of ``share`` to ``recipient`` would be refused (one line), or None."""
        validate_name(share, "share")
        validate_name(recipient, "recipient")

        def body(conn: sqlite3.Connection) -> str | None:
            s, r = share_row(conn, share), recipient_row(conn, recipient)
            props = json.loads(r["properties"] or "{}")
            cond = refusal(_conditions(conn, s), props)
            return None if cond is None else f"policy {cond.policy!r}: {cond.explain(props)}"

        return self.db.read(body)

    def grant_violations(self, share: str | None = None) -> list[GrantViolation]:
        """Existing grants (of ``share``, or of every share) that a grant condition now refuses."""
        if share is not None:
            validate_name(share, "share")

        def body(conn: sqlite3.Connection) -> list[GrantViolation]:
            if share is not None:
                shares = [share_row(conn, share)]
            else:
                shares = list(
                    conn.execute(
                        "SELECT s.* FROM shares s WHERE s.id IN "
                        "(SELECT share_id FROM grant_conditions) ORDER BY s.name COLLATE NOCASE"
                    )
                )
            out: list[GrantViolation] = []
            for s in shares:
                conds = _conditions(conn, s)
                if not conds:
                    continue
                for r in conn.execute(
                    "SELECT r.name, r.properties FROM grants g JOIN recipients r ON "
                    "r.id = g.recipient_id WHERE g.share_id = ? ORDER BY r.name COLLATE NOCASE",
                    (s["id"],),
                ):
                    props = json.loads(r["properties"] or "{}")
                    cond = refusal(conds, props)
                    if cond is not None:
                        out.append(
                            GrantViolation(s["name"], r["name"], cond.policy, cond.explain(props))
                        )
            return out

        return self.db.read(body)

    # -- pinned versions -------------------------------------------------------------------------

    def pin_table_version(self, share: str, alias: str, version: int, *, set_by: str) -> TablePin:
        """Serve table ``alias`` (``schema.table``) of ``share`` at Delta ``version``: the server reports it
        as the latest version and serves history, changes and time travel up to it only.

        :raises NotFoundError: unknown share or table. :raises InvalidArgumentError: a version the table
            does not have, or before the entry's start version.
        """
        validate_name(share, "share")
        split_name(alias, 2, "table alias", "schema.table")
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise InvalidArgumentError(f"a pinned version is a whole number >= 0, got {version!r}")
        table = self._pinnable(share, alias)
        from helpers.storage.delta_log import get_log

        latest = get_log(str(table.location)).latest_version()
        if version > latest:
            raise InvalidArgumentError(
                f"table {alias} of share {share!r} has no version {version} (latest: {latest})"
            )
        if table.start_version is not None and version < table.start_version:
            raise InvalidArgumentError(
                f"version {version} is before the share's start version {table.start_version} of {alias}"
            )

        def body(conn: sqlite3.Connection) -> TablePin:
            s = share_row(conn, share)
            conn.execute(
                "INSERT INTO share_pins (share_id, alias, location, version, set_by, pinned_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (share_id, alias) DO UPDATE SET "
                "location = excluded.location, version = excluded.version, set_by = excluded.set_by, "
                "pinned_at = excluded.pinned_at",
                (
                    s["id"],
                    f"{table.schema}.{table.name}",
                    str(table.location),
                    version,
                    set_by,
                    clock.now(),
                ),
            )
            return TablePin(
                s["name"], f"{table.schema}.{table.name}", str(table.location), version, set_by
            )

        return self.db.write(body)

    def unpin_table_version(self, share: str, alias: str) -> bool:
        """Serve ``alias`` of ``share`` at its latest version again; True when a pin was removed."""
        validate_name(share, "share")
        split_name(alias, 2, "table alias", "schema.table")

        def body(conn: sqlite3.Connection) -> bool:
            s = share_row(conn, share)
            cur = conn.execute(
                "DELETE FROM share_pins WHERE share_id = ? AND alias = ?", (s["id"], alias)
            )
            return cur.rowcount > 0

        return self.db.write(body)

    def table_pins(self, share: str) -> list[TablePin]:
        """The pins of ``share``, by alias. :raises NotFoundError:"""
        validate_name(share, "share")

        def body(conn: sqlite3.Connection) -> list[TablePin]:
            s = share_row(conn, share)
            return [
                TablePin(s["name"], r["alias"], r["location"], int(r["version"]), r["set_by"])
                for r in conn.execute(
                    "SELECT * FROM share_pins WHERE share_id = ? ORDER BY alias", (s["id"],)
                )
            ]

        return self.db.read(body)

    def _pinnable(self, share: str, alias: str) -> Any:
        schema, _, name = alias.partition(".")
        for t in self.shared_tables(share):  # type: ignore[attr-defined]
            if t.schema.lower() == schema.lower() and t.name.lower() == name.lower():
                return t
        raise NotFoundError(f"share {share!r} has no table {alias!r}; add it to the share first")
