"""Lab 4, data mesh: publish and govern a data product.

The learner registers the ``sales`` domain, declares the product ``customer_insights`` over a prepared share
(customers and their bookings) with an SLA, tries to publish it and reads which mandatory policy blocked it,
fixes the product and publishes it with an access policy, tags a pii column and reads which policy refuses
a grant to an external recipient, then lets two consumers subscribe (one refused, one allowed).
Every check reads the mesh's real state (:class:`helpers.mesh.Mesh`, the share catalog, the mesh's event log)
when it runs; no expected value is written down.
"""

from __future__ import annotations

import os
from typing import Any

from helpers.labs import setup
from helpers.labs.core import CheckFailed, Task, check_all, expect

LAB = "mesh"
DOMAIN = "sales"
PRODUCT = "customer_insights"
SHARE = "customer_insights"
CUSTOMERS = "airline.sales_domain.customers"
BOOKINGS = "airline.sales_domain.bookings"
#: share alias -> catalog table of the product's output tables.
TABLES = {"sales.customers": CUSTOMERS, "sales.bookings": BOOKINGS}
#: the SLA the task asks for (stated in the task text, so the check may compare with it).
SLA_TARGET = {"freshness_hours": 12.0, "completeness_pct": 98.0}
CONSUMER_DOMAINS = {"marketing": "marketing-lead", "operations": "operations-lead"}
EXTERNAL = "partner_agency"
ALLOWED = ("marketing_analytics", "marketing")
REFUSED = ("ops_analytics", "operations")


class MeshLab:
    """Tasks ``m1`` … ``m6``; ``mesh`` is the lab home's :class:`~helpers.mesh.Mesh`."""

    def __init__(self, home: str | os.PathLike[str] | None = None) -> None:
        from helpers.mesh import Mesh
        from helpers.provider import Provider

        self.home = home
        self.provider = Provider(home)
        self.catalog = self.provider.catalog
        self.mesh = Mesh(home, catalog=self.catalog)
        self.m1 = Task(
            LAB,
            "m1",
            f"Register the domain {DOMAIN} with an owner",
            self._check_m1,
            hints=(
                "A domain has a name and an owner (the team accountable for its products).",
                f"mesh.register_domain('{DOMAIN}', owner='...', description='...', if_not_exists=True)",
            ),
        )
        self.m2 = Task(
            LAB,
            "m2",
            f"Create the data product {PRODUCT} with an SLA",
            self._check_m2,
            hints=(
                "create_product takes the owning domain, the share, a description, a tier and an sla "
                "mapping; an existing product is changed with update_product.",
                f"mesh.create_product('{PRODUCT}', domain='{DOMAIN}', share='{SHARE}', "
                "description='...', tier=1, sla={'freshness_hours': ..., 'completeness_pct': ...}, "
                "if_not_exists=True)",
            ),
        )
        self.m3 = Task(
            LAB,
            "m3",
            "Which mandatory policy blocked the publication?",
            self._check_m3,
            hints=(
                "The error of the publish cell names the policy; mesh.check(...) shows every verdict "
                "with its evidence.",
                f"mesh.check('{PRODUCT}', record=False).failures[0].policy",
            ),
        )
        self.m4 = Task(
            LAB,
            "m4",
            "Fix the product and publish it for the marketing domain only",
            self._check_m4,
            hints=(
                "The evidence names the column that drags completeness down: it is empty by design "
                "(only cancelled bookings have it). Declare it optional, then publish with an "
                "access policy.",
                f"mesh.update_product('{PRODUCT}', optional_columns={{'sales.bookings': ['<column>']}}); "
                f"mesh.publish('{PRODUCT}', access_policy={{'allowed_domains': ['marketing']}})",
            ),
        )
        self.m5 = Task(
            LAB,
            "m5",
            f"Tag a pii column, try to grant {EXTERNAL} (external): which policy refuses it for the pii?",
            self._check_m5,
            hints=(
                "tag_column marks a column as pii; governance then refuses grants of the share that "
                "the mandatory policies forbid, and the refusal names every refusing policy.",
                f"mesh.tag_column('{CUSTOMERS}', 'email', tag='pii'); then run GRANT SELECT ON SHARE "
                f"{SHARE} TO RECIPIENT {EXTERNAL} inside try/except GrantRefusedError and print the "
                "error: one policy refuses for the recipient's domain, another for the pii column",
            ),
        )
        self.m6 = Task(
            LAB,
            "m6",
            "Subscribe two consumers: one refused, one allowed",
            self._check_m6,
            hints=(
                "mesh.subscribe(product, recipient, consumer_domain=...) raises PolicyViolationError "
                "when the access policy refuses; catch it and go on.",
                f"try: mesh.subscribe('{PRODUCT}', '{REFUSED[0]}', consumer_domain='{REFUSED[1]}') "
                "except PolicyViolationError as exc: print(exc); then subscribe "
                f"'{ALLOWED[0]}' with consumer_domain='{ALLOWED[1]}'",
            ),
        )

    def check_all(self) -> None:
        """Check every task again and print the points."""
        check_all(self)

    # -- a cell the lab gives the learner --------------------------------------------------------
    def try_publish(self) -> None:
        """Try to publish the product as it is, and show the refusal (a refusal is the lesson here)."""
        from helpers.exceptions import PolicyViolationError, SharelabError

        try:
            version = self.mesh.publish(PRODUCT)
        except PolicyViolationError as exc:
            print(f"🚫 refused by policy {exc.policy!r}:\n{exc}")
            return
        except SharelabError as exc:  # an untouched lab has no product yet: say so, do not crash
            print(f"⏳ not published: {exc}")
            return
        print(f"published {PRODUCT} version {version.version}: nothing blocked it")

    # -- checks -------------------------------------------------------------------------------
    def _product(self) -> Any:
        from helpers.exceptions import NotFoundError

        try:
            return self.mesh.get_product(PRODUCT)
        except NotFoundError:
            raise CheckFailed(
                f"there is no data product named {PRODUCT}; do task m2 (mesh.list_products() "
                "shows what exists)"
            ) from None

    def _grantees(self) -> set[str]:
        return {g.recipient.lower() for g in self.catalog.grants_on_share(SHARE)}

    def _check_m1(self, _answer: Any) -> None:
        names = {d.name.lower(): d for d in self.mesh.list_domains()}
        expect(
            DOMAIN in names,
            f"there is no domain named {DOMAIN}; mesh.domains_frame() shows the registered ones",
        )
        expect(bool(names[DOMAIN].owner.strip()), f"domain {DOMAIN} has no owner")

    def _check_m2(self, _answer: Any) -> None:
        product = self._product()
        expect(
            product.domain.lower() == DOMAIN,
            f"{PRODUCT} belongs to domain {product.domain!r}; a product is owned by the domain that "
            "produces it (see the task text)",
        )
        expect(
            product.share.lower() == SHARE,
            f"{PRODUCT} is built on share {product.share!r}, not on the prepared share",
        )
        for name, target in SLA_TARGET.items():
            actual = getattr(product.sla, name)
            expect(
                actual == target,
                f"the product's SLA {name} is {actual:g}, which is not the target the task asks for; "
                f"mesh.update_product('{PRODUCT}', sla={{...}})",
            )
        expect(
            bool(product.description.strip()),
            f"{PRODUCT} has no description; consumers discover products by it",
        )

    def _check_m3(self, answer: Any) -> None:
        expect(isinstance(answer, str), f"answer with the policy's name (a string), not {answer!r}")
        self._product()
        failing = {r.policy.lower() for r in self.mesh.check(PRODUCT, record=False).failures}
        events = self.mesh.events(PRODUCT)
        refused = events[events["kind"] == "publish_refused"]
        blockers = failing | {str(s).lower() for s in refused["subject"]}
        expect(
            bool(blockers),
            f"nothing has blocked {PRODUCT}: no refused publication in mesh.events('{PRODUCT}') and "
            "no failing mandatory policy; run the publish cell above",
        )
        expect(
            answer.strip().lower() in blockers,
            f"{answer!r} is not a policy that blocks publishing {PRODUCT}; read the error of the "
            f"publish cell or mesh.check('{PRODUCT}').to_frame()",
        )

    def _check_m4(self, _answer: Any) -> None:
        from helpers.mesh import DEFAULT_POLICIES

        self._product()
        policies = {p.name.lower() for p in self.mesh.list_policies()}
        dropped = [p.name for p in DEFAULT_POLICIES if p.name.lower() not in policies]
        expect(
            not dropped,
            f"governance policies {dropped} are gone; fix the product, not the rules "
            "(mesh.install_default_policies() puts them back)",
        )
        latest = self.mesh.latest_version(PRODUCT)
        expect(
            latest is not None,
            f"{PRODUCT} has no published version yet; fix what blocked it, then mesh.publish(...)",
        )
        allowed = {d.lower() for d in latest.access_policy.allowed_domains}  # type: ignore[union-attr]
        expect(
            allowed == {"marketing"},
            f"version {latest.version} lets {latest.access_policy.describe()} subscribe; "  # type: ignore[union-attr]
            "the task asks for the marketing domain only: publish again with an access_policy",
        )

    def _refusing_policies(self) -> set[str]:
        """The grant conditions of the share that refuse the external recipient now."""
        props = self.catalog.get_recipient(EXTERNAL).properties or {}
        return {
            c.policy.lower() for c in self.catalog.grant_conditions(SHARE) if not c.allows(props)
        }

    def _check_m5(self, answer: Any) -> None:
        self._product()
        tags = self.mesh.column_tags(CUSTOMERS)
        pii = tags[tags["tag"].str.lower() == "pii"] if len(tags) else tags
        expect(
            len(pii) > 0,
            f"no column of {CUSTOMERS} is tagged pii yet; mesh.tag_column('{CUSTOMERS}', 'email', "
            f"tag='pii'), then try the grant again (mesh.column_tags('{CUSTOMERS}') shows the tags)",
        )
        expect(
            isinstance(answer, str),
            f"answer with the policy's name as the refusal prints it (a string), not {answer!r}",
        )
        refusing = self._refusing_policies()
        governance = {p.name.lower() for p in self.mesh.list_policies()}
        name = answer.strip().strip("'\"").lower()
        expect(
            name in refusing,
            f"{answer!r} is not a policy that refuses granting {SHARE} to {EXTERNAL}; run the GRANT "
            "inside try/except GrantRefusedError and print the error: it names each refusing policy",
        )
        expect(
            name in governance,
            f"{answer!r} refuses {EXTERNAL} because of its consumer domain, whatever the data holds; "
            "which policy refuses it because of the pii column? read the 'also policy' part of the "
            "refusal",
        )
        expect(
            EXTERNAL not in self._grantees(),
            f"{EXTERNAL} holds a grant on {SHARE}; revoke it "
            f"(REVOKE SELECT ON SHARE {SHARE} FROM RECIPIENT {EXTERNAL})",
        )

    def _check_m6(self, _answer: Any) -> None:
        self._product()
        grantees = self._grantees()
        active = {s.recipient.lower() for s in self.mesh.subscriptions(PRODUCT)}
        allowed, refused = ALLOWED[0], REFUSED[0]
        expect(
            allowed in active and allowed in grantees,
            f"{allowed} has no active subscription with a grant on {SHARE}; "
            f"mesh.subscriptions('{PRODUCT}') and SHOW GRANTS ON SHARE {SHARE} show what exists",
        )
        events = self.mesh.events(PRODUCT)
        tried = events[
            (events["kind"] == "subscription_refused") & (events["subject"].str.lower() == refused)
        ]
        expect(
            len(tried) > 0,
            f"no refused subscription of {refused} in mesh.events('{PRODUCT}'); let it ask to "
            "subscribe (and catch the refusal)",
        )
        expect(
            refused not in grantees and refused not in active,
            f"{refused} holds a grant or subscription on {SHARE}; the access policy refuses its "
            "domain, so nothing may be left behind: revoke it",
        )


def prepare(home: str | os.PathLike[str] | None = None) -> MeshLab:
    """The platform team's preparation (idempotent): airline data, the share the product is built on,
    the default governance policies, the consumer domains and an external recipient."""
    setup.ensure_dataset("airline", home)
    lab = MeshLab(home)
    lab.provider.sql(f"""
        CREATE SHARE IF NOT EXISTS {SHARE} COMMENT 'Customers and their bookings (lab 4)';
        CREATE RECIPIENT IF NOT EXISTS {EXTERNAL} PROPERTIES ('external' = 'true');
    """)
    aliases = {f"{t.schema}.{t.name}".lower() for t in lab.catalog.shared_tables(SHARE)}
    for alias, table in TABLES.items():
        if alias not in aliases:
            lab.provider.sql(f"ALTER SHARE {SHARE} ADD TABLE {table} AS {alias}")
    lab.mesh.install_default_policies()
    for name, owner in CONSUMER_DOMAINS.items():
        lab.mesh.register_domain(
            name, owner, description=f"{name} analytics (consumer)", if_not_exists=True
        )
    return lab
