"""The lineage graph (source tables -> derived tables -> shares -> products -> recipients, plus the audit
log's reads) and the impact of a change to a table; :class:`~helpers.mesh.Mesh` builds them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class LineageGraph:
    """Nodes ``kind:name`` (table, share, product, recipient) and directed edges ``(src, dst, kind, label)``."""

    nodes: Mapping[str, Mapping[str, Any]]
    edges: tuple[tuple[str, str, str, str], ...]

    def successors(self, node: str) -> list[str]:
        return [d for s, d, _, _ in self.edges if s == node]

    def predecessors(self, node: str) -> list[str]:
        return [s for s, d, _, _ in self.edges if d == node]

    def downstream(self, node: str) -> list[str]:
        """Every node reachable from ``node`` (breadth first)."""
        return self._walk(node, self.successors)

    def upstream(self, node: str) -> list[str]:
        """Every node ``node`` depends on."""
        return self._walk(node, self.predecessors)

    def levels(self, node: str) -> dict[str, int]:
        """Every node reachable from ``node`` with its distance in edges (1 = a direct successor)."""
        return {n: len(path) - 1 for n, path in self.paths(node).items()}

    def paths(self, node: str) -> dict[str, list[str]]:
        """A shortest path ``[node, ..., n]`` to every node ``n`` reachable from ``node`` (breadth first)."""
        out: dict[str, list[str]] = {}
        queue = [[node]]
        while queue:
            path = queue.pop(0)
            for nxt in self.successors(path[-1]):
                if nxt != node and nxt not in out:
                    out[nxt] = [*path, nxt]
                    queue.append(out[nxt])
        return out

    @staticmethod
    def _walk(node: str, step: Callable[[str], list[str]]) -> list[str]:
        seen: list[str] = []
        queue = [node]
        while queue:
            for nxt in step(queue.pop(0)):
                if nxt not in seen and nxt != node:
                    seen.append(nxt)
                    queue.append(nxt)
        return seen

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.edges), columns=["source", "target", "kind", "label"])

    def to_dot(self) -> str:
        """The graph in Graphviz DOT (paste into any Graphviz viewer)."""
        shapes = {"table": "box", "share": "folder", "product": "component", "recipient": "ellipse"}
        lines = ["digraph lineage {", "  rankdir=LR;"]
        for node, attrs in self.nodes.items():
            lines.append(f'  "{node}" [shape={shapes.get(str(attrs.get("kind")), "box")}];')
        for s, d, kind, label in self.edges:
            text = f"{kind}: {label}" if label else kind
            lines.append(f'  "{s}" -> "{d}" [label="{text}"];')
        lines.append("}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Impact:
    """What a change to ``table`` would affect.

    :param levels: each derived table's distance from ``table`` (1 = built directly from it).
    :param paths: a shortest path from ``table`` to every node reached (tables, shares, products,
        recipients), as ``kind:name`` nodes.
    """

    table: str
    derived_tables: tuple[str, ...]
    shares: tuple[str, ...]
    products: tuple[str, ...]
    recipients: tuple[str, ...]
    usage: pd.DataFrame
    levels: Mapping[str, int] = field(default_factory=dict)
    paths: Mapping[str, list[str]] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """One row per node reached: its level (edges from the table), kind, name and the path to it."""
        rows = [
            (
                len(path) - 1,
                node.split(":", 1)[0],
                node.split(":", 1)[1],
                " -> ".join(n.split(":", 1)[1] for n in path),
            )
            for node, path in self.paths.items()
        ]
        rows.sort(key=lambda r: (r[0], r[1], r[2]))
        return pd.DataFrame(rows, columns=["level", "kind", "name", "path"])

    def consumers(self) -> pd.DataFrame:
        """The recipients reached, with the share (and product) through which, and whether they read."""
        readers = set(self.usage["recipient"]) if len(self.usage) else set()
        rows = []
        for node, path in self.paths.items():
            if not node.startswith("recipient:"):
                continue
            via_share = next((n.split(":", 1)[1] for n in path if n.startswith("share:")), None)
            via_product = next((n.split(":", 1)[1] for n in path if n.startswith("product:")), None)
            tables = [n.split(":", 1)[1] for n in path if n.startswith("table:")]
            name = node.split(":", 1)[1]
            rows.append((name, via_share, via_product, tables[-1], len(path) - 1, name in readers))
        return pd.DataFrame(
            sorted(rows), columns=["recipient", "share", "product", "table", "level", "reads"]
        )

    def summary(self) -> str:
        readers = sorted(set(self.usage["recipient"])) if len(self.usage) else []
        depth = max(self.levels.values(), default=0)
        return (
            f"A change to {self.table} affects {len(self.derived_tables)} derived table(s) "
            f"{list(self.derived_tables)} over {depth} level(s), {len(self.shares)} share(s) "
            f"{list(self.shares)}, {len(self.products)} product(s) {list(self.products)} and "
            f"{len(self.recipients)} recipient(s) {list(self.recipients)}; recipients who actually "
            f"read it: {readers}"
        )
