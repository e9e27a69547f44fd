"""The lineage graph (source tables -> derived tables -> shares -> products -> recipients, plus the audit
log's reads) and the impact of a change to a table; :class:`~helpers.mesh.Mesh` builds them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
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
    """What a change to ``table`` would affect."""

    table: str
    derived_tables: tuple[str, ...]
    shares: tuple[str, ...]
    products: tuple[str, ...]
    recipients: tuple[str, ...]
    usage: pd.DataFrame

    def summary(self) -> str:
        readers = sorted(set(self.usage["recipient"])) if len(self.usage) else []
        return (
            f"A change to {self.table} affects {len(self.derived_tables)} derived table(s) "
            f"{list(self.derived_tables)}, {len(self.shares)} share(s) {list(self.shares)}, "
            f"{len(self.products)} product(s) {list(self.products)} and {len(self.recipients)} "
            f"recipient(s) {list(self.recipients)}; recipients who actually read it: {readers}"
        )
