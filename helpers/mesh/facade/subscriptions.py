"""Subscriptions of :class:`~helpers.mesh.Mesh`: a consumer subscribes to the latest published version
(recipient created or updated and the share granted in the same transaction as the mesh rows), or is
refused with the policy's reason and nothing changes."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from helpers.exceptions import InvalidArgumentError, NotFoundError, PolicyViolationError
from helpers.mesh.common import DOMAIN_PROPERTY, iso, resolve_now
from helpers.mesh.facade.governance import GovernanceMixin
from helpers.mesh.models import Product, ProductVersion, Subscription
from helpers.mesh.rules import OPS, parse_rule


@dataclass(frozen=True)
class _Consumer:
    """A would-be subscriber: its current recipient properties (if it exists) and the merged ones."""

    exists: bool
    properties: dict[str, str]
    given: dict[str, str]
    merged: dict[str, str]
    domain: str | None


class SubscriptionsMixin(GovernanceMixin):
    """Subscribe consumers to products and end subscriptions."""

    def subscribe(
        self,
        product: str,
        recipient: str,
        *,
        consumer_domain: str | None = None,
        properties: Mapping[str, str] | None = None,
        comment: str | None = None,
        now: datetime | None = None,
    ) -> Subscription:
        """Subscribe a recipient to the latest published version: create the recipient if needed and
        grant the product's share, or refuse with the reason and change nothing.

        :param consumer_domain: the consumer's domain (stored as the recipient property ``domain``).
        :param properties: recipient properties to set (merged into existing ones).
        :raises PolicyViolationError: the access policy or a mandatory policy refuses the consumer.
        """
        p = self.get_product(product)
        latest = self.latest_version(p.name)
        if latest is None:
            raise InvalidArgumentError(
                f"product {p.name!r} has no published version; publish it before consumers subscribe"
            )
        if consumer_domain:
            consumer_domain = self.get_domain(consumer_domain).name
        consumer = self._consumer(recipient, properties, consumer_domain)
        at = resolve_now(now)
        refusal = self._refusal(p, latest, recipient, consumer)
        if refusal is not None:
            refused_policy, reason = refusal
            self._store.write(
                lambda con: self._event(con, "subscription_refused", p.name, recipient, reason, at)
            )
            raise PolicyViolationError(
                f"subscription of {recipient!r} to {p.name!r} {latest.version} refused: {reason}; "
                f"ask the owner {p.owner!r} of domain {p.domain!r} to change the policy",
                policy=refused_policy,
                evidence=reason,
            )
        # one transaction: the catalog calls join it, so a failure leaves no grant, no new recipient and
        # no changed properties behind
        self._store.write(
            lambda con: self._record_subscription(con, p, latest, recipient, consumer, comment, at)
        )
        return self.get_subscription(p.name, recipient)

    def _record_subscription(
        self,
        con: sqlite3.Connection,
        p: Product,
        latest: ProductVersion,
        recipient: str,
        consumer: _Consumer,
        comment: str | None,
        at: datetime,
    ) -> None:
        """Create or update the recipient, grant the share and insert the subscription, all in the
        caller's transaction (the catalog calls join it)."""
        granted_before = {r.lower() for r in self._granted(p.share)}
        created = False
        if not consumer.exists:
            self.catalog.create_recipient(recipient, comment, consumer.merged or None)
            created = True
        elif consumer.given and consumer.merged != consumer.properties:
            self.catalog.set_recipient_properties(recipient, consumer.merged)
        if recipient.lower() not in granted_before:
            self.catalog.grant(p.share, recipient)
        con.execute(
            "INSERT OR REPLACE INTO mesh_subscriptions VALUES (?,?,?,?,?,?,?,?)",
            (
                p.name,
                recipient,
                consumer.domain,
                latest.version,
                "active",
                iso(at),
                None,
                int(created),
            ),
        )
        self._event(con, "subscribed", p.name, recipient, f"version {latest.version}", at)

    def _consumer(
        self,
        recipient: str,
        properties: Mapping[str, str] | None,
        consumer_domain: str | None,
    ) -> _Consumer:
        """The recipient's current properties merged with the given ones and its domain."""
        exists = True
        try:
            existing = self.catalog.get_recipient(recipient)
            props = {str(k): str(v) for k, v in dict(existing.properties or {}).items()}
        except NotFoundError:
            exists = False
            props = {}
        given = {str(k): str(v) for k, v in dict(properties or {}).items()}
        if consumer_domain:
            given[DOMAIN_PROPERTY] = consumer_domain
        merged = {**props, **given}
        domain = consumer_domain or next(
            (v for k, v in merged.items() if k.lower() == DOMAIN_PROPERTY), None
        )
        return _Consumer(exists, props, given, merged, domain)

    def _refusal(
        self, p: Product, latest: ProductVersion, recipient: str, consumer: _Consumer
    ) -> tuple[str, str] | None:
        """Why the consumer may not subscribe, as (policy, reason), or None when it may."""
        ok, reason = latest.access_policy.evaluate(consumer.domain, consumer.merged)
        if not ok:
            return "access-policy", reason
        # grant-time governance: e.g. no pii to an external recipient
        pii_policies = [
            pol
            for pol in self.list_policies()
            if pol.enforcement == "mandatory"
            and pol.applies(p)
            and parse_rule(pol.rule)[0] == "pii_columns_external"
        ]
        if pii_policies:
            count, evidence = self._pii_exposure(p, (recipient, consumer.merged))
            for pol in pii_policies:
                _, op, threshold = parse_rule(pol.rule)
                if not OPS[op](float(count), threshold):
                    return pol.name, (
                        f"mandatory policy {pol.name!r} ({pol.rule}) would fail: "
                        f"pii_columns_external = {count}; {evidence}"
                    )
        return None

    def unsubscribe(
        self, product: str, recipient: str, *, now: datetime | None = None
    ) -> Subscription:
        """End a subscription and revoke the grant on the product's share (one transaction)."""
        p = self.get_product(product)
        sub = self.get_subscription(p.name, recipient)
        if sub.status != "active":
            raise InvalidArgumentError(
                f"{recipient!r} is not subscribed to {p.name!r} (status {sub.status})"
            )
        at = resolve_now(now)

        def tx(con: sqlite3.Connection) -> None:
            if recipient.lower() in {r.lower() for r in self._granted(p.share)}:
                self.catalog.revoke(p.share, recipient)
            con.execute(
                "UPDATE mesh_subscriptions SET status='cancelled', ended_at=? WHERE product=? AND recipient=?",
                (iso(at), p.name, recipient),
            )
            self._event(con, "unsubscribed", p.name, recipient, "grant revoked", at)

        self._store.write(tx)
        return self.get_subscription(p.name, recipient)
