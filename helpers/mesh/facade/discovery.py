"""Discovery of :class:`~helpers.mesh.Mesh`: search products by domain, owner, tag and free text, and the
overview tables of products."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pandas as pd

from helpers.exceptions import SharelabError
from helpers.mesh.delta import delta_schema, open_delta
from helpers.mesh.facade.governance import GovernanceMixin
from helpers.mesh.models import SearchHit


class DiscoveryMixin(GovernanceMixin):
    """Find products and list them with their latest version, subscribers and quality."""

    def search(
        self,
        text: str | None = None,
        *,
        domain: str | None = None,
        owner: str | None = None,
        tag: str | None = None,
    ) -> list[SearchHit]:
        """Find products by domain, owner, tag and free text (every word must match a product's name,
        description, domain, tags, table names or column names; case-insensitive)."""
        words = [w.lower() for w in (text or "").split() if w.strip()]
        hits: list[SearchHit] = []
        domains = {d.name.lower(): d for d in self.list_domains()}
        for p in self.list_products():
            if domain and p.domain.lower() != domain.lower():
                continue
            if owner and p.owner.lower() != owner.lower():
                continue
            if tag and tag.lower() not in {t.lower() for t in p.tags}:
                continue
            fields: list[tuple[str, str]] = [
                ("name", p.name),
                ("description", p.description),
                ("domain", p.domain),
                ("owner", p.owner),
            ]
            dom = domains.get(p.domain.lower())
            if dom:
                fields.append(("domain description", dom.description))
            fields += [("tag", t) for t in p.tags]
            if words:
                try:
                    for alias, loc in self.output_tables(p).items():
                        fields.append(("table", alias))
                        fields += [
                            ("column", f"{alias}.{f['name']}")
                            for f in delta_schema(open_delta(loc))["fields"]
                        ]
                except SharelabError:
                    pass  # a broken table must not hide the product from search
            matches: list[str] = []
            ok = True
            for w in words:
                found = [f"{kind}: {value}" for kind, value in fields if w in str(value).lower()]
                if not found:
                    ok = False
                    break
                matches += [m for m in found if m not in matches]
            if ok:
                hits.append(SearchHit(p, tuple(matches)))
        return hits

    def discover(
        self,
        text: str | None = None,
        *,
        domain: str | None = None,
        owner: str | None = None,
        tag: str | None = None,
    ) -> pd.DataFrame:
        """:meth:`search` as a table: product, domain, owner, tier, tags, latest version, subscribers,
        where the text matched."""
        rows = []
        for hit in self.search(text, domain=domain, owner=owner, tag=tag):
            p = hit.product
            latest = self.latest_version(p.name)
            rows.append(
                (
                    p.name,
                    p.domain,
                    p.owner,
                    p.tier,
                    ", ".join(p.tags),
                    latest.version if latest else None,
                    len(self.subscriptions(p.name)),
                    p.description,
                    "; ".join(hit.matches[:5]),
                )
            )
        return pd.DataFrame(
            rows,
            columns=[
                "product",
                "domain",
                "owner",
                "tier",
                "tags",
                "latest_version",
                "subscribers",
                "description",
                "matched",
            ],
        )

    def products_frame(self, *, now: datetime | None = None) -> pd.DataFrame:
        """One row per product: domain, owner, tier, latest version, subscribers, compliance status
        and the latest stored quality figures."""
        rows = []
        hist = self.quality_history()
        for p in self.list_products():
            latest = self.latest_version(p.name)
            h = hist[(hist["product"] == p.name)]
            last = h[h["run_id"] == h["run_id"].iloc[-1]] if len(h) else h

            def metric(
                name: str, fn: Callable[..., Any], frame: pd.DataFrame = last
            ) -> float | None:
                vals = frame[frame["metric"] == name]["value"].dropna()
                return float(fn(vals)) if len(vals) else None

            rows.append(
                (
                    p.name,
                    p.domain,
                    p.owner,
                    p.tier,
                    ", ".join(p.tags),
                    latest.version if latest else None,
                    len(self.subscriptions(p.name)),
                    metric("completeness", min),
                    metric("freshness_hours", max),
                    metric("row_count", min),
                    last["measured_at"].iloc[0] if len(last) else None,
                )
            )
        return pd.DataFrame(
            rows,
            columns=[
                "product",
                "domain",
                "owner",
                "tier",
                "tags",
                "latest_version",
                "subscribers",
                "completeness_pct",
                "freshness_hours",
                "min_row_count",
                "measured_at",
            ],
        )
