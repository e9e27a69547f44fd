"""The :class:`Mesh` facade: one object per lab home, put together from one mixin per concern.

- :mod:`.base`: the catalog, the mesh store, the event log and the lookups every concern reads;
- :mod:`.products`: domains, products over shares, validity rules, column tags;
- :mod:`.governance`: quality measurement and history, policies, compliance checks, SLA status;
- :mod:`.enforcement`: grant conditions, grant violations and version pins written into the catalog;
- :mod:`.publishing`: schema contract, version numbers, publishing (pins and conditions), major aliases;
- :mod:`.subscriptions`: subscribing (one transaction with the catalog's grant) and unsubscribing;
- :mod:`.discovery`: search and the product overview;
- :mod:`.lineage`: derivations (in the catalog), usage from the audit log, the lineage graph and impact.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from helpers.mesh.common import resolve_now
from helpers.mesh.facade.discovery import DiscoveryMixin
from helpers.mesh.facade.lineage import LineageMixin
from helpers.mesh.facade.products import ProductsMixin
from helpers.mesh.facade.publishing import PublishingMixin
from helpers.mesh.facade.subscriptions import SubscriptionsMixin
from helpers.mesh.report import render_report

__all__ = ["Mesh"]


class Mesh(ProductsMixin, PublishingMixin, SubscriptionsMixin, DiscoveryMixin, LineageMixin):
    """The data mesh of one lab home.

    :param home: the lab home (``None``: ``$SHARELAB_HOME``, else ``~/.sharelab``).
    :param catalog: an open :class:`~helpers.catalog.Catalog` to use instead of opening the home's.
    """

    # ------------------------------------------------------------------ report
    def report_html(self, *, now: datetime | None = None, measure: bool = True) -> str:
        """The mesh report as one self-contained HTML page (plots embedded as base64 PNG)."""
        return render_report(self, resolve_now(now), measure)

    def write_report(
        self, out: str | os.PathLike[str], *, now: datetime | None = None, measure: bool = True
    ) -> Path:
        """Write :meth:`report_html` to ``out`` (parent directories created) and return the path."""
        path = Path(out).expanduser()
        text = self.report_html(now=now, measure=measure)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        return path
