"""The governance sections of the mesh report: access enforcement (grant conditions and the grants that
violate them), the versions the server serves (pins), quality trend verdicts, retention against the
promised time-travel window, and the lineage of derived tables drawn as a layered graph (source tables ->
derived tables by level -> shares -> products -> recipients)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

import pandas as pd

from helpers.catalog import GrantViolation
from helpers.exceptions import SharelabError
from helpers.mesh.lineage import LineageGraph
from helpers.mesh.models import Product

__all__ = ["GovernanceSource", "governance_sections", "lineage_figure", "lineage_layers"]


class GovernanceSource(Protocol):
    """What these sections read from a mesh (:class:`~helpers.mesh.Mesh` provides it)."""

    def access_violations(self, product: str | None = None) -> list[GrantViolation]: ...

    def grant_conditions(self, product: str) -> pd.DataFrame: ...

    def served_versions(self, product: str) -> pd.DataFrame: ...

    def quality_trends(self, product: str | None = None) -> pd.DataFrame: ...

    def retention(self, product: str, *, now: datetime | None = None) -> pd.DataFrame: ...

    def derivations(self, table: str | None = None) -> pd.DataFrame: ...

    def lineage(self) -> LineageGraph: ...


_KIND_ORDER = ("share", "product", "recipient")


def lineage_layers(graph: LineageGraph) -> dict[str, int]:
    """The column of each node in the drawing: tables by derivation depth (0 = not derived), then
    shares, products and recipients in the next three columns."""
    derives = [(s, d) for s, d, k, _ in graph.edges if k == "derives"]
    depth: dict[str, int] = {n: 0 for n, a in graph.nodes.items() if a.get("kind") == "table"}
    for _ in range(len(depth) + 1):  # longest path; the catalog refuses cycles
        changed = False
        for s, d in derives:
            if depth.get(d, 0) < depth.get(s, 0) + 1:
                depth[d] = depth.get(s, 0) + 1
                changed = True
        if not changed:
            break
    top = max(depth.values(), default=0)
    layers = dict(depth)
    for n, a in graph.nodes.items():
        kind = str(a.get("kind"))
        if kind in _KIND_ORDER:
            layers[n] = top + 1 + _KIND_ORDER.index(kind)
    return layers


def lineage_figure(graph: LineageGraph) -> Any:
    """A matplotlib figure of the lineage graph (data-flow edges; reads are in the usage section)."""
    import matplotlib.pyplot as plt

    flow = [e for e in graph.edges if e[2] != "reads"]
    used = {n for s, d, _, _ in flow for n in (s, d)}
    layers = {n: lv for n, lv in lineage_layers(graph).items() if n in used}
    columns: dict[int, list[str]] = {}
    for n in sorted(layers, key=lambda x: (layers[x], x)):
        columns.setdefault(layers[n], []).append(n)
    height = max((len(v) for v in columns.values()), default=1)
    fig, ax = plt.subplots(figsize=(3.2 * max(len(columns), 1), max(2.5, 0.55 * height + 1)))
    pos: dict[str, tuple[float, float]] = {}
    for col, nodes in columns.items():
        for i, n in enumerate(nodes):
            pos[n] = (
                float(col),
                float(height - 1) / 2 - i + (len(nodes) - 1) / 2 - (height - 1) / 2,
            )
    colors = {"table": "#dbe9f6", "share": "#fde9c9", "product": "#d9f2d9", "recipient": "#eee"}
    for s, d, kind, _ in flow:
        if s in pos and d in pos:
            ax.annotate(
                "",
                xy=pos[d],
                xytext=pos[s],
                arrowprops={
                    "arrowstyle": "->",
                    "color": "#b00020" if kind == "derives" else "#888",
                },
            )
    for n, (x, y) in pos.items():
        kind, name = n.split(":", 1)
        ax.text(
            x,
            y,
            name.split(".", 1)[-1] if kind == "table" else name,
            ha="center",
            va="center",
            fontsize=7,
            bbox={"boxstyle": "round", "fc": colors.get(kind, "#fff"), "ec": "#999"},
        )
    ax.set_xlim(-0.6, max(columns, default=0) + 0.6)
    ax.set_ylim(-height / 2 - 0.5, height / 2 + 0.5)
    ax.axis("off")
    ax.set_title("Lineage: derived tables (red arrows) -> shares -> products -> recipients")
    fig.tight_layout()
    return fig


def governance_sections(
    mesh: GovernanceSource,
    products: Sequence[Product],
    now: datetime,
    table_html: Callable[[pd.DataFrame, str], str],
    image: Callable[[Any], str],
) -> list[str]:
    """The report's governance sections as HTML fragments."""
    parts = ["<h2>Access enforcement</h2>"]
    violations = mesh.access_violations()
    parts.append(
        "<p>Grant conditions the catalog enforces on every GRANT (SQL, API, CLI, mesh):</p>"
        + table_html(
            pd.concat(
                [mesh.grant_conditions(p.name).assign(product=p.name) for p in products]
                or [pd.DataFrame()],
                ignore_index=True,
            ),
            "no grant conditions (no product published)",
        )
    )
    parts.append(
        "<h3>Grants that violate a policy</h3>"
        + table_html(
            pd.DataFrame(
                [(v.share, v.recipient, v.policy, v.reason) for v in violations],
                columns=["share", "recipient", "policy", "reason"],
            ),
            "none: every grant is allowed by its product's policies",
        )
    )
    served = [mesh.served_versions(p.name).assign(product=p.name) for p in products]
    parts.append(
        "<h2>Served versions (pinned at publish)</h2>"
        + table_html(pd.concat(served or [pd.DataFrame()], ignore_index=True), "no product")
    )
    parts.append(
        "<h3>Quality trend verdicts</h3>"
        + table_html(mesh.quality_trends(), "fewer than two measurements yet")
    )
    retention = []
    for p in products:
        try:
            retention.append(mesh.retention(p.name, now=now).assign(product=p.name))
        except SharelabError:
            continue
    parts.append(
        "<h2>Retention vs promised time travel</h2>"
        + table_html(
            pd.concat(retention or [pd.DataFrame()], ignore_index=True),
            "no product promises a time-travel window (SLA time_travel_days)",
        )
    )
    graph = mesh.lineage()
    parts.append("<h2>Lineage of derived tables</h2>" + image(lineage_figure(graph)))
    parts.append(table_html(mesh.derivations(), "no derived table recorded"))
    return parts
