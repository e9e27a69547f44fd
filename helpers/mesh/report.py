"""The mesh report: matplotlib figures of quality trends and usage, and one self-contained HTML page
(plots embedded as base64 PNG) built from a mesh's state."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import pandas as pd

from helpers.exceptions import SharelabError
from helpers.mesh.common import iso
from helpers.mesh.lineage import LineageGraph
from helpers.mesh.models import (
    ComplianceReport,
    Domain,
    Policy,
    Product,
    ProductVersion,
    Subscription,
)
from helpers.mesh.report_governance import GovernanceSource, governance_sections

if TYPE_CHECKING:
    from helpers.home import LabHome


class ReportSource(GovernanceSource, Protocol):
    """What the report reads from a mesh (:class:`~helpers.mesh.Mesh` provides it)."""

    @property
    def home(self) -> LabHome | None: ...

    def list_domains(self) -> list[Domain]: ...

    def list_products(self, domain: str | None = None) -> list[Product]: ...

    def list_policies(self) -> list[Policy]: ...

    def versions(self, product: str) -> list[ProductVersion]: ...

    def latest_version(self, product: str) -> ProductVersion | None: ...

    def subscriptions(
        self, product: str | None = None, *, active_only: bool = True
    ) -> list[Subscription]: ...

    def check(
        self, product: str, *, now: datetime | None = None, record: bool = True
    ) -> ComplianceReport: ...

    def sla_status(self, product: str, *, now: datetime | None = None) -> pd.DataFrame: ...

    def domains_frame(self) -> pd.DataFrame: ...

    def products_frame(self, *, now: datetime | None = None) -> pd.DataFrame: ...

    def quality_history(
        self, product: str | None = None, metric: str | None = None
    ) -> pd.DataFrame: ...

    def usage(self, product: str | None = None) -> pd.DataFrame: ...

    def lineage(self) -> LineageGraph: ...

    def events(self, product: str | None = None) -> pd.DataFrame: ...


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _esc(text: Any) -> str:
    return html.escape("" if text is None else str(text))


def _table_html(frame: pd.DataFrame, empty: str = "none yet") -> str:
    if frame is None or frame.empty:
        return f"<p class='empty'>{_esc(empty)}</p>"
    return frame.to_html(index=False, escape=True, na_rep="n/a", float_format=lambda v: f"{v:.2f}")


def _img(b64: str, alt: str) -> str:
    return f"<img alt='{_esc(alt)}' src='data:image/png;base64,{b64}'/>"


def trend_figure(history: pd.DataFrame) -> Any:
    """A matplotlib figure of quality trends per product: completeness (%), freshness (h), rows.

    :param history: :meth:`Mesh.quality_history` (all products or one).
    """
    import matplotlib.dates as mdates
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 3.6))
    axes = fig.subplots(1, 3)
    specs = (
        ("completeness", "min", "Completeness (lowest table)", "completeness (%)"),
        ("freshness_hours", "max", "Freshness (stalest table)", "hours since last commit (h)"),
        ("row_count", "min", "Rows (smallest table)", "rows"),
    )
    for ax, (metric, fn, title, ylabel) in zip(axes, specs, strict=True):
        data = history[history["metric"] == metric].dropna(subset=["value"])
        for product, g in data.groupby("product"):
            per_run = (
                g.groupby("run_id")
                .agg(t=("measured_at", "first"), v=("value", fn))
                .sort_values("t")
            )
            ax.plot(per_run["t"], per_run["v"], marker="o", label=str(product))
        ax.set_title(title)
        ax.set_xlabel("measured at (UTC)")
        ax.set_ylabel(ylabel)
        locator = mdates.AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        ax.tick_params(axis="x", labelsize=7)
        if len(data):
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no measurements", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle("Data product quality trends")
    fig.tight_layout()
    return fig


def usage_figure(usage: pd.DataFrame) -> Any:
    """A horizontal bar chart of successful reads per recipient and shared table (audit log)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, max(2.5, 0.4 * len(usage) + 1.2)))
    ax = fig.subplots()
    if len(usage):
        labels = [f"{r.recipient} -> {r.share}.{r.schema}.{r.table}" for r in usage.itertuples()]
        ax.barh(labels, usage["reads"].astype(int))
        ax.invert_yaxis()
    else:
        ax.text(
            0.5,
            0.5,
            "no reads in the audit log yet",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    ax.set_title("Reads per recipient and table (server audit log)")
    ax.set_xlabel("successful reads (requests)")
    ax.set_ylabel("recipient -> shared table")
    fig.tight_layout()
    return fig


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f2f2f2} .PASS{color:#176f2c;font-weight:bold} .FAIL{color:#b00020;font-weight:bold}
.N\\/A{color:#777} .empty{color:#777;font-style:italic} img{max-width:100%}
"""


def render_report(mesh: ReportSource, now: datetime, measure: bool) -> str:
    """The report of ``mesh`` at ``now`` as one HTML page; ``measure``: store the measurements it makes."""
    products = mesh.list_products()
    compliance, sla, errors = _check_products(mesh, products, now, measure)
    policies = mesh.list_policies()
    subs = mesh.subscriptions()
    parts: list[str] = [f"<h1>Data mesh report</h1><p>Generated at {_esc(iso(now))}"]
    if mesh.home is not None:
        parts.append(f" for lab home <code>{_esc(mesh.home.path)}</code>")
    parts.append("</p>")
    parts.append(_summary_section(mesh, products, subs, policies, compliance))
    parts.append("<h2>Domains</h2>" + _table_html(mesh.domains_frame()))
    parts.append("<h2>Data products</h2>" + _table_html(mesh.products_frame()))
    parts.append(_versions_section(mesh, products))
    parts.append("<h2>SLA status</h2>")
    parts.append(_table_html(pd.concat(sla, ignore_index=True) if sla else pd.DataFrame()))
    parts += _compliance_section(policies, compliance, errors)
    history = mesh.quality_history()
    parts.append("<h2>Quality trends</h2>" + _img(_png(trend_figure(history)), "quality trends"))
    usage = mesh.usage()
    parts.append("<h2>Usage (audit log)</h2>" + _img(_png(usage_figure(usage)), "usage"))
    parts.append(_table_html(usage, "no reads yet"))
    parts.append("<h2>Subscriptions</h2>")
    parts.append(_subscriptions_table(subs))
    parts += governance_sections(
        mesh,
        products,
        now,
        _table_html,
        lambda fig: _img(_png(fig), "lineage"),
    )
    parts.append("<h3>Lineage edges</h3>" + _table_html(mesh.lineage().to_frame()))
    events = mesh.events().tail(30)
    parts.append("<h2>Recent mesh events</h2>" + _table_html(events))
    body = "\n".join(parts)
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>sharelab data mesh report</title>"
        f"<style>{_CSS}</style></head><body>{body}</body></html>"
    )


def _check_products(
    mesh: ReportSource, products: Sequence[Product], now: datetime, measure: bool
) -> tuple[dict[str, ComplianceReport], list[pd.DataFrame], list[str]]:
    """Every product's compliance and SLA status, and the error text of the products that failed."""
    compliance: dict[str, ComplianceReport] = {}
    sla: list[pd.DataFrame] = []
    errors: list[str] = []
    for p in products:
        try:
            compliance[p.name] = mesh.check(p.name, now=now, record=measure)
            sla.append(mesh.sla_status(p.name, now=now))
        except SharelabError as exc:  # a broken product is reported, not fatal for the report
            errors.append(f"{p.name}: {exc}")
    return compliance, sla, errors


def _summary_section(
    mesh: ReportSource,
    products: Sequence[Product],
    subs: Sequence[Subscription],
    policies: Sequence[Policy],
    compliance: dict[str, ComplianceReport],
) -> str:
    summary = pd.DataFrame(
        [
            ("domains", len(mesh.list_domains())),
            ("data products", len(products)),
            ("published versions", sum(len(mesh.versions(p.name)) for p in products)),
            ("active subscriptions", len(subs)),
            ("governance policies", len(policies)),
            (
                "products passing every mandatory policy",
                sum(1 for c in compliance.values() if c.passed),
            ),
        ],
        columns=["item", "count"],
    )
    return "<h2>Summary</h2>" + _table_html(summary)


def _versions_section(mesh: ReportSource, products: Sequence[Product]) -> str:
    rows = []
    for p in products:
        latest = mesh.latest_version(p.name)
        rows.append(
            (
                p.name,
                latest.version if latest else "unpublished",
                iso(latest.published_at) if latest else None,
                latest.access_policy.describe() if latest else None,
                ", ".join(f"{t}@v{v}" for t, v in latest.table_versions.items())
                if latest
                else None,
            )
        )
    return "<h3>Published versions</h3>" + _table_html(
        pd.DataFrame(
            rows, columns=["product", "version", "published_at", "access policy", "tables"]
        )
    )


def _compliance_section(
    policies: Sequence[Policy], compliance: dict[str, ComplianceReport], errors: Sequence[str]
) -> list[str]:
    parts = ["<h2>Compliance</h2>"]
    if policies:
        parts.append(
            _table_html(
                pd.DataFrame(
                    [
                        (p.name, p.rule, p.enforcement, p.scope_text(), p.description)
                        for p in policies
                    ],
                    columns=["policy", "rule", "enforcement", "applies to", "description"],
                )
            )
        )
    for name, rep in compliance.items():
        parts.append(
            f"<h3>{_esc(name)}: <span class='{rep.status}'>{rep.status}</span></h3>"
            + _table_html(rep.to_frame().drop(columns=["product"]), "no policy applies")
        )
    for err in errors:
        parts.append(f"<p class='FAIL'>{_esc(err)}</p>")
    return parts


def _subscriptions_table(subs: Sequence[Subscription]) -> str:
    return _table_html(
        pd.DataFrame(
            [
                (s.product, s.recipient, s.consumer_domain, s.version, iso(s.subscribed_at))
                for s in subs
            ],
            columns=["product", "recipient", "consumer domain", "version", "subscribed_at"],
        )
    )
